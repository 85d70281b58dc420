import {
  type LinkEvent,
  type Log,
  type Member,
  NeighborLinks,
  type PeerAddresses,
  type Policy,
  type PolicyContext,
  type RosterItem,
  routeDirectWhatWentVia,
} from "@tincan/controller";
import {
  canonicalAddress,
  defaultDeviceName,
  hostPrefix,
  type PresenceTincan,
  type RpcParamsOf,
  type RpcResults,
  type SocialVpnConfig,
  uidForDevice,
} from "@tincan/protocol";
import { type AddressBook, AddressExhaustedError, accountOf, deviceKey, deviceOf } from "./addresses.js";
import type { NameEntry, NameTable } from "./dns.js";
import { type LinkBytes, SocialProfile } from "./profile.js";
import type { SocialVpnState, StateWriter } from "./state.js";
import { ulaForUid } from "./ula.js";

type Config = Pick<SocialVpnConfig, "vnic" | "xmpp"> & {
  links?: Pick<SocialVpnConfig["links"], "relayForBuddies" | "setupTimeoutSec">;
};

/** Inter-controller message of a device that relays (links.relayForBuddies): the devices it links to. */
export const RELAY_OFFER = "socialvpn.relay";

/** Relay offers go out at most this often (a burst of link changes is one message per neighbour). */
const RELAY_OFFER_DELAY_MS = 1000;

export interface SocialPolicyOptions {
  config: Config;
  /** Device -> address map (loaded from the state file). */
  book: AddressBook;
  /** Saves the book; null = keep it in memory only (tests). */
  state?: StateWriter | null;
  /** Names for the DNS responder; kept in line with the roster. */
  names?: NameTable | null;
  /** `dns.resolved`: the DNS server the datapath registers for the vNIC with systemd-resolved. */
  resolvedDns?: RpcParamsOf<"vnic.configure">["dns"];
  /** The vNIC has our address now (at start and after each datapath restart). */
  onVnicReady?: () => void;
  /** Traffic scores (loaded from the state file): often-used devices get proactive links. */
  profile?: SocialProfile;
  log: Log;
}

/** The resource of a full JID ("" when it has none). */
export function resourceOf(fullJid: string): string {
  const slash = fullJid.indexOf("/");
  return slash < 0 ? "" : fullJid.slice(slash + 1);
}

/**
 * SocialVPN: the peers are the devices of the XMPP buddies with mutual subscription, and our own
 * account's other devices. Each device gets an address of our own private range (kept across
 * restarts) and the datapath translates on receive, so both ends may number each other differently.
 * A device is an XMPP resource; its UID is the first 128 bits of SHA-256 of its full JID
 * (uidForDevice), and its IPv6 address comes from the UID (see ula.ts) and is not translated.
 */
export class SocialPolicy implements Policy {
  readonly uid: string;
  readonly jid: string;
  /** This device's name: its XMPP resource. */
  readonly device: string;
  readonly ipv4: string;
  readonly ipv6: string;
  private readonly book: AddressBook;
  private readonly profile: SocialProfile;
  private readonly log: Log;
  /** Routes we set per device UID (removed when it goes). */
  private readonly routesOf = new Map<string, string[]>();
  /** Device keys of the devices online now, by UID. */
  private readonly online = new Map<string, string>();
  /** Bare JIDs with mutual subscription (from the last roster). */
  private buddies: string[] = [];
  /** Devices with a connected link (relaying goes through these). */
  private readonly connected = new Set<string>();
  /** Devices whose link setup is under way, and since when (a late relay offer may still help). */
  private readonly settingUp = new Map<string, number>();
  /**
   * Relay offers of neighbours that opted in: the devices each has links to. IPv4 cannot take this
   * way (each hop translates it to its own numbering): IPv6 only.
   */
  private readonly relays = new NeighborLinks(RELAY_OFFER);
  private relayOfferTimer: NodeJS.Timeout | null = null;
  private readonly rejectedLogged = new Set<string>();

  constructor(private readonly opts: SocialPolicyOptions) {
    const { config } = opts;
    this.jid = `${config.xmpp.username}@${config.xmpp.domain}`.toLowerCase();
    this.device = config.xmpp.resource ?? defaultDeviceName();
    this.uid = uidForDevice(this.jid, this.device);
    this.book = opts.book;
    this.profile = opts.profile ?? new SocialProfile();
    this.log = opts.log;
    this.ipv4 = this.book.ownAddress;
    this.ipv6 = ulaForUid(this.uid);
    this.updateNames();
  }

  /** Only the UID and the overlay IPv6: our IPv4 numbering is private (buddies use their own). */
  presence(): PresenceTincan {
    return { uid: this.uid, ipv6: this.ipv6 };
  }

  vnic(): RpcParamsOf<"vnic.configure"> {
    const { name, ipv4, mtu } = this.opts.config.vnic;
    const dns = this.opts.resolvedDns;
    return {
      uid: this.uid,
      name,
      ipv4,
      ipv6: `${this.ipv6}/64`,
      mtu,
      translate: true,
      ...(dns ? { dns } : {}),
    };
  }

