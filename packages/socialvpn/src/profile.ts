import { z } from "zod";

/**
 * The social profile: which devices this node talks to often. Each device (key `<jid>/<resource>`)
 * has a traffic score, the bytes sent and received over its link, decayed exponentially with a half
 * life of SCORE_HALF_LIFE_MS (so a device used every day stays high, one last used a month ago fades
 * to 1/16). The score is kept in the state file (`scores`: score and when it was last updated), so it
 * survives restarts. The devices with at least PROACTIVE_MIN_SCORE, at most PROACTIVE_MAX of them
 * (highest first), get proactive links as soon as they come online; the others stay on demand.
 */

export const SCORE_HALF_LIFE_MS = 7 * 24 * 3600 * 1000;
/** 1 MiB (decayed): a few minutes of a chat or ssh session is less, a file copy or a call more. */
export const PROACTIVE_MIN_SCORE = 1024 * 1024;
export const PROACTIVE_MAX = 8;
/** Most devices with a score kept (the lowest go first). */
export const MAX_SCORES = 1024;

export const SavedScore = z.strictObject({
  /** Decayed bytes at `at`. */
  score: z.number().nonnegative(),
  /** ms since the epoch. */
  at: z.number().nonnegative(),
});
export type SavedScore = z.infer<typeof SavedScore>;

/** Bytes over one link as `link.query` reports them. */
export interface LinkBytes {
  peerUid: string;
  rxBytes: number;
  txBytes: number;
}

export class SocialProfile {
  private readonly scores = new Map<string, SavedScore>();
  /** rx+tx of each link at the last sample, by peer UID. */
  private readonly lastBytes = new Map<string, number>();

  constructor(saved: Record<string, SavedScore> = {}) {
    for (const [key, s] of Object.entries(saved)) this.scores.set(key, { ...s });
  }

  /** The score of `key` now. */
  score(key: string, now = Date.now()): number {
    const s = this.scores.get(key);
    return s ? decayed(s, now) : 0;
  }

  /**
   * Adds the bytes each link carried since the last sample to its device's score. `keyOf` maps a
   * peer UID to its device key (undefined: not a device we know). Returns whether a score changed.
   */
  sample(links: LinkBytes[], keyOf: (uid: string) => string | undefined, now = Date.now()): boolean {
    let changed = false;
    const seen = new Set<string>();
    for (const l of links) {
      seen.add(l.peerUid);
      const total = l.rxBytes + l.txBytes;
      const last = this.lastBytes.get(l.peerUid);
      this.lastBytes.set(l.peerUid, total);
      // A new link (or one set up again, its counters from 0) counts from its start.
      const delta = last === undefined || total < last ? total : total - last;
      const key = keyOf(l.peerUid);
      if (delta <= 0 || key === undefined) continue;
      const s = this.scores.get(key);
      this.scores.set(key, { score: (s ? decayed(s, now) : 0) + delta, at: now });
      changed = true;
    }
    for (const uid of this.lastBytes.keys()) if (!seen.has(uid)) this.lastBytes.delete(uid);
    if (this.scores.size > MAX_SCORES) this.trim(now);
    return changed;
  }

  /** Whether `key` is one of the devices to link to proactively. */
  isFrequent(key: string, now = Date.now()): boolean {
    return this.frequent(now).includes(key);
  }

  /** The devices to link to proactively, highest score first. */
  frequent(now = Date.now()): string[] {
    return [...this.scores.keys()]
      .map((key) => ({ key, score: this.score(key, now) }))
      .filter((s) => s.score >= PROACTIVE_MIN_SCORE)
      .sort((a, b) => b.score - a.score)
      .slice(0, PROACTIVE_MAX)
      .map((s) => s.key);
  }

  /** The state file's `scores`. */
  toRecord(): Record<string, SavedScore> {
    return Object.fromEntries(this.scores);
  }

  private trim(now: number): void {
    const lowest = [...this.scores.keys()].sort((a, b) => this.score(a, now) - this.score(b, now));
    for (const key of lowest.slice(0, this.scores.size - MAX_SCORES)) this.scores.delete(key);
  }
}

function decayed(s: SavedScore, now: number): number {
  const age = Math.max(0, now - s.at);
  return s.score * 2 ** (-age / SCORE_HALF_LIFE_MS);
}
