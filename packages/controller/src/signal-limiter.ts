import type { Log } from "./logger.js";

export interface SignalLimits {
  /** Signals a peer may send at once (a setup's offer plus its trickled candidates fit). */
  burst: number;
  /** Signals per second a peer may send over time. */
  perSec: number;
  /** Most peers tracked; beyond it, full (idle) buckets are forgotten first. */
  maxPeers: number;
}

export const DEFAULT_SIGNAL_LIMITS: SignalLimits = { burst: 24, perSec: 4, maxPeers: 4096 };

/** The limits a controller config asks for (`links.signalBurst`, `links.signalsPerSec`). */
export function signalLimitsFrom(links: { signalBurst: number; signalsPerSec: number }): SignalLimits {
  return { ...DEFAULT_SIGNAL_LIMITS, burst: links.signalBurst, perSec: links.signalsPerSec };
}

interface Bucket {
  tokens: number;
  at: number;
  logged: boolean;
}

/**
 * Per-peer token bucket for incoming signals (offers, answers, candidates, byes): each signal a peer
 * sends costs one token. A flood from one member is dropped here, counted, and logged once per peer
 * (until its bucket refills), before it can build PeerConnections or TURN allocations.
 */
export class SignalLimiter {
  private readonly buckets = new Map<string, Bucket>();
  /** Signals dropped because their sender exceeded its rate. */
  dropped = 0;

  constructor(
    private readonly log: Log,
    private readonly limits: SignalLimits = DEFAULT_SIGNAL_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when `peer` may send one more signal now (and takes its token). */
  take(peer: string): boolean {
    const now = this.now();
    const { burst, perSec } = this.limits;
    let b = this.buckets.get(peer);
    if (!b) {
      this.makeRoom();
      b = { tokens: burst, at: now, logged: false };
      this.buckets.set(peer, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSec);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      if (b.tokens >= burst - 1) b.logged = false;
      return true;
    }
    this.dropped++;
    if (!b.logged) {
      b.logged = true;
      this.log.warn("signals from a peer exceed its rate; dropping them (logged once per burst)", {
        peer,
        burst,
        perSec,
        droppedSoFar: this.dropped,
      });
    }
    return false;
  }

  /** Forgets a peer's bucket (it left the roster). */
  forget(peer: string): void {
    this.buckets.delete(peer);
  }

  get size(): number {
    return this.buckets.size;
  }

  private makeRoom(): void {
    if (this.buckets.size < this.limits.maxPeers) return;
    const now = this.now();
    const { burst, perSec } = this.limits;
    for (const [peer, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * perSec >= burst) this.buckets.delete(peer);
    }
    // Every peer is mid-burst: forget the oldest (Map order) rather than grow without bound.
    if (this.buckets.size >= this.limits.maxPeers) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
  }
}
