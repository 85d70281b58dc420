import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { LinkFailure, LinkInfo, LinkPath, NotificationParamsOf, Signal } from "@tincan/protocol";
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
 * Phases of a link in the manager (see README "Link manager state machine"):
 * - `queued`: wanted, waiting for a free slot (maxLinks)
 * - `waiting`: wanted and pinned, but the peer has the smaller UID and is expected to offer first
 * - `offering`: we created the link and sent an offer; waiting for the answer
 * - `answering`: applying a peer's offer (link.accept)
 * - `connecting`: descriptions exchanged, ICE/DTLS under way
 * - `connected`
 * - `backoff`: a setup failed; a retry is scheduled
 */
export type LinkPhase =
  | "queued"
  | "waiting"
  | "offering"
  | "answering"
  | "connecting"
  | "connected"
  | "backoff";

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
}

interface Candidate {
  candidate: string;
  mid: string;
}

interface Rec {
  peer: PeerRef;
  phase: LinkPhase;
  /** This side wants the link (ensureLink); a link only the peer wanted is not retried by us. */
  wanted: boolean;
  /** Exempt from idle trimming. */
  pinned: boolean;
  setup: string | null;
  /** When the current setup started (a peer's new offer replaces it only MIN_REPLACE_MS later). */
  setupAt: number;
  /** The datapath reported the current setup's link `failed`. */
  setupFailed: boolean;
  role: "offerer" | "answerer" | null;
  relayOnly: boolean;
  /** A relay-only attempt connected after a direct one did not: start relay-only next time. */
  relayNeeded: boolean;
  remoteApplied: boolean;
  pendingRemote: Candidate[];
  /** A datapath link may exist for this peer (link.remove needed before a new one). */
  dpLink: boolean;
  attempt: number;
  /** Setups of this attempt re-offered at once after a failed DTLS handshake. */
  handshakeRetries: number;
  path: LinkPath | null;
  upSince: number | null;
  lastActivity: number;
  counters: number;
  /** Adopted at start and not yet announced with link-up (peer unknown until presence). */
  unannounced: boolean;
  setupTimer?: NodeJS.Timeout | undefined;
  fallbackTimer?: NodeJS.Timeout | undefined;
  retryTimer?: NodeJS.Timeout | undefined;
  graceTimer?: NodeJS.Timeout | undefined;
}

const MAX_PENDING_CANDIDATES = 64;
const MAX_HANDSHAKE_RETRIES = 2;
/**
 * One setup per peer at a time: a peer's new offer replaces its setup in progress only this long
 * after that setup started, else it is dropped (counted). A flood of offers then builds one
 * PeerConnection per interval, not one per offer. A connected link is replaced at once (the peer's
 * datapath restarted and lost it); the per-peer signal rate limit bounds how often.
 */
export const MIN_REPLACE_MS = 1000;

export function newSetupId(): string {
  return randomBytes(9).toString("base64url");
}

/**
 * Owns link setup, retry, relay fallback and idle trimming, one record per peer UID.
 * Every operation on one peer runs in that peer's queue, so RPCs and signals of a peer never interleave.
 *
 * Events: `link-setup` (LinkEvent: an attempt starts, as offerer or answerer), `link-up` (LinkEvent),
 * `link-down` (LinkEvent with reason), `link-removed` (peer UID: the manager forgot the peer's record,
 * also for an adopted link that was never announced).
 */
export class LinkManager extends EventEmitter {
  private readonly recs = new Map<string, Rec>();
  private readonly chains = new Map<string, Promise<void>>();
  /** Candidates that arrived before their offer: peer uid -> setup id -> candidates. */
  private readonly early = new Map<string, { setup: string; cands: Candidate[]; at: number }>();
  private readonly queue: string[] = [];
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly log: Log;
  private readonly self: string;
  /** Offers dropped because the same peer's setup was still in progress. */
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