  onVnicConfigured(result: RpcResults["vnic.configure"]): void {
    if (result.dns?.registered)
      this.log.info("names registered with systemd-resolved", {
        link: result.name,
        ...this.opts.resolvedDns,
      });
    else if (result.dns)
      this.log.warn("names not registered with systemd-resolved", {
        link: result.name,
        error: result.dns.error,
      });
    this.opts.onVnicReady?.();
  }

  /** The UID must be the one of the full JID (the device), and an announced IPv6 the one of the UID. */
  verifyPeer(peer: { bareJid: string; fullJid: string; tincan: PresenceTincan }): boolean {
    const { uid, ipv6 } = peer.tincan;
    let why: string | null = null;
    if (uid !== uidForDevice(peer.bareJid, resourceOf(peer.fullJid)))
      why = "its UID is not the one of its JID and resource (a node of before devices?)";
    else if (ipv6 !== undefined && canonicalAddress(ipv6) !== ulaForUid(uid))
      why = "its IPv6 address is not the one of its UID";
    if (why === null) return true;
    if (!this.rejectedLogged.has(peer.fullJid)) {
      this.rejectedLogged.add(peer.fullJid);
      this.log.warn("ignored a buddy's presence (logged once)", { from: peer.fullJid, why });
    }
    return false;
  }

  /** Local IPv4 (our numbering) and overlay IPv6 of a device: the core links on packets to them. */
  peerAddresses(peer: Member): PeerAddresses {
    const ipv4 = this.book.lookup(keyOf(peer));
    return { ...(ipv4 ? { ipv4 } : {}), ipv6: ulaForUid(peer.tincan.uid) };
  }

  /** With on-demand links, often-used devices (the social profile) are linked at once all the same. */
  proactiveFor(peer: Member): boolean {
    return this.profile.isFrequent(keyOf(peer));
  }

  /** Adds the traffic of the links (`link.query`) to the devices' scores; saved with the state. */
  sampleTraffic(links: LinkBytes[]): void {
    if (this.profile.sample(links, (uid) => this.online.get(uid)))
      this.opts.state?.save(() => this.snapshot());
  }

  /** What the state file holds. */
  snapshot(): SocialVpnState {
    return { version: 2, devices: this.book.toRecord(), scores: this.profile.toRecord() };
  }

  async onPeerOnline(peer: Member, ctx: PolicyContext): Promise<void> {
    const uid = peer.tincan.uid;
    const key = keyOf(peer);
    const ipv4 = this.addressFor(key);
    const prefixes = [...(ipv4 ? [ipv4] : []), ulaForUid(uid)].map(hostPrefix);
    // Routes exist from the start: without a link, the datapath holds the packets and reports them
    // as unmapped, which is what sets an on-demand link up. The /32 also tells the datapath the
    // device's local address for translation.
    for (const old of this.routesOf.get(uid) ?? []) {
      if (!prefixes.includes(old)) await ctx.removeRoute(old).catch(() => {});
    }
    this.routesOf.set(uid, prefixes);
    this.online.set(uid, key);
    this.updateNames();
    for (const prefix of prefixes) await ctx.setRoute({ prefix, peerUid: uid });
    ctx.log.info(peer.bareJid === this.jid ? "own device online" : "buddy device online", {
      device: key,
      ipv4,
      ipv6: ulaForUid(uid),
    });
  }

  async onPeerOffline(peer: Member, ctx: PolicyContext): Promise<void> {
    const uid = peer.tincan.uid;
    const prefixes = this.routesOf.get(uid) ?? [];
    this.routesOf.delete(uid);
    this.online.delete(uid);
    this.updateNames();
    for (const prefix of prefixes) await ctx.removeRoute(prefix).catch(() => {});
    ctx.log.info("device gone: link and routes removed", { device: keyOf(peer) });
  }

  /**
   * While a link is set up, route the device's IPv6 address through a connected neighbour that
   * offered to relay to it, for the setup's time at most; its link coming up makes the route direct.
   */
  async onLinkSetup(e: LinkEvent, ctx: PolicyContext): Promise<void> {
    this.settingUp.set(e.peer.uid, Date.now());
    await this.routeViaRelay(e.peer.uid, ctx);
  }

  async onLinkUp(e: LinkEvent, ctx: PolicyContext): Promise<void> {
    this.connected.add(e.peer.uid);
    this.settingUp.delete(e.peer.uid);
    this.offerRelay(ctx);
    await this.routeDirect(e.peer.uid, ctx);
  }

  async onLinkDown(e: LinkEvent, ctx: PolicyContext): Promise<void> {
    this.connected.delete(e.peer.uid);
    this.settingUp.delete(e.peer.uid);
    this.relays.forget(e.peer.uid);
    this.offerRelay(ctx);
    await routeDirectWhatWentVia(e.peer.uid, ctx);
  }

