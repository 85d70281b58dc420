import type { FastPathInfo, FastPhase } from "@tincan/protocol";
import { ControlFrames, FRAME_HEADROOM, microseconds, PROBE_BYTES } from "../wire/index.js";
import { deriveFastKeys, type FastKeyPair, newFastKeyPair, wipeKeys } from "./keys.js";
import { encodeFastHello, type FastCandidate, type FastEndpoint, type FastHello } from "./offer.js";
import type { RelayBinding } from "./relay.js";
import type { FastSocketLike } from "./socket.js";

/**
 * The first probes to the peer's candidates (and then to the endpoint found) are this far apart; the
 * gap doubles after each round up to FAST_PROBE_MAX_SPACING_MS. A loaded host answers late, not
 * sooner for being asked 60 times: a full mesh of 50 nodes on 2 cores sent ~5,000 probes a second.
 */
export const FAST_PROBE_SPACING_MS = 50;
export const FAST_PROBE_MAX_SPACING_MS = 400;
/** An agreement whose path answers no probe within this long has failed. */
export const FAST_PROBE_FOR_MS = 3000;
/** Frames sent on the fast path and no probe answered for this long: probed every tick. */
export const FAST_QUIET_MS = 1000;
/** ... and for this long: back to node-datachannel. */
export const FAST_SILENT_MS = 3000;
/** Waits before trying the fast path again after the 1st, 2nd, 3rd and later failures. */
export const FAST_RETRY_MS = [10_000, 30_000, 60_000];
/** A replaced session still takes datagrams this long (those in flight, the peer switching later). */
export const FAST_GRACE_MS = 5000;
/** Packets sent under one key before it is replaced. */
export const FAST_REKEY_PACKETS = 2 ** 32;
/** An offer unanswered this long is given up. */
const OFFER_TIMEOUT_MS = 5000;
/** Up this long, a path's failure count starts over. */
const STABLE_MS = 60_000;

/** What a link's fast path needs of the datapath: the socket, receiver indexes, our addresses. */
export interface FastHost {
  socketFor(family: 4 | 6): FastSocketLike | null;
  /** A receiver index no other session of the datapath uses; frames to it come to `path`. */
  newIndex(path: FastPath): number;
  releaseIndex(index: number): void;
  /**
   * Our endpoints of the family (host addresses with the socket's port, STUN-mapped ones); with
   * `relayed`, our relayed address on the TURN server alone.
   */
  localCandidates(family: 4 | 6, relayed?: boolean): FastCandidate[];
  /**
   * Readies what localCandidates gives: STUN-mapped addresses asked again when stale, with `relayed`
   * the TURN allocation `path` then uses. null: ready now; false: no relayed address.
   */
  prepare(path: FastPath, family: 4 | 6, relayed: boolean): Promise<boolean> | null;
  /** A TURN server for relayed fast paths of the family is configured. */
  canRelay(family: 4 | 6): boolean;
  /** A channel on our allocation to the peer's relayed address (null: refused). */
  bindRelay(peer: FastEndpoint): Promise<RelayBinding | null>;
  unbindRelay(peer: FastEndpoint): void;
  /** A relayed path stopped answering: the allocation is checked before its next use. */
  relayFailed(): void;
  /** `path` no longer needs the allocation. */
  releaseRelay(path: FastPath): void;
  /** The socket has pending datagrams: flush it before the event loop turns. */
  scheduleFlush(socket: FastSocketLike): void;
}

/** What a fast path needs of its link. */
export interface FastLinkView {
  readonly ownUid: string;
  readonly peerUid: string;
  /** DTLS fingerprints from our SDP and the peer's (null until both descriptions were seen). */
  readonly localFingerprint: string | null;
  readonly remoteFingerprint: string | null;
  /** The peer's address on the ICE-selected pair (null: none). */
  readonly peerAddress: string | null;
  /** ICE relays the link (a relay-only link, or a TURN relay on the selected pair). */
  readonly relayed: boolean;
  /** Sends a frame at buf[FRAME_HEADROOM..) on node-datachannel (DTLS-protected). */
  sendHello(buf: Buffer): boolean;
  /** Frames now go on the fast path (true) or back on node-datachannel (false). */
  switched(fast: boolean): void;
  /** The session frames go on changed (up, rekeyed, fallen back, closed). */
  sendingChanged?(): void;
  log(level: "info" | "debug" | "warn", message: string, fields?: Record<string, unknown>): void;
}

