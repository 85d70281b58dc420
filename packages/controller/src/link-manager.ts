import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type {
  ControllerLinkStatus,
  LinkFailure,
  LinkInfo,
  LinkPath,
  NotificationParamsOf,
  Signal,
} from "@tincan/protocol";
import { type DatapathApi, queryAll } from "./datapath-client.js";
import type { Log } from "./logger.js";
import type { SignalSender } from "./xmpp.js";

/** Who a link goes to. `fullJid` is where signals go (null for a link adopted from the datapath at start
 * whose peer has not been seen in presence yet). */
export interface PeerRef {
  uid: string;
  bareJid: string;
  fullJid: string | null;
}

/**
 * The link state machine (README "Link manager state machine" has it as a table, with a diagram).
 *
 * Each phase owns the link timers listed for it (PHASE_TIMERS). `enter()` is the one place a phase
 * changes, and stops every timer the new phase does not own; `arm()` arms a timer only in a phase
 * that owns it, and its firing is an event handled in the peer's queue while the record is still in
 * such a phase. An attempt's own setup timer (setupTimeoutSec) belongs to the attempt, not to the
 * phase: a direct re-attempt sets up while the link stays `connected`.
 *
 * - `queued`: wanted, waiting for a free slot (maxLinks). No timer.
 *   Slot frees -> `backoff`, then begin; the peer's offer -> `answering`.
 * - `waiting`: pinned, and the peer has the smaller UID, so it offers first.
 *   `wait` (setupTimeoutSec) -> offer ourselves; the peer's offer -> `answering`.
 * - `offering` / `answering` / `connecting`: the newest attempt's state (we sent an offer / we apply
 *   the peer's offer / descriptions exchanged, ICE and DTLS under way).
 *   `race` (armed when the direct attempt's offer is made; relayFallbackSec, 0 once the peer needed
 *   the relay) -> a relay-only attempt beside the direct one. Answer applied -> `connecting`; a
 *   transport connected -> `connected`; the last attempt failed, timed out or got a bye -> `backoff`
 *   (wanted) or forgotten.
 * - `connected`: a transport carries the traffic.
 *   `grace` (the carrier reported `disconnected`; disconnectGraceMs) -> the transport is lost;
 *   `upgrade` (carried by a relay; FIRST_UPGRADE_MS, doubling) -> a direct re-attempt;
 *   `overlap` (both transports connected; OVERLAP_MS) -> the worse is removed.
 *   The last transport lost, gone from the datapath, or the peer offers anew -> `backoff` (wanted and
 *   the peer online) or forgotten; idle -> removed.
 * - `backoff`: not set up. `retry` (1 s doubling to maxBackoffMs, ±10 %) -> offer again. With no retry
 *   scheduled the link is stalled (the peer is offline, or the link not started yet): ensureLink or
 *   the peer back online -> offer. The peer's offer -> `answering`.
 */
export type LinkPhase =
  | "queued"
  | "waiting"
  | "offering"
  | "answering"
  | "connecting"
  | "connected"
  | "backoff";

/** A link's timers (see the table above). */
export type LinkTimer = "wait" | "retry" | "race" | "grace" | "upgrade" | "overlap";
const LINK_TIMERS: readonly LinkTimer[] = ["wait", "retry", "race", "grace", "upgrade", "overlap"];

/** Which timers each phase owns; entering a phase clears the others. */
export const PHASE_TIMERS: Readonly<Record<LinkPhase, readonly LinkTimer[]>> = {
  queued: [],
  waiting: ["wait"],
  offering: ["race"],
  answering: ["race"],
  connecting: ["race"],
  connected: ["grace", "upgrade", "overlap"],
  backoff: ["retry"],
};

export interface LinkEvent {
  peer: PeerRef;
  path: LinkPath | null;
  relayOnly: boolean;
  reason?: string;
}

export interface LinkSnapshot {
  peer: PeerRef;
  phase: LinkPhase;
  pinned: boolean;
  wanted: boolean;
  relayOnly: boolean;
  path: LinkPath | null;
  upSince: number | null;
  lastActivity: number;
  attempt: number;
}

export interface LinkTimings {
  maxLinks: number;
  idleTimeoutSec: number;
  relayFallbackSec: number;
  setupTimeoutSec: number;
}

export interface LinkManagerOptions {
  selfUid: string;
  datapath: Pick<DatapathApi, "call" | "on">;
  signals: SignalSender;
  log: Log;
  links: LinkTimings;
  /** TURN servers are configured, so a relay-only attempt can help. */
  hasTurn: boolean;
  /** Policy: may this peer link with us? Called for every offer (the policy logs refusals once). */
  admit(peer: PeerRef): boolean;
  /** How often link.query is polled for idle trimming and vanished links. Default 5000 ms. */
  pollIntervalMs?: number;
  /** Cap of the retry backoff. Default 60000 ms. */
  maxBackoffMs?: number;
  /** A connected link reported `disconnected` gets this long to recover before it is set up again. */
  disconnectGraceMs?: number;
  /** Cap of the backoff of direct re-attempts while a link is relayed. Default 300000 ms. */
  maxUpgradeBackoffMs?: number;
}

interface Candidate {
  candidate: string;
  mid: string;
}

/**
 * One datapath transport of a link, set up or carrying traffic: the full-candidate one (direct when
 * ICE finds a direct path) or the relay-only one. A link has at most one of each.
 */
interface Attempt {
  relayOnly: boolean;
  /** Setup id; null for a transport adopted from the datapath at start. */
  setup: string | null;
  role: "offerer" | "answerer";
  /**
   * `offering`/`answering` until the peer's description is applied, then `connecting`, then
   * `connected`; `failed` when the datapath reported the setup failed (an answerer keeps such an
   * attempt until the offerer decides; an offerer replaces or removes it at once).
   */
  state: "offering" | "answering" | "connecting" | "connected" | "failed";
  /** The peer's candidates held until its description is applied (bounded); null once applied. */
  pendingRemote: Candidate[] | null;
  path: LinkPath | null;
  /** When the setup started (a peer's new offer replaces it only MIN_REPLACE_MS later). */
  startedAt: number;
  /** setupTimeoutSec from link.create / link.accept until the transport connects. */
  setupTimer?: NodeJS.Timeout | undefined;
}

interface Rec {
  peer: PeerRef;
  phase: LinkPhase;
  /** This side wants the link (ensureLink); a link only the peer wanted is not retried by us. */
  wanted: boolean;
  /** Exempt from idle trimming. */
  pinned: boolean;
  full: Attempt | null;
  relay: Attempt | null;
  /** A relay-only transport connected: race the relay at once next time. */
  relayNeeded: boolean;
  /** Failed setups in a row (retry backoff). */
  attempt: number;
  /** Direct re-attempts in a row while the link is relayed (their backoff). */
  upgrades: number;
  /** Setups re-offered at once after a failed DTLS handshake. */
  handshakeRetries: number;
  upSince: number | null;
  lastActivity: number;
  counters: number;
  /** Adopted at start and not yet announced with link-up (peer unknown until presence). */
  unannounced: boolean;
  /** The link's timers (owned by phases, see PHASE_TIMERS), besides each attempt's setupTimer. */
  timers: Partial<Record<LinkTimer, NodeJS.Timeout>>;
  /** For `tincanctl status` only (nothing decides on these): when each armed timer fires, */
  due: Partial<Record<LinkTimer, number>>;
  /** when the current setup started and how long the last one took, */
  setupStartedAt: number | null;
  setupMs: number | null;
  /** since when and why a relay carries the link, and why the last transport failed or went down. */
  relayedSince: number | null;
  relayWhy: string | null;
  lastFailure: string | null;
}

