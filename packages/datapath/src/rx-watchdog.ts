import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";

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
  /** Slowest event-loop turn (ms) since the previous check that counts as "behind" (default 50). */
  minLoopDelayMs?: number;
  /** The process's resident memory in bytes (process.memoryUsage.rss by default). */
  rss?: () => number;
  /** The slowest event-loop turn (ms) since the previous call (a perf_hooks histogram by default). */
  loopDelayMs?: () => number;
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
  private readonly histogram: IntervalHistogram | null;
  private readonly rss: () => number;
  private readonly loopDelayMs: () => number;

  constructor(private readonly options: RxWatchdogOptions) {
    this.rss = options.rss ?? (() => process.memoryUsage.rss());
    if (options.loopDelayMs) {
      this.histogram = null;
      this.loopDelayMs = options.loopDelayMs;
    } else {
      const h = monitorEventLoopDelay({ resolution: 10 });
      h.enable();
      this.histogram = h;
      this.loopDelayMs = () => {
        const max = h.max / 1e6;
        h.reset();
        return max;
      };
    }
  }

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

  close(): void {
    this.histogram?.disable();
  }
}