  /** Stops timers and notification handlers (links are left as they are; see removeAll). */
  stop(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    for (const rec of this.recs.values()) this.clearTimers(rec, true);
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
        if (rec.phase === "backoff" && rec.retryTimer === undefined) await this.offer(rec);
        return;
      }
      rec = this.newRec(peer, true, opts.pinned ?? false);
      this.recs.set(peer.uid, rec);
      if (this.activeCount() > this.opts.links.maxLinks) {
        rec.phase = "queued";
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
   * data plane decides when it is dead) and learns the peer's next full JID; anything not connected is
   * dropped without signalling (there is nobody to signal). Resolves true when the link stays.
   */
  async peerOffline(peerUid: string): Promise<boolean> {
    let kept = false;
    await this.run(peerUid, async () => {
      const rec = this.recs.get(peerUid);
      if (rec?.phase === "connected" && rec.dpLink) {
        rec.peer.fullJid = null;
        kept = true;
        this.log.info("peer offline; its link stays while the datapath keeps it connected", {
          peer: rec.peer.bareJid || peerUid,
        });
        return;
      }
      await this.drop(peerUid, "peer offline", false);
    });
    return kept;
  }

  /** A connected link to this peer exists (in the datapath, as far as we know). */
  isConnected(peerUid: string): boolean {
    const rec = this.recs.get(peerUid);
    return rec?.phase === "connected" && rec.dpLink;
  }

  /** The peer's full JID changed (new presence): use it for signals. */
  updatePeer(peer: PeerRef): Promise<void> {
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
    return [...this.recs.values()].map((r) => ({
      peer: { ...r.peer },
      phase: r.phase,
      pinned: r.pinned,
      wanted: r.wanted,
      relayOnly: r.relayOnly,
      path: r.path,
      upSince: r.upSince,
      lastActivity: r.lastActivity,
      attempt: r.attempt,
    }));
  }

  /** Removes every link this manager knows (shutdown). */
  async removeAll(reason: string): Promise<void> {
    await Promise.all([...this.recs.keys()].map((uid) => this.removeLink(uid, reason)));
  }

  /**
   * At controller start: adopt the datapath's connected links (they keep running; the peer is filled in
   * when its presence arrives) and remove half-set-up ones.
   */
  async sync(): Promise<void> {
    const infos = await queryAll(this.opts.datapath, "link.query");
    for (const info of infos) {
      if (this.recs.has(info.peerUid)) continue;
      if (info.state === "connected") {
        const rec = this.newRec({ uid: info.peerUid, bareJid: "", fullJid: null }, false, false);
        rec.phase = "connected";
        rec.dpLink = true;
        rec.path = info.path;
        rec.relayOnly = info.relayOnly;
        rec.upSince = Date.now();
        rec.counters = activity(info);
        rec.unannounced = true;
        this.recs.set(info.peerUid, rec);
        this.log.info("adopted an existing link", { peerUid: info.peerUid, path: info.path });
      } else {
        await this.opts.datapath.call("link.remove", { peerUid: info.peerUid }).catch(() => {});
      }
    }
  }

