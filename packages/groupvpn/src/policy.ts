import {
  type LinkEvent,
  type Member,
  type Policy,
  type PolicyContext,
  type RosterItem,
  routeDirectWhatWentVia,
} from "@tincan/controller";
import {
  canonicalAddress,
  type GroupVpnConfig,
  hostPrefix,
  type IpPrefix,
  type LinkRole,
  type NotificationParamsOf,
  type PresenceTincan,
  parsePrefix,
  prefixContains,
  type RouterStatus,
  type RpcParamsOf,
  uidForIpv4,
} from "@tincan/protocol";
import { type Clock, systemClock } from "./clock.js";
import { bypassHosts } from "./exit-bypass.js";
import { NeighborLinks } from "./neighbors.js";
import { RouterRoutes } from "./router.js";
import { StructuredLinks } from "./structured.js";

type Config = Pick<GroupVpnConfig, "vnic" | "links" | "group" | "routes">;

const VIA_COOLDOWN_MS = 60_000;
/**
 * Link announcements go out at most this often. Each link change used to send our whole link list
 * to every neighbour at once: O(n^2) icc messages per node while a mesh of n forms (~2400 per
 * node at 50 nodes), which queued the datapath's other RPCs behind them.
 */
export const ANNOUNCE_EVERY_MS = 1000;

export interface GroupPolicyOptions {
  /** Time and timers (default: the wall clock); the simulator passes virtual time. */
  clock?: Clock;
  /** Draws of the structured overlay's long-distance targets (default: Math.random). */
  random?: () => number;
  /** Structured overlay: groups up to this many other members route every member (EAGER_ROUTES_UP_TO). */
  eagerRoutesUpTo?: number;
}

/**
 * GroupVPN: every member of one XMPP roster group owns one address of a shared subnet, and its UID
 * is derived from that address, so a destination address names the node to link to. While a link is
 * set up, the peer is reached via a neighbour that announced a link to it (see onLinkSetup).
 */
export class GroupPolicy implements Policy {
  readonly uid: string;
  readonly ipv4: string;
  private readonly subnet: IpPrefix;
  private readonly neighbors = new NeighborLinks();
  private readonly router: RouterRoutes;
  /** Peers with a connected link (for routing via, and for link announcements). */
  private readonly connected = new Set<string>();
  /** When each peer was last routed via a neighbour (see onLinkSetup). */
  private readonly viaUsedAt = new Map<string, number>();
  /** Peers whose link setup is under way, and since when (a late announcement may offer a via). */
  private readonly settingUp = new Map<string, number>();
  private lastAnnouncedAt = Number.NEGATIVE_INFINITY;
  private announceTimer: (() => void) | undefined;
  private readonly clock: Clock;
  /** `links.policy: "structured"`: the ring overlay decides links and routes (null otherwise). */
  readonly structured: StructuredLinks | null;

  constructor(
    private readonly config: Config & Partial<Pick<GroupVpnConfig, "xmpp" | "ice">>,
    options: GroupPolicyOptions = {},
  ) {
    this.subnet = parsePrefix(config.vnic.ipv4);
    this.ipv4 = this.subnet.address;
    this.uid = uidForIpv4(this.ipv4);
    this.clock = options.clock ?? systemClock;
    this.structured =
      config.links.policy === "structured"
        ? new StructuredLinks({
            self: this.uid,
            links: config.links,
            clock: this.clock,
            random: options.random ?? Math.random,
            connected: this.connected,
            neighborLinks: () => this.neighbors.all(),
            prefixesOf,
            prefixesBehind: (uid) => this.router.prefixesBehind(uid),
            pinnedLink: (uid) => this.router.exitInUse() === uid,
            servesExit: () => this.router.servesExit(),
            ...(options.eagerRoutesUpTo !== undefined ? { eagerRoutesUpTo: options.eagerRoutesUpTo } : {}),
          })
        : null;
    this.router = new RouterRoutes(
      config,
      this.uid,
      config.xmpp && config.ice ? bypassHosts({ xmpp: config.xmpp, ice: config.ice }) : [],
      this.structured !== null,
    );
  }

  presence(): PresenceTincan {
    const ipv6 = this.config.vnic.ipv6 && parsePrefix(this.config.vnic.ipv6).address;
    const routes = this.router.advertised();
    return { uid: this.uid, ipv4: this.ipv4, ...(ipv6 ? { ipv6 } : {}), ...(routes ? { routes } : {}) };
  }

  vnic(): RpcParamsOf<"vnic.configure"> {
    const { name, ipv4, ipv6, mtu } = this.config.vnic;
    return { uid: this.uid, name, ipv4, mtu, ...(ipv6 ? { ipv6 } : {}) };
  }

  /** A member is in our roster group. */
  refuse(item: RosterItem): string | null {
    this.router.noteRosterItem(item);
    return item.groups.includes(this.config.group) ? null : `not in roster group "${this.config.group}"`;
  }

