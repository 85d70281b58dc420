import { type Member, type PolicyContext, queryAll } from "@tincan/controller";
import {
  type GroupVpnConfig,
  type LinkRole,
  type NotificationParamsOf,
  type RouteInfo,
  type RpcParamsOf,
  Uid,
} from "@tincan/protocol";
import { z } from "zod";
import type { Clock } from "./clock.js";
import { estimateRingSize, Ring, ringDistance, ringPosition } from "./ring.js";

/** How often route counters are read and links kept, shortcuts, penalties and the incoming cap decided. */
export const MAINTAIN_EVERY_MS = 5000;
/** A neighbour that took packets for a destination and no answer came back is not used for it this long. */
export const PENALTY_MS = 60_000;
/** A long-distance target that refused our link (its incoming links were full) is not asked again this long. */
export const REFUSED_MS = 300_000;
/**
 * A ring neighbour whose link went down is passed over for this long (or until a link to it is up
 * again): its crash is seen by the link first, and its presence goes only after the XMPP server's
 * timeout, so the next member along links now instead of then (with routes on demand no packet
 * would make it link before).
 */
export const SUSPECT_MS = 60_000;
/** The bye reason of a link trimmed because our incoming long-distance links are full (Symphony's cap). */
export const INCOMING_FULL = "incoming long-distance links full";
/** The bye reason of a link neither end wants any more (trimmed at once, not after the idle timeout). */
export const UNWANTED = "link wanted by neither end";
/**
 * Inter-controller message: whether the sender wants the link it is sent over (a ring or long-distance
 * target, or a busy shortcut). A link neither end wants is left to idle trimming.
 */
export const KeepMessage = z.strictObject({ type: z.literal("groupvpn.keep"), keep: z.boolean() });
/**
 * Inter-controller message, sent hop by hop along the greedy path from `src` to `dst`: "packets from
 * src to dst pass through you". Each node on the way routes both members (dst onward, src for the
 * datapath's source check and the replies) and passes it on; `dst` routes `src` and sends its own
 * request back. A node routes only the members it sends to or that pass through it, not all of them.
 */
export const RouteRequest = z.strictObject({ type: z.literal("groupvpn.route"), src: Uid, dst: Uid });
const KEEP_TYPE = KeepMessage.shape.type.value;
const ROUTE_TYPE = RouteRequest.shape.type.value;
/** Membership changes within this long after a recompute are folded into one recompute at its end. */
export const COALESCE_MS = 1000;
/** Groups of at most this many other members route every member (routes exist before the first packet). */
export const EAGER_ROUTES_UP_TO = 64;
/** A member routed on demand keeps its route this long after the last packet or request for it. */
export const ACTIVE_MS = 90_000;
/** A source sends its route request again this often while it sends (refreshes the path's routes). */
export const REFRESH_MS = 30_000;
/** The same request (src, dst) is passed on at most once in this long (held packets come in bursts). */
const FORWARD_GAP_MS = 1000;
/** Requests remembered as passed on at most (a bound, not a goal). */
const MAX_FORWARDED = 4096;
/** Ring positions cached at most (UIDs seen); the cache starts over beyond. */
const MAX_POSITIONS = 65_536;

export interface StructuredOptions {
  self: string;
  links: Pick<
    GroupVpnConfig["links"],
    "successors" | "longDistance" | "shortcutBytesPerSec" | "setupTimeoutSec"
  >;
  clock: Clock;
  /** Draws of the long-distance targets (seeded in the simulator and in tests). */
  random: () => number;
  /** Members with a connected link (the policy keeps it from link events). */
  connected: ReadonlySet<string>;
  /** The members each neighbour announced links to (one hop to them). */
  neighborLinks(): ReadonlyMap<string, ReadonlySet<string>>;
  /** The host prefixes of a member (its routes). */
  prefixesOf(m: Member): string[];
  /**
   * Prefixes behind a member (router mode) whose routes another part sets (kernel or transit-only):
   * they follow the member's next hop here, and go back to direct when it is no longer routed.
   */
  prefixesBehind?(uid: string): string[];
  /**
   * A member whose link another part of the policy holds pinned (the exit node in use): always
   * wanted, never trimmed, and set up pinned here too.
   */
  pinnedLink?(uid: string): boolean;
  /** We are an exit node: members that use us keep a link to us, which the incoming cap must not trim. */
  servesExit?(): boolean;
  /** Groups up to this many other members route all members (default EAGER_ROUTES_UP_TO). */
  eagerRoutesUpTo?: number;
}

interface Sample {
  txBytes: number;
  txPackets: number;
  rxPackets: number;
}

