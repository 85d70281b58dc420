import { describe, expect, it } from "vitest";
import type { Log } from "./logger.js";
import { SignalLimiter, signalLimitsFrom } from "./signal-limiter.js";

function recordingLog(): Log & { warns: string[] } {
  const warns: string[] = [];
  const noop = () => {};
  return { warns, debug: noop, info: noop, error: noop, warn: (m: string) => void warns.push(m) } as never;
}

describe("SignalLimiter", () => {
  it("lets a burst through, then the sustained rate; drops are counted and logged once", () => {
    let now = 0;
    const log = recordingLog();
    const lim = new SignalLimiter(log, { burst: 20, perSec: 4, maxPeers: 100 }, () => now);
    let passed = 0;
    for (let i = 0; i < 2000; i++) if (lim.take("mallory")) passed++;
    expect(passed).toBe(20);
    expect(lim.dropped).toBe(1980);
    expect(log.warns).toHaveLength(1);
    now += 1000; // 4 more tokens
    passed = 0;
    for (let i = 0; i < 100; i++) if (lim.take("mallory")) passed++;
    expect(passed).toBe(4);
    expect(log.warns).toHaveLength(1);
  });

  it("keeps peers apart: one peer's flood does not cost another its signals", () => {
    const lim = new SignalLimiter(recordingLog(), { burst: 5, perSec: 1, maxPeers: 100 }, () => 0);
    for (let i = 0; i < 50; i++) lim.take("mallory");
    for (let i = 0; i < 5; i++) expect(lim.take("bob")).toBe(true);
  });

  it("logs again after the bucket refilled and the peer floods again", () => {
    let now = 0;
    const log = recordingLog();
    const lim = new SignalLimiter(log, { burst: 5, perSec: 1, maxPeers: 100 }, () => now);
    for (let i = 0; i < 10; i++) lim.take("m");
    now += 60_000;
    for (let i = 0; i < 10; i++) lim.take("m");
    expect(log.warns).toHaveLength(2);
  });

  it("tracks at most maxPeers buckets", () => {
    let now = 0;
    const lim = new SignalLimiter(recordingLog(), { burst: 2, perSec: 1, maxPeers: 10 }, () => now);
    for (let i = 0; i < 100; i++) {
      lim.take(`p${i}`);
      lim.take(`p${i}`);
      now += 1;
    }
    expect(lim.size).toBeLessThanOrEqual(10);
  });

  it("takes its burst and rate from the config's links.signalBurst and links.signalsPerSec", () => {
    let now = 0;
    const lim = new SignalLimiter(
      recordingLog(),
      signalLimitsFrom({ signalBurst: 6, signalsPerSec: 0.5 }),
      () => now,
    );
    let passed = 0;
    for (let i = 0; i < 100; i++) if (lim.take("mallory")) passed++;
    expect(passed).toBe(6);
    now += 4000; // 2 more tokens at 0.5/s
    passed = 0;
    for (let i = 0; i < 100; i++) if (lim.take("mallory")) passed++;
    expect(passed).toBe(2);
  });
});
