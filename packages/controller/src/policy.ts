import {
  canonicalAddress,
  type LinkRole,
  type NotificationParamsOf,
  type PresenceTincan,
  parsePrefix,
  prefixContains,
  type RouterStatus,
  type RpcParamsOf,
  type RpcResults,
} from "@tincan/protocol";
import type { RosterItem } from "./admission.js";
import type { DatapathApi } from "./datapath-client.js";
import type { LinkEvent, PeerRef } from "./link-manager.js";
import type { Log } from "./logger.js";
import type { PeerPresence } from "./xmpp.js";

/** A peer that is online (tincan presence) and passes admission. */
export interface Member extends PeerPresence {
  /** Roster name, if any. */
  name?: string | undefined;
}

/** The addresses of a peer as this node knows it (routes, on-demand links, the status file). */
export interface PeerAddresses {
  ipv4?: string;
  ipv6?: string;
}

/** What a policy's hooks may use of the controller (handed to every hook that acts). */
export interface PolicyContext {
  readonly log: Log;
  /** For RPCs of the policy's own, e.g. icc.send. */
  readonly datapath: Pick<DatapathApi, "call">;
  /** Online peers that pass admission. */
  peers(): Member[];
  peer(uid: string): Member | undefined;
  /** Sets a route; it counts as ours from now on (re-set after a datapath restart). */
  setRoute(params: RpcParamsOf<"route.set">): Promise<void>;
  removeRoute(prefix: string): Promise<void>;
  routes(): RpcParamsOf<"route.set">[];
  /** Sets up a link to the member now (e.g. to an exit node, which no packet reaches before it). */
  ensureLink?(peer: Member, opts: { pinned: boolean }): Promise<void>;
  /** Tears the link down (bye to the peer with `reason`) and forgets it. */
  removeLink?(peerUid: string, reason: string): Promise<void>;
}

/**
 * What GroupVPN / SocialVPN plug into the core. Only `uid`, `presence` and `vnic` are required. The
 * core sets links up itself (`links.policy`: every member at once, or on a member's first packet)
 * and finds the member of a destination by `peerAddresses`; the policy sets the routes.
 */
export interface Policy {
  /** This node's UID. */
  readonly uid: string;
  /** What we announce in presence. */
  presence(): PresenceTincan;
  /** vnic.configure params (name/ipv4/ipv6/mtu usually from config; `translate` for SocialVPN). */
  vnic(): RpcParamsOf<"vnic.configure">;
  /**
   * Why a roster item with mutual subscription is still no member (e.g. GroupVPN: not in the group),
   * or null when it is one. Default: every mutual subscription is a member.
   */
  refuse?(item: RosterItem): string | null;
  /** Check a peer's presence beyond roster admission (e.g. its UID matches its address or JID). */
  verifyPeer?(peer: PeerPresence): boolean;
  /** Addresses of a peer as this node knows it (default: those of its presence). */
  peerAddresses?(peer: Member): PeerAddresses;
  /**
   * With on-demand links: whether to link to this member at once anyway (pinned), e.g. SocialVPN's
   * often-used devices. Default: no.
   */
  proactiveFor?(peer: Member): boolean;
  /** After the datapath is configured, before XMPP login: e.g. routes of prefixes behind this node. */
  onStart?(ctx: PolicyContext): void | Promise<void>;
  /** Router mode, for `tincanctl status`: prefixes advertised, accepted and ignored. */
  routerStatus?(): RouterStatus;
  /** A member came online, or announced other addresses: set its routes (the core links after). */
  onPeerOnline?(peer: Member, ctx: PolicyContext): void | Promise<void>;
  /**
   * Members that came online together (a presence burst, coalesced by the core: PRESENCE_BATCH_MS).
   * When defined, the core calls it instead of onPeerOnline for each of them.
   */
  onPeersOnline?(peers: Member[], ctx: PolicyContext): void | Promise<void>;
  /**
   * The peer is gone: it left the roster/group, or it is offline and has no working link (a peer that
   * goes offline while its link is connected keeps link and routes until the datapath says the link is
   * dead). Remove its routes here.
   */
  onPeerOffline?(peer: Member, ctx: PolicyContext): void | Promise<void>;
  /** A link setup attempt starts (either side): e.g. route the peer via another member meanwhile. */
  onLinkSetup?(e: LinkEvent, ctx: PolicyContext): void | Promise<void>;
  onLinkUp?(e: LinkEvent, ctx: PolicyContext): void | Promise<void>;
  onLinkDown?(e: LinkEvent, ctx: PolicyContext): void | Promise<void>;
  /** After the core asked for a link to the member of the destination, if there is one. */
  onPacketUnmapped?(p: NotificationParamsOf<"packet.unmapped">, ctx: PolicyContext): void | Promise<void>;
  onIccMessage?(p: NotificationParamsOf<"icc.message">, ctx: PolicyContext): void | Promise<void>;
  onRosterChanged?(items: RosterItem[], ctx: PolicyContext): void | Promise<void>;
  /** The datapath configured the vNIC (at start and after each datapath restart). */
  onVnicConfigured?(result: RpcResults["vnic.configure"], ctx: PolicyContext): void | Promise<void>;
  /** After the datapath restarted and the core re-configured vnic/ice/routes and re-set wanted links. */
  onDatapathRestarted?(ctx: PolicyContext): void | Promise<void>;
  /** Structured overlay: why this node holds each link, by peer UID (`tincanctl status`). */
  linkRoles?(): ReadonlyMap<string, LinkRole>;
  /** Which members each direct neighbour announced it links to, by neighbour UID (the overlay map). */
  neighborLinks?(): ReadonlyMap<string, ReadonlySet<string>>;
}

