import { describe, expect, it } from "vitest";
import { cpuSecondsPerGB, median, medianOf, percentile, ratioRows, roundOrder } from "./stats.js";

describe("median", () => {
  it("takes the middle value, or the mean of the two middle ones", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });
  it("does not reorder its input and refuses an empty list", () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
    expect(() => median([])).toThrow();
  });
  it("medianOf skips missing values", () => {
    expect(medianOf([undefined, 5, null, 1, 3])).toBe(3);
    expect(medianOf([undefined, null])).toBeUndefined();
  });
});

describe("percentile", () => {
  it("is nearest-rank", () => {
    const xs = Array.from({ length: 200 }, (_, i) => i + 1);
    expect(percentile(xs, 99)).toBe(198);
    expect(percentile(xs, 50)).toBe(100);
    expect(percentile([5], 99)).toBe(5);
  });
});

describe("roundOrder", () => {
  it("runs every system once per round, each in every position across as many rounds", () => {
    const order = roundOrder(["a", "b", "c"], 3);
    expect(order).toEqual([
      ["a", "b", "c"],
      ["b", "c", "a"],
      ["c", "a", "b"],
    ]);
    for (const round of order) expect([...round].sort()).toEqual(["a", "b", "c"]);
    for (let pos = 0; pos < 3; pos++) expect(new Set(order.map((r) => r[pos])).size).toBe(3);
  });
  it("handles one system and one round", () => {
    expect(roundOrder(["x"], 2)).toEqual([["x"], ["x"]]);
    expect(roundOrder(["a", "b"], 1)).toEqual([["a", "b"]]);
  });
});

describe("cpuSecondsPerGB", () => {
  it("divides both ends' CPU seconds by the GB received", () => {
    expect(cpuSecondsPerGB(3, 1.5e9)).toBe(2);
    expect(cpuSecondsPerGB(1, 0)).toBeUndefined();
  });
});

describe("ratioRows", () => {
  const tincan = { label: "TinCan-TS", tcp1: 1200, tcp4: 1000, udp: 400, rttIdleMs: 0.9 };
  const wg = { label: "wireguard-go", tcp1: 800, tcp4: 1000, udp: 200, rttIdleMs: 0.5 };
  const neb = { label: "nebula", tcp1: 600, tcp4: 500, udp: 400, rttIdleMs: 0.3 };
  it("divides by each reference and by the best reference per column", () => {
    const rows = ratioRows(tincan, [wg, neb]);
    expect(rows.map((r) => r.reference)).toEqual(["wireguard-go", "nebula", "the faster reference"]);
    expect(rows[0]).toMatchObject({ tcp1: 1.5, tcp4: 1, udp: 2 });
    expect(rows[0]?.rttIdleDiffMs).toBeCloseTo(0.4);
    expect(rows[2]).toMatchObject({ tcp1: 1.5, tcp4: 1, udp: 1 });
    expect(rows[2]?.rttIdleDiffMs).toBeCloseTo(0.6);
  });
  it("leaves a cell empty when a figure is missing, and no 'faster' row for one reference", () => {
    const rows = ratioRows({ label: "TinCan-TS", tcp1: 100 }, [{ label: "nebula", tcp1: 0, udp: 5 }]);
    expect(rows).toEqual([
      { reference: "nebula", tcp1: undefined, tcp4: undefined, udp: undefined, rttIdleDiffMs: undefined },
    ]);
  });
});