/** A destination routed via a neighbour since `since`, and its counters then. */
interface ViaWatch {
  via: string;
  since: number;
  txPackets: number;
  rxPackets: number;
}

const NO_TRAFFIC: Sample = { txBytes: 0, txPackets: 0, rxPackets: 0 };

/**
 * GroupVPN `links.policy: "structured"` (issue #18): links to the k ring successors and predecessors
 * by UID and about log2(N) Symphony long-distance links among the online members, kept alive while
 * they are wanted (the rest is trimmed when idle, as on-demand links); every other member is routed
 * greedily `via` the linked neighbour closest to it on the ring (each hop gets closer, so a route
 * cannot loop; the datapath's hop limit stops stale ones). A member we send more than
 * `shortcutBytesPerSec` to gets a direct shortcut link, and its route moves to it once it connects.
 * A neighbour that took a destination's packets and no answer came back within the setup time is not
 * used for that destination for PENALTY_MS. Incoming links beyond 2x the long-distance count are
 * refused (bye INCOMING_FULL); the refused side draws another target.
 *
 * Time and timers come from the injected clock only (the simulator runs this on virtual time).
 */
export class StructuredLinks {
  /** The ring links we want: successor / predecessor / long, by member UID. */
  private readonly roles = new Map<string, LinkRole>();
  private long: string[] = [];
  private readonly refusedUntil = new Map<string, number>();
  /** Ring neighbours whose link went down, until when they are passed over (SUSPECT_MS). */
  private readonly suspectUntil = new Map<string, number>();
  /** Members we set a shortcut link up to (traffic above the threshold). */
  private readonly shortcuts = new Set<string>();
  /** `${destination} ${via}` -> until when that neighbour is not used for that destination. */
  private readonly penalties = new Map<string, number>();
  private readonly watches = new Map<string, ViaWatch>();
  /** Route counters summed per member at the last sample, and bytes/s sent to each since the one before. */
  private samples = new Map<string, Sample>();
  private sampledAt: number | null = null;
  private readonly rates = new Map<string, number>();
  /** Members whose routes carried packets (either way) since the sample before. */
  private readonly moved = new Set<string>();
  private readonly upAt = new Map<string, number>();
  /** What each neighbour said of the link between us (KeepMessage), and what we last said. */
  private readonly peerWants = new Map<string, boolean>();
  private readonly toldWants = new Map<string, boolean>();
  private readonly positions = new Map<string, bigint>();
  /** The online members and us, in ring order (built from ctx.peers() once, then kept by joins and leaves). */
  private ring: Ring | null = null;
  /**
   * The open arc of the ring from our furthest predecessor clockwise to our furthest successor (UIDs),
   * as of the last choice of targets; null when the ring is too small to have one. A member joining
   * or leaving outside it changes none of our ring neighbours.
   */
  private neighbourArc: { from: string; to: string } | null = null;
  private recomputedAt = Number.NEGATIVE_INFINITY;
  private recomputeTimer: (() => void) | null = null;
  /** Members routed on demand (sent to, or passing through us), and when last used. */
  private readonly active = new Map<string, number>();
  /** When we last sent a route request for a member we send to (REFRESH_MS). */
  private readonly requestedAt = new Map<string, number>();
  /** `${src} ${dst}` -> when that request was last passed on. */
  private readonly forwardedAt = new Map<string, number>();
  /** Members whose host routes this policy set (removed when no longer wanted). */
  private readonly mapped = new Set<string>();
  private cancelTick: (() => void) | null = null;
  private routing: Promise<void> | null = null;
  private routeAgain = false;

  constructor(private readonly opts: StructuredOptions) {}

  /** Starts the maintenance round every MAINTAIN_EVERY_MS. */
  start(ctx: PolicyContext): void {
    if (this.cancelTick) return;
    const tick = () => {
      this.cancelTick = this.opts.clock.setTimer(() => {
        this.maintain(ctx)
          .catch((err: Error) =>
            ctx.log.warn("structured overlay maintenance failed", { error: err.message }),
          )
          .finally(() => {
            if (this.cancelTick) tick();
          });
      }, MAINTAIN_EVERY_MS);
    };
    tick();
  }

  stop(): void {
    this.cancelTick?.();
    this.cancelTick = null;
    this.recomputeTimer?.();
    this.recomputeTimer = null;
  }

  /** Why we hold (or want) a link to `uid`; null when we neither want nor hold one. */
  roleOf(uid: string): LinkRole | null {
    const role = this.roles.get(uid);
    if (role) return role;
    if (this.shortcuts.has(uid)) return "shortcut";
    return this.opts.connected.has(uid) ? "incoming" : null;
  }