const MAX_PENDING_CANDIDATES = 64;
const MAX_HANDSHAKE_RETRIES = 2;
/** Both transports stay open this long after traffic moved, so frames in flight on the old one arrive. */
const OVERLAP_MS = 2000;
/** First direct re-attempt after a failed direct one while the link is relayed; doubles each time. */
const FIRST_UPGRADE_MS = 5000;
/**
 * One setup per peer and transport kind at a time: a peer's new offer replaces its setup in progress
 * only this long after that setup started, else it is dropped (counted). A flood of offers then builds
 * one PeerConnection per interval and kind, not one per offer. A connected transport is replaced at
 * once (the peer's datapath restarted and lost it); the per-peer signal rate limit bounds how often.
 */
export const MIN_REPLACE_MS = 1000;

export function newSetupId(): string {
  return randomBytes(9).toString("base64url");
}

const isRelayed = (a: Attempt): boolean => a.relayOnly || a.path === "relay";

/**
 * Owns link setup, retry, the relay race, upgrades to a direct path and idle trimming, one record per
 * peer UID. Every operation on one peer runs in that peer's queue, so RPCs and signals of a peer never
 * interleave.
 *
 * A link's setup starts a full-candidate attempt and, with TURN servers, races a relay-only attempt
 * against it (after relayFallbackSec, at once when the peer needed the relay before). The first to
 * connect carries the link; a relayed link keeps trying a direct path (FIRST_UPGRADE_MS, doubling) and
 * moves over when one connects, removing the relay OVERLAP_MS later. See `settle`, the one place
 * that decides what a link's transports do next.
 *
 * Link lifetime is decided by the data plane: a peer going offline keeps a connected link
 * (peerOffline); the link goes when the datapath says its transports are dead, on a bye, or when the
 * peer leaves (peerGone).
 *
 * Events: `link-setup` (LinkEvent: a setup starts, as offerer or answerer), `link-up` (LinkEvent: the
 * first transport connected), `link-setup-failed` (LinkEvent: the setup ended with no transport
 * connected), `relay-attempt` (LinkEvent: a relay-only transport is offered), `link-down` (LinkEvent
 * with reason: no transport left connected),
 * `link-removed` (peer UID: the manager forgot the peer's record, also for an adopted link that was
 * never announced).
 */
export class LinkManager extends EventEmitter {
  private readonly recs = new Map<string, Rec>();
  private readonly chains = new Map<string, Promise<void>>();
  /** Candidates that arrived before their offer: peer uid -> the newest setups' candidates. */
  private readonly early = new Map<string, Array<{ setup: string; cands: Candidate[]; at: number }>>();
  private readonly queue: string[] = [];
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly log: Log;
  private readonly self: string;
  /** Offers dropped because the same peer's setup of that transport was still in progress. */
  offersDropped = 0;
  private readonly replaceDropLogged = new Set<string>();

  constructor(private readonly opts: LinkManagerOptions) {
    super();
    this.log = opts.log;
    this.self = opts.selfUid;
    this.unsubscribe.push(
      opts.datapath.on("link.state", (p) => this.onLinkState(p)),
      opts.datapath.on("link.candidate", (p) => this.onLocalCandidate(p)),
    );
  }

  // ---- policy-facing API ---------------------------------------------------------------------------

