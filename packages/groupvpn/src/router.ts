import type { Member, PolicyContext, RosterItem } from "@tincan/controller";
import {
  type GroupVpnConfig,
  type IpPrefix,
  parsePrefix,
  prefixContains,
  prefixesOverlap,
  type RouterStatus,
} from "@tincan/protocol";
import { bypassAddresses } from "./exit-bypass.js";

type Config = Pick<GroupVpnConfig, "vnic" | "routes">;

const ACCEPT_OFF = "routes.accept is off";
const NOT_OUR_EXIT = "a default route: routes.exitNode does not name this router";
/** Reasons that are our own choice, not the advertiser's fault: logged at debug. */
const OUR_CHOICE = new Set([ACCEPT_OFF, NOT_OUR_EXIT]);
/** Refusals remembered as logged (beyond it, further ones are not logged: a bound, not a goal). */
const MAX_LOGGED = 4096;

interface Accepted {
  prefix: string;
  peerUid: string;
  jid: string;
  /** Carried for others only (a transit-only route): refused for ourselves as routes.accept is off. */
  transit: boolean;
}

type ExitStatus = NonNullable<RouterStatus["exitNode"]>;

interface Ignored {
  prefix: string;
  jid: string;
  reason: string;
}

/**
 * Router mode (GroupVPN): the prefixes this member carries for the group (routes to our own UID:
 * the datapath hands their packets to the kernel), and the prefixes other members advertise in
 * presence, routed to them with a kernel route on the vNIC when `routes.accept` is on and the
 * advertiser is in `routes.routerGroup`. Each refusal is logged once per member and prefix.
 * Over a structured overlay (`carry`), a router's prefixes we do not accept (routes.accept off) still
 * get a transit-only route: other members' packets to and from them pass greedily through us.
 */
export class RouterRoutes {
  private readonly own: IpPrefix[];
  private routers = new Set<string>();
  /** By canonical prefix. */
  private readonly accepted = new Map<string, Accepted>();
  /** By "jid prefix". */
  private readonly ignored = new Map<string, Ignored>();
  /** "jid prefix reason" logged already: once per controller run, whatever presence does. */
  private readonly logged = new Set<string>();
  /** routes.exitNode: what the datapath was told to use (its UID), and why not when it is none. */
  private exitUid: string | null = null;
  private exit: ExitStatus | undefined;

  /** `bypassHosts`: kept outside the tunnel of an exit node (XMPP, STUN/TURN servers). */
  constructor(
    private readonly config: Config,
    private readonly uid: string,
    private readonly bypassHosts: readonly string[] = [],
    private readonly carry = false,
  ) {
    const { ipv4, ipv6 } = config.vnic;
    // Our own default route (exit node) overlaps everything: not a reason to refuse others' prefixes.
    this.own = [ipv4, ...(ipv6 ? [ipv6] : []), ...config.routes.advertise]
      .map(parsePrefix)
      .filter((p) => p.length > 0);
  }

  /** What our presence carries (undefined: nothing). */
  advertised(): string[] | undefined {
    return this.config.routes.advertise.length > 0 ? [...this.config.routes.advertise] : undefined;
  }

  /** The exit node in use (its UID), or null. */
  exitInUse(): string | null {
    return this.exitUid;
  }

  /** We advertise a default route: members may send all their traffic through us. */
  servesExit(): boolean {
    return this.config.routes.advertise.some((p) => parsePrefix(p).length === 0);
  }

  /** Packets from links to our advertised prefixes go to the kernel (which forwards them on). */
  async start(ctx: PolicyContext): Promise<void> {
    for (const prefix of this.config.routes.advertise) await ctx.setRoute({ prefix, peerUid: this.uid });
    // Also when off: a datapath that outlived a controller with another config stops serving.
    const serve = this.servesExit();
    await ctx.datapath.call("exit.serve", { on: serve }).catch((err: Error) => {
      if (serve) ctx.log.error("cannot serve as an exit node (masquerade)", { error: err.message });
    });
    this.exitUid = null;
    await ctx.datapath.call("exit.use", { peerUid: null, bypass: [] }).catch(() => {});
    await this.updateExit(ctx);
  }

