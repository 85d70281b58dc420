import type { Member, PolicyContext, RosterItem } from "@tincan/controller";
import {
  type GroupVpnConfig,
  type IpPrefix,
  parsePrefix,
  prefixesOverlap,
  type RouterStatus,
} from "@tincan/protocol";

type Config = Pick<GroupVpnConfig, "vnic" | "routes">;

const ACCEPT_OFF = "routes.accept is off";
/** Refusals remembered as logged (beyond it, further ones are not logged: a bound, not a goal). */
const MAX_LOGGED = 4096;

interface Accepted {
  prefix: string;
  peerUid: string;
  jid: string;
}

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

  constructor(
    private readonly config: Config,
    private readonly uid: string,
  ) {
    const { ipv4, ipv6 } = config.vnic;
    this.own = [ipv4, ...(ipv6 ? [ipv6] : []), ...config.routes.advertise].map(parsePrefix);
  }

  /** What our presence carries (undefined: nothing). */
  advertised(): string[] | undefined {
    return this.config.routes.advertise.length > 0 ? [...this.config.routes.advertise] : undefined;
  }

  /** Packets from links to our advertised prefixes go to the kernel (which forwards them on). */
  async start(ctx: PolicyContext): Promise<void> {
    for (const prefix of this.config.routes.advertise) await ctx.setRoute({ prefix, peerUid: this.uid });
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
      if (reason) {
        this.ignore(peer.bareJid, prefix, reason, ctx);
        continue;
      }
      keep.add(prefix);
      if (this.accepted.get(prefix)?.peerUid === uid) continue;
      await ctx.setRoute({ prefix, peerUid: uid, kernel: true });
      this.accepted.set(prefix, { prefix, peerUid: uid, jid: peer.bareJid });
      ctx.log.info("routing a prefix to the router that advertises it", { prefix, router: peer.bareJid });
    }
    await this.withdraw(uid, keep, ctx);
  }

  async peerOffline(peer: Member, ctx: PolicyContext): Promise<void> {
    await this.withdraw(peer.tincan.uid, new Set(), ctx);
    for (const [key, i] of this.ignored) if (i.jid === peer.bareJid) this.ignored.delete(key);
  }

  status(): RouterStatus {
    return {
      advertised: [...this.config.routes.advertise],
      accepted: [...this.accepted.values()].map(({ prefix, jid }) => ({ prefix, jid })),
      ignored: [...this.ignored.values()],
    };
  }

  /** Why we do not route `p` to `peer`, or null. */
  private refusal(peer: Member, p: IpPrefix): string | null {
    const { routerGroup, accept } = this.config.routes;
    if (!this.routers.has(peer.bareJid))
      return routerGroup === undefined
        ? "no routes.routerGroup: nobody may advertise"
        : `not in the router group "${routerGroup}"`;
    if (!accept) return ACCEPT_OFF;
    if (p.length === 0) return "the default route (exit node) is not supported";
    const mine = this.own.find((o) => prefixesOverlap(o, p));
    if (mine) return `overlaps our own ${mine.network}/${mine.length}`;
    const other = [...this.accepted.values()].find(
      (a) => a.peerUid !== peer.tincan.uid && prefixesOverlap(a.prefix, p),
    );
    if (other) return `overlaps ${other.prefix}, routed to ${other.jid}`;
    return null;
  }

  private ignore(jid: string, prefix: string, reason: string, ctx: PolicyContext): void {
    this.ignored.set(`${jid} ${prefix}`, { prefix, jid, reason });
    const key = `${jid} ${prefix} ${reason}`;
    if (this.logged.has(key) || this.logged.size >= MAX_LOGGED) return;
    this.logged.add(key);
    // Not taking routes is a choice of ours, not the advertiser's fault.
    if (reason === ACCEPT_OFF) ctx.log.debug("not taking an advertised prefix", { jid, prefix, reason });
    else ctx.log.warn("ignored an advertised prefix (logged once)", { jid, prefix, reason });
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