  /** Starts polling link.query (idle trimming, vanished links). */
  start(): void {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => void this.poll(), this.opts.pollIntervalMs ?? 5000);
    this.pollTimer.unref?.();
  }

  /** Stops timers and notification handlers; the links stay in the datapath (the next controller adopts them). */
  stop(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    for (const rec of this.recs.values()) this.clearTimers(rec);
    for (const u of this.unsubscribe.splice(0)) u();
  }

  /**
   * We want a link to `peer`: set it up unless it exists or is being set up. `pinned` links (proactive
   * policy) are never trimmed as idle; for pinned links only the smaller UID offers first (the larger waits
   * setupTimeoutSec for the offer, then offers itself). Calling it again marks the peer as recently wanted.
   */
  ensureLink(peer: PeerRef, opts: { pinned?: boolean } = {}): Promise<void> {
    return this.run(peer.uid, async () => {
      let rec = this.recs.get(peer.uid);
      if (rec) {
        this.updatePeerOf(rec, peer);
        rec.wanted = true;
        if (opts.pinned !== undefined) rec.pinned = opts.pinned;
        rec.lastActivity = Date.now();
        if (this.stalled(rec)) await this.offer(rec);
        return;
      }
      rec = this.newRec(peer, true, opts.pinned ?? false);
      this.recs.set(peer.uid, rec);
      if (this.activeCount() > this.opts.links.maxLinks) {
        this.enter(rec, "queued");
        this.queue.push(peer.uid);
        this.log.info("link queued: maxLinks reached", {
          peer: peer.bareJid,
          maxLinks: this.opts.links.maxLinks,
        });
        return;
      }
      await this.begin(rec);
    });
  }

  /** Tears a link down (bye to the peer, link.remove) and forgets it. */
  removeLink(peerUid: string, reason: string): Promise<void> {
    return this.run(peerUid, () => this.drop(peerUid, reason, true));
  }

  /** The peer went offline or left the roster: drop its link without signalling it. */
  peerGone(peerUid: string, reason = "peer offline"): Promise<void> {
    return this.run(peerUid, () => this.drop(peerUid, reason, false));
  }

  /**
   * The peer went offline but is still a member: a link that is connected in the datapath stays (the
   * data plane decides when it is dead) and learns the peer's next full JID; transports still being set
   * up are removed and nothing is signalled (there is nobody to signal). Resolves true when the link stays.
   */
  async peerOffline(peerUid: string): Promise<boolean> {
    let kept = false;
    await this.run(peerUid, async () => {
      const rec = this.recs.get(peerUid);
      if (!rec) return;
      if (!this.carrier(rec)) {
        await this.drop(peerUid, "peer offline", false);
        return;
      }
      kept = true;
      rec.peer.fullJid = null;
      this.stopTimer(rec, "upgrade");
      for (const a of this.attempts(rec)) if (a.state !== "connected") await this.removeAttempt(rec, a);
      this.log.info("peer offline; its link stays while the datapath keeps it connected", {
        peer: rec.peer.bareJid || peerUid,
      });
    });
    return kept;
  }

  /** A connected link to this peer exists (in the datapath, as far as we know). */
  isConnected(peerUid: string): boolean {
    const rec = this.recs.get(peerUid);
    return rec !== undefined && this.carrier(rec) !== null;
  }

  /** The peer's full JID changed (new presence): use it for signals. */
  updatePeer(peer: PeerRef): Promise<void> {
    // Most members in a large group have no link: no work queued for them (a presence burst at login).
    if (!this.recs.has(peer.uid) && !this.chains.has(peer.uid)) return Promise.resolve();
    return this.run(peer.uid, async () => {
      const rec = this.recs.get(peer.uid);
      if (rec) this.updatePeerOf(rec, peer);
    });
  }

  /** Marks a link pinned (never idle-trimmed) or not. */
  setPinned(peerUid: string, pinned: boolean): void {
    const rec = this.recs.get(peerUid);
    if (rec) rec.pinned = pinned;
  }

  linkState(peerUid: string): LinkPhase | undefined {
    return this.recs.get(peerUid)?.phase;
  }

  links(): LinkSnapshot[] {
    return [...this.recs.values()].map((r) => {
      const shown = this.carrier(r) ?? r.full ?? r.relay;
      return {
        peer: { ...r.peer },
        phase: r.phase,
        pinned: r.pinned,
        wanted: r.wanted,
        relayOnly: shown?.relayOnly ?? false,
        path: shown?.path ?? null,
        upSince: r.upSince,
        lastActivity: r.lastActivity,
        attempt: r.attempt,
      };
    });
  }

  /** Per peer UID: the phase and, when the link is relayed or not up, why (for `tincanctl status`). */
  status(now = Date.now()): Record<string, ControllerLinkStatus> {
    const out: Record<string, ControllerLinkStatus> = {};
    for (const [uid, r] of this.recs) {
      const nextAttemptAt = r.due.retry ?? r.due.upgrade ?? r.due.wait ?? null;
      out[uid] = {
        phase: r.phase,
        why: whyNotDirect(r, nextAttemptAt, now),
        upSince: r.upSince,
        setupMs: r.setupMs,
        relayedSince: r.relayedSince,
        failures: r.attempt,
        nextAttemptAt,
      };
    }
    return out;
  }

  /**
   * At controller start: adopt the datapath's connected links (they keep running; the peer is filled in
   * when its presence arrives) and remove half-set-up ones. link.query lists each peer's transport that
   * carries its traffic first.
   */
  async sync(): Promise<void> {
    const infos = await queryAll(this.opts.datapath, "link.query");
    const seen = new Set<string>();
    for (const info of infos) {
      const first = !seen.has(info.peerUid);
      seen.add(info.peerUid);
      if (first && !this.recs.has(info.peerUid) && info.state === "connected") {
        const rec = this.newRec({ uid: info.peerUid, bareJid: "", fullJid: null }, false, false);
        const a = this.newAttempt(info.relayOnly, null, "answerer", "connected");
        a.path = info.path;
        this.setAttempt(rec, a);
        rec.upSince = Date.now();
        rec.counters = activity(info);
        rec.unannounced = true;
        this.recs.set(info.peerUid, rec);
        this.log.info("adopted an existing link", { peerUid: info.peerUid, path: info.path });
      } else if (!this.recs.get(info.peerUid)) {
        await this.opts.datapath.call("link.remove", { peerUid: info.peerUid }).catch(() => {});
      } else if (!first) {
        await this.opts.datapath
          .call("link.remove", { peerUid: info.peerUid, relayOnly: info.relayOnly })
          .catch(() => {});
      }
    }
  }

  /**
   * The datapath restarted and lost every link. Its peers still hold theirs and would only notice
   * after their silence limit, so every link that was up or being set up is offered again at once,
   * whatever the UID order (the peer takes a fresh offer in place of its dead transport); links of
   * peers that are offline are forgotten (nobody to signal).
   */
  async resync(): Promise<void> {
    await this.restartLinks("datapath restarted", true);
  }

  /**
   * This host's addresses changed (roaming): links may be bound to an address that is gone, and the
   * peer cannot know. Offer every link that was up or being set up again at once, whichever UID is
   * smaller; the peer takes the fresh offer in place of its old link.
   */
  async relinkAll(reason: string): Promise<void> {
    await this.restartLinks(reason, false);
  }

  /** Offers again at once every link that was up or being set up; `datapathLost`: it has none of them. */
  private async restartLinks(reason: string, datapathLost: boolean): Promise<void> {
    await Promise.all(
      [...this.recs.keys()].map((uid) =>
        this.run(uid, async () => {
          const rec = this.recs.get(uid);
          if (!rec || rec.phase === "queued") return;
          const wasUp = rec.phase === "connected";
          const wasActive = wasUp || this.attempts(rec).length > 0;
          // A link we cannot signal (peer offline) is left to the datapath's liveness, unless it is gone.
          if (!datapathLost && !(wasActive && rec.peer.fullJid)) return;
          this.clearTimers(rec);
          if (datapathLost) rec.full = rec.relay = null;
          if (wasUp) this.emitDown(rec, reason);
          if (!rec.peer.fullJid || (!rec.wanted && !wasActive)) {
            this.forget(rec);
            return;
          }
          rec.attempt = 0;
          this.enter(rec, "backoff");
          if (wasActive) await this.offer(rec);
          else await this.begin(rec);
        }),
      ),
    );
    this.pump();
  }

  /**
   * A signal from `peer` (the controller has checked that `peer` is the sender's presence and that its
   * announced UID is `signal.from`).
   */
  handleSignal(peer: PeerRef, signal: Signal): Promise<void> {
    if (signal.to !== this.self || signal.from !== peer.uid) {
      this.log.debug("ignored a signal not between this peer and us", {
        type: signal.type,
        from: peer.bareJid,
      });
      return Promise.resolve();
    }
    this.log.debug("signal received", { type: signal.type, from: peer.bareJid, setup: signal.setup });
    return this.run(peer.uid, async () => {
      switch (signal.type) {
        case "offer":
          return this.onOffer(peer, signal);
        case "answer":
          return this.onAnswer(signal);
        case "candidate":
          return this.onRemoteCandidate(signal);
        case "bye":
          return this.onBye(signal);
      }
    });
  }

  // ---- setup ---------------------------------------------------------------------------------------

  private async begin(rec: Rec): Promise<void> {
    if (rec.pinned && this.self > rec.peer.uid && rec.attempt === 0 && rec.phase !== "waiting") {
      // Proactive: the smaller UID offers. Wait for its offer, but not forever.
      this.enter(rec, "waiting");
      this.arm(rec, "wait", this.opts.links.setupTimeoutSec * 1000, () => this.offer(rec));
      return;
    }
    await this.offer(rec);
  }

  /** A fresh setup of the link: whatever exists is removed, then a direct attempt (raced by the relay). */
  private async offer(rec: Rec): Promise<void> {
    this.clearTimers(rec);
    for (const a of this.attempts(rec)) await this.removeAttempt(rec, a);
    if (!rec.peer.fullJid) {
      this.enter(rec, "backoff"); // peer not online: stalled until ensureLink/updatePeer restarts it
      return;
    }
    await this.offerAttempt(rec, false);
  }

  /**
   * Offers one transport of the link (replacing one of the same kind); the other is left alone.
   * `directOnly`: no TURN candidates on either side (a direct re-attempt while a relay carries the link).
   */
  private async offerAttempt(rec: Rec, relayOnly: boolean, directOnly = false): Promise<void> {
    const old = this.attemptOf(rec, relayOnly);
    if (old) await this.removeAttempt(rec, old);
    const peer = rec.peer;
    if (!peer.fullJid) return;
    const starting = rec.phase !== "connected" && this.attempts(rec).length === 0;
    const a = this.newAttempt(relayOnly, newSetupId(), "offerer", "offering");
    this.setAttempt(rec, a);
    this.log.debug("offering a link", { peer: peer.bareJid, setup: a.setup, relayOnly, directOnly });
    if (starting) {
      rec.setupStartedAt = Date.now();
      this.emit("link-setup", this.event(rec, a));
    }
    if (relayOnly) this.emit("relay-attempt", this.event(rec, a));
    try {
      const { description } = await this.opts.datapath.call("link.create", {
        peerUid: peer.uid,
        relayOnly,
        ...(directOnly ? { directOnly } : {}),
      });
      // The setup's time starts when the datapath has made the offer (a loaded one can take seconds).
      this.armSetupTimer(rec, a);
      if (!relayOnly) this.armRace(rec);
      await this.opts.signals.sendSignal(peer.fullJid, {
        type: "offer",
        from: this.self,
        to: peer.uid,
        setup: a.setup as string,
        relayOnly,
        ...(directOnly ? { directOnly } : {}),
        description,
      });
      this.log.debug("offer sent", { peer: peer.bareJid, setup: a.setup });
    } catch (err) {
      this.log.warn("link offer failed", { peer: peer.bareJid, error: (err as Error).message });
      await this.attemptFailed(rec, a, "offer failed", false);
    }
  }

  /**
   * With TURN servers, a relay-only attempt races the direct one: after relayFallbackSec (at once when
   * this peer needed the relay before), unless the link connected first.
   */
  private armRace(rec: Rec): void {
    if (!this.opts.hasTurn || rec.relay || rec.phase === "connected" || rec.timers.race) return;
    const delay = rec.relayNeeded ? 0 : this.opts.links.relayFallbackSec * 1000;
    this.arm(rec, "race", delay, async () => {
      if (rec.relay || !rec.full) return;
      rec.relayWhy = rec.relayNeeded
        ? "the peer needed a relay last time"
        : `direct attempt found no path after ${this.opts.links.relayFallbackSec} s`;
      this.log.info("racing a relay-only attempt against the direct one", { peer: rec.peer.bareJid });
      await this.offerAttempt(rec, true);
    });
  }

  private armSetupTimer(rec: Rec, a: Attempt): void {
    clearTimeout(a.setupTimer);
    a.setupTimer = setTimeout(() => {
      a.setupTimer = undefined;
      void this.run(rec.peer.uid, async () => {
        const current = () =>
          this.recs.get(rec.peer.uid) === rec &&
          this.attemptOf(rec, a.relayOnly) === a &&
          a.state !== "connected";
        if (!current()) return;
        // On a loaded host the link's `connected` notification may still wait in our socket behind
        // others: ask the datapath before giving up, or we would tear down (and make the peer tear
        // down) a link that works.
        const info = await this.datapathLinkInfo(rec.peer.uid, a.relayOnly);
        if (!current()) return;
        if (info?.state === "connected") {
          await this.onAttemptConnected(rec, a, info.path);
          return;
        }
        this.log.info("link setup timed out", {
          peer: rec.peer.bareJid,
          setup: a.setup,
          relayOnly: a.relayOnly,
        });
        await this.attemptFailed(rec, a, "setup timeout", true);
      });
    }, this.opts.links.setupTimeoutSec * 1000);
  }

  private async datapathLinkInfo(peerUid: string, relayOnly: boolean): Promise<LinkInfo | undefined> {
    try {
      const infos = await this.opts.datapath.call("link.query", { peerUid });
      return infos.find((i) => i.relayOnly === relayOnly);
    } catch {
      return undefined;
    }
  }

  /**
   * One transport's setup is over without a connection. With the other transport connected or still
   * setting up, the link goes on with that one; with none left, it is retried with backoff (if wanted).
   */
  private async attemptFailed(rec: Rec, a: Attempt, reason: string, sayBye: boolean): Promise<void> {
    if (this.attemptOf(rec, a.relayOnly) !== a) return;
    rec.lastFailure = `${a.relayOnly ? "relay-only" : "direct"} setup: ${reason}`;
    if (sayBye && a.setup) await this.sendBye(rec.peer, a.setup, reason);
    await this.removeAttempt(rec, a);
    this.afterAttempt(rec);
  }

  /** An attempt was removed: go on with what is left, or retry the link with backoff (if wanted). */
  private afterAttempt(rec: Rec): void {
    if (rec.phase === "connected" || this.attempts(rec).length > 0) {
      this.settle(rec);
      return;
    }
    this.emit("link-setup-failed", this.event(rec, null));
    if (rec.wanted) this.scheduleRetry(rec);
    else this.forget(rec);
  }

  private scheduleRetry(rec: Rec): void {
    this.enter(rec, "backoff");
    rec.attempt++;
    rec.handshakeRetries = 0;
    const base = Math.min(this.opts.maxBackoffMs ?? 60_000, 1000 * 2 ** (rec.attempt - 1));
    const delay = Math.round(base * (0.9 + 0.2 * Math.random()));
    this.log.debug("link retry scheduled", { peer: rec.peer.bareJid, attempt: rec.attempt, inMs: delay });
    this.arm(rec, "retry", delay, async () => {
      if (rec.wanted) await this.offer(rec);
    });
  }

  // ---- the link's transports -----------------------------------------------------------------------

  /**
   * Decides what a connected link's transports do next (called after any change to them):
   * - two connected: the worse is removed OVERLAP_MS later (the datapath already sends on the better);
   * - carried directly: a relay-only attempt still setting up is removed at once;
   * - carried by a relay with no direct attempt under way: a direct re-attempt is scheduled (the side that
   *   set the link up does this, so the two sides' attempts do not cross).
   */
  private settle(rec: Rec): void {
    const carrier = this.carrier(rec);
    if (!carrier) return;
    if (rec.phase !== "connected") this.enter(rec, "connected");
    if (!isRelayed(carrier)) rec.relayedSince = null;
    else if (rec.relayedSince === null) {
      rec.relayedSince = Date.now();
      if (!carrier.relayOnly) rec.relayWhy = "ICE selected a TURN relay pair";
    }
    const other = carrier === rec.full ? rec.relay : rec.full;
    if (other?.state === "connected") {
      if (!rec.timers.overlap) this.arm(rec, "overlap", OVERLAP_MS, () => this.removeWorse(rec));
      return;
    }
    if (!isRelayed(carrier)) {
      this.stopTimer(rec, "upgrade");
      rec.upgrades = 0;
      if (other) {
        // No bye: the peer removes its own when its direct transport connects (a bye could reach it
        // first and take down a relay transport that still carries its traffic).
        this.log.debug("direct path up; the relay attempt is not needed", { peer: rec.peer.bareJid });
        void this.run(rec.peer.uid, async () => {
          if (this.attemptOf(rec, other.relayOnly) === other && other.state !== "connected")
            await this.removeAttempt(rec, other);
        });
      }
      return;
    }
    if (!other && !rec.timers.upgrade && this.upgrades(rec, carrier)) {
      const cap = this.opts.maxUpgradeBackoffMs ?? 300_000;
      const delay = Math.min(cap, FIRST_UPGRADE_MS * 2 ** rec.upgrades);
      this.log.debug("direct re-attempt scheduled", { peer: rec.peer.bareJid, inMs: delay });
      this.arm(rec, "upgrade", delay, () => this.tryDirect(rec));
    }
  }

  /** Whether this side makes the direct re-attempts of a relayed link. */
  private upgrades(rec: Rec, carrier: Attempt): boolean {
    return carrier.setup === null ? this.self < rec.peer.uid : carrier.role === "offerer";
  }

  /** A direct re-attempt of a relayed link; the relayed transport carries traffic meanwhile. */
  private async tryDirect(rec: Rec): Promise<void> {
    const carrier = this.carrier(rec);
    if (this.recs.get(rec.peer.uid) !== rec || !carrier || !isRelayed(carrier)) return;
    if (this.attempts(rec).length > 1) return;
    rec.upgrades++;
    if (!carrier.relayOnly) {
      // The full transport connected through a relay: a relay-only one takes its traffic first, so
      // the full one can be set up again (settle removes it once the relay-only one connects).
      if (!this.opts.hasTurn) return;
      this.log.info("moving a relayed link to a relay-only transport, to try a direct path", {
        peer: rec.peer.bareJid,
      });
      await this.offerAttempt(rec, true);
      return;
    }
    this.log.info("link is relayed; trying a direct path again", {
      peer: rec.peer.bareJid,
      attempt: rec.upgrades,
    });
    await this.offerAttempt(rec, false, true);
  }

  /** Both transports connected: remove the one not carrying traffic (it had OVERLAP_MS to drain). */
  private async removeWorse(rec: Rec): Promise<void> {
    const carrier = this.carrier(rec);
    if (this.recs.get(rec.peer.uid) !== rec || !carrier) return;
    const other = carrier === rec.full ? rec.relay : rec.full;
    if (other?.state !== "connected") return;
    this.log.info("link moved to a better path; closing the other transport", {
      peer: rec.peer.bareJid,
      path: carrier.path,
      relayOnly: carrier.relayOnly,
      closed: { path: other.path, relayOnly: other.relayOnly },
    });
    // No bye: the peer sees both connected too and removes its own (a bye could reach it before
    // its datapath reports the better one connected, and take down the transport carrying its traffic).
    await this.removeAttempt(rec, other);
    this.settle(rec);
  }

  // ---- incoming signals ----------------------------------------------------------------------------

  private async onOffer(peer: PeerRef, s: Extract<Signal, { type: "offer" }>): Promise<void> {
    if (!this.opts.admit(peer)) return;
    let rec = this.recs.get(peer.uid);
    const existing = rec ? this.attemptOf(rec, s.relayOnly) : null;
    if (existing?.setup === s.setup) return; // duplicate
    if (existing?.state === "offering" && this.self < peer.uid) {
      this.log.debug("glare: our offer wins (smaller UID)", { peer: peer.bareJid });
      return;
    }
    if (this.setupTooRecent(existing)) {
      this.offersDropped++;
      if (!this.replaceDropLogged.has(peer.uid)) {
        this.replaceDropLogged.add(peer.uid);
        this.log.warn("dropped an offer: the peer's previous setup is still in progress (logged once)", {
          peer: peer.bareJid,
          minIntervalMs: MIN_REPLACE_MS,
        });
      }
      return;
    }
    if (!rec) {
      if (this.activeCount() >= this.opts.links.maxLinks) {
        this.log.warn("refused a link: maxLinks reached", { peer: peer.bareJid });
        await this.sendBye(peer, s.setup, "busy");
        return;
      }
      rec = this.newRec(peer, false, false);
      this.recs.set(peer.uid, rec);
    } else {
      if (existing?.state === "offering")
        this.log.debug("glare: the peer's offer wins (smaller UID)", { peer: peer.bareJid });
      this.updatePeerOf(rec, peer);
      this.stopTimer(rec, "wait");
      this.stopTimer(rec, "retry");
      if (rec.phase === "queued") this.queue.splice(this.queue.indexOf(peer.uid), 1);
      if (existing) {
        await this.removeAttempt(rec, existing);
        if (existing.state === "connected" && !this.carrier(rec))
          this.emitDown(rec, "peer set the link up again"); // -> backoff, the connected timers cleared
      }
    }
    const early = this.takeEarly(peer.uid, s.setup);
    const a = this.newAttempt(s.relayOnly, s.setup, "answerer", "answering");
    if (s.relayOnly) rec.relayWhy = "the peer found no direct path and offered a relay-only transport";
    a.pendingRemote = early;
    const starting = rec.phase !== "connected" && this.attempts(rec).length === 0;
    this.setAttempt(rec, a);
    this.armSetupTimer(rec, a);
    if (starting) {
      rec.setupStartedAt = Date.now();
      this.emit("link-setup", this.event(rec, a));
    }
    try {
      const { description } = await this.opts.datapath.call("link.accept", {
        peerUid: peer.uid,
        description: s.description,
        relayOnly: s.relayOnly,
        ...(s.directOnly && !s.relayOnly ? { directOnly: true } : {}),
      });
      const held = this.remoteApplied(rec, a);
      await this.opts.signals.sendSignal(peer.fullJid ?? "", {
        type: "answer",
        from: this.self,
        to: peer.uid,
        setup: s.setup,
        description,
      });
      for (const c of held) await this.addCandidate(rec, a, c);
    } catch (err) {
      this.log.warn("accepting a link failed", { peer: peer.bareJid, error: (err as Error).message });
      await this.attemptFailed(rec, a, "accept failed", true);
    }
  }

  private async onAnswer(s: Extract<Signal, { type: "answer" }>): Promise<void> {
    const rec = this.recs.get(s.from);
    const a = rec && this.attemptBySetup(rec, s.setup);
    if (!rec || !a || a.role !== "offerer" || a.state !== "offering") {
      this.log.debug("ignored an answer for an unknown or stale setup", { from: s.from, setup: s.setup });
      return;
    }
    try {
      await this.opts.datapath.call("link.complete", {
        peerUid: s.from,
        description: s.description,
        relayOnly: a.relayOnly,
      });
      for (const c of this.remoteApplied(rec, a)) await this.addCandidate(rec, a, c);
    } catch (err) {
      this.log.warn("completing a link failed", { peer: rec.peer.bareJid, error: (err as Error).message });
      await this.attemptFailed(rec, a, "complete failed", true);
    }
  }

  private async onRemoteCandidate(s: Extract<Signal, { type: "candidate" }>): Promise<void> {
    const rec = this.recs.get(s.from);
    const a = rec && this.attemptBySetup(rec, s.setup);
    const cand = { candidate: s.candidate, mid: s.mid };
    if (!rec || !a) {
      // Maybe the offer it belongs to is still on its way: keep a few, for the two newest setups only.
      const list = this.early.get(s.from) ?? [];
      let e = list.find((x) => x.setup === s.setup);
      if (!e) {
        e = { setup: s.setup, cands: [], at: Date.now() };
        list.push(e);
        if (list.length > 2) list.shift();
        this.early.set(s.from, list);
      }
      if (e.cands.length < MAX_PENDING_CANDIDATES) e.cands.push(cand);
      return;
    }
    if (a.pendingRemote) {
      if (a.pendingRemote.length < MAX_PENDING_CANDIDATES) a.pendingRemote.push(cand);
      return;
    }
    await this.addCandidate(rec, a, cand);
  }

  private async onBye(s: Extract<Signal, { type: "bye" }>): Promise<void> {
    const rec = this.recs.get(s.from);
    const a = rec && this.attemptBySetup(rec, s.setup);
    if (!rec || !a) return;
    this.log.info("peer closed the link", {
      peer: rec.peer.bareJid,
      reason: s.reason,
      relayOnly: a.relayOnly,
    });
    if (a.state === "connected") {
      await this.transportLost(rec, a, `peer: ${s.reason ?? "bye"}`);
      return;
    }
    if (rec.phase !== "connected" && !a.relayOnly && a.role === "offerer" && s.reason !== "busy") {
      await this.removeAttempt(rec, a);
      if (!(await this.raceNow(rec, `peer gave up: ${s.reason ?? "bye"}`))) this.afterAttempt(rec);
      return;
    }
    await this.attemptFailed(rec, a, `peer: ${s.reason ?? "bye"}`, false);
  }

  /** The peer's description is applied: the attempt is `connecting`; returns the candidates it held. */
  private remoteApplied(rec: Rec, a: Attempt): Candidate[] {
    this.advance(rec, a, "connecting");
    const held = a.pendingRemote ?? [];
    a.pendingRemote = null;
    return held;
  }

  private async addCandidate(rec: Rec, a: Attempt, c: Candidate): Promise<void> {
    try {
      await this.opts.datapath.call("link.addCandidate", {
        peerUid: rec.peer.uid,
        ...c,
        relayOnly: a.relayOnly,
      });
    } catch (err) {
      this.log.debug("link.addCandidate failed", { peer: rec.peer.bareJid, error: (err as Error).message });
    }
  }

  private takeEarly(uid: string, setup: string): Candidate[] {
    const list = this.early.get(uid);
    const i = list?.findIndex((e) => e.setup === setup) ?? -1;
    if (!list || i < 0) return [];
    const [e] = list.splice(i, 1);
    if (list.length === 0) this.early.delete(uid);
    return e?.cands ?? [];
  }

  // ---- datapath notifications ----------------------------------------------------------------------

  private onLocalCandidate(p: NotificationParamsOf<"link.candidate">): void {
    void this.run(p.peerUid, async () => {
      const rec = this.recs.get(p.peerUid);
      const a = rec && this.attemptOf(rec, p.relayOnly ?? false);
      if (!rec || !a?.setup || !rec.peer.fullJid) return;
      await this.opts.signals
        .sendSignal(rec.peer.fullJid, {
          type: "candidate",
          from: this.self,
          to: rec.peer.uid,
          setup: a.setup,
          candidate: p.candidate,
          mid: p.mid,
        })
        .catch((err: Error) => this.log.debug("candidate not sent", { error: err.message }));
    });
  }

  private onLinkState(p: NotificationParamsOf<"link.state">): void {
    void this.run(p.peerUid, async () => {
      const rec = this.recs.get(p.peerUid);
      const a = rec && this.attemptOf(rec, p.relayOnly ?? false);
      if (!rec || !a) return;
      switch (p.state) {
        case "connected":
          if (a === this.carrier(rec)) this.stopTimer(rec, "grace");
          return this.onAttemptConnected(rec, a, p.path ?? null);
        case "failed":
          if (a.state === "connected") return this.transportLost(rec, a, "link failed");
          a.state = "failed";
          return this.onAttemptFailed(rec, a, p.reason);
        case "disconnected":
          if (a.state !== "connected") return;
          if (a !== this.carrier(rec) || this.otherConnected(rec, a)) {
            // Another transport carries (or can carry) the traffic: no need to wait for this one.
            return this.transportLost(rec, a, "link disconnected");
          }
          if (!rec.timers.grace) {
            this.arm(rec, "grace", this.opts.disconnectGraceMs ?? 5000, async () => {
              if (this.attemptOf(rec, a.relayOnly) !== a) return;
              this.log.info("link disconnected and did not recover", { peer: rec.peer.bareJid });
              await this.transportLost(rec, a, "link disconnected");
            });
          }
          return;
        case "closed":
          // During a setup a `closed` is most likely the link we just removed; only a connected link counts.
          if (a.state === "connected") return this.transportLost(rec, a, "link closed");
          return;
        default:
          return;
      }
    });
  }

  private async onAttemptConnected(rec: Rec, a: Attempt, path: LinkPath | null): Promise<void> {
    a.path = path ?? a.path;
    if (a.state === "connected") {
      this.settle(rec); // the path may have changed
      return;
    }
    clearTimeout(a.setupTimer);
    a.setupTimer = undefined;
    a.state = "connected";
    if (a.relayOnly) rec.relayNeeded = true;
    if (rec.phase !== "connected") {
      this.enter(rec, "connected");
      rec.attempt = 0;
      rec.handshakeRetries = 0;
      rec.upSince = Date.now();
      rec.lastActivity = Date.now();
      rec.setupMs = rec.setupStartedAt === null ? null : rec.upSince - rec.setupStartedAt;
      rec.setupStartedAt = null;
      this.log.info("link up", { peer: rec.peer.bareJid, path: a.path, relayOnly: a.relayOnly });
      this.emit("link-up", this.event(rec, a));
    } else {
      this.log.info("second transport connected", {
        peer: rec.peer.bareJid,
        path: a.path,
        relayOnly: a.relayOnly,
      });
    }
    this.settle(rec);
  }

  /** A transport that never connected failed. The offerer decides what happens; an answerer waits. */
  private async onAttemptFailed(rec: Rec, a: Attempt, reason?: LinkFailure): Promise<void> {
    if (a.role !== "offerer") return;
    if (reason === "handshake" && rec.handshakeRetries < MAX_HANDSHAKE_RETRIES) {
      // ICE found a path; only the DTLS handshake lost a race (see the datapath's Link): the path
      // is fine, so neither back off nor fall back to a relay.
      rec.handshakeRetries++;
      this.log.info("link handshake failed after ICE connected; offering again", { peer: rec.peer.bareJid });
      await this.offerAttempt(rec, a.relayOnly);
      return;
    }
    if (!a.relayOnly && rec.phase !== "connected") {
      if (a.setup) await this.sendBye(rec.peer, a.setup, "ICE failed");
      await this.removeAttempt(rec, a);
      const why = `ICE found no path after ${((Date.now() - a.startedAt) / 1000).toFixed(1)} s`;
      rec.lastFailure = `direct setup: ${why}`;
      if (!(await this.raceNow(rec, why))) this.afterAttempt(rec);
      return;
    }
    this.log.info("link setup failed", { peer: rec.peer.bareJid, relayOnly: a.relayOnly });
    await this.attemptFailed(rec, a, "ICE failed", true);
  }

  /** The direct attempt ended early: start the relay-only one now if it has not started. */
  private async raceNow(rec: Rec, why: string): Promise<boolean> {
    if (!this.opts.hasTurn) return false;
    if (rec.relay) return true; // under way already
    this.stopTimer(rec, "race");
    rec.relayWhy = `direct attempt failed: ${why}`;
    this.log.info("direct link setup failed; starting the relay-only attempt now", {
      peer: rec.peer.bareJid,
      why,
    });
    await this.offerAttempt(rec, true);
    return true;
  }

  /**
   * A connected transport is gone. If the other one is connected it carries the link on (the datapath
   * moved the traffic already); otherwise the link is down and set up again if wanted.
   */
  private async transportLost(rec: Rec, a: Attempt, reason: string): Promise<void> {
    if (this.attemptOf(rec, a.relayOnly) !== a) return;
    const wasCarrier = a === this.carrier(rec);
    await this.removeAttempt(rec, a);
    if (this.carrier(rec)) {
      if (wasCarrier) this.stopTimer(rec, "grace");
      this.log.info("a transport of the link closed; the other carries it", {
        peer: rec.peer.bareJid,
        reason,
      });
      this.settle(rec);
      return;
    }
    this.clearTimers(rec);
    for (const other of this.attempts(rec)) {
      if (other.setup) await this.sendBye(rec.peer, other.setup, reason);
      await this.removeAttempt(rec, other);
    }
    this.emitDown(rec, reason);
    this.retryOrForget(rec, rec.pinned || !reason.startsWith("peer:"));
  }

  /** A link went down: set it up again if we want it and can signal the peer, else forget it. */
  private retryOrForget(rec: Rec, retry = true): void {
    // A peer that is offline (null full JID) cannot be signalled: forget it until it is back.
    if (retry && rec.wanted && rec.peer.fullJid) {
      rec.attempt = 0;
      this.scheduleRetry(rec);
    } else this.forget(rec);
  }

  // ---- idle trimming -------------------------------------------------------------------------------

  /** One poll round (exposed for tests): trims idle on-demand links and notices vanished ones. */
  async poll(): Promise<void> {
    let infos: LinkInfo[];
    try {
      infos = await queryAll(this.opts.datapath, "link.query");
    } catch (err) {
      this.log.debug("link.query failed", { error: (err as Error).message });
      return;
    }
    const byUid = new Map<string, LinkInfo[]>();
    for (const i of infos) byUid.set(i.peerUid, [...(byUid.get(i.peerUid) ?? []), i]);
    const now = Date.now();
    const idleMs = this.opts.links.idleTimeoutSec * 1000;
    for (const rec of [...this.recs.values()]) {
      const found = byUid.get(rec.peer.uid) ?? [];
      if (rec.phase === "connected") {
        if (found.length === 0) {
          void this.run(rec.peer.uid, async () => {
            if (this.recs.get(rec.peer.uid) !== rec || rec.phase !== "connected") return;
            this.clearTimers(rec);
            rec.full = rec.relay = null;
            this.emitDown(rec, "link vanished from the datapath");
            this.retryOrForget(rec);
          });
          continue;
        }
        const c = found.reduce((sum, i) => sum + activity(i), 0);
        if (c !== rec.counters) {
          rec.counters = c;
          rec.lastActivity = now;
        }
        for (const i of found) {
          const a = this.attemptOf(rec, i.relayOnly);
          if (a && i.path) a.path = i.path;
        }
      }
      if (rec.pinned || rec.phase === "offering" || rec.phase === "answering" || rec.phase === "connecting")
        continue;
      if (now - rec.lastActivity > idleMs) {
        this.log.info("removing an idle link", {
          peer: rec.peer.bareJid || rec.peer.uid,
          idleSec: Math.round((now - rec.lastActivity) / 1000),
        });
        void this.removeLink(rec.peer.uid, "idle");
      }
    }
    for (const [uid, list] of this.early) {
      const fresh = list.filter((e) => now - e.at <= this.opts.links.setupTimeoutSec * 1000);
      if (fresh.length === 0) this.early.delete(uid);
      else this.early.set(uid, fresh);
    }
  }

  // ---- helpers -------------------------------------------------------------------------------------

  private async drop(uid: string, reason: string, sayBye: boolean): Promise<void> {
    const rec = this.recs.get(uid);
    if (!rec) return;
    this.clearTimers(rec);
    const wasUp = rec.phase === "connected";
    for (const a of this.attempts(rec)) {
      if (sayBye && a.setup) await this.sendBye(rec.peer, a.setup, reason);
      await this.removeAttempt(rec, a);
    }
    if (wasUp) this.emitDown(rec, reason);
    this.forget(rec);
  }

  private forget(rec: Rec): void {
    if (this.recs.get(rec.peer.uid) !== rec) return;
    this.clearTimers(rec);
    this.recs.delete(rec.peer.uid);
    const qi = this.queue.indexOf(rec.peer.uid);
    if (qi >= 0) this.queue.splice(qi, 1);
    this.replaceDropLogged.delete(rec.peer.uid);
    this.emit("link-removed", rec.peer.uid);
    this.pump();
  }

  /** The peer's setup of this transport is in progress, younger than MIN_REPLACE_MS and not failed. */
  private setupTooRecent(a: Attempt | null): boolean {
    if (!a || (a.state !== "answering" && a.state !== "connecting")) return false;
    return Date.now() - a.startedAt < MIN_REPLACE_MS;
  }

  /** Starts queued links while there are free slots. */
  private pump(): void {
    while (this.queue.length > 0 && this.activeCount() < this.opts.links.maxLinks) {
      const uid = this.queue.shift() as string;
      void this.run(uid, async () => {
        const rec = this.recs.get(uid);
        if (rec && this.stalled(rec) && this.attempts(rec).length === 0) await this.begin(rec);
      });
      // begin() runs later; count it now so the loop does not start too many.
      const rec = this.recs.get(uid);
      if (rec?.phase === "queued") this.enter(rec, "backoff");
    }
  }

  private activeCount(): number {
    let n = 0;
    for (const r of this.recs.values()) if (r.phase !== "queued") n++;
    return n;
  }

  private async sendBye(peer: PeerRef, setup: string, reason: string): Promise<void> {
    if (!peer.fullJid) return;
    await this.opts.signals
      .sendSignal(peer.fullJid, {
        type: "bye",
        from: this.self,
        to: peer.uid,
        setup,
        reason: reason.slice(0, 200),
      })
      .catch((err: Error) => this.log.debug("bye not sent", { error: err.message }));
  }

  /** Forgets one transport and removes it from the datapath (its waiting packets move to the other). */
  private async removeAttempt(rec: Rec, a: Attempt): Promise<void> {
    clearTimeout(a.setupTimer);
    a.setupTimer = undefined;
    if (this.attemptOf(rec, a.relayOnly) !== a) return;
    if (a.relayOnly) rec.relay = null;
    else rec.full = null;
    try {
      await this.opts.datapath.call("link.remove", { peerUid: rec.peer.uid, relayOnly: a.relayOnly });
    } catch (err) {
      this.log.debug("link.remove failed", { peer: rec.peer.uid, error: (err as Error).message });
    }
  }

  private emitDown(rec: Rec, reason: string): void {
    this.log.info("link down", { peer: rec.peer.bareJid || rec.peer.uid, reason });
    rec.upSince = null;
    rec.relayedSince = null;
    rec.lastFailure = `link down: ${reason}`;
    if (rec.phase === "connected") this.enter(rec, "backoff");
    if (rec.unannounced) return;
    this.emit("link-down", { ...this.event(rec), reason });
  }

  private event(rec: Rec, a: Attempt | null = this.carrier(rec) ?? rec.full ?? rec.relay): LinkEvent {
    return { peer: { ...rec.peer }, path: a?.path ?? null, relayOnly: a?.relayOnly ?? false };
  }

  private updatePeerOf(rec: Rec, peer: PeerRef): void {
    rec.peer.fullJid = peer.fullJid ?? rec.peer.fullJid;
    if (peer.bareJid) rec.peer.bareJid = peer.bareJid;
    if (rec.unannounced && rec.peer.fullJid && rec.phase === "connected") {
      rec.unannounced = false;
      this.emit("link-up", this.event(rec));
    }
    // Back online while its link stayed up: direct re-attempts of a relayed link may go on.
    if (rec.phase === "connected" && rec.peer.fullJid) this.settle(rec);
    if (this.stalled(rec) && rec.wanted && rec.peer.fullJid) {
      void this.run(rec.peer.uid, async () => {
        if (this.recs.get(rec.peer.uid) === rec && this.stalled(rec)) await this.offer(rec);
      });
    }
  }

  private newRec(peer: PeerRef, wanted: boolean, pinned: boolean): Rec {
    return {
      peer: { ...peer },
      phase: "backoff",
      wanted,
      pinned,
      full: null,
      relay: null,
      relayNeeded: false,
      attempt: 0,
      upgrades: 0,
      handshakeRetries: 0,
      upSince: null,
      lastActivity: Date.now(),
      counters: 0,
      unannounced: false,
      timers: {},
      due: {},
      setupStartedAt: null,
      setupMs: null,
      relayedSince: null,
      relayWhy: null,
      lastFailure: null,
    };
  }

  private newAttempt<S extends Attempt["state"]>(
    relayOnly: boolean,
    setup: string | null,
    role: Attempt["role"],
    state: S,
  ): Attempt & { state: S } {
    return {
      relayOnly,
      setup,
      role,
      state,
      pendingRemote: [],
      path: null,
      startedAt: Date.now(),
    };
  }

  /** Adds a transport's attempt; a link not yet connected takes the attempt's phase. */
  private setAttempt(rec: Rec, a: Attempt & { state: "offering" | "answering" | "connected" }): void {
    if (a.relayOnly) rec.relay = a;
    else rec.full = a;
    if (rec.phase !== "connected") this.enter(rec, a.state);
  }

  /** An attempt's setup moved on; so does the phase of a link not yet connected. */
  private advance(rec: Rec, a: Attempt, state: "connecting"): void {
    if (a.state === "connected") return;
    a.state = state;
    if (rec.phase !== "connected" && this.attemptOf(rec, a.relayOnly) === a) this.enter(rec, state);
  }

  private attemptOf(rec: Rec, relayOnly: boolean): Attempt | null {
    return relayOnly ? rec.relay : rec.full;
  }

  private attemptBySetup(rec: Rec, setup: string): Attempt | null {
    return [rec.full, rec.relay].find((a) => a?.setup === setup) ?? null;
  }

  private attempts(rec: Rec): Attempt[] {
    return [rec.full, rec.relay].filter((a): a is Attempt => a !== null);
  }

  /**
   * The connected transport that carries the link, as the datapath picks it (transports.ts): a direct
   * path first, then the relay-only transport, then a full one connected through a relay.
   */
  private carrier(rec: Rec): Attempt | null {
    const rank = (a: Attempt | null) =>
      a?.state !== "connected" ? 0 : !isRelayed(a) ? 3 : a.relayOnly ? 2 : 1;
    const best = rank(rec.full) >= rank(rec.relay) ? rec.full : rec.relay;
    return rank(best) > 0 ? best : null;
  }

  private otherConnected(rec: Rec, a: Attempt): boolean {
    return (a === rec.full ? rec.relay : rec.full)?.state === "connected";
  }

  // ---- phases and timers (the table at the top of the file) -----------------------------------------

  /** Sets the link's phase (the one place it changes); the timers the new phase does not own stop. */
  private enter(rec: Rec, phase: LinkPhase): void {
    const owned = PHASE_TIMERS[phase];
    for (const t of LINK_TIMERS) if (!owned.includes(t)) this.stopTimer(rec, t);
    rec.phase = phase;
  }

  /**
   * Arms one of the link's timers; the current phase must own it. `fire` runs in the peer's queue,
   * and only while the record is current and still in a phase that owns the timer.
   */
  private arm(rec: Rec, timer: LinkTimer, ms: number, fire: () => Promise<void>): void {
    if (!PHASE_TIMERS[rec.phase].includes(timer))
      throw new Error(`link timer ${timer} armed in phase ${rec.phase}`);
    clearTimeout(rec.timers[timer]);
    rec.due[timer] = Date.now() + ms;
    rec.timers[timer] = setTimeout(() => {
      rec.timers[timer] = undefined;
      rec.due[timer] = undefined;
      void this.run(rec.peer.uid, async () => {
        if (this.recs.get(rec.peer.uid) === rec && PHASE_TIMERS[rec.phase].includes(timer)) await fire();
      });
    }, ms);
  }

  private stopTimer(rec: Rec, timer: LinkTimer): void {
    clearTimeout(rec.timers[timer]);
    rec.timers[timer] = undefined;
    rec.due[timer] = undefined;
  }

  /** Stops every timer of the link and its attempts' setup timers. */
  private clearTimers(rec: Rec): void {
    for (const t of LINK_TIMERS) this.stopTimer(rec, t);
    for (const a of this.attempts(rec)) {
      clearTimeout(a.setupTimer);
      a.setupTimer = undefined;
    }
  }

  /** In backoff with no retry scheduled: the peer was offline, or the link was not started yet. */
  private stalled(rec: Rec): boolean {
    return rec.phase === "backoff" && rec.timers.retry === undefined;
  }

  /** Runs `fn` after everything queued for this peer; errors are logged, never thrown to callers. */
  private run(uid: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.chains.get(uid) ?? Promise.resolve();
    const next = prev
      .then(fn)
      .catch((err: Error) => this.log.error("link manager error", { peerUid: uid, error: err.message }));
    this.chains.set(uid, next);
    void next.then(() => {
      if (this.chains.get(uid) === next) this.chains.delete(uid);
    });
    return next;
  }
}