  /**
   * The datapath restarted and lost every link. Its peers still hold theirs and would only notice
   * after their silence limit, so every link that was up or being set up is offered again at once,
   * whatever the UID order (the peer takes a fresh offer in place of its dead link); links of peers
   * that are offline are forgotten (nobody to signal).
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
          const wasActive = wasUp || rec.setup !== null;
          // A link we cannot signal (peer offline) is left to the datapath's liveness, unless it is gone.
          if (!datapathLost && !(wasActive && rec.peer.fullJid)) return;
          this.clearTimers(rec, true);
          if (datapathLost) rec.dpLink = false;
          if (wasUp) this.emitDown(rec, reason);
          if (!rec.peer.fullJid || (!rec.wanted && !wasActive)) {
            this.forget(rec);
            return;
          }
          rec.attempt = 0;
          if (wasActive) {
            await this.offer(rec);
          } else await this.begin(rec);
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
      rec.phase = "waiting";
      const ms = this.opts.links.setupTimeoutSec * 1000;
      rec.retryTimer = setTimeout(() => {
        rec.retryTimer = undefined;
        void this.run(rec.peer.uid, async () => {
          if (this.recs.get(rec.peer.uid) === rec && rec.phase === "waiting") await this.offer(rec);
        });
      }, ms);
      return;
    }
    await this.offer(rec);
  }

  private async offer(rec: Rec, forceRelay?: boolean): Promise<void> {
    this.clearTimers(rec, false);
    if (rec.dpLink) await this.dpRemove(rec);
    const peer = rec.peer;
    if (!peer.fullJid) {
      rec.phase = "backoff"; // peer not online: ensureLink/updatePeer restarts it
      return;
    }
    const { links, hasTurn } = this.opts;
    const relayOnly = forceRelay ?? (hasTurn && (rec.relayNeeded || links.relayFallbackSec === 0));
    const setup = newSetupId();
    Object.assign(rec, {
      setup,
      setupAt: Date.now(),
      setupFailed: false,
      role: "offerer",
      phase: "offering",
      relayOnly,
      remoteApplied: false,
    });
    rec.pendingRemote = [];
    this.log.debug("offering a link", { peer: peer.bareJid, setup, relayOnly });
    this.emit("link-setup", this.event(rec));
    try {
      rec.dpLink = true;
      const { description } = await this.opts.datapath.call("link.create", { peerUid: peer.uid, relayOnly });
      // The setup's time starts when the datapath has made the offer (a loaded one can take seconds).
      this.armSetupTimer(rec, setup);
      if (!relayOnly && hasTurn) {
        rec.fallbackTimer = setTimeout(() => {
          rec.fallbackTimer = undefined;
          void this.run(peer.uid, () => this.relayFallback(rec, setup, "not connected in time"));
        }, links.relayFallbackSec * 1000);
      }
      await this.opts.signals.sendSignal(peer.fullJid, {
        type: "offer",
        from: this.self,
        to: peer.uid,
        setup,
        relayOnly,
        description,
      });
      this.log.debug("offer sent", { peer: peer.bareJid, setup });
    } catch (err) {
      this.log.warn("link offer failed", { peer: peer.bareJid, error: (err as Error).message });
      await this.setupFailed(rec, "offer failed", false);
    }
  }

  /** Direct setup not connected after relayFallbackSec (or ICE failed): try again relay-only. */
  private async relayFallback(rec: Rec, setup: string, why: string): Promise<void> {
    if (this.recs.get(rec.peer.uid) !== rec || rec.setup !== setup || rec.phase === "connected") return;
    if (rec.role !== "offerer" || rec.relayOnly || !this.opts.hasTurn) return;
    this.log.info("direct link setup stalled; falling back to a relay-only attempt", {
      peer: rec.peer.bareJid,
      why,
    });
    await this.offer(rec, true);
  }

  private armSetupTimer(rec: Rec, setup: string): void {
    rec.setupTimer = setTimeout(() => {
      rec.setupTimer = undefined;
      void this.run(rec.peer.uid, async () => {
        const current = () =>
          this.recs.get(rec.peer.uid) === rec && rec.setup === setup && rec.phase !== "connected";
        if (!current()) return;
        // On a loaded host the link's `connected` notification may still wait in our socket behind
        // others: ask the datapath before giving up, or we would tear down (and make the peer tear
        // down) a link that works.
        const state = await this.datapathLinkInfo(rec.peer.uid);
        if (!current()) return;
        if (state?.state === "connected") {
          await this.onConnected(rec, state.path);
          return;
        }
        this.log.info("link setup timed out", { peer: rec.peer.bareJid, setup, relayOnly: rec.relayOnly });
        await this.setupFailed(rec, "setup timeout", true);
      });
    }, this.opts.links.setupTimeoutSec * 1000);
  }

  private async datapathLinkInfo(peerUid: string): Promise<LinkInfo | undefined> {
    try {
      return (await this.opts.datapath.call("link.query", { peerUid }))[0];
    } catch {
      return undefined;
    }
  }

  /** A setup attempt is over without a link: clean up, then retry with backoff if we want the link. */
  private async setupFailed(rec: Rec, reason: string, sayBye: boolean): Promise<void> {
    this.clearTimers(rec, false);
    if (sayBye) await this.bye(rec, reason);
    if (rec.dpLink) await this.dpRemove(rec);
    if (rec.wanted) this.scheduleRetry(rec);
    else this.forget(rec);
  }

