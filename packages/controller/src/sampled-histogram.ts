import type { Metric, Registry } from "prom-client";

/** Buckets counted elsewhere: counts[i] observations at most bounds[i] (not cumulative), the last above all. */
export interface HistogramSample {
  bounds: number[];
  counts: number[];
  sumSeconds: number;
}

/**
 * A Prometheus histogram whose buckets another process counts (the datapath counts per packet;
 * observing each packet again here would cost millions of calls per scrape). Each scrape sets the
 * latest sample; no sample (datapath down, or no send queue) exports no series, like the other
 * datapath metrics. prom-client's registry only needs name, help, type, get() and reset().
 */
export class SampledHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private sample: HistogramSample | null = null;

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  set(sample: HistogramSample | null): void {
    this.sample = sample && sample.counts.length === sample.bounds.length + 1 ? sample : null;
  }

  reset(): void {
    this.sample = null;
  }

  async get() {
    const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
    const s = this.sample;
    if (s) {
      let cumulative = 0;
      s.counts.forEach((n, i) => {
        cumulative += n;
        const le = i < s.bounds.length ? (s.bounds[i] as number) : "+Inf";
        values.push({ metricName: `${this.name}_bucket`, labels: { le }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_sum`, labels: {}, value: s.sumSeconds });
      values.push({ metricName: `${this.name}_count`, labels: {}, value: cumulative });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