  /** Every link held or wanted, with its role. */
  linkRoles(): Map<string, LinkRole> {
    const out = new Map<string, LinkRole>();
    for (const uid of [...this.roles.keys(), ...this.shortcuts, ...this.opts.connected]) {
      const role = this.roleOf(uid);
      if (role) out.set(uid, role);
    }
    return out;
  }

  /** The ring links we want now (successors, predecessors, long-distance). */
  targets(): ReadonlyMap<string, LinkRole> {
    return this.roles;
  }

  /** A member came online (a join, a healed partition). */
  memberOnline(uid: string, ctx: PolicyContext): Promise<void> {
    return this.membersOnline([uid], ctx);
  }

  /** Members came online together (a presence burst). */
  membersOnline(uids: readonly string[], ctx: PolicyContext): Promise<void> {
    // The first burst builds the ring from the members (they include the burst) and the burst at once.
    if (this.ring) this.ring.addAll(uids);
    else this.ringOf(ctx, uids);
    // In a large group most joins are far from us: nothing of ours changes (long-distance links stay,
    // routes are made on demand), and the ring takes the join lazily.
    if (!this.eager(ctx) && !uids.some((uid) => this.concerns(uid))) return Promise.resolve();
    return this.membersChanged(ctx);
  }

  /** A member went away (a leave, a crash noticed): forget it and recompute if it concerned us. */
  memberOffline(uid: string, ctx: PolicyContext): Promise<void> {
    this.ringOf(ctx).remove(uid);
    const concerned = this.eager(ctx) || this.concerns(uid);
    this.forget(uid);
    return concerned ? this.membersChanged(ctx) : Promise.resolve();
  }

  /**
   * Whether a member's coming or going changes what we hold: it lies within our ring neighbours' arc
   * (or there is none yet), or is a target, routed here, or a shortcut (a presence that changes the
   * prefixes behind it moves their routes).
   */
  private concerns(uid: string): boolean {
    if (this.roles.has(uid) || this.mapped.has(uid) || this.active.has(uid) || this.shortcuts.has(uid))
      return true;
    const arc = this.neighbourArc;
    if (!arc) return true;
    return arc.from < arc.to ? uid > arc.from && uid < arc.to : uid > arc.from || uid < arc.to;
  }

  /**
   * Members came or went: new ring targets and routes. A burst (a node logging in to a large group gets
   * every member's presence) costs one recompute now and at most one more per COALESCE_MS.
   */
  async membersChanged(ctx: PolicyContext): Promise<void> {
    if (this.recomputeTimer) return;
    const wait = this.recomputedAt + COALESCE_MS - this.opts.clock.now();
    if (wait > 0) {
      this.recomputeTimer = this.opts.clock.setTimer(() => {
        this.recomputeTimer = null;
        this.recompute(ctx).catch((err: Error) =>
          ctx.log.warn("structured overlay recompute failed", { error: err.message }),
        );
      }, wait);
      return;
    }
    await this.recompute(ctx);
  }

  private async recompute(ctx: PolicyContext): Promise<void> {
    this.recomputedAt = this.opts.clock.now();
    this.chooseTargets(ctx);
    await this.keepLinks(ctx, [...this.roles.keys()]);
    this.tellNeighbours(ctx);
    await this.updateRoutes(ctx);
  }

  private ringOf(ctx: PolicyContext, also: readonly string[] = []): Ring {
    this.ring ??= new Ring([...ctx.peers().map((m) => m.tincan.uid), this.opts.self, ...also]);
    return this.ring;
  }

  async linkUp(uid: string, ctx: PolicyContext): Promise<void> {
    this.upAt.set(uid, this.opts.clock.now());
    if (this.suspectUntil.delete(uid)) await this.keepRingLinks(ctx);
    this.toldWants.delete(uid);
    this.tellNeighbours(ctx);
    await this.updateRoutes(ctx);
  }

  /** A KeepMessage or RouteRequest from a neighbour: true when it was one (handled), false for others. */
  onIccMessage(p: NotificationParamsOf<"icc.message">, ctx: PolicyContext): boolean {
    const type = (p.data as { type?: unknown } | null)?.type;
    if (type !== KEEP_TYPE && type !== ROUTE_TYPE) return false;
    const keep = KeepMessage.safeParse(p.data);
    if (keep.success) {
      this.peerWants.set(p.peerUid, keep.data.keep);
      return true;
    }
    const request = RouteRequest.safeParse(p.data);
    if (!request.success) return false;
    if (this.opts.connected.has(p.peerUid)) {
      this.routeRequested(request.data.src, request.data.dst, ctx).catch((err: Error) =>
        ctx.log.debug("route request not handled", { peerUid: p.peerUid, error: err.message }),
      );
    }
    return true;
  }

