import { describe, expect, it } from "vitest";
import { RxWatchdog } from "./rx-watchdog.js";

const MB = 1 << 20;

function watchdog(state: { rss: number }) {
  return new RxWatchdog<{ slowRxMessages: number }>({
    rssLimitBytes: 256 * MB,
    minMessages: 500,
    minGrowthBytes: 4 * MB,
    rss: () => state.rss,
  });
}

describe("RxWatchdog", () => {
  it("blames the link that took the most messages once memory is past the limit and growing", () => {
    const state = { rss: 100 * MB };
    const w = watchdog(state);
    const quiet = { slowRxMessages: 0 };
    const flooded = { slowRxMessages: 0 };
    expect(w.check([quiet, flooded])).toBeNull(); // first sight: nothing to compare with
    quiet.slowRxMessages += 600;
    flooded.slowRxMessages += 50_000;
    state.rss = 200 * MB;
    expect(w.check([quiet, flooded])).toBeNull(); // memory under the limit
    state.rss = 300 * MB;
    flooded.slowRxMessages += 50_000;
    quiet.slowRxMessages += 600;
    expect(w.check([quiet, flooded])).toMatchObject({
      link: flooded,
      messages: 50_000,
      rssBytes: 300 * MB,
      growthBytes: 100 * MB,
    });
  });

  it("closes nothing while memory stays put (kept by the allocator) or no link is busy", () => {
    const state = { rss: 300 * MB };
    const w = watchdog(state);
    const link = { slowRxMessages: 0 };
    w.check([link]);
    link.slowRxMessages += 50_000;
    state.rss += 2 * MB;
    expect(w.check([link])).toBeNull(); // high, but hardly growing
    state.rss += 50 * MB;
    link.slowRxMessages += 100;
    expect(w.check([link])).toBeNull(); // growing, but not because of this link
    state.rss += 50 * MB;
    link.slowRxMessages += 1000;
    expect(w.check([link])?.link).toBe(link);
  });

  it("counts a link's messages from the check after it was blamed", () => {
    const state = { rss: 300 * MB };
    const w = watchdog(state);
    const link = { slowRxMessages: 0 };
    w.check([link]);
    link.slowRxMessages += 1000;
    state.rss += 10 * MB;
    expect(w.check([link])?.messages).toBe(1000);
    link.slowRxMessages += 1000;
    state.rss += 10 * MB;
    expect(w.check([link])).toBeNull(); // first sight again
  });

  it("reports how late a check ran against its period (the event loop's lag)", () => {
    const state = { rss: 300 * MB };
    const w = new RxWatchdog<{ slowRxMessages: number }>({
      rssLimitBytes: 256 * MB,
      periodMs: 20,
      rss: () => state.rss,
    });
    const link = { slowRxMessages: 0 };
    w.check([link]);
    const until = performance.now() + 100;
    while (performance.now() < until); // an event-loop turn of 100 ms
    link.slowRxMessages += 1000;
    state.rss += 10 * MB;
    expect(w.check([link])?.loopLagMs).toBeGreaterThanOrEqual(50);
  });
});