type SessionState = "probing" | "ready" | "sending" | "retiring";

interface Session {
  localIndex: number;
  remoteIndex: number;
  createdAt: number;
  state: SessionState;
  candidates: FastEndpoint[];
  /** Something authenticated came on it (the socket roamed its endpoint there). */
  heard: boolean;
  retireAt: number;
  /** The peer's relayed address our channel goes to (null: a direct session). */
  relayPeer: FastEndpoint | null;
}

interface PendingOffer {
  keyPair: FastKeyPair;
  index: number;
  sentAt: number;
  relayed: boolean;
}

/** A channel bound to the peer's relayed address `peer`. */
type Relay = RelayBinding & { peer: FastEndpoint };

/**
 * A link's fast path: agrees keys with the peer over the link's DTLS channel (FAST_OFFER /
 * FAST_ACCEPT), finds a path by probing the peer's candidates with authenticated probes, and
 * carries the link's frames once a probe was answered on it. Falls back to node-datachannel when
 * the path goes silent (retried after 10 s, 30 s, 60 s...), and replaces its keys every rekeyMs.
 * Only a path both sides have proven carries frames: a key mismatch never black-holes a link.
 */
export class FastPath {
  phase: FastPhase = "off";
  fallbacks = 0;
  rekeys = 0;
  /** The session frames go on (phase "up"). */
  sending: Session | null = null;
  private socket: FastSocketLike | null = null;
  private readonly sessions: Session[] = [];
  private offer: PendingOffer | null = null;
  private failures = 0;
  private retryAt = 0;
  private upSince = 0;
  /** First send on the fast path since the last probe reply on it (0: none). */
  private unansweredSince = 0;
  private probeTimer: NodeJS.Timeout | null = null;
  /** Bumped whenever probing stops, so that a step's timer chain ends. */
  private probeRun = 0;
  private probingUntil = 0;
  private loggedFallback = false;
  private closed = false;
  /** An offer waits for STUN answers or the TURN allocation. */
  private preparing = false;
  /** The last agreement went through TURN. */
  private relayed = false;
  /** The last direct attempt found no path: the next one goes through TURN (when there is one). */
  private directFailed = false;
  private readonly control = new ControlFrames(PROBE_BYTES);

  constructor(
    private readonly link: FastLinkView,
    private readonly host: FastHost,
    private readonly rekeyMs: number,
  ) {}

  /** We open the agreement: the lower UID does, so both sides never race at connect. */
  get opens(): boolean {
    return this.link.ownUid < this.link.peerUid;
  }

  /** How long frames have gone on the fast path without a fall back (0: not up). */
  upFor(now: number): number {
    return this.phase === "up" && this.upSince > 0 ? now - this.upSince : 0;
  }

  /** The link connected on a direct path with a peer that takes the fast path. */
  start(now: number): void {
    if (this.closed || this.phase !== "off") return;
    const socket = this.socketForPeer();
    if (!socket) return;
    this.phase = "down";
    this.retryAt = this.opens ? now : Number.POSITIVE_INFINITY;
    if (this.opens) this.sendOffer(now);
  }

  /** Sends a frame at buf[start..end) on the sending session; false when it could not. */
  send(buf: Uint8Array, start: number, end: number, now: number): boolean {
    const s = this.sending as Session;
    const socket = this.socket as FastSocketLike;
    if (this.unansweredSince === 0) this.unansweredSince = now;
    if (!socket.send(s.localIndex, buf, start, end)) return false;
    this.host.scheduleFlush(socket);
    return true;
  }

  /** Frames went on the fast path without `send` (forwarded natively): a reply is due as for any. */
  noteSent(now: number): void {
    if (this.phase === "up" && this.unansweredSince === 0) this.unansweredSince = now;
  }