  /**
   * Packets from `src` to `dst` will pass through us: route both (only members the roster admitted),
   * pass the request on towards `dst`; as `dst`, route `src` and ask for the way back.
   */
  private async routeRequested(src: string, dst: string, ctx: PolicyContext): Promise<void> {
    const now = this.opts.clock.now();
    const { self } = this.opts;
    if (src === self || !ctx.peer(src)) return;
    const known = this.active.has(src);
    this.active.set(src, now);
    if (dst === self) {
      if (!known) this.sendRequest(self, src, now, ctx);
    } else if (ctx.peer(dst)) {
      this.active.set(dst, now);
      this.sendRequest(src, dst, now, ctx);
    }
    await this.updateRoutes(ctx);
  }

  /** Sends a route request (src, dst) to our next hop towards dst (dst itself when linked). */
  private sendRequest(src: string, dst: string, now: number, ctx: PolicyContext): void {
    const key = `${src} ${dst}`;
    const last = this.forwardedAt.get(key);
    if (last !== undefined && now - last < FORWARD_GAP_MS) return;
    const member = ctx.peer(dst);
    const next = this.opts.connected.has(dst) ? dst : member ? this.viaFor(member, now, ctx) : null;
    if (next === null) return;
    if (this.forwardedAt.size >= MAX_FORWARDED) this.forwardedAt.clear();
    this.forwardedAt.set(key, now);
    if (src === this.opts.self) this.requestedAt.set(dst, now);
    ctx.datapath
      .call("icc.send", { peerUid: next, data: { type: "groupvpn.route", src, dst } })
      .catch((err: Error) => ctx.log.debug("route request not sent", { peerUid: next, error: err.message }));
  }

  /** A link is down: routes via it move to other neighbours; a long-distance target that refused us is replaced. */
  async linkDown(uid: string, reason: string | undefined, ctx: PolicyContext): Promise<void> {
    this.upAt.delete(uid);
    this.shortcuts.delete(uid);
    this.peerWants.delete(uid);
    this.toldWants.delete(uid);
    // Any close of a long-distance link counts as a refusal: the bye saying INCOMING_FULL comes over
    // XMPP and often after the link's own close, and re-picking the same target would only churn.
    const role = this.roles.get(uid);
    if (role === "long") {
      ctx.log.info("a long-distance link went down (refused, or lost); drawing another target", {
        peerUid: uid,
        reason,
      });
      this.refusedUntil.set(uid, this.opts.clock.now() + REFUSED_MS);
      await this.keepRingLinks(ctx);
    } else if (role === "successor" || role === "predecessor") {
      this.suspectUntil.set(uid, this.opts.clock.now() + SUSPECT_MS);
      await this.keepRingLinks(ctx);
    }
    // The link manager sets a link it was once asked for up again after a close: not one we no longer want.
    if (!this.roles.has(uid) && !this.shortcuts.has(uid)) await ctx.removeLink?.(uid, UNWANTED);
    await this.updateRoutes(ctx);
  }

  /** Ring targets chosen again, and their links set up. */
  private async keepRingLinks(ctx: PolicyContext): Promise<void> {
    this.chooseTargets(ctx);
    await this.keepLinks(ctx, [...this.roles.keys()]);
  }

  /** A member went away for good: forget what we measured of it. */
  forget(uid: string): void {
    this.suspectUntil.delete(uid);
    this.shortcuts.delete(uid);
    this.watches.delete(uid);
    this.samples.delete(uid);
    this.rates.delete(uid);
    this.upAt.delete(uid);
    this.active.delete(uid);
    this.requestedAt.delete(uid);
    this.mapped.delete(uid);
  }

  /** The datapath lost every link: nothing is connected now. */
  reset(): void {
    this.upAt.clear();
    this.peerWants.clear();
    this.toldWants.clear();
    this.watches.clear();
    this.samples.clear();
    this.sampledAt = null;
  }

  /**
   * A packet for a member had no usable route (no neighbour was closer, or the one it went via is
   * gone): route it via a neighbour now, or link to it directly when none can take it.
   */
  async packetUnmapped(member: Member, ctx: PolicyContext): Promise<void> {
    const uid = member.tincan.uid;
    const now = this.opts.clock.now();
    this.active.set(uid, now);
    // The request goes ahead of the held packets (sent when the route is set), on the same link.
    if (!this.eager(ctx)) this.sendRequest(this.opts.self, uid, now, ctx);
    await this.updateRoutes(ctx);
    await this.linkUnlessRouted(member, ctx);
  }

