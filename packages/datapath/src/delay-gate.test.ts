import { describe, expect, it } from "vitest";
import { DelayGate } from "./delay-gate.js";

// Time in rtpClock units (100 µs). Packets every 1 ms; `queue(t)` is the sojourn time at t.
function run(gate: DelayGate, offset: number, ms: number, queue: (t: number) => number): boolean[] {
  const out: boolean[] = [];
  for (let t = 0; t < ms * 10; t += 10) {
    const sentAt = (t + offset) >>> 0;
    const now = (t + offset + 50 + queue(t)) >>> 0; // 5 ms path delay plus the queue
    out.push(gate.admit(now, sentAt));
  }
  return out;
}

describe("DelayGate (CoDel on the one-way delay)", () => {
  it("passes everything while the queue stays below the target, whatever the clock offset", () => {
    for (const offset of [0, 123_456_789, 0xffffff00, 2 ** 31 - 5]) {
      const out = run(new DelayGate(5), offset, 3000, (t) => (t % 300 < 150 ? 30 : 0)); // 3 ms bursts
      expect(out.every((ok) => ok)).toBe(true);
    }
  });

  it("starts dropping after a standing queue lasted one interval, then more often, and stops when it drains", () => {
    const gate = new DelayGate(5);
    // 1 s without queue (the base delay is learnt), 2 s with a standing 20 ms queue, 1 s without.
    const out = run(gate, 0xfffff000, 4000, (t) => (t >= 10_000 && t < 30_000 ? 200 : 0));
    const dropsIn = (fromMs: number, toMs: number) => out.slice(fromMs, toMs).filter((ok) => !ok).length;
    expect(dropsIn(0, 1000)).toBe(0);
    expect(dropsIn(1000, 1100)).toBe(0); // not before a whole interval above target
    expect(dropsIn(1100, 2000)).toBeGreaterThan(3);
    expect(dropsIn(2000, 3000)).toBeGreaterThan(dropsIn(1100, 2000)); // control law: faster
    expect(dropsIn(3000, 4000)).toBe(0);
  });

  it("never drops with a target of 0", () => {
    const out = run(new DelayGate(0), 0, 2000, () => 500);
    expect(out.every((ok) => ok)).toBe(true);
  });

  it("reacts within the configured interval and target after configure()", () => {
    const gate = new DelayGate(5);
    gate.configure(2, 20);
    // A standing 3 ms queue: under the old 5 ms target, over the new 2 ms one.
    const out = run(gate, 0, 2000, (t) => (t >= 5000 ? 30 : 0));
    const firstDrop = out.indexOf(false);
    expect(firstDrop).toBeGreaterThanOrEqual(520); // a whole 20 ms interval above target first
    expect(firstDrop).toBeLessThan(540);
  });
});