  /** Sends on the session that received `localIndex` (a probe's reply goes back the way it came). */
  sendOn(localIndex: number, buf: Uint8Array, start: number, end: number): boolean {
    const socket = this.socket;
    if (!socket || !this.sessionOf(localIndex)) return false;
    if (!socket.send(localIndex, buf, start, end)) return false;
    this.host.scheduleFlush(socket);
    return true;
  }

  /** An authenticated frame came on our session `localIndex`. */
  heard(localIndex: number): void {
    const s = this.sessionOf(localIndex);
    if (!s || s.heard) return;
    s.heard = true;
    // The peer sends on the session we made for its offer: it has our accept; ours can follow.
    if (s.state === "ready") this.switchTo(s, Date.now());
  }

  /**
   * A probe reply came on `localIndex`: the peer takes what we send there. Only a reply proves
   * that: frames from the peer do not (a path may be open one way only).
   */
  probeAnswered(localIndex: number, now: number): void {
    const s = this.sessionOf(localIndex);
    if (s && s === this.sending) this.unansweredSince = 0;
    else if (s && (s.state === "probing" || s.state === "ready")) this.switchTo(s, now);
  }

  /** FAST_OFFER or FAST_ACCEPT from the peer (decoded). */
  onHello(hello: FastHello, now: number): void {
    if (this.closed || this.phase === "off") return;
    if (hello.type === "offer") this.onOffer(hello, now);
    else this.onAccept(hello, now);
  }

  /** Once a second: silence, retries, rekeying, retiring old sessions. */
  tick(now: number): void {
    if (this.closed || this.phase === "off") return;
    for (const s of [...this.sessions]) if (s.state === "retiring" && now >= s.retireAt) this.drop(s);
    if (this.offer && now - this.offer.sentAt >= OFFER_TIMEOUT_MS) {
      this.dropOffer();
      if (this.phase === "negotiating") this.fail(now, "no answer to the offer");
    }
    const s = this.sending;
    if (s && this.phase === "up") {
      if (this.unansweredSince > 0 && now - this.unansweredSince >= FAST_SILENT_MS) {
        this.fallBack(now);
        return;
      }
      if (this.unansweredSince > 0 && now - this.unansweredSince >= FAST_QUIET_MS) this.probe(s);
      if (this.upSince > 0 && now - this.upSince >= STABLE_MS) this.failures = 0;
      const counter = this.socket?.sessionStats(s.localIndex)?.sendCounter ?? 0;
      if (!this.offer && (now - s.createdAt >= this.rekeyMs || counter >= FAST_REKEY_PACKETS))
        this.sendOffer(now);
      return;
    }
    if (this.phase === "down" && !this.offer && now >= this.retryAt) this.sendOffer(now);
  }

  /** Whether the next agreement should go through TURN: ICE relays the link, or direct probing failed. */
  private get wantsRelay(): boolean {
    return this.host.canRelay(this.family) && (this.link.relayed || this.directFailed);
  }