  onIccMessage(p: { peerUid: string; data: unknown }, ctx: PolicyContext): void {
    if (!this.relays.update(p.peerUid, p.data)) {
      ctx.log.debug("ignored an icc message that is no relay offer", { peer: p.peerUid });
      return;
    }
    // Setups that found no relay when they started may use this one.
    for (const uid of this.settingUp.keys()) {
      this.routeViaRelay(uid, ctx).catch((err: Error) =>
        ctx.log.warn("routing through a relay failed", { peer: uid, error: err.message }),
      );
    }
  }

  async onDatapathRestarted(): Promise<void> {
    this.connected.clear();
    this.settingUp.clear();
  }

  private setupMs(): number {
    return (this.opts.config.links?.setupTimeoutSec ?? 10) * 1000;
  }

  private async routeViaRelay(uid: string, ctx: PolicyContext): Promise<void> {
    const since = this.settingUp.get(uid);
    if (since === undefined || Date.now() - since > this.setupMs() || this.connected.has(uid)) {
      this.settingUp.delete(uid);
      return;
    }
    const via = this.relays.relayFor(uid, this.connected);
    const prefix = hostPrefix(ulaForUid(uid));
    if (!via || !this.routesOf.get(uid)?.includes(prefix)) return;
    if (ctx.routes().some((r) => r.prefix === prefix && r.via === via)) return;
    ctx.log.info("routing IPv6 through a relaying device while the link is set up", {
      device: this.online.get(uid),
      via: this.online.get(via) ?? via,
    });
    await ctx.setRoute({ prefix, peerUid: uid, via });
    const left = since + this.setupMs() - Date.now();
    setTimeout(() => void this.routeDirect(uid, ctx).catch(() => {}), Math.max(0, left)).unref();
  }

  /** The device's routes that go through a relay go direct again. */
  private async routeDirect(uid: string, ctx: PolicyContext): Promise<void> {
    for (const r of ctx.routes()) {
      if (r.peerUid === uid && r.via) await ctx.setRoute({ prefix: r.prefix, peerUid: uid });
    }
  }

  /** Opted in: tell every neighbour, soon, which devices we relay to (those we have links to). */
  private offerRelay(ctx: PolicyContext): void {
    if (!this.opts.config.links?.relayForBuddies || this.relayOfferTimer) return;
    this.relayOfferTimer = setTimeout(() => {
      this.relayOfferTimer = null;
      const data = { type: RELAY_OFFER, uids: [...this.connected] };
      for (const peerUid of this.connected) {
        ctx.datapath
          .call("icc.send", { peerUid, data })
          .catch((err: Error) =>
            ctx.log.debug("relay offer not sent", { peer: peerUid, error: err.message }),
          );
      }
    }, RELAY_OFFER_DELAY_MS);
    this.relayOfferTimer.unref();
  }

  /** The buddies' names follow the roster (a buddy's devices get addresses when first seen online). */
  onRosterChanged(items: RosterItem[]): void {
    this.buddies = items.filter((i) => i.subscription === "both" && i.jid !== this.jid).map((i) => i.jid);
    this.updateNames();
  }

  /** The device's address of our range, handed out (and saved) on first sight. */
  private addressFor(key: string): string | undefined {
    const isPeer = (k: string) => accountOf(k) === this.jid || this.buddies.includes(accountOf(k));
    try {
      const a = this.book.assign(key, isPeer);
      if (a.created) {
        this.log.info("device address assigned", {
          device: key,
          ipv4: a.address,
          ...(a.reclaimedFrom ? { reclaimedFrom: a.reclaimedFrom } : {}),
          ...(a.migratedFrom ? { keptFromAccount: a.migratedFrom } : {}),
        });
        this.opts.state?.save(() => this.snapshot());
      }
      return a.address;
    } catch (err) {
      if (!(err instanceof AddressExhaustedError)) throw err;
      this.log.error("cannot give a device an address", { device: key, error: err.message });
      return undefined;
    }
  }

  /** DNS names: ourselves, our other devices, and every buddy's known devices. */
  private updateNames(): void {
    if (!this.opts.names) return;
    const onlineKeys = new Set(this.online.values());
    const entries: NameEntry[] = [
      { jid: this.jid, device: this.device, ipv4: this.ipv4, ipv6: this.ipv6, online: true, self: true },
    ];
    for (const jid of [this.jid, ...this.buddies]) {
      const devices = this.book.devicesOf(jid).filter((k) => k !== deviceKey(this.jid, this.device));
      for (const key of devices) {
        const device = deviceOf(key) as string;
        entries.push({
          jid,
          device,
          ipv4: this.book.lookup(key),
          ipv6: ulaForUid(uidForDevice(jid, device)),
          online: onlineKeys.has(key),
        });
      }
      // A buddy with no device seen yet: its address of before devices (which its first device
      // takes over), or a name without addresses.
      if (devices.length === 0 && jid !== this.jid) entries.push({ jid, ipv4: this.book.lookup(jid) });
    }
    this.opts.names.set(entries);
  }
}

function keyOf(peer: { bareJid: string; fullJid: string }): string {
  return deviceKey(peer.bareJid, resourceOf(peer.fullJid));
}
