/** What the watchdog sees of a link. */
export interface WatchedLink {
  /** Messages node-datachannel handed to the event loop for this link so far. */
  readonly slowRxMessages: number;
}

export interface RxWatchdogOptions {
  /** Resident memory (bytes) above which the busiest receiving link is closed. */
  rssLimitBytes: number;
  /** Messages a link must have taken since the previous check to be blamed (default 500). */
  minMessages?: number;
  /** How late a check may run (ms) before the event loop counts as behind (default 50). */
  minLoopDelayMs?: number;
  /** The process's resident memory in bytes (process.memoryUsage.rss by default). */
  rss?: () => number;
  /**
   * How late (ms) this check runs: by default, measured against `periodMs` (the interval it is
   * called at), which costs no timer of its own (perf_hooks' monitor would wake an idle datapath
   * 100 times a second).
   */
  loopDelayMs?: () => number;
  periodMs?: number;
}

export interface RxOverload<L> {
  link: L;
  /** Messages the link took since the previous check. */
  messages: number;
  rssBytes: number;
  loopDelayMs: number;
}

/**
 * Bounds what libdatachannel queues for the event loop: every message it receives waits in a
 * native queue without a limit until the event loop takes it, so a peer that sends faster than a
 * starved event loop drains grows memory without end. JavaScript cannot see that queue, only its
 * symptoms: resident memory past the limit, an event loop that is behind, and one link taking far
 * more messages than the others. That link is the one to close.
 */
export class RxWatchdog<L extends WatchedLink> {
  private readonly seen = new WeakMap<L, number>();
  private readonly rss: () => number;
  private readonly loopDelayMs: () => number;
  private lastCheckAt = 0;

  constructor(private readonly options: RxWatchdogOptions) {
    this.rss = options.rss ?? (() => process.memoryUsage.rss());
    this.loopDelayMs = options.loopDelayMs ?? this.lateness;
  }

  private readonly lateness = (): number => {
    const now = performance.now();
    const late = this.lastCheckAt === 0 ? 0 : now - this.lastCheckAt - (this.options.periodMs ?? 1000);
    this.lastCheckAt = now;
    return Math.max(0, late);
  };

  /** Called periodically: the link to close, or null when memory and the event loop are fine. */
  check(links: Iterable<L>): RxOverload<L> | null {
    let busiest: L | null = null;
    let most = 0;
    for (const link of links) {
      const n = link.slowRxMessages;
      const took = n - (this.seen.get(link) ?? n);
      this.seen.set(link, n);
      if (took > most) {
        most = took;
        busiest = link;
      }
    }
    const loopDelayMs = this.loopDelayMs();
    if (busiest === null || most < (this.options.minMessages ?? 500)) return null;
    if (loopDelayMs < (this.options.minLoopDelayMs ?? 50)) return null;
    const rssBytes = this.rss();
    if (rssBytes <= this.options.rssLimitBytes) return null;
    this.seen.delete(busiest);
    return { link: busiest, messages: most, rssBytes, loopDelayMs };
  }
}