  /**
   * Notes whether a roster item is a router. Admission checks each item before the member's
   * onPeerOnline, and before onRosterChanged runs: this keeps the first look at a member right.
   */
  noteRosterItem(item: RosterItem): void {
    const group = this.config.routes.routerGroup;
    if (group !== undefined && item.groups.includes(group)) this.routers.add(item.jid);
    else this.routers.delete(item.jid);
  }

  /** The roster says who is a router: members that gained or lost it are looked at again. */
  async rosterChanged(items: RosterItem[], ctx: PolicyContext): Promise<void> {
    const group = this.config.routes.routerGroup;
    const routers = new Set(
      group === undefined ? [] : items.filter((i) => i.groups.includes(group)).map((i) => i.jid),
    );
    const changed = [...routers, ...this.routers].filter((j) => routers.has(j) !== this.routers.has(j));
    this.routers = routers;
    for (const peer of ctx.peers()) if (changed.includes(peer.bareJid)) await this.peerOnline(peer, ctx);
  }

  /** Routes the prefixes `peer` advertises that we take; withdraws those it no longer does. */
  async peerOnline(peer: Member, ctx: PolicyContext): Promise<void> {
    const uid = peer.tincan.uid;
    const keep = new Set<string>();
    for (const text of peer.tincan.routes ?? []) {
      const p = parsePrefix(text);
      const prefix = `${p.network}/${p.length}`;
      const reason = this.refusal(peer, p);
      const transit = reason === ACCEPT_OFF && this.carry && p.length > 0 && this.conflict(peer, p) === null;
      if (reason) this.ignore(peer.bareJid, prefix, reason, ctx);
      if (reason && !transit) continue;
      keep.add(prefix);
      const known = this.accepted.get(prefix);
      if (known?.peerUid === uid && known.transit === transit) continue;
      // The exit's default route is the datapath's alone: the kernel gets it by exit.use.
      const kind = transit ? { transit: true } : p.length > 0 ? { kernel: true } : {};
      await ctx.setRoute({ prefix, peerUid: uid, ...kind });
      this.accepted.set(prefix, { prefix, peerUid: uid, jid: peer.bareJid, transit });
      if (transit)
        ctx.log.info("carrying a router's prefix for others (transit only)", {
          prefix,
          router: peer.bareJid,
        });
      else
        ctx.log.info("routing a prefix to the router that advertises it", { prefix, router: peer.bareJid });
    }
    await this.withdraw(uid, keep, ctx);
    await this.updateExit(ctx);
  }

  async peerOffline(peer: Member, ctx: PolicyContext): Promise<void> {
    await this.withdraw(peer.tincan.uid, new Set(), ctx);
    for (const [key, i] of this.ignored) if (i.jid === peer.bareJid) this.ignored.delete(key);
    await this.updateExit(ctx);
  }

  /** The prefixes routed (or carried) to a member, but a default route (its exit uses its own link). */
  prefixesBehind(uid: string): string[] {
    const out: string[] = [];
    for (const a of this.accepted.values())
      if (a.peerUid === uid && !a.prefix.endsWith("/0")) out.push(a.prefix);
    return out;
  }

  /** The member whose prefix (not a default route) holds `address` (longest match), if any. */
  routerOf(address: string): string | undefined {
    let best: { length: number; uid: string } | undefined;
    for (const a of this.accepted.values()) {
      const p = parsePrefix(a.prefix);
      if (p.length > 0 && (!best || p.length > best.length) && prefixContains(p, address))
        best = { length: p.length, uid: a.peerUid };
    }
    return best?.uid;
  }

  status(): RouterStatus {
    return {
      advertised: [...this.config.routes.advertise],
      accepted: [...this.accepted.values()]
        .filter((a) => !a.transit)
        .map(({ prefix, jid }) => ({ prefix, jid })),
      ignored: [...this.ignored.values()],
      ...(this.exit ? { exitNode: { ...this.exit } } : {}),
    };
  }

