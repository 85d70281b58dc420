/**
 * Receive-side queue limit for the RTP track. Nothing bounds the queue between the thread that
 * reads the link's socket and our event loop (node-datachannel queues every message for JS), so
 * when the event loop falls behind, that queue, and with it the RTT seen by TCP inside, grows
 * without limit. The sender stamps each RTP packet with its clock (in 100 µs units); the
 * receiver tracks the smallest (receive time - stamp) seen lately, the path's delay plus the
 * unknown clock offset, so (receive time - stamp - that minimum) is how long a packet queued.
 * On that sojourn time it runs CoDel (see codel.ts).
 */
import { CoDel } from "./codel.js";

/** Our clock in the units of the RTP timestamp: 100 µs, modulo 2^32. */
export function rtpClock(): number {
  return Math.floor(performance.now() * 10) >>> 0;
}

export class DelayGate {
  private curMin = 0;
  private prevMin = 0;
  private windowEnd = 0;
  private started = false;
  private hasPrev = false;
  private readonly window: number;
  private readonly codel: CoDel;

  /**
   * @param maxQueueMs CoDel's target: the queueing delay the queue may keep (0: never drop)
   * @param windowMs the base delay is the minimum over the last one to two such windows, so it
   *   follows clock drift and path changes
   * @param intervalMs CoDel's interval: how long the queue may stay above target before a drop
   *   (RFC 8289 says 100 ms for Internet paths; it should cover the flows' usual RTT)
   */
  constructor(maxQueueMs: number, windowMs = 5000, intervalMs = 100) {
    this.window = Math.round(windowMs * 10);
    this.codel = new CoDel(Math.round(maxQueueMs * 10), Math.round(intervalMs * 10));
  }

  /** Changes target and interval (e.g. as the path's RTT becomes known); keeps the learnt delay. */
  configure(maxQueueMs: number, intervalMs: number): void {
    this.codel.target = Math.round(maxQueueMs * 10);
    this.codel.interval = Math.round(intervalMs * 10);
  }

  /** Whether a packet stamped `sentAt` and received at `now` (both rtpClock units) may pass. */
  admit(now: number, sentAt: number): boolean {
    if (this.codel.target <= 0) return true;
    // All arithmetic modulo 2^32, so clock offsets and wrap-around do not matter.
    const d = (now - sentAt) | 0;
    if (!this.started || ((now - this.windowEnd) | 0) >= 0) {
      this.prevMin = this.curMin;
      this.hasPrev = this.started;
      this.curMin = d;
      this.windowEnd = (now + this.window) | 0;
      this.started = true;
    } else if (((d - this.curMin) | 0) < 0) {
      this.curMin = d;
    }
    let base = this.curMin;
    if (this.hasPrev && ((this.prevMin - base) | 0) < 0) base = this.prevMin;
    return this.codel.pass(now, (d - base) | 0);
  }
}