  /** A member must announce an address of our subnet whose UID is its UID (identifier routing). */
  verifyPeer(peer: { tincan: PresenceTincan }): boolean {
    const { ipv4, uid } = peer.tincan;
    return !!ipv4 && ipv4 !== this.ipv4 && prefixContains(this.subnet, ipv4) && uidForIpv4(ipv4) === uid;
  }

  async onPeerOnline(peer: Member, ctx: PolicyContext): Promise<void> {
    // The prefixes behind a router first: the structured overlay routes them like its addresses.
    await this.router.peerOnline(peer, ctx);
    if (this.structured) await this.structured.memberOnline(peer.tincan.uid, ctx);
    else {
      // Routes exist from the start: without a link, the datapath holds the packets and reports them
      // as unmapped, which is what sets an on-demand link up.
      for (const prefix of prefixesOf(peer)) await ctx.setRoute({ prefix, peerUid: peer.tincan.uid });
    }
  }

  /** A presence burst: the ring takes every member at once (one recompute). */
  async onPeersOnline(peers: Member[], ctx: PolicyContext): Promise<void> {
    if (!this.structured) {
      for (const peer of peers) await this.onPeerOnline(peer, ctx);
      return;
    }
    await this.structured.membersOnline(
      peers.map((p) => p.tincan.uid),
      ctx,
    );
    for (const peer of peers) await this.router.peerOnline(peer, ctx);
  }

  async onStart(ctx: PolicyContext): Promise<void> {
    this.structured?.start(ctx);
    await this.router.start(ctx);
  }

  /** Structured overlay: why this node holds each link (successor, predecessor, long, shortcut, incoming). */
  linkRoles(): ReadonlyMap<string, LinkRole> {
    return this.structured?.linkRoles() ?? new Map();
  }

  async onRosterChanged(items: RosterItem[], ctx: PolicyContext): Promise<void> {
    await this.router.rosterChanged(items, ctx);
  }

  routerStatus(): RouterStatus {
    return this.router.status();
  }

  async onPeerOffline(peer: Member, ctx: PolicyContext): Promise<void> {
    this.neighbors.forget(peer.tincan.uid);
    this.connected.delete(peer.tincan.uid);
    this.viaUsedAt.delete(peer.tincan.uid);
    this.settingUp.delete(peer.tincan.uid);
    for (const prefix of prefixesOf(peer)) await ctx.removeRoute(prefix).catch(() => {});
    await this.router.peerOffline(peer, ctx);
    await this.structured?.memberOffline(peer.tincan.uid, ctx);
  }

  /**
   * While a link is being set up, route the peer via a neighbour that has a link to it. A
   * neighbour's claim is not verified, so a relay is used at most once per peer per
   * VIA_COOLDOWN_MS and only for the setup's duration: then the route goes back to direct.
   * No neighbour may have announced the peer yet: onIccMessage tries again when one does.
   */
  async onLinkSetup(e: LinkEvent, ctx: PolicyContext): Promise<void> {
    // Structured: the member is routed over the ring meanwhile already.
    if (this.structured) return;
    this.settingUp.set(e.peer.uid, this.clock.now());
    await this.routeVia(e.peer.uid, ctx);
  }

  private async routeVia(uid: string, ctx: PolicyContext): Promise<void> {
    const member = ctx.peer(uid);
    const via = this.neighbors.relayFor(uid, this.connected);
    const last = this.viaUsedAt.get(uid);
    const now = this.clock.now();
    if (!member || !via || (last !== undefined && now - last < VIA_COOLDOWN_MS)) return;
    this.viaUsedAt.set(uid, now);
    ctx.log.info("routing via a neighbour while the link is set up", { peer: member.bareJid, via });
    for (const prefix of prefixesOf(member)) await ctx.setRoute({ prefix, peerUid: uid, via });
    if (this.connected.has(uid)) {
      // The link came up while we set the via route: make sure the direct route is the last one set.
      for (const prefix of prefixesOf(member)) await ctx.setRoute({ prefix, peerUid: uid });
      return;
    }
    // Only for what is left of the setup's time (the via may come from a late announcement).
    const setupEnds = this.setupEndsAt(this.settingUp.get(uid) ?? now);
    this.clock.setTimer(() => void this.endVia(uid, via, ctx), Math.max(0, setupEnds - now));
  }

  /** When a link setup that started at `since` gives up (the link manager's setup timeout). */
  private setupEndsAt(since: number): number {
    return since + this.config.links.setupTimeoutSec * 1000;
  }

  /** The setup took too long: stop relaying through `via` (the route goes back to direct). */
  private async endVia(uid: string, via: string, ctx: PolicyContext): Promise<void> {
    if (this.connected.has(uid)) return;
    for (const r of ctx.routes()) {
      if (r.peerUid === uid && r.via === via)
        await ctx.setRoute({ prefix: r.prefix, peerUid: uid }).catch(() => {});
    }
  }