  /**
   * routes.exitNode: when the named member is online, a router and its default route accepted, the
   * datapath sends all traffic to it (exit.use: policy routing while its link is up) and a pinned
   * link is set up at once; otherwise normal routing, and why in the status (refusals logged once).
   */
  private async updateExit(ctx: PolicyContext): Promise<void> {
    const jid = this.config.routes.exitNode;
    if (jid === undefined) return;
    const peer = ctx.peers().find((m) => m.bareJid === jid);
    let next: ExitStatus;
    if (!peer) next = { jid, state: "waiting", reason: "not online" };
    else if (!this.routers.has(jid)) {
      next = { jid, state: "refused", reason: "routes.exitNode names a member that is not a router" };
      this.logOnce(`exit ${jid} ${next.reason}`, () =>
        ctx.log.warn("routes.exitNode refused (logged once)", { jid, reason: next.reason }),
      );
    } else if (![...this.accepted.values()].some((a) => a.jid === jid && parsePrefix(a.prefix).length === 0))
      next = { jid, state: "waiting", reason: "it advertises no default route" };
    else next = { jid, state: "in use" };
    this.exit = next;
    const uid = next.state === "in use" && peer ? peer.tincan.uid : null;
    if (uid === this.exitUid) return;
    const bypass =
      uid === null
        ? []
        : await bypassAddresses(this.bypassHosts, (host, err) =>
            ctx.log.warn("exit node: a server name does not resolve; it is not kept outside the tunnel", {
              host,
              error: err.message,
            }),
          );
    try {
      await ctx.datapath.call("exit.use", { peerUid: uid, bypass });
      this.exitUid = uid;
    } catch (err) {
      this.exit = { jid, state: "refused", reason: `the datapath refused: ${(err as Error).message}` };
      ctx.log.error("exit node: exit.use failed", { jid, error: (err as Error).message });
      return;
    }
    if (uid !== null && peer) {
      ctx.log.info("exit node in use: all traffic goes through it while its link is up", { jid, bypass });
      await ctx.ensureLink?.(peer, { pinned: true });
    } else ctx.log.info("exit node not in use: normal routing", { jid, reason: next.reason });
  }

  private logOnce(key: string, log: () => void): void {
    if (this.logged.has(key) || this.logged.size >= MAX_LOGGED) return;
    this.logged.add(key);
    log();
  }

  /** Why we do not route `p` to `peer`, or null. */
  private refusal(peer: Member, p: IpPrefix): string | null {
    const { routerGroup, accept } = this.config.routes;
    if (!this.routers.has(peer.bareJid))
      return routerGroup === undefined
        ? "no routes.routerGroup: nobody may advertise"
        : `not in the router group "${routerGroup}"`;
    if (!accept) return ACCEPT_OFF;
    // The default route overlaps everything (longest-prefix match keeps the rest apart).
    if (p.length === 0) return this.config.routes.exitNode === peer.bareJid ? null : NOT_OUR_EXIT;
    return this.conflict(peer, p);
  }

  /** A prefix of ours, or of another router, that `p` overlaps (as a reason), or null. */
  private conflict(peer: Member, p: IpPrefix): string | null {
    const mine = this.own.find((o) => prefixesOverlap(o, p));
    if (mine) return `overlaps our own ${mine.network}/${mine.length}`;
    const other = [...this.accepted.values()].find(
      (a) => a.peerUid !== peer.tincan.uid && !a.prefix.endsWith("/0") && prefixesOverlap(a.prefix, p),
    );
    if (other) return `overlaps ${other.prefix}, routed to ${other.jid}`;
    return null;
  }

  private ignore(jid: string, prefix: string, reason: string, ctx: PolicyContext): void {
    this.ignored.set(`${jid} ${prefix}`, { prefix, jid, reason });
    this.logOnce(`${jid} ${prefix} ${reason}`, () => {
      if (OUR_CHOICE.has(reason)) ctx.log.debug("not taking an advertised prefix", { jid, prefix, reason });
      else ctx.log.warn("ignored an advertised prefix (logged once)", { jid, prefix, reason });
    });
  }

  private async withdraw(uid: string, keep: ReadonlySet<string>, ctx: PolicyContext): Promise<void> {
    for (const [prefix, a] of this.accepted) {
      if (a.peerUid !== uid || keep.has(prefix)) continue;
      this.accepted.delete(prefix);
      await ctx.removeRoute(prefix).catch(() => {});
      ctx.log.info("no longer routing an advertised prefix", { prefix, router: a.jid });
    }
  }
}