  /**
   * A packet from `src` to `dst` in transit here found no route (the datapath holds it): as if their
   * route request had come (it may still be on its way, or went another way before the path changed):
   * both are routed and the request goes on; the held packets go when the routes are set.
   */
  async transitUnmapped(src: Member, dst: Member, ctx: PolicyContext): Promise<void> {
    await this.routeRequested(src.tincan.uid, dst.tincan.uid, ctx);
    await this.linkUnlessRouted(dst, ctx);
  }

  /** No neighbour is closer to the member and we hold no link to it: link to it directly. */
  private async linkUnlessRouted(member: Member, ctx: PolicyContext): Promise<void> {
    const uid = member.tincan.uid;
    if (this.opts.connected.has(uid) || this.nextHop(uid, this.opts.clock.now()) !== null) return;
    ctx.log.info("no neighbour is closer to the destination; linking to it directly", {
      peer: member.bareJid,
    });
    this.shortcuts.add(uid);
    await ctx.ensureLink?.(member, { pinned: this.pinned(uid) });
  }

  /**
   * The greedy next hop to `destination` among connected neighbours closer to it on the ring than us
   * (either way round) and not penalised for it: one that announced a link to it, else the closest.
   */
  nextHop(destination: string, now: number): string | null {
    const target = this.position(destination);
    const ours = ringDistance(this.position(this.opts.self), target);
    // Only strict progress on the ring: an announcement may be stale, and greedy progress cannot loop.
    const usable = (n: string) =>
      n !== destination &&
      this.opts.connected.has(n) &&
      !this.penalised(destination, n, now) &&
      ringDistance(this.position(n), target) < ours;
    for (const [neighbour, linked] of this.opts.neighborLinks()) {
      if (linked.has(destination) && usable(neighbour)) return neighbour;
    }
    let best: string | null = null;
    let bestDistance = ours;
    for (const neighbour of this.opts.connected) {
      if (!usable(neighbour)) continue;
      const distance = ringDistance(this.position(neighbour), target);
      if (distance < bestDistance) {
        best = neighbour;
        bestDistance = distance;
      }
    }
    return best;
  }

  /** One maintenance round (MAINTAIN_EVERY_MS; exposed for tests and the simulator). */
  async maintain(ctx: PolicyContext): Promise<void> {
    const now = this.opts.clock.now();
    for (const [key, until] of this.penalties) if (until <= now) this.penalties.delete(key);
    await this.sampleTraffic(ctx, now);
    this.judgeVias(ctx, now);
    this.refreshActive(ctx, now);
    this.chooseTargets(ctx);
    const threshold = this.opts.links.shortcutBytesPerSec;
    const busy = (uid: string) => threshold > 0 && (this.rates.get(uid) ?? 0) > threshold;
    for (const uid of this.rates.keys()) {
      if (!busy(uid) || this.roles.has(uid) || this.shortcuts.has(uid) || !ctx.peer(uid)) continue;
      ctx.log.info("shortcut link: traffic to the member is above links.shortcutBytesPerSec", {
        peerUid: uid,
        bytesPerSec: Math.round(this.rates.get(uid) ?? 0),
      });
      this.shortcuts.add(uid);
    }
    for (const uid of this.shortcuts)
      if (!busy(uid) && !this.opts.connected.has(uid)) this.shortcuts.delete(uid);
    // Links the other end wants and we do not: another member's long-distance (or ring) link to us.
    const incoming = [...this.opts.connected]
      .filter((uid) => !this.wants(uid, busy) && this.peerWants.get(uid) === true)
      .sort((a, b) => (this.upAt.get(a) ?? 0) - (this.upAt.get(b) ?? 0));
    const cap = this.incomingCap();
    for (const uid of incoming.slice(cap)) {
      ctx.log.info("trimming an incoming link beyond the cap", { peerUid: uid, cap });
      await ctx.removeLink?.(uid, INCOMING_FULL);
    }
    // Neither end wants it (both said so) and nothing was sent to the member this round: a former
    // long-distance or shortcut link. Waiting for links.idleTimeoutSec would keep such links for minutes.
    const unwanted = [...this.opts.connected].filter(
      (uid) =>
        !this.wants(uid, busy) &&
        this.peerWants.get(uid) === false &&
        this.toldWants.get(uid) === false &&
        now - (this.upAt.get(uid) ?? now) >= MAINTAIN_EVERY_MS &&
        (this.rates.get(uid) ?? 0) === 0,
    );
    for (const uid of unwanted) await ctx.removeLink?.(uid, UNWANTED);
    // Links not kept here are trimmed by the link manager once idle (links.idleTimeoutSec).
    const shortcuts = [...this.shortcuts].filter(busy);
    await this.keepLinks(ctx, [...this.roles.keys(), ...shortcuts, ...incoming.slice(0, cap)]);
    this.tellNeighbours(ctx, busy);
    await this.updateRoutes(ctx);
  }

