import { describe, expect, it } from "vitest";
import { RxWatchdog } from "./rx-watchdog.js";

const MB = 1 << 20;

function watchdog(state: { rss: number; delay: number }) {
  return new RxWatchdog<{ slowRxMessages: number }>({
    rssLimitBytes: 256 * MB,
    minMessages: 500,
    minLoopDelayMs: 50,
    rss: () => state.rss,
    loopDelayMs: () => state.delay,
  });
}

describe("RxWatchdog", () => {
  it("blames the link that took the most messages once memory is past the limit and the loop is behind", () => {
    const state = { rss: 100 * MB, delay: 200 };
    const w = watchdog(state);
    const quiet = { slowRxMessages: 0 };
    const flooded = { slowRxMessages: 0 };
    expect(w.check([quiet, flooded])).toBeNull(); // first sight: nothing to compare with
    quiet.slowRxMessages += 600;
    flooded.slowRxMessages += 50_000;
    expect(w.check([quiet, flooded])).toBeNull(); // memory under the limit
    state.rss = 300 * MB;
    flooded.slowRxMessages += 50_000;
    quiet.slowRxMessages += 600;
    expect(w.check([quiet, flooded])).toEqual({
      link: flooded,
      messages: 50_000,
      rssBytes: 300 * MB,
      loopDelayMs: 200,
    });
  });

  it("closes nothing while the event loop keeps up or no link is busy", () => {
    const state = { rss: 300 * MB, delay: 10 };
    const w = watchdog(state);
    const link = { slowRxMessages: 0 };
    w.check([link]);
    link.slowRxMessages += 50_000;
    expect(w.check([link])).toBeNull(); // memory is high, but the loop is not behind
    state.delay = 500;
    link.slowRxMessages += 100;
    expect(w.check([link])).toBeNull(); // the loop is behind, but not because of this link
    link.slowRxMessages += 1000;
    expect(w.check([link])?.link).toBe(link);
  });

  it("counts a link's messages from the check after it was blamed", () => {
    const w = watchdog({ rss: 300 * MB, delay: 500 });
    const link = { slowRxMessages: 0 };
    w.check([link]);
    link.slowRxMessages += 1000;
    expect(w.check([link])?.messages).toBe(1000);
    link.slowRxMessages += 1000;
    expect(w.check([link])).toBeNull(); // first sight again
  });

  it("takes a check that runs late against its period as the event loop being behind", () => {
    const w = new RxWatchdog<{ slowRxMessages: number }>({
      rssLimitBytes: 256 * MB,
      periodMs: 20,
      rss: () => 300 * MB,
    });
    const link = { slowRxMessages: 0 };
    w.check([link]);
    link.slowRxMessages += 1000;
    expect(w.check([link])).toBeNull(); // on time
    const until = performance.now() + 100;
    while (performance.now() < until); // an event-loop turn of 100 ms
    link.slowRxMessages += 1000;
    expect(w.check([link])?.loopDelayMs).toBeGreaterThanOrEqual(50);
  });
});
