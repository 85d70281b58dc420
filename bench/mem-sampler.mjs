// A memory sampler preloaded into a node's process for `bench/rss-profile.ts` (off unless asked for):
// NODE_OPTIONS="--import <this file>" with TINCAN_MEM_SAMPLES=<file> appends one JSON line every
// TINCAN_MEM_EVERY_MS (default 250) to <file>.<pid>: process.memoryUsage() and V8's heap spaces.
// Only processes whose argv contains TINCAN_MEM_MATCH (default "--with-datapath") sample.
import { appendFileSync } from "node:fs";
import v8 from "node:v8";

const out = process.env.TINCAN_MEM_SAMPLES;
const match = process.env.TINCAN_MEM_MATCH ?? "--with-datapath";
if (out && process.argv.some((a) => a.includes(match))) {
  const file = `${out}.${process.pid}`;
  const MB = 1048576;
  const sample = () => {
    const m = process.memoryUsage();
    const spaces = {};
    for (const s of v8.getHeapSpaceStatistics()) {
      spaces[s.space_name] = {
        size: s.space_size / MB,
        used: s.space_used_size / MB,
        phys: s.physical_space_size / MB,
      };
    }
    const line = {
      t: Date.now(),
      rss: m.rss / MB,
      heapTotal: m.heapTotal / MB,
      heapUsed: m.heapUsed / MB,
      external: m.external / MB,
      arrayBuffers: m.arrayBuffers / MB,
      spaces,
    };
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  };
  setInterval(sample, Number(process.env.TINCAN_MEM_EVERY_MS ?? 250)).unref();
}