  private scheduleRetry(rec: Rec): void {
    rec.phase = "backoff";
    rec.setup = null;
    rec.attempt++;
    rec.handshakeRetries = 0;
    const base = Math.min(this.opts.maxBackoffMs ?? 60_000, 1000 * 2 ** (rec.attempt - 1));
    const delay = Math.round(base * (0.9 + 0.2 * Math.random()));
    this.log.debug("link retry scheduled", { peer: rec.peer.bareJid, attempt: rec.attempt, inMs: delay });
    rec.retryTimer = setTimeout(() => {
      rec.retryTimer = undefined;
      void this.run(rec.peer.uid, async () => {
        if (this.recs.get(rec.peer.uid) === rec && rec.phase === "backoff" && rec.wanted)
          await this.offer(rec);
      });
    }, delay);
  }

  // ---- incoming signals ----------------------------------------------------------------------------

  private async onOffer(peer: PeerRef, s: Extract<Signal, { type: "offer" }>): Promise<void> {
    if (!this.opts.admit(peer)) return;
    let rec = this.recs.get(peer.uid);
    if (rec?.setup === s.setup) return; // duplicate
    if (rec && rec.phase === "offering" && this.self < peer.uid) {
      this.log.debug("glare: our offer wins (smaller UID)", { peer: peer.bareJid });
      return;
    }
    if (rec && this.setupTooRecent(rec)) {
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
      if (rec.phase === "offering")
        this.log.debug("glare: the peer's offer wins (smaller UID)", { peer: peer.bareJid });
      this.updatePeerOf(rec, peer);
      this.clearTimers(rec, false);
      if (rec.phase === "queued") this.queue.splice(this.queue.indexOf(peer.uid), 1);
      if (rec.phase === "connected") this.emitDown(rec, "peer set the link up again");
      if (rec.dpLink) await this.dpRemove(rec);
    }
    const early = this.early.get(peer.uid);
    this.early.delete(peer.uid);
    Object.assign(rec, {
      setup: s.setup,
      setupAt: Date.now(),
      setupFailed: false,
      role: "answerer",
      phase: "answering",
      relayOnly: s.relayOnly,
      remoteApplied: false,
      pendingRemote: early?.setup === s.setup ? early.cands : [],
    });
    this.armSetupTimer(rec, s.setup);
    this.emit("link-setup", this.event(rec));
    try {
      rec.dpLink = true;
      const { description } = await this.opts.datapath.call("link.accept", {
        peerUid: peer.uid,
        description: s.description,
        relayOnly: s.relayOnly,
      });
      rec.phase = "connecting";
      rec.remoteApplied = true;
      await this.opts.signals.sendSignal(peer.fullJid ?? "", {
        type: "answer",
        from: this.self,
        to: peer.uid,
        setup: s.setup,
        description,
      });
      await this.flushRemote(rec);
    } catch (err) {
      this.log.warn("accepting a link failed", { peer: peer.bareJid, error: (err as Error).message });
      await this.setupFailed(rec, "accept failed", true);
    }
  }

  private async onAnswer(s: Extract<Signal, { type: "answer" }>): Promise<void> {
    const rec = this.recs.get(s.from);
    if (!rec || rec.setup !== s.setup || rec.role !== "offerer" || rec.phase !== "offering") {
      this.log.debug("ignored an answer for an unknown or stale setup", { from: s.from, setup: s.setup });
      return;
    }
    try {
      await this.opts.datapath.call("link.complete", { peerUid: s.from, description: s.description });
      rec.phase = "connecting";
      rec.remoteApplied = true;
      await this.flushRemote(rec);
    } catch (err) {
      this.log.warn("completing a link failed", { peer: rec.peer.bareJid, error: (err as Error).message });
      await this.setupFailed(rec, "complete failed", true);
    }
  }

