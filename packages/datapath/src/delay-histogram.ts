/**
 * How long packets waited in the send queue, counted into fixed buckets without allocating (one
 * comparison per bucket passed). Times are in rtpClock units (100 µs) like the queue's stamps;
 * the snapshot gives seconds, the unit of the controller's Prometheus histogram.
 */
const UNITS_PER_SECOND = 10_000;

/** Upper bounds (seconds) of the send-queue delay buckets: around CoDel's 5-ms target and up to its worst. */
export const TX_DELAY_BOUNDS_SECONDS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

export class DelayHistogram {
  private readonly limits: Float64Array;
  /** One count per bound, and the last for everything above. */
  private readonly counts: Float64Array;
  private sumUnits = 0;

  constructor(private readonly boundsSeconds: readonly number[] = TX_DELAY_BOUNDS_SECONDS) {
    this.limits = Float64Array.from(boundsSeconds, (b) => b * UNITS_PER_SECOND);
    this.counts = new Float64Array(boundsSeconds.length + 1);
  }

  /** One packet that waited `units` (100 µs each). */
  record(units: number): void {
    const limits = this.limits;
    let i = 0;
    while (i < limits.length && units > (limits[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sumUnits += units;
  }

  /** `packets` that did not wait at all (sent straight through). */
  recordImmediate(packets: number): void {
    this.counts[0] = (this.counts[0] as number) + packets;
  }

  snapshot(): { bounds: number[]; counts: number[]; sumSeconds: number } {
    return {
      bounds: [...this.boundsSeconds],
      counts: [...this.counts],
      sumSeconds: this.sumUnits / UNITS_PER_SECOND,
    };
  }
}