  async onLinkUp(e: LinkEvent, ctx: PolicyContext): Promise<void> {
    this.connected.add(e.peer.uid);
    this.settingUp.delete(e.peer.uid);
    this.announceLinks(ctx);
    if (this.structured) {
      await this.structured.linkUp(e.peer.uid, ctx);
      return;
    }
    const member = ctx.peer(e.peer.uid);
    if (member) {
      for (const prefix of prefixesOf(member)) await ctx.setRoute({ prefix, peerUid: e.peer.uid });
    }
  }

  async onLinkDown(e: LinkEvent, ctx: PolicyContext): Promise<void> {
    this.connected.delete(e.peer.uid);
    this.settingUp.delete(e.peer.uid);
    this.neighbors.forget(e.peer.uid);
    this.announceLinks(ctx);
    if (this.structured) await this.structured.linkDown(e.peer.uid, e.reason, ctx);
    else await routeDirectWhatWentVia(e.peer.uid, ctx);
  }

  /**
   * Structured: a packet for a member (or a prefix behind it) found no usable route. One from another
   * member was in transit here (the datapath holds it): routed as if its route request had come.
   */
  async onPacketUnmapped(p: NotificationParamsOf<"packet.unmapped">, ctx: PolicyContext): Promise<void> {
    if (!this.structured) return;
    const member = this.memberAt(p.dst, ctx, true);
    if (!member) return;
    const src = this.memberAt(p.src, ctx, false);
    if (src) await this.structured.transitUnmapped(src, member, ctx);
    else await this.structured.packetUnmapped(member, ctx);
  }

  /** The member with this address (or, `behind`, with a prefix holding it), not us. */
  private memberAt(address: string, ctx: PolicyContext, behind: boolean): Member | undefined {
    const a = canonicalAddress(address);
    if (a === null) return undefined;
    // A GroupVPN member's UID follows from its IPv4 address: no scan of every member for those.
    const byIpv4 = !a.includes(":") ? ctx.peer(uidForIpv4(a)) : undefined;
    if (byIpv4?.tincan.ipv4 === a) return byIpv4;
    const own = ctx
      .peers()
      .find((m) => [m.tincan.ipv4, m.tincan.ipv6].some((x) => x !== undefined && canonicalAddress(x) === a));
    if (own || !behind) return own;
    const router = this.router.routerOf(a);
    return router === undefined ? undefined : ctx.peer(router);
  }

  onIccMessage(p: NotificationParamsOf<"icc.message">, ctx: PolicyContext): void {
    if (this.structured?.onIccMessage(p, ctx)) return;
    if (!this.neighbors.update(p.peerUid, p.data)) {
      ctx.log.debug("ignored a malformed icc message", { peer: p.peerUid });
      return;
    }
    // Setups that found no neighbour to route via when they started may find this one.
    const now = this.clock.now();
    for (const [uid, since] of this.settingUp) {
      if (now > this.setupEndsAt(since)) this.settingUp.delete(uid);
      else if (this.neighbors.relayFor(uid, [p.peerUid]) === p.peerUid) {
        this.routeVia(uid, ctx).catch((err: Error) =>
          ctx.log.warn("routing via a neighbour failed", { peer: uid, error: err.message }),
        );
      }
    }
  }

  neighborLinks(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.neighbors.all();
  }

  async onDatapathRestarted(ctx: PolicyContext): Promise<void> {
    this.connected.clear();
    this.settingUp.clear();
    this.structured?.reset();
    await this.router.start(ctx); // exit.serve / exit.use again (the core re-sets the routes)
  }

  /** Our link list to every neighbour: now, or when ANNOUNCE_EVERY_MS since the last one is over. */
  private announceLinks(ctx: PolicyContext): void {
    if (this.announceTimer) return;
    const wait = this.lastAnnouncedAt + ANNOUNCE_EVERY_MS - this.clock.now();
    if (wait <= 0) {
      this.sendAnnouncement(ctx);
      return;
    }
    this.announceTimer = this.clock.setTimer(() => {
      this.announceTimer = undefined;
      this.sendAnnouncement(ctx);
    }, wait);
  }

  private sendAnnouncement(ctx: PolicyContext): void {
    this.lastAnnouncedAt = this.clock.now();
    const data = { type: "groupvpn.links", uids: [...this.connected] };
    for (const peerUid of this.connected) {
      ctx.datapath
        .call("icc.send", { peerUid, data })
        .catch((err: Error) =>
          ctx.log.debug("link announcement not sent", { peer: peerUid, error: err.message }),
        );
    }
  }
}

/** Host prefixes of each member's presence, parsed once (the overlay asks for them on every route pass). */
const hostPrefixes = new WeakMap<PresenceTincan, string[]>();

function prefixesOf(m: Member): string[] {
  let prefixes = hostPrefixes.get(m.tincan);
  if (prefixes === undefined) {
    prefixes = [m.tincan.ipv4, m.tincan.ipv6].filter((a) => a !== undefined).map(hostPrefix);
    hostPrefixes.set(m.tincan, prefixes);
  }
  return prefixes;
}