  /**
   * Members routed on demand that carried packets since the last round stay routed (and their path's
   * routes are refreshed by a new request every REFRESH_MS); the others go after ACTIVE_MS.
   */
  private refreshActive(ctx: PolicyContext, now: number): void {
    for (const [key, at] of this.forwardedAt) if (now - at >= FORWARD_GAP_MS) this.forwardedAt.delete(key);
    for (const [uid, at] of this.active) {
      if (this.moved.has(uid)) {
        this.active.set(uid, now);
        const asked = this.requestedAt.get(uid);
        if (!this.opts.connected.has(uid) && (asked === undefined || now - asked >= REFRESH_MS))
          this.sendRequest(this.opts.self, uid, now, ctx);
      } else if (now - at >= ACTIVE_MS) {
        this.active.delete(uid);
        this.requestedAt.delete(uid);
      }
    }
  }

  /** We want the link to `uid`: a ring target, or a shortcut that carries traffic above the threshold. */
  private wants(uid: string, busy: (uid: string) => boolean): boolean {
    return this.roles.has(uid) || (this.shortcuts.has(uid) && busy(uid)) || this.pinned(uid);
  }

  private pinned(uid: string): boolean {
    return this.opts.pinnedLink?.(uid) ?? false;
  }

  /** Tells each linked neighbour whether we want the link, when that changed (KeepMessage). */
  private tellNeighbours(ctx: PolicyContext, busy: (uid: string) => boolean = () => true): void {
    for (const uid of this.opts.connected) {
      const keep = this.wants(uid, busy);
      if (this.toldWants.get(uid) === keep) continue;
      this.toldWants.set(uid, keep);
      ctx.datapath
        .call("icc.send", { peerUid: uid, data: { type: "groupvpn.keep", keep } })
        .catch((err: Error) => {
          this.toldWants.delete(uid);
          ctx.log.debug("keep message not sent", { peerUid: uid, error: err.message });
        });
    }
  }

  private incomingCap(): number {
    if (this.opts.servesExit?.()) return Number.POSITIVE_INFINITY;
    return Math.max(2, 2 * this.long.length);
  }

  private async sampleTraffic(ctx: PolicyContext, now: number): Promise<void> {
    let routes: RouteInfo[];
    try {
      routes = await queryAll(ctx.datapath, "route.query");
    } catch (err) {
      ctx.log.debug("route.query failed; no traffic sample this round", { error: (err as Error).message });
      return;
    }
    const next = new Map<string, Sample>();
    for (const r of routes) {
      const s = next.get(r.peerUid) ?? { ...NO_TRAFFIC };
      s.txBytes += r.txBytes ?? 0;
      s.txPackets += r.txPackets ?? 0;
      s.rxPackets += r.rxPackets ?? 0;
      next.set(r.peerUid, s);
    }
    this.rates.clear();
    this.moved.clear();
    for (const [uid, s] of next) {
      const before = this.samples.get(uid) ?? NO_TRAFFIC;
      if (s.txPackets > before.txPackets || s.rxPackets > before.rxPackets) this.moved.add(uid);
    }
    if (this.sampledAt !== null && now > this.sampledAt) {
      const seconds = (now - this.sampledAt) / 1000;
      for (const [uid, s] of next) {
        const before = this.samples.get(uid) ?? NO_TRAFFIC;
        this.rates.set(uid, Math.max(0, s.txBytes - before.txBytes) / seconds);
      }
    }
    this.samples = next;
    this.sampledAt = now;
  }

  /** Destinations sent to via a neighbour for the setup time with no packet back: that neighbour is penalised. */
  private judgeVias(ctx: PolicyContext, now: number): void {
    const waitMs = this.opts.links.setupTimeoutSec * 1000;
    for (const [dst, w] of this.watches) {
      if (now - w.since < waitMs) continue;
      const s = this.samples.get(dst) ?? NO_TRAFFIC;
      if (s.rxPackets > w.rxPackets) {
        this.watches.delete(dst);
      } else if (s.txPackets > w.txPackets) {
        ctx.log.info("no answer through a neighbour; not routing that destination via it for a while", {
          peerUid: dst,
          via: w.via,
          forSec: PENALTY_MS / 1000,
        });
        this.penalties.set(`${dst} ${w.via}`, now + PENALTY_MS);
        this.watches.delete(dst);
      } else {
        // Nothing sent yet: nothing to judge; watch from now.
        this.watches.set(dst, { via: w.via, since: now, txPackets: s.txPackets, rxPackets: s.rxPackets });
      }
    }
  }

