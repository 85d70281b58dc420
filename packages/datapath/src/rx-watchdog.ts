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
  /**
   * How much resident memory must have grown since the previous check (default 4 MiB): memory
   * the allocator kept after an earlier overload is no reason to close a busy link.
   */
  minGrowthBytes?: number;
  /** The interval (ms) check is called at: how late it runs is logged as the event loop's lag. */
  periodMs?: number;
  /** The process's resident memory in bytes (process.memoryUsage.rss by default). */
  rss?: () => number;
}

export interface RxOverload<L> {
  link: L;
  /** Messages the link took since the previous check. */
  messages: number;
  rssBytes: number;
  /** Growth of resident memory since the previous check. */
  growthBytes: number;
  /** How late this check ran (ms): how far behind the event loop is. */
  loopLagMs: number;
}

/**
 * Bounds what libdatachannel queues for the event loop: every message it receives waits in a
 * native queue without a limit until the event loop takes it, so a peer that sends faster than a
 * starved event loop drains grows memory without end. JavaScript cannot see that queue, only its
 * symptoms: resident memory past the limit and still growing, and one link taking far more
 * messages than the others. That link is the one to close. (The event loop's lag is measured by
 * how late the check runs, not by a perf_hooks monitor, which would wake an idle datapath 100
 * times a second; a late check alone misses a queue that grows in short turns, so it is logged,
 * not required.)
 */
export class RxWatchdog<L extends WatchedLink> {
  private readonly seen = new WeakMap<L, number>();
  private readonly rss: () => number;
  private lastRss = 0;
  private lastCheckAt = 0;

  constructor(private readonly options: RxWatchdogOptions) {
    this.rss = options.rss ?? (() => process.memoryUsage.rss());
  }

  /** Called periodically: the link to close, or null when memory is fine. */
  check(links: Iterable<L>): RxOverload<L> | null {
    const now = performance.now();
    const loopLagMs =
      this.lastCheckAt === 0 ? 0 : Math.max(0, now - this.lastCheckAt - (this.options.periodMs ?? 1000));
    this.lastCheckAt = now;
    const rssBytes = this.rss();
    const growthBytes = this.lastRss === 0 ? 0 : rssBytes - this.lastRss;
    this.lastRss = rssBytes;
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
    if (busiest === null || most < (this.options.minMessages ?? 500)) return null;
    if (rssBytes <= this.options.rssLimitBytes) return null;
    if (growthBytes < (this.options.minGrowthBytes ?? 4 << 20)) return null;
    this.seen.delete(busiest);
    return { link: busiest, messages: most, rssBytes, growthBytes, loopLagMs };
  }
}
