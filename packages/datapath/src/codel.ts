/**
 * CoDel's drop decision (RFC 8289), on sojourn times measured by the caller. All times are in
 * rtpClock units (100 µs) and all arithmetic is modulo 2^32, so clock wrap-around does not matter.
 * Once packets have queued longer than the target for a whole interval, it drops one, then more
 * often (interval / sqrt(count)) until the queue is short again, so TCP backs off without losing a
 * whole window of packets.
 */
export class CoDel {
  private firstAbove = 0;
  private aboveSince = false;
  private dropping = false;
  private dropNext = 0;
  private count = 0;
  private lastCount = 0;

  /**
   * @param target the queueing delay the queue may keep (units; 0: never drop)
   * @param interval how long the queue may stay above target before a drop (units; RFC 8289
   *   says 100 ms for Internet paths: it should cover the flows' usual RTT)
   */
  constructor(
    public target: number,
    public interval: number,
  ) {}

  /** Whether a packet that queued `sojourn` units and leaves the queue at `now` may pass. */
  pass(now: number, sojourn: number): boolean {
    if (this.target <= 0) return true;
    let okToDrop = false;
    if (sojourn < this.target) {
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