  private penalised(destination: string, via: string, now: number): boolean {
    if (this.penalties.size === 0) return false;
    const until = this.penalties.get(`${destination} ${via}`);
    return until !== undefined && until > now;
  }

  /** Successors, predecessors and long-distance targets among the online members. */
  private chooseTargets(ctx: PolicyContext): void {
    const now = this.opts.clock.now();
    for (const [uid, until] of this.refusedUntil) if (until <= now) this.refusedUntil.delete(uid);
    for (const [uid, until] of this.suspectUntil) if (until <= now) this.suspectUntil.delete(uid);
    const { self } = this.opts;
    const ring = this.ringOf(ctx);
    const k = this.opts.links.successors;
    const suspects = this.suspectUntil.size > 0 ? new Set(this.suspectUntil.keys()) : undefined;
    const successors = ring.successors(self, k, suspects);
    const predecessors = ring.predecessors(self, k, suspects);
    const neighbours = new Set([...successors, ...predecessors]);
    // Room for more than our k successors and k predecessors: an arc outside which members are far.
    const beyondNeighbours = ring.size > 2 * k + 1;
    const from = predecessors.at(-1);
    const to = successors.at(-1);
    this.neighbourArc =
      beyondNeighbours && successors.length === k && predecessors.length === k && from && to
        ? { from, to }
        : null;
    const estimatedSize = estimateRingSize(self, successors, predecessors);
    const wanted = this.opts.links.longDistance;
    const count = wanted === "auto" ? (beyondNeighbours ? autoLongDistance(estimatedSize) : 0) : wanted;
    this.long = this.long
      .filter((uid) => uid !== self && ring.has(uid) && !neighbours.has(uid) && !this.refusedUntil.has(uid))
      .slice(0, count);
    if (this.long.length < count) {
      const exclude = new Set([...neighbours, ...this.long, ...this.refusedUntil.keys()]);
      const more = ring.longDistanceTargets(self, {
        count: count - this.long.length,
        estimatedSize,
        random: this.opts.random,
        exclude,
      });
      this.long.push(...more);
    }
    this.roles.clear();
    for (const uid of this.long) this.roles.set(uid, "long");
    for (const uid of predecessors) this.roles.set(uid, "predecessor");
    for (const uid of successors) this.roles.set(uid, "successor");
  }

  /** Sets up (or marks as wanted now, so it is not trimmed as idle) the link to each member. */
  private async keepLinks(ctx: PolicyContext, uids: string[]): Promise<void> {
    await Promise.all(
      [...new Set(uids)].map((uid) => {
        const m = ctx.peer(uid);
        return m ? ctx.ensureLink?.(m, { pinned: this.pinned(uid) }) : undefined;
      }),
    );
  }

  /** Sets every member's routes (one pass at a time; a pass asked for meanwhile runs after). */
  private updateRoutes(ctx: PolicyContext): Promise<void> {
    if (this.routing) {
      this.routeAgain = true;
      return this.routing;
    }
    this.routing = (async () => {
      do {
        this.routeAgain = false;
        await this.applyRoutes(ctx);
      } while (this.routeAgain);
    })().finally(() => {
      this.routing = null;
    });
    return this.routing;
  }

  /** Whether every member is routed (a small group), or only linked and active ones. */
  private eager(ctx: PolicyContext): boolean {
    return this.ringOf(ctx).size - 1 <= (this.opts.eagerRoutesUpTo ?? EAGER_ROUTES_UP_TO);
  }

  /** The members we route: all in a small group; else the linked ones and those routed on demand. */
  private routedMembers(ctx: PolicyContext): Member[] {
    if (this.eager(ctx)) return ctx.peers();
    const out: Member[] = [];
    for (const uid of new Set([...this.opts.connected, ...this.active.keys()])) {
      const m = ctx.peer(uid);
      if (m) out.push(m);
    }
    return out;
  }

  /** The greedy next hop to a member, or a neighbour linked to it while we link to it; null: direct. */
  private viaFor(m: Member, now: number, ctx: PolicyContext): string | null {
    return this.nextHop(m.tincan.uid, now) ?? this.relayWhileLinking(m, now, ctx);
  }

