/**
 * Packetization-layer path MTU discovery for a link (RFC 8899's idea): the largest frame one
 * underlay datagram carries is found by sending padded probe frames of candidate sizes, which the
 * peer acknowledges. Each round probes several sizes at once between what is known to fit and the
 * largest frame, so a search takes a few round trips, not one per size. Until a search ends,
 * frames are limited to the largest size acknowledged so far (from a safe base); afterwards the
 * size is confirmed every 30 s and searched again upwards every 10 minutes while the link carries
 * traffic (an idle link costs nothing), and searched from the base after a confirmation is lost
 * (the path may have changed).
 */

/** Frame bytes every underlay carries: IPv6 minimum MTU 1280 - 40 IPv6 - 8 UDP - 4 TURN - 12 RTP - 16 SRTP. */
export const BASE_FRAME = 1200;
const PROBES_PER_ROUND = 8;
/** Least wait for a round's acknowledgements (more on a slow path: 4 RTT). */
const ROUND_MIN_MS = 150;
const CONFIRM_EVERY_MS = 30_000;
const RAISE_EVERY_MS = 600_000;

export type ProbeSend = (id: number, frameBytes: number) => void;

export class PathMtu {
  /** Largest frame known (or, before any search ended, assumed) to cross in one datagram. */
  current: number;
  /** A search ended: `current` is measured, so packets above it may be refused with ICMP. */
  known = false;
  private lo: number;
  private hi: number;
  private round = 0;
  private candidates: number[] = [];
  private acked: number[] = [];
  private roundEndsAt = 0;
  /** The round confirms `current` only (no search). */
  private confirming = false;
  private nextConfirmAt = 0;
  private nextRaiseAt = 0;

  constructor(
    private readonly max: number,
    private readonly send: ProbeSend,
  ) {
    this.current = Math.min(BASE_FRAME, max);
    this.lo = this.current;
    this.hi = max;
  }

  /** Starts a search from the base (a new or changed path). */
  restart(now: number, rttMs: number | null): void {
    this.current = Math.min(BASE_FRAME, this.max);
    this.known = false;
    this.lo = this.current;
    this.hi = this.max;
    this.startRound(now, rttMs);
  }

  /** An acknowledgement of probe `id` of `frameBytes`; true when it ended the round early. */
  onAck(id: number, frameBytes: number, now: number, rttMs: number | null): boolean {
    if (id !== this.round || !this.candidates.includes(frameBytes) || this.acked.includes(frameBytes))
      return false;
    this.acked.push(frameBytes);
    if (frameBytes > this.current && !this.confirming) this.current = frameBytes;
    if (this.acked.length < this.candidates.length) return false;
    this.endRound(now, rttMs);
    return true;
  }

  /**
   * Called periodically (and soon after each round starts): ends rounds, and starts due ones
   * when the link is `busy` (sends traffic).
   */
  tick(now: number, rttMs: number | null, busy = true): void {
    if (this.candidates.length > 0) {
      if (now >= this.roundEndsAt) this.endRound(now, rttMs);
      return;
    }
    if (!this.known || !busy) return;
    if (now >= this.nextRaiseAt && this.current < this.max) {
      this.lo = this.current;
      this.hi = this.max;
      this.startRound(now, rttMs);
    } else if (now >= this.nextConfirmAt) {
      this.confirming = true;
      this.probe([this.current], now, rttMs);
    }
  }

  /** When the current round (if any) gives up waiting. */
  get waitingUntil(): number | null {
    return this.candidates.length > 0 ? this.roundEndsAt : null;
  }

  private startRound(now: number, rttMs: number | null): void {
    this.confirming = false;
    const sizes: number[] = [];
    const span = this.hi - this.lo;
    for (let k = 1; k <= PROBES_PER_ROUND; k++) {
      const s = this.lo + Math.ceil((span * k) / PROBES_PER_ROUND);
      if (s > this.lo && s <= this.hi && !sizes.includes(s)) sizes.push(s);
    }
    this.probe(sizes, now, rttMs);
  }

  private probe(sizes: number[], now: number, rttMs: number | null): void {
    this.round = (this.round + 1) & 0xffff;
    this.candidates = sizes;
    this.acked = [];
    this.roundEndsAt = now + Math.max(ROUND_MIN_MS, 4 * (rttMs ?? 0));
    for (const s of sizes) this.send(this.round, s);
  }

  private endRound(now: number, rttMs: number | null): void {
    const { candidates, acked } = this;
    this.candidates = [];
    if (this.confirming) {
      this.confirming = false;
      if (acked.length > 0) this.nextConfirmAt = now + CONFIRM_EVERY_MS;
      else this.restart(now, rttMs);
      return;
    }
    const best = Math.max(this.lo, ...acked);
    let hi = this.hi;
    for (const c of candidates) if (c > best && !acked.includes(c)) hi = Math.min(hi, c - 1);
    this.lo = best;
    this.hi = hi;
    if (best > this.current) this.current = best;
    if (this.hi > this.lo) {
      this.startRound(now, rttMs);
      return;
    }
    // An unanswered base keeps the base: nothing smaller is known to do better.
    this.current = Math.max(this.lo, Math.min(BASE_FRAME, this.max));
    this.known = true;
    this.nextConfirmAt = now + CONFIRM_EVERY_MS;
    this.nextRaiseAt = now + RAISE_EVERY_MS;
  }
}
