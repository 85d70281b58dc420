// Pure helpers of the bench driver (bench/bench.ts): medians, the interleaved order of the systems
// across rounds, CPU seconds per GB and the ratio rows. Unit tests in bench/stats.test.ts.

export function median(xs: number[]): number {
  if (xs.length === 0) throw new Error("median of nothing");
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Median of the defined values, undefined when there are none. */
export function medianOf(xs: (number | null | undefined)[]): number | undefined {
  const defined = xs.filter((x): x is number => typeof x === "number" && Number.isFinite(x));
  return defined.length ? median(defined) : undefined;
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

/**
 * The order the systems run in, round by round: every round runs each system once, and the start
 * rotates (A,B,C / B,C,A / C,A,B ...) so no system is always the first after the lab comes up or
 * always the one after the heaviest load.
 */
export function roundOrder<T>(systems: readonly T[], rounds: number): T[][] {
  return Array.from({ length: rounds }, (_, r) =>
    systems.map((_, i) => systems[(i + r) % systems.length] as T),
  );
}

/** Both ends' process CPU seconds per GB (1e9 bytes) the receiver got; undefined without data. */
export function cpuSecondsPerGB(cpuSeconds: number, bytes: number): number | undefined {
  return bytes > 0 && cpuSeconds >= 0 ? cpuSeconds / (bytes / 1e9) : undefined;
}

/** What the ratio table needs of one system: medians over the rounds. */
export interface Figures {
  label: string;
  tcp1?: number;
  tcp4?: number;
  udp?: number;
  rttIdleMs?: number;
}

export interface RatioRow {
  reference: string;
  tcp1?: number;
  tcp4?: number;
  udp?: number;
  /** TinCan-TS's idle RTT minus the reference's, ms (positive: TinCan-TS is slower). */
  rttIdleDiffMs?: number;
}

const div = (x?: number, y?: number) => (x !== undefined && y ? x / y : undefined);
const diff = (x?: number, y?: number) => (x !== undefined && y !== undefined ? x - y : undefined);

/**
 * TinCan-TS against each reference, then against "the faster reference": per column the best of the
 * references (highest rate, lowest RTT), as the goals are stated.
 */
export function ratioRows(tincan: Figures, refs: Figures[]): RatioRow[] {
  const row = (r: Figures): RatioRow => ({
    reference: r.label,
    tcp1: div(tincan.tcp1, r.tcp1),
    tcp4: div(tincan.tcp4, r.tcp4),
    udp: div(tincan.udp, r.udp),
    rttIdleDiffMs: diff(tincan.rttIdleMs, r.rttIdleMs),
  });
  if (refs.length < 2) return refs.map(row);
  const best = (f: (r: Figures) => number | undefined, pick: (...xs: number[]) => number) => {
    const xs = refs.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? pick(...xs) : undefined;
  };
  const faster: Figures = {
    label: "the faster reference",
    tcp1: best((r) => r.tcp1, Math.max),
    tcp4: best((r) => r.tcp4, Math.max),
    udp: best((r) => r.udp, Math.max),
    rttIdleMs: best((r) => r.rttIdleMs, Math.min),
  };
  return [...refs.map(row), row(faster)];
}