const clock = (t: number): string => new Date(t).toTimeString().slice(0, 8);
const inSec = (t: number, now: number): string => `${Math.max(0, Math.round((t - now) / 1000))} s`;

/** The status line of a link that is not directly connected (null when it is). */
function whyNotDirect(r: Rec, nextAttemptAt: number | null, now: number): string | null {
  switch (r.phase) {
    case "connected": {
      if (r.relayedSince === null) return null;
      const next = r.due.upgrade ? `; next direct attempt in ${inSec(r.due.upgrade, now)}` : "";
      return `${r.relayWhy ?? "relayed"}; relay since ${clock(r.relayedSince)}${next}`;
    }
    case "queued":
      return "waiting for a free link slot (links.maxLinks)";
    case "waiting":
      return "waiting for the peer's offer (the smaller UID offers first)";
    case "backoff": {
      const last = r.lastFailure ?? "not set up yet";
      if (nextAttemptAt !== null) return `${last}; retry ${r.attempt} in ${inSec(nextAttemptAt, now)}`;
      return `${last}; ${r.peer.fullJid ? "no retry scheduled" : "peer offline, waiting for its presence"}`;
    }
    default: {
      const since = r.setupStartedAt === null ? "" : ` for ${((now - r.setupStartedAt) / 1000).toFixed(1)} s`;
      const racing = r.relay ? `; relay-only attempt racing (${r.relayWhy ?? "relay fallback"})` : "";
      return `setting up (${r.phase})${since}${racing}`;
    }
  }
}

function activity(info: LinkInfo): number {
  return info.rxPackets + info.txPackets;
}
