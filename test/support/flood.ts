// A UDP flood through a link at a CPU-starved receiving datapath, watching its resident memory:
// what libdatachannel's unbounded native->JS queue does when the event loop cannot keep up.
import { readFileSync } from "node:fs";
import { setPriority } from "node:os";
import { favourCpu } from "../lab/index.js";
import { type DatapathHandle, waitFor } from "./datapath-driver.js";

/** Sends 1200-byte UDP datagrams to argv[1]:9000 as fast as the socket takes them for argv[2] ms; prints how many. */
const UDP_FLOOD = `
const s = require("node:dgram").createSocket("udp4");
const payload = Buffer.alloc(1200, 0x55);
const end = Date.now() + Number(process.argv[2]);
let sent = 0, inFlight = 0;
const done = () => { inFlight--; };
(function burst() {
  while (inFlight < 256) { inFlight++; sent++; s.send(payload, 9000, process.argv[1], done); }
  if (Date.now() < end) setImmediate(burst); else setTimeout(() => { console.log(sent); process.exit(0); }, 200);
})();`;
/** Receives and discards UDP on argv[1]:9000. */
const UDP_SINK = `require("node:dgram").createSocket("udp4").on("message", () => {}).bind(9000, process.argv[1]);`;

/** Resident memory of a process, in MB. */
export function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  return Math.round(kb / 1024);
}

export interface FloodResult {
  /** Datagrams the flood sent. */
  sent: number;
  /** The receiver's RSS (MB) before, at its highest during, and 3 s after the flood. */
  before: number;
  peak: number;
  after: number;
  /** The flooding process's exit code and stderr. */
  code: number | null;
  stderr: string;
}

/**
 * Floods `dst` (an overlay address of `b`) from `a`'s host for `ms` while `b`'s event loop shares
 * one CPU with 16 busy loops (libdatachannel's threads run free): it drains far slower than
 * packets arrive.
 */
export async function floodStarvedReceiver(
  a: DatapathHandle,
  b: DatapathHandle,
  dst: string,
  ms: number,
): Promise<FloodResult> {
  const sink = b.host.spawn("node", ["-e", UDP_SINK, dst], { name: "udp-sink" });
  await waitFor("UDP sink", async () => (await b.host.exec(["ss", "-lun"])).stdout.includes(":9000"));
  await b.host.run(["taskset", "-p", "-c", "0", String(b.proc.pid)]);
  // The main thread alone (setpriority on Linux is per thread) yields to B's native threads, and
  // on a shared, loaded machine the sender must still outpace it: A's session gets a high CPU
  // weight (autogroup scheduling: a session's weight decides its share).
  setPriority(b.proc.pid, 19);
  favourCpu(a.proc.pid, -10);
  const busy = Array.from({ length: 16 }, (_, i) => i).map((i) =>
    b.host.spawn("taskset", ["-c", "0", "sh", "-c", "while :; do :; done"], { name: `busy${i}` }),
  );
  const before = rssMb(b.proc.pid);
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb(b.proc.pid));
  }, 200);
  let flood: Awaited<ReturnType<typeof a.host.exec>>;
  try {
    flood = await a.host.exec(["node", "-e", UDP_FLOOD, dst, String(ms)], { timeoutMs: ms + 45_000 });
  } finally {
    clearInterval(sampler);
    for (const p of busy) await p.stop(2000);
    await sink.stop(2000);
    await b.host.run(["taskset", "-p", "-c", "0,1", String(b.proc.pid)]);
    setPriority(b.proc.pid, 0);
  }
  peak = Math.max(peak, rssMb(b.proc.pid));
  await new Promise((r) => setTimeout(r, 3000));
  const after = rssMb(b.proc.pid);
  return { sent: Number(flood.stdout.trim()), before, peak, after, code: flood.code, stderr: flood.stderr };
}