  private async onRemoteCandidate(s: Extract<Signal, { type: "candidate" }>): Promise<void> {
    const rec = this.recs.get(s.from);
    const cand = { candidate: s.candidate, mid: s.mid };
    if (!rec || rec.setup !== s.setup) {
      // Maybe the offer it belongs to is still on its way: keep a few, for the newest setup only.
      let e = this.early.get(s.from);
      if (!e || e.setup !== s.setup) {
        e = { setup: s.setup, cands: [], at: Date.now() };
        this.early.set(s.from, e);
      }
      if (e.cands.length < MAX_PENDING_CANDIDATES) e.cands.push(cand);
      return;
    }
    if (!rec.remoteApplied) {
      if (rec.pendingRemote.length < MAX_PENDING_CANDIDATES) rec.pendingRemote.push(cand);
      return;
    }
    await this.addCandidate(rec, cand);
  }

  private async onBye(s: Extract<Signal, { type: "bye" }>): Promise<void> {
    const rec = this.recs.get(s.from);
    if (!rec || rec.setup !== s.setup) return;
    this.log.info("peer closed the link", { peer: rec.peer.bareJid, reason: s.reason });
    const wasUp = rec.phase === "connected";
    this.clearTimers(rec, false);
    if (rec.dpLink) await this.dpRemove(rec);
    if (wasUp) this.emitDown(rec, `peer: ${s.reason ?? "bye"}`);
    if (
      !wasUp &&
      rec.wanted &&
      rec.role === "offerer" &&
      !rec.relayOnly &&
      this.opts.hasTurn &&
      s.reason !== "busy"
    ) {
      await this.relayFallback(rec, s.setup, `peer gave up: ${s.reason ?? "bye"}`);
      return;
    }
    if (rec.wanted && (rec.pinned || !wasUp)) this.scheduleRetry(rec);
    else this.forget(rec);
  }

  private async flushRemote(rec: Rec): Promise<void> {
    const pending = rec.pendingRemote;
    rec.pendingRemote = [];
    for (const c of pending) await this.addCandidate(rec, c);
  }

  private async addCandidate(rec: Rec, c: Candidate): Promise<void> {
    try {
      await this.opts.datapath.call("link.addCandidate", { peerUid: rec.peer.uid, ...c });
    } catch (err) {
      this.log.debug("link.addCandidate failed", { peer: rec.peer.bareJid, error: (err as Error).message });
    }
  }

  // ---- datapath notifications ----------------------------------------------------------------------

  private onLocalCandidate(p: NotificationParamsOf<"link.candidate">): void {
    void this.run(p.peerUid, async () => {
      const rec = this.recs.get(p.peerUid);
      if (!rec?.setup || !rec.peer.fullJid || rec.phase === "backoff" || rec.phase === "queued") return;
      await this.opts.signals
        .sendSignal(rec.peer.fullJid, {
          type: "candidate",
          from: this.self,
          to: rec.peer.uid,
          setup: rec.setup,
          candidate: p.candidate,
          mid: p.mid,
        })
        .catch((err: Error) => this.log.debug("candidate not sent", { error: err.message }));
    });
  }

  private onLinkState(p: NotificationParamsOf<"link.state">): void {
    void this.run(p.peerUid, async () => {
      const rec = this.recs.get(p.peerUid);
      if (!rec?.dpLink) return;
      switch (p.state) {
        case "connected":
          return this.onConnected(rec, p.path ?? null);
        case "failed":
          return this.onFailed(rec, "failed", p.reason);
        case "disconnected":
          if (rec.phase === "connected" && !rec.graceTimer) {
            rec.graceTimer = setTimeout(() => {
              rec.graceTimer = undefined;
              void this.run(rec.peer.uid, async () => {
                if (this.recs.get(rec.peer.uid) === rec) await this.onFailed(rec, "disconnected");
              });
            }, this.opts.disconnectGraceMs ?? 5000);
          }
          return;
        case "closed":
          // During a setup a `closed` is most likely the link we just removed; only a connected link counts.
          if (rec.phase === "connected") return this.onFailed(rec, "closed");
          return;
        default:
          return;
      }
    });
  }

