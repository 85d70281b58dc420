// A memory sampler preloaded into a node's process for `bench/rss-profile.ts` (off unless asked for):
// NODE_OPTIONS="--import <this file>" with TINCAN_MEM_SAMPLES=<file> appends one JSON line every
// TINCAN_MEM_EVERY_MS (default 250) to <file>.<pid>: process.memoryUsage() and V8's heap spaces.
// Only processes whose argv contains TINCAN_MEM_MATCH (default "--with-datapath") sample. With
// TINCAN_MEM_TRACE=1 it also counts the bytes of Buffers of 2 KiB and more made from JavaScript, by
// the caller's source line, into <file>.<pid>.alloc (slow: for finding who allocates, not for figures).
import { appendFileSync, writeFileSync } from "node:fs";
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
  if (process.env.TINCAN_MEM_TRACE === "1") traceBuffers(`${file}.alloc`);
  // TINCAN_MEM_SNAPSHOT=S: a V8 heap snapshot S seconds after start, to <file>.<pid>.heapsnapshot.
  const snapAfter = Number(process.env.TINCAN_MEM_SNAPSHOT ?? 0);
  if (snapAfter > 0) setTimeout(() => v8.writeHeapSnapshot(`${file}.heapsnapshot`), snapAfter * 1000).unref();
}

function traceBuffers(file) {
  const bytes = new Map();
  const count = (n) => {
    if (!(n >= 2048)) return;
    const frames = (new Error().stack ?? "").split("\n").slice(3);
    const at = frames.find((f) => !f.includes("node:") && !f.includes("mem-sampler")) ?? "?";
    bytes.set(at.trim(), (bytes.get(at.trim()) ?? 0) + n);
  };
  for (const name of ["alloc", "allocUnsafe", "allocUnsafeSlow"]) {
    const orig = Buffer[name];
    Buffer[name] = function (size, ...rest) {
      count(size);
      return orig.call(this, size, ...rest);
    };
  }
  const from = Buffer.from;
  Buffer.from = function (value, ...rest) {
    if (value && typeof value === "object" && "byteLength" in value && !(value instanceof ArrayBuffer))
      count(value.byteLength);
    return from.call(this, value, ...rest);
  };
  setInterval(() => {
    const top = [...bytes.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15);
    writeFileSync(file, top.map(([at, n]) => `${(n / 1048576).toFixed(1)} MB ${at}`).join("\n"));
  }, 1000).unref();
}