  info(): FastPathInfo {
    const s = this.sending ?? this.sessions.at(-1);
    const ep = s && this.socket?.sessionStats(s.localIndex)?.endpoint;
    return {
      phase: this.phase,
      endpoint: ep ? endpointText(ep) : null,
      fallbacks: this.fallbacks,
      rekeys: this.rekeys,
      relayed: s !== undefined && s.relayPeer !== null,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopProbing();
    this.dropOffer();
    for (const s of [...this.sessions]) this.drop(s);
    this.host.releaseRelay(this);
    this.sending = null;
    this.phase = "off";
    this.link.sendingChanged?.();
  }

  private socketForPeer(): FastSocketLike | null {
    if (this.socket) return this.socket;
    const address = this.link.peerAddress;
    if (!address || !this.link.localFingerprint || !this.link.remoteFingerprint) return null;
    this.socket = this.host.socketFor(address.includes(":") ? 6 : 4);
    return this.socket;
  }

  private get family(): 4 | 6 {
    return this.link.peerAddress?.includes(":") ? 6 : 4;
  }

  /** Offers an agreement once our candidates are ready (a rekey keeps the path's kind). */
  private sendOffer(now: number): void {
    if (!this.socket || this.preparing) return;
    const relayed = this.phase === "up" ? this.relayed : this.wantsRelay;
    if (this.phase !== "up") this.phase = "negotiating";
    const ready = this.host.prepare(this, this.family, relayed);
    if (!ready) {
      this.offerNow(now, relayed);
      return;
    }
    this.preparing = true;
    void ready.then((ok) => {
      this.preparing = false;
      if (this.closed || this.phase === "off") return;
      const t = Date.now();
      if (ok) this.offerNow(t, relayed);
      else if (this.phase === "negotiating") {
        this.relayed = relayed;
        this.fail(t, "no relayed address (TURN allocation failed)");
      }
    });
  }

  private offerNow(now: number, relayed: boolean): void {
    const socket = this.socket as FastSocketLike;
    const index = this.host.newIndex(this);
    const keyPair = newFastKeyPair();
    this.offer = { keyPair, index, sentAt: now, relayed };
    this.relayed = relayed;
    const candidates = this.host.localCandidates(this.family, relayed);
    this.link.log("debug", "fast path offer", { candidates: candidates.map(candidateText) });
    const frame = encodeFastHello({
      type: "offer",
      index,
      echo: 0,
      port: socket.port,
      publicKey: keyPair.publicKey,
      candidates,
    });
    if (!this.link.sendHello(frame)) this.link.log("debug", "fast path offer not sent (link busy)");
  }

  /** The peer's relayed address in a hello (an agreement through TURN), or null. */
  private relayCandidate(hello: FastHello): FastEndpoint | null {
    const c = hello.candidates.find((c) => c.relayed && c.address.includes(":") === (this.family === 6));
    return c ? { address: c.address, port: c.port } : null;
  }

  private onOffer(hello: FastHello, now: number): void {
    if (!this.socketForPeer()) return;
    const peerRelay = this.relayCandidate(hello);
    if (!peerRelay) {
      // Our STUN-mapped addresses go in the accept: asked first when stale.
      const ready = this.host.prepare(this, this.family, false);
      if (!ready) this.answer(hello, now, null);
      else
        void ready.then(() => !this.closed && this.phase !== "off" && this.answer(hello, Date.now(), null));
      return;
    }
    // Without a TURN server of our own we cannot answer: the peer's offer times out.
    if (this.host.canRelay(this.family)) void this.answerRelayed(hello, peerRelay);
  }

  /** An offer through TURN: our allocation and a channel to the peer's relayed address first. */
  private async answerRelayed(hello: FastHello, peerRelay: FastEndpoint): Promise<void> {
    const ready = this.host.prepare(this, this.family, true);
    if (ready && !(await ready)) return;
    const binding = await this.host.bindRelay(peerRelay);
    if (!binding) return;
    if (this.closed || this.phase === "off") {
      this.host.unbindRelay(peerRelay);
      return;
    }
    this.answer(hello, Date.now(), { ...binding, peer: peerRelay });
  }

  private answer(hello: FastHello, now: number, relay: Relay | null): void {
    const socket = this.socket as FastSocketLike;
    // Offers crossed: the lower UID's stands.
    if (this.offer) {
      if (this.opens) {
        if (relay) this.host.unbindRelay(relay.peer);
        return;
      }
      this.dropOffer();
    }
    const keyPair = newFastKeyPair();
    const index = this.host.newIndex(this);
    if (!this.install(keyPair, index, hello, now, relay)) {
      this.host.releaseIndex(index);
      if (relay) this.host.unbindRelay(relay.peer);
      return;
    }
    this.relayed = relay !== null;
    const candidates = this.host.localCandidates(this.family, relay !== null);
    this.link.log("debug", "fast path accept", { candidates: candidates.map(candidateText) });
    const frame = encodeFastHello({
      type: "accept",
      index,
      echo: hello.index,
      port: socket.port,
      publicKey: keyPair.publicKey,
      candidates,
    });
    this.link.sendHello(frame);
  }

  private onAccept(hello: FastHello, now: number): void {
    const offer = this.offer;
    if (!offer || hello.echo !== offer.index) return;
    this.offer = null;
    const peerRelay = offer.relayed ? this.relayCandidate(hello) : null;
    if (!offer.relayed) {
      this.complete(offer, hello, now, null);
      return;
    }
    if (!peerRelay) {
      this.host.releaseIndex(offer.index);
      if (this.phase === "negotiating") this.fail(now, "the peer named no relayed address");
      return;
    }
    void this.host.bindRelay(peerRelay).then((binding) => {
      const t = Date.now();
      if (this.closed || this.phase === "off" || !binding) {
        this.host.releaseIndex(offer.index);
        if (binding) this.host.unbindRelay(peerRelay);
        else if (this.phase === "negotiating") this.fail(t, "TURN channel to the peer not bound");
        return;
      }
      this.complete(offer, hello, t, { ...binding, peer: peerRelay });
    });
  }

  private complete(offer: PendingOffer, hello: FastHello, now: number, relay: Relay | null): void {
    if (this.install(offer.keyPair, offer.index, hello, now, relay)) return;
    this.host.releaseIndex(offer.index);
    if (relay) this.host.unbindRelay(relay.peer);
    if (this.phase === "negotiating") this.fail(now, "keys not agreed");
  }

  /**
   * Derives the keys of an agreement and gives the socket the session. With a path up, the new
   * session takes its endpoint (a rekey); else the peer's candidates are probed.
   */
  private install(
    keyPair: FastKeyPair,
    index: number,
    hello: FastHello,
    now: number,
    relay: Relay | null,
  ): boolean {
    const socket = this.socket as FastSocketLike;
    const link = this.link;
    let keys: ReturnType<typeof deriveFastKeys>;
    try {
      keys = deriveFastKeys(
        keyPair.privateKey,
        {
          uid: link.ownUid,
          fingerprint: link.localFingerprint ?? "",
          receiverIndex: index,
          publicKey: keyPair.publicKey,
        },
        {
          uid: link.peerUid,
          fingerprint: link.remoteFingerprint ?? "",
          receiverIndex: hello.index,
          publicKey: hello.publicKey,
        },
      );
    } catch (err) {
      link.log("warn", "fast path keys not agreed", { error: (err as Error).message });
      return false;
    }
    // A rekey takes the current path's endpoint, when it is of the same kind (direct or relayed).
    const current =
      this.sending && (this.sending.relayPeer !== null) === (relay !== null) ? this.sending : null;
    const endpoint = relay
      ? current && relay.server
      : current
        ? (socket.sessionStats(current.localIndex)?.endpoint ?? null)
        : null;
    socket.setSession(index, hello.index, keys.sendKey, keys.recvKey, endpoint);
    wipeKeys(keys);
    // Through TURN: every datagram goes to our server as ChannelData, which it relays to the peer.
    if (relay) socket.setChannel(index, relay.channel);
    const candidates = relay
      ? [relay.server]
      : uniqueEndpoints([
          ...hello.candidates.filter((c) => !c.relayed && c.address.includes(":") === (this.family === 6)),
          ...(link.peerAddress && !link.relayed ? [{ address: link.peerAddress, port: hello.port }] : []),
        ]);
    const s: Session = {
      localIndex: index,
      remoteIndex: hello.index,
      createdAt: now,
      state: "probing",
      candidates,
      heard: false,
      retireAt: 0,
      relayPeer: relay?.peer ?? null,
    };
    // An agreement not yet on a path is superseded by this one.
    for (const old of this.sessions)
      if (old.state === "probing" || old.state === "ready") this.retire(old, now);
    this.sessions.push(s);
    if (current && endpoint) {
      s.state = "ready";
      // The offering side switches at once (the peer holds the session already); the peer when it
      // hears from us on it.
      if (hello.type === "accept") this.switchTo(s, now);
    } else {
      this.phase = "probing";
      this.startProbing(s, now);
    }
    return true;
  }

  private switchTo(s: Session, now: number): void {
    const previous = this.sending;
    if (previous === s) return;
    this.stopProbing();
    s.state = "sending";
    this.sending = s;
    this.rekeys++;
    this.unansweredSince = 0;
    if (previous) this.retire(previous, now);
    const wasUp = this.phase === "up";
    this.phase = "up";
    if (!wasUp) {
      this.upSince = now;
      this.link.log("info", "fast path up", {
        endpoint: this.info().endpoint,
        relayed: s.relayPeer !== null,
      });
      this.link.switched(true);
    }
    this.link.sendingChanged?.();
    // Let the peer hear from the new session at once (it switches when it does).
    this.probe(s);
  }

  private fallBack(now: number): void {
    this.fallbacks++;
    const s = this.sending;
    this.sending = null;
    if (s) this.retire(s, now);
    this.link.switched(false);
    this.link.sendingChanged?.();
    this.fail(now, "fast path silent", !this.loggedFallback);
    this.loggedFallback = true;
  }

  /**
   * Back to node-datachannel; tried again after the next backoff step, through TURN when direct
   * probing found no path (and directly again when TURN did not help either).
   */
  private fail(now: number, why: string, loud = false): void {
    this.stopProbing();
    if (this.relayed) {
      this.host.relayFailed();
      this.directFailed = false;
    } else this.directFailed = this.host.canRelay(this.family);
    for (const s of this.sessions) if (s.state !== "retiring") this.retire(s, now);
    const wait = FAST_RETRY_MS[Math.min(this.failures, FAST_RETRY_MS.length - 1)] as number;
    this.failures++;
    this.retryAt = now + wait;
    this.phase = "down";
    this.unansweredSince = 0;
    this.link.log(loud ? "info" : "debug", "fast path down", { why, retryInMs: wait });
  }

  private startProbing(s: Session, now: number): void {
    this.stopProbing();
    this.probingUntil = now + FAST_PROBE_FOR_MS;
    const step = () => {
      const t = Date.now();
      if (this.closed || s.state !== "probing") return this.stopProbing();
      if (t >= this.probingUntil) return this.fail(t, "no probe answered");
      if (s.heard) this.probe(s);
      else this.spray(s);
    };
    const run = this.probeRun;
    let spacing = FAST_PROBE_SPACING_MS;
    const next = () => {
      step();
      if (run !== this.probeRun) return; // stopped (or started again) by what the step did
      this.probeTimer = setTimeout(next, spacing);
      this.probeTimer.unref();
      spacing = Math.min(2 * spacing, FAST_PROBE_MAX_SPACING_MS);
    };
    next();
  }

  private stopProbing(): void {
    this.probeRun++;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
  }

  /** One probe to each of the peer's candidates (until one answers, the socket roams there). */
  private spray(s: Session): void {
    const socket = this.socket as FastSocketLike;
    const probe = this.control.probe(microseconds());
    for (const c of s.candidates) {
      socket.setEndpoint(s.localIndex, c);
      socket.send(s.localIndex, probe, FRAME_HEADROOM, FRAME_HEADROOM + PROBE_BYTES);
      socket.flush();
    }
  }

  private probe(s: Session): void {
    const probe = this.control.probe(microseconds());
    this.sendOn(s.localIndex, probe, FRAME_HEADROOM, FRAME_HEADROOM + PROBE_BYTES);
  }

  private retire(s: Session, now: number): void {
    s.state = "retiring";
    s.retireAt = now + FAST_GRACE_MS;
  }

  private drop(s: Session): void {
    const i = this.sessions.indexOf(s);
    if (i >= 0) this.sessions.splice(i, 1);
    this.socket?.removeSession(s.localIndex);
    this.host.releaseIndex(s.localIndex);
    if (s.relayPeer) this.host.unbindRelay(s.relayPeer);
  }

  private dropOffer(): void {
    if (!this.offer) return;
    this.host.releaseIndex(this.offer.index);
    this.offer = null;
  }

  private sessionOf(localIndex: number): Session | undefined {
    for (const s of this.sessions) if (s.localIndex === localIndex) return s;
    return undefined;
  }
}

export const endpointText = (e: FastEndpoint): string =>
  e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;

const candidateText = (c: FastCandidate): string => `${c.relayed ? "relay " : ""}${endpointText(c)}`;

function uniqueEndpoints(list: FastEndpoint[]): FastEndpoint[] {
  const seen = new Set<string>();
  return list.filter((e) => {
    const key = endpointText(e);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