/**
 * Presence changes within this long after the members were recomputed are folded into one recompute
 * at its end (a login to a group of thousands brings thousands of presences back to back, and joins
 * to such a group come tens a second); a change after a quiet spell is taken in the next turn.
 */
export const PRESENCE_BATCH_MS = 200;

/** Runs `run` once for a burst of pokes: in the next turn, or PRESENCE_BATCH_MS after the last run. */
export class PresenceBatch {
  private lastRunAt = Number.NEGATIVE_INFINITY;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly run: () => void) {}

  get pending(): boolean {
    return this.timer !== null;
  }

  poke(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.lastRunAt + PRESENCE_BATCH_MS - Date.now());
    this.timer = setTimeout(() => this.now(), wait);
  }

  /** Runs now what is pending (e.g. a signal came from a member whose presence waits in the batch). */
  now(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.lastRunAt = Date.now();
    this.run();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Routes that went via a neighbour whose link is gone fall back to direct (held, reported as unmapped). */
export async function routeDirectWhatWentVia(neighbourUid: string, ctx: PolicyContext): Promise<void> {
  for (const r of ctx.routes()) {
    if (r.via === neighbourUid) await ctx.setRoute({ prefix: r.prefix, peerUid: r.peerUid });
  }
}

export function peerRefOf(m: Member): PeerRef {
  return { uid: m.tincan.uid, bareJid: m.bareJid, fullJid: m.fullJid };
}

export function presenceAddresses(t: PresenceTincan): PeerAddresses {
  return { ...(t.ipv4 ? { ipv4: t.ipv4 } : {}), ...(t.ipv6 ? { ipv6: t.ipv6 } : {}) };
}

export interface PolicyLinksOptions {
  /** `links.policy`: "proactive" links every member at once and pins its link (no idle trimming). */
  proactive: boolean;
  /**
   * On demand, a packet for a member's address, or for a prefix behind it (router mode), links to it
   * (default). Off for a policy that routes members and their prefixes over other links itself
   * (GroupVPN `structured`).
   */
  linkMembersOnDemand?: boolean;
  ensureLink(peer: PeerRef, opts: { pinned: boolean }): Promise<void>;
  /** On demand: members to link to at once all the same (the policy's proactiveFor). */
  proactiveFor?(peer: Member): boolean;
  peers(): Member[];
  addressesOf(peer: Member): PeerAddresses;
  /** The routes set (a prefix behind a member, router mode, links to that member like its address). */
  routes?(): RpcParamsOf<"route.set">[];
}

/**
 * Which links the core wants for its policy. Proactive: one per member as it comes online. On
 * demand: one when the datapath holds a packet for a member's address without a link (its routes
 * exist from the start, so the packet is reported as unmapped).
 */
export class PolicyLinks {
  constructor(private readonly opts: PolicyLinksOptions) {}

  async peerOnline(peer: Member): Promise<void> {
    if (this.opts.proactive || this.opts.proactiveFor?.(peer))
      await this.opts.ensureLink(peerRefOf(peer), { pinned: true });
  }

  async packetUnmapped(dst: string): Promise<void> {
    if (this.opts.linkMembersOnDemand === false && !this.opts.proactive) return;
    const member = this.memberAt(dst) ?? this.memberRoutedTo(dst);
    if (member) await this.opts.ensureLink(peerRefOf(member), { pinned: this.opts.proactive });
  }

  /** The member that the longest route containing `dst` goes to (e.g. a router's advertised prefix). */
  memberRoutedTo(dst: string): Member | undefined {
    let best: { length: number; peerUid: string } | undefined;
    for (const r of this.opts.routes?.() ?? []) {
      const p = parsePrefix(r.prefix);
      if ((!best || p.length > best.length) && prefixContains(p, dst))
        best = { length: p.length, peerUid: r.peerUid };
    }
    return best && this.opts.peers().find((m) => m.tincan.uid === best.peerUid);
  }

  /** The member that has `dst` as one of its addresses (compared in canonical text). */
  memberAt(dst: string): Member | undefined {
    const want = canonicalAddress(dst);
    if (want === null) return undefined;
    return this.opts.peers().find((m) => {
      const { ipv4, ipv6 } = this.opts.addressesOf(m);
      return (
        (ipv4 !== undefined && canonicalAddress(ipv4) === want) ||
        (ipv6 !== undefined && canonicalAddress(ipv6) === want)
      );
    });
  }
}