  /**
   * Direct to a linked member; else via the greedy next hop; else direct (held and reported unmapped).
   * Routes of members no longer routed (on demand: idle for ACTIVE_MS) are removed.
   */
  private async applyRoutes(ctx: PolicyContext): Promise<void> {
    const now = this.opts.clock.now();
    const current = new Map(ctx.routes().map((r) => [r.prefix, r]));
    if (this.positions.size > MAX_POSITIONS) this.positions.clear();
    const eager = this.eager(ctx);
    const routed = this.routedMembers(ctx);
    const stale = new Set(this.mapped);
    for (const m of routed) {
      const uid = m.tincan.uid;
      stale.delete(uid);
      this.mapped.add(uid);
      const via = this.opts.connected.has(uid) ? null : this.viaFor(m, now, ctx);
      let moved = false;
      for (const prefix of this.opts.prefixesOf(m)) {
        const r = current.get(prefix);
        if (r && r.peerUid === uid && (r.via ?? null) === via) continue;
        moved ||= r?.peerUid === uid;
        await ctx.setRoute(via ? { prefix, peerUid: uid, via } : { prefix, peerUid: uid });
      }
      for (const prefix of this.opts.prefixesBehind?.(uid) ?? [])
        await this.pointBehind(current.get(prefix), uid, via, ctx);
      // A route moved to another neighbour: it learns of the traffic before it comes (it may not route
      // the member yet). A new route's request went out already (packetUnmapped, routeRequested).
      if (moved && via !== null && !eager) this.sendRequest(this.opts.self, uid, now, ctx);
      if (via === null) this.watches.delete(uid);
      else if (this.watches.get(uid)?.via !== via) {
        const s = this.samples.get(uid) ?? NO_TRAFFIC;
        this.watches.set(uid, { via, since: now, txPackets: s.txPackets, rxPackets: s.rxPackets });
      }
    }
    for (const uid of stale) {
      this.mapped.delete(uid);
      this.watches.delete(uid);
      const m = ctx.peer(uid);
      for (const prefix of m ? this.opts.prefixesOf(m) : []) {
        if (current.get(prefix)?.peerUid === uid) await ctx.removeRoute(prefix);
      }
      for (const prefix of this.opts.prefixesBehind?.(uid) ?? [])
        await this.pointBehind(current.get(prefix), uid, null, ctx);
    }
  }

  /** Moves the route of a prefix behind `uid` to `via` (null: direct), keeping what it is (kernel, transit). */
  private async pointBehind(
    r: RpcParamsOf<"route.set"> | undefined,
    uid: string,
    via: string | null,
    ctx: PolicyContext,
  ): Promise<void> {
    if (!r || r.peerUid !== uid || (r.via ?? null) === via) return;
    const { via: _old, ...rest } = r;
    await ctx.setRoute(via ? { ...rest, via } : rest);
  }

  /**
   * No neighbour is closer to a member we hold no link to (it is about to be our ring neighbour, or
   * the closer ones are penalised): route it via a neighbour that announced a link to it while we link
   * to it. A direct route would be held until then, and the member's packets that still come over the
   * overlay would fail the datapath's source check (`spoofed`: a direct route's source must arrive
   * on its own link).
   */
  private relayWhileLinking(m: Member, now: number, ctx: PolicyContext): string | null {
    const uid = m.tincan.uid;
    for (const [neighbour, linked] of this.opts.neighborLinks()) {
      if (neighbour === uid || !linked.has(uid) || !this.opts.connected.has(neighbour)) continue;
      if (this.penalised(uid, neighbour, now)) continue;
      this.shortcuts.add(uid);
      ctx.ensureLink?.(m, { pinned: this.pinned(uid) })?.catch((err: Error) =>
        ctx.log.debug("link to a member routed via a relay not set up", {
          peerUid: uid,
          error: err.message,
        }),
      );
      return neighbour;
    }
    return null;
  }

  private position(uid: string): bigint {
    let p = this.positions.get(uid);
    if (p === undefined) {
      p = ringPosition(uid);
      this.positions.set(uid, p);
    }
    return p;
  }
}

/**
 * `links.longDistance: "auto"`: half of log2(N) links of our own, as about as many come in from
 * others (capped at twice our own), so a node holds about log2(N) long-distance links in all.
 * Rounded down, once: N is estimated from a few ring neighbours and often overshoots, and rounding up
 * (or rounding twice) gave a node more than log2(N) on average (16.9 links per node at 5,000 members
 * against 2k + log2(N) = 16.3 in the simulator).
 */
export function autoLongDistance(estimatedSize: number): number {
  return Math.max(1, Math.floor(Math.log2(Math.max(2, estimatedSize)) / 2));
}
