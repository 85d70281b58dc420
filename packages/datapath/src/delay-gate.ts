/**
 * Receive-side queue limit for the RTP track. Nothing bounds the queue between the thread that
 * reads the link's socket and our event loop (node-datachannel queues every message for JS), so
 * when the event loop falls behind, that queue, and with it the RTT seen by TCP inside, grows
 * without limit. The sender stamps each RTP packet with its clock (in 100 µs units); the
 * receiver tracks the smallest (receive time - stamp) seen lately, the path's delay plus the
 * unknown clock offset, so (receive time - stamp - that minimum) is how long a packet queued.
 * On that sojourn time it runs CoDel (RFC 8289): once packets have queued longer than the
 * target for a whole interval, it drops one, then more often (interval / sqrt(count)) until the
 * queue is short again, so TCP inside backs off without losing a whole window of packets.
 */

/** Our clock in the units of the RTP timestamp: 100 µs, modulo 2^32. */
export function rtpClock(): number {
  return Math.floor(performance.now() * 10) >>> 0;
}

export class DelayGate {
  private firstAbove = 0;
  private aboveSince = false;
  private dropping = false;
  private dropNext = 0;
  private count = 0;
  private lastCount = 0;
  private curMin = 0;
  private prevMin = 0;
  private windowEnd = 0;
  private started = false;
  private hasPrev = false;
  private maxQueue: number;
  private readonly window: number;
  private interval: number;

  /**
   * @param maxQueueMs CoDel's target: the queueing delay the queue may keep (0: never drop)
   * @param windowMs the base delay is the minimum over the last one to two such windows, so it
   *   follows clock drift and path changes
   * @param intervalMs CoDel's interval: how long the queue may stay above target before a drop
   *   (RFC 8289 says 100 ms for Internet paths; it should cover the flows' usual RTT)
   */
  constructor(maxQueueMs: number, windowMs = 5000, intervalMs = 100) {
    this.maxQueue = Math.round(maxQueueMs * 10);
    this.window = Math.round(windowMs * 10);
    this.interval = Math.round(intervalMs * 10);
  }

  /** Changes target and interval (e.g. as the path's RTT becomes known); keeps the learnt delay. */
  configure(maxQueueMs: number, intervalMs: number): void {
    this.maxQueue = Math.round(maxQueueMs * 10);
    this.interval = Math.round(intervalMs * 10);
  }

  /** Whether a packet stamped `sentAt` and received at `now` (both rtpClock units) may pass. */
  admit(now: number, sentAt: number): boolean {
    if (this.maxQueue <= 0) return true;
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
    return this.codel(now, (d - base) | 0);
  }

  /** CoDel's dequeue decision for a packet that queued `sojourn` units. */
  private codel(now: number, sojourn: number): boolean {
    let okToDrop = false;
    if (sojourn < this.maxQueue) {
      this.aboveSince = false;
    } else if (!this.aboveSince) {
      this.aboveSince = true;
      this.firstAbove = (now + this.interval) | 0;
    } else if (((now - this.firstAbove) | 0) >= 0) {
      okToDrop = true;
    }
    if (this.dropping) {
      if (!okToDrop) {
        this.dropping = false;
        return true;
      }
      if (((now - this.dropNext) | 0) < 0) return true;
      this.count++;
      this.dropNext = (this.dropNext + Math.round(this.interval / Math.sqrt(this.count))) | 0;
      return false;
    }
    if (!okToDrop) return true;
    this.dropping = true;
    // Resume near the last drop rate when the previous episode ended recently.
    const delta = this.count - this.lastCount;
    this.count = delta > 1 && ((now - this.dropNext) | 0) < 16 * this.interval ? delta : 1;
    this.lastCount = this.count;
    this.dropNext = (now + Math.round(this.interval / Math.sqrt(this.count))) | 0;
    return false;
  }
}
