import { describe, expect, it } from "vitest";
import { BASE_FRAME, PathMtu } from "./path-mtu.js";

/** A path that carries frames up to `fits` bytes; acks come back at once (or are lost with `drop`). */
function onPath(max: number, fits: number) {
  const sent: number[] = [];
  let pending: [number, number][] = [];
  const pmtu = new PathMtu(max, (id, bytes) => {
    sent.push(bytes);
    if (bytes <= fits) pending.push([id, bytes]);
  });
  let now = 0;
  /** Delivers the acks, then lets time pass to the end of the round, until the search ends. */
  const run = (limit = 20) => {
    for (let i = 0; i < limit && (!pmtu.known || pmtu.waitingUntil !== null); i++) {
      const acks = pending;
      pending = [];
      for (const [id, bytes] of acks) pmtu.onAck(id, bytes, now, 1);
      now = pmtu.waitingUntil ?? now + 1000;
      pmtu.tick(now, 1);
    }
  };
  return { pmtu, sent, run, advance: (ms: number) => (now += ms), setFits: (f: number) => (fits = f) };
}

describe("PathMtu", () => {
  it("finds the exact largest frame in a few rounds, probing several sizes at once", () => {
    for (const fits of [1224, 1300, 1320, 1201]) {
      const p = onPath(1320, fits);
      p.pmtu.restart(0, 1);
      expect(p.pmtu.known).toBe(false);
      expect(p.pmtu.current).toBe(BASE_FRAME);
      p.run();
      expect(p.pmtu.known).toBe(true);
      expect(p.pmtu.current).toBe(fits);
      expect(p.sent.length).toBeLessThanOrEqual(24);
    }
  });

  it("keeps the base when nothing larger crosses", () => {
    const p = onPath(1320, 1000);
    p.pmtu.restart(0, 1);
    p.run();
    expect(p.pmtu.known).toBe(true);
    expect(p.pmtu.current).toBe(BASE_FRAME);
  });

  it("searches again from the base when a confirmation is lost, and upwards after 10 minutes", () => {
    // (while busy: an idle link sends no confirmations)
    const p = onPath(1320, 1300);
    p.pmtu.restart(0, 1);
    p.run();
    expect(p.pmtu.current).toBe(1300);
    // The path shrinks: the next confirmation (30 s) is lost and the search starts over.
    p.setFits(1250);
    p.pmtu.tick(p.advance(30_000), 1);
    p.pmtu.tick(p.advance(1000), 1);
    expect(p.pmtu.known).toBe(false);
    expect(p.pmtu.current).toBeLessThanOrEqual(1250);
    p.run();
    expect(p.pmtu.current).toBe(1250);
    // It grows again: found by the periodic raise.
    p.setFits(1320);
    p.pmtu.tick(p.advance(600_000), 1);
    p.run();
    expect(p.pmtu.current).toBe(1320);
  });

  it("sends nothing on an idle link once the search ended", () => {
    const p = onPath(1320, 1300);
    p.pmtu.restart(0, 1);
    p.run();
    const sent = p.sent.length;
    for (let i = 0; i < 20; i++) p.pmtu.tick(p.advance(60_000), 1, false);
    expect(p.sent.length).toBe(sent);
    expect(p.pmtu.known).toBe(true);
  });
});