  private async onConnected(rec: Rec, path: LinkPath | null): Promise<void> {
    if (rec.graceTimer) clearTimeout(rec.graceTimer);
    rec.graceTimer = undefined;
    rec.path = path ?? rec.path;
    if (rec.phase === "connected") return;
    if (rec.phase !== "connecting" && rec.phase !== "answering" && rec.phase !== "offering") return;
    this.clearTimers(rec, false);
    rec.phase = "connected";
    rec.attempt = 0;
    rec.handshakeRetries = 0;
    rec.upSince = Date.now();
    rec.lastActivity = Date.now();
    if (rec.relayOnly && this.opts.hasTurn) rec.relayNeeded = true;
    this.log.info("link up", { peer: rec.peer.bareJid, path: rec.path, relayOnly: rec.relayOnly });
    this.emit("link-up", this.event(rec));
  }

  private async onFailed(rec: Rec, state: string, reason?: LinkFailure): Promise<void> {
    if (state === "failed") rec.setupFailed = true;
    if (rec.phase === "connected") {
      if (state === "disconnected")
        this.log.info("link disconnected and did not recover", { peer: rec.peer.bareJid });
      this.clearTimers(rec, false);
      await this.dpRemove(rec);
      this.emitDown(rec, `link ${state}`);
      // A peer that is offline (null full JID) cannot be signalled: forget it until it is back.
      if (rec.wanted && rec.peer.fullJid) {
        rec.attempt = 0;
        this.scheduleRetry(rec);
      } else this.forget(rec);
      return;
    }
    // The offerer decides what happens to a failed setup; an answerer waits for a new offer or its timeout.
    if (state !== "failed" || rec.setup === null || rec.role !== "offerer") return;
    if (reason === "handshake" && rec.handshakeRetries < MAX_HANDSHAKE_RETRIES) {
      // ICE found a path; only the DTLS handshake lost a race (see the datapath's Link): the path
      // is fine, so neither back off nor fall back to a relay.
      rec.handshakeRetries++;
      this.log.info("link handshake failed after ICE connected; offering again", { peer: rec.peer.bareJid });
      await this.offer(rec, rec.relayOnly);
      return;
    }
    if (!rec.relayOnly && this.opts.hasTurn) {
      await this.relayFallback(rec, rec.setup, "ICE failed");
      return;
    }
    this.log.info("link setup failed", { peer: rec.peer.bareJid, relayOnly: rec.relayOnly });
    await this.setupFailed(rec, "ICE failed", true);
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
    const byUid = new Map(infos.map((i) => [i.peerUid, i]));
    const now = Date.now();
    const idleMs = this.opts.links.idleTimeoutSec * 1000;
    for (const rec of [...this.recs.values()]) {
      const info = byUid.get(rec.peer.uid);
      if (rec.phase === "connected") {
        if (!info) {
          void this.run(rec.peer.uid, async () => {
            if (this.recs.get(rec.peer.uid) !== rec || rec.phase !== "connected") return;
            rec.dpLink = false;
            await this.onFailed(rec, "vanished from the datapath");
          });
          continue;
        }
        const c = activity(info);
        if (c !== rec.counters) {
          rec.counters = c;
          rec.lastActivity = now;
        }
        if (info.path) rec.path = info.path;
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
    for (const [uid, e] of this.early) {
      if (now - e.at > this.opts.links.setupTimeoutSec * 1000) this.early.delete(uid);
    }
  }

  // ---- helpers -------------------------------------------------------------------------------------

  private async drop(uid: string, reason: string, sayBye: boolean): Promise<void> {
    const rec = this.recs.get(uid);
    if (!rec) return;
    this.clearTimers(rec, true);
    if (sayBye) await this.bye(rec, reason);
    if (rec.dpLink) await this.dpRemove(rec);
    if (rec.phase === "connected") this.emitDown(rec, reason);
    this.forget(rec);
  }

  private forget(rec: Rec): void {
    if (this.recs.get(rec.peer.uid) !== rec) return;
    this.clearTimers(rec, true);
    this.recs.delete(rec.peer.uid);
    const qi = this.queue.indexOf(rec.peer.uid);
    if (qi >= 0) this.queue.splice(qi, 1);
    this.replaceDropLogged.delete(rec.peer.uid);
    this.emit("link-removed", rec.peer.uid);
    this.pump();
  }

  /** The peer's current setup is in progress, younger than MIN_REPLACE_MS and not failed. */
  private setupTooRecent(rec: Rec): boolean {
    if (rec.setup === null || rec.setupFailed) return false;
    if (rec.phase !== "answering" && rec.phase !== "connecting") return false;
    return Date.now() - rec.setupAt < MIN_REPLACE_MS;
  }

  /** Starts queued links while there are free slots. */
  private pump(): void {
    while (this.queue.length > 0 && this.activeCount() < this.opts.links.maxLinks) {
      const uid = this.queue.shift() as string;
      void this.run(uid, async () => {
        const rec = this.recs.get(uid);
        if (rec?.phase === "backoff" && rec.setup === null && rec.retryTimer === undefined)
          await this.begin(rec);
      });
      // begin() runs later; count it now so the loop does not start too many.
      const rec = this.recs.get(uid);
      if (rec?.phase === "queued") rec.phase = "backoff";
    }
  }

  private activeCount(): number {
    let n = 0;
    for (const r of this.recs.values()) if (r.phase !== "queued") n++;
    return n;
  }

  private async bye(rec: Rec, reason: string): Promise<void> {
    if (rec.setup && rec.peer.fullJid) await this.sendBye(rec.peer, rec.setup, reason);
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

  private async dpRemove(rec: Rec): Promise<void> {
    rec.dpLink = false;
    try {
      await this.opts.datapath.call("link.remove", { peerUid: rec.peer.uid });
    } catch (err) {
      this.log.debug("link.remove failed", { peer: rec.peer.uid, error: (err as Error).message });
    }
  }

  private emitDown(rec: Rec, reason: string): void {
    this.log.info("link down", { peer: rec.peer.bareJid || rec.peer.uid, reason });
    rec.upSince = null;
    if (rec.unannounced) return;
    this.emit("link-down", { ...this.event(rec), reason });
  }

  private event(rec: Rec): LinkEvent {
    return { peer: { ...rec.peer }, path: rec.path, relayOnly: rec.relayOnly };
  }

  private updatePeerOf(rec: Rec, peer: PeerRef): void {
    rec.peer.fullJid = peer.fullJid ?? rec.peer.fullJid;
    if (peer.bareJid) rec.peer.bareJid = peer.bareJid;
    if (rec.unannounced && rec.peer.fullJid && rec.phase === "connected") {
      rec.unannounced = false;
      this.emit("link-up", this.event(rec));
    }
    if (rec.phase === "backoff" && rec.retryTimer === undefined && rec.wanted && rec.peer.fullJid) {
      void this.run(rec.peer.uid, async () => {
        if (this.recs.get(rec.peer.uid) === rec && rec.phase === "backoff" && rec.retryTimer === undefined) {
          await this.offer(rec);
        }
      });
    }
  }

  private newRec(peer: PeerRef, wanted: boolean, pinned: boolean): Rec {
    return {
      peer: { ...peer },
      phase: "backoff",
      wanted,
      pinned,
      setup: null,
      setupAt: 0,
      setupFailed: false,
      role: null,
      relayOnly: false,
      relayNeeded: false,
      remoteApplied: false,
      pendingRemote: [],
      dpLink: false,
      attempt: 0,
      handshakeRetries: 0,
      path: null,
      upSince: null,
      lastActivity: Date.now(),
      counters: 0,
      unannounced: false,
    };
  }

  private clearTimers(rec: Rec, all: boolean): void {
    clearTimeout(rec.setupTimer);
    clearTimeout(rec.fallbackTimer);
    clearTimeout(rec.retryTimer);
    rec.setupTimer = rec.fallbackTimer = rec.retryTimer = undefined;
    if (all) {
      clearTimeout(rec.graceTimer);
      rec.graceTimer = undefined;
    }
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

function activity(info: LinkInfo): number {
  return info.rxPackets + info.txPackets;
}
