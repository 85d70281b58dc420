import type { Log, Member, PeerAddresses, Policy, PolicyContext, RosterItem } from "@tincan/controller";
import {
  canonicalAddress,
  hostPrefix,
  type PresenceTincan,
  type RpcParamsOf,
  type RpcResults,
  type SocialVpnConfig,
  uidForJid,
} from "@tincan/protocol";
import { type AddressBook, AddressExhaustedError } from "./addresses.js";
import type { NameEntry, NameTable } from "./dns.js";
import type { StateWriter } from "./state.js";
import { ulaForUid } from "./ula.js";

type Config = Pick<SocialVpnConfig, "vnic" | "xmpp">;

export interface SocialPolicyOptions {
  config: Config;
  /** Buddy -> address map (loaded from the state file). */
  book: AddressBook;
  /** Saves the book; null = keep it in memory only (tests). */
  state?: StateWriter | null;
  /** Names for the DNS responder; kept in line with the roster. */
  names?: NameTable | null;
  /** `dns.resolved`: the DNS server the datapath registers for the vNIC with systemd-resolved. */
  resolvedDns?: RpcParamsOf<"vnic.configure">["dns"];
  /** The vNIC has our address now (at start and after each datapath restart). */
  onVnicReady?: () => void;
  log: Log;
}

/**
 * SocialVPN: the peers are the XMPP buddies with mutual subscription. Each buddy gets an address of
 * our own private range (kept across restarts) and the datapath translates on receive, so both ends
 * may number each other differently. IPv6 addresses come from the UIDs (see ula.ts) and are not
 * translated. UID = first 128 bits of SHA-256 of the bare JID.
 */
export class SocialPolicy implements Policy {
  readonly uid: string;
  readonly jid: string;
  readonly ipv4: string;
  readonly ipv6: string;
  private readonly book: AddressBook;
  private readonly log: Log;
  /** Routes we set per buddy UID (removed when it goes). */
  private readonly routesOf = new Map<string, string[]>();
  /** Bare JIDs with mutual subscription (from the last roster). */
  private buddies: string[] = [];
  private readonly rejectedLogged = new Set<string>();

  constructor(private readonly opts: SocialPolicyOptions) {
    const { config } = opts;
    this.jid = `${config.xmpp.username}@${config.xmpp.domain}`.toLowerCase();
    this.uid = uidForJid(this.jid);
    this.book = opts.book;
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

  /** The UID must be the one of the JID, and an announced IPv6 the one of the UID. */
  verifyPeer(peer: { bareJid: string; fullJid: string; tincan: PresenceTincan }): boolean {
    const { uid, ipv6 } = peer.tincan;
    let why: string | null = null;
    if (uid !== uidForJid(peer.bareJid)) why = "its UID is not the one of its JID";
    else if (ipv6 !== undefined && canonicalAddress(ipv6) !== ulaForUid(uid))
      why = "its IPv6 address is not the one of its UID";
    if (why === null) return true;
    if (!this.rejectedLogged.has(peer.fullJid)) {
      this.rejectedLogged.add(peer.fullJid);
      this.log.warn("ignored a buddy's presence (logged once)", { from: peer.fullJid, why });
    }
    return false;
  }

  /** Local IPv4 (our numbering) and overlay IPv6 of a buddy: the core links on packets to them. */
  peerAddresses(peer: Member): PeerAddresses {
    const ipv4 = this.book.lookup(peer.bareJid);
    return { ...(ipv4 ? { ipv4 } : {}), ipv6: ulaForUid(peer.tincan.uid) };
  }

  async onPeerOnline(peer: Member, ctx: PolicyContext): Promise<void> {
    const uid = peer.tincan.uid;
    const ipv4 = this.addressFor(peer.bareJid);
    const prefixes = [...(ipv4 ? [ipv4] : []), ulaForUid(uid)].map(hostPrefix);
    // Routes exist from the start: without a link, the datapath holds the packets and reports them
    // as unmapped, which is what sets an on-demand link up. The /32 also tells the datapath the
    // buddy's local address for translation.
    for (const old of this.routesOf.get(uid) ?? []) {
      if (!prefixes.includes(old)) await ctx.removeRoute(old).catch(() => {});
    }
    this.routesOf.set(uid, prefixes);
    for (const prefix of prefixes) await ctx.setRoute({ prefix, peerUid: uid });
    ctx.log.info("buddy online", { buddy: peer.bareJid, ipv4, ipv6: ulaForUid(uid) });
  }

  async onPeerOffline(peer: Member, ctx: PolicyContext): Promise<void> {
    const uid = peer.tincan.uid;
    const prefixes = this.routesOf.get(uid) ?? [];
    this.routesOf.delete(uid);
    for (const prefix of prefixes) await ctx.removeRoute(prefix).catch(() => {});
    ctx.log.info("buddy gone: link and routes removed", { buddy: peer.bareJid });
  }

  /** Every buddy (mutual subscription) gets its address now, so its name resolves even while offline. */
  onRosterChanged(items: RosterItem[]): void {
    this.buddies = items.filter((i) => i.subscription === "both" && i.jid !== this.jid).map((i) => i.jid);
    for (const jid of this.buddies) this.addressFor(jid);
    this.updateNames();
  }

  /** The buddy's address of our range, handed out (and saved) on first sight. */
  private addressFor(jid: string): string | undefined {
    try {
      const a = this.book.assign(jid, (j) => this.buddies.includes(j));
      if (a.created) {
        this.log.info("buddy address assigned", {
          buddy: jid,
          ipv4: a.address,
          ...(a.reclaimedFrom ? { reclaimedFrom: a.reclaimedFrom } : {}),
        });
        this.opts.state?.save(() => ({ version: 1, buddies: this.book.toRecord() }));
        this.updateNames();
      }
      return a.address;
    } catch (err) {
      if (!(err instanceof AddressExhaustedError)) throw err;
      this.log.error("cannot give a buddy an address", { buddy: jid, error: err.message });
      return undefined;
    }
  }

  private updateNames(): void {
    if (!this.opts.names) return;
    const entries: NameEntry[] = [{ jid: this.jid, ipv4: this.ipv4, ipv6: this.ipv6 }];
    for (const jid of this.buddies) {
      entries.push({ jid, ipv4: this.book.lookup(jid), ipv6: ulaForUid(uidForJid(jid)) });
    }
    this.opts.names.set(entries);
  }
}
