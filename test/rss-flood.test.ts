// System test (#19): a datapath's memory stays bounded while a peer floods it over a fast-path link
// and it cannot keep up. The peer sends UDP through the tunnel as fast as it can (iperf3 -u -b 0);
// the receiving datapath is starved of CPU by SIGSTOP/SIGCONT cycles (stopped 3/4 of the time), so
// datagrams pile up in front of it. Every stage of its receive path has a fixed size (the kernel
// socket buffer, recvmmsg into one preallocated batch, TUN writes that drop on EAGAIN), so its RSS
// must level off instead of growing with the backlog.

import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { type DatapathHandle, linkedPair, waitFor } from "./support/datapath-driver.js";

const can = Lab.canRun();
const FLOOD_SECONDS = 20;
/** Stopped / running per cycle: the receiver gets a quarter of the time it would need. */
const STOP_MS = 300;
const RUN_MS = 100;
/** Most RSS the receiver may gain over its idle level with the link up (generous: GC, batches, noise). */
const GROWTH_BOUND_MB = 40;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function vmKb(pid: number, key: "VmRSS" | "VmHWM"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1]);
}

/**
 * Bytes sent and the receiver's loss from `iperf3 -u -J`. Without the end summary (a CI run once got
 * none, most likely because the results exchange over the starved link did not complete) the bytes
 * come from the per-second reports and the loss is unknown.
 */
function floodSummary(stdout: string): { bytes: number; lost_percent: number | null } {
  const out = JSON.parse(stdout) as {
    error?: string;
    end?: { sum?: { bytes: number; lost_percent: number } };
    intervals?: { sum?: { bytes?: number } }[];
  };
  if (out.end?.sum) return out.end.sum;
  console.log(`iperf3 gave no end summary (${out.error ?? "no error given"}); bytes from its reports`);
  const bytes = (out.intervals ?? []).reduce((total, i) => total + (i.sum?.bytes ?? 0), 0);
  return { bytes, lost_percent: null };
}

describe.skipIf(!can.ok)("datapath memory under a UDP flood from a peer", () => {
  let lab: Lab;
  let a: DatapathHandle;
  let b: DatapathHandle;

  beforeAll(async () => {
    const pair = await Lab.pair({ prefix: "rssf" });
    lab = pair.lab;
    const [ha, hb] = [pair.a, pair.b];
    // No controller here to set a link up again: the PeerConnection stays open (fastPcCloseMs 0), so a
    // fast path that the starved receiver leaves unanswered for 3 s falls back instead of ending the link.
    [a, b] = await linkedPair(lab, [ha, hb], "10.79.0", { fastPath: true, fastPcCloseMs: 0 });
    await waitFor("both link ends on the fast path", async () => {
      const [la] = await a.call("link.query", { peerUid: b.uid });
      const [lb] = await b.call("link.query", { peerUid: a.uid });
      return la?.transport === "fast" && lb?.transport === "fast";
    });
  }, 60_000);

  afterAll(async () => {
    if (b) process.kill(b.proc.pid, "SIGCONT");
    await a?.stop();
    await b?.stop();
    await lab?.destroy();
  });

  it("keeps the starved receiver's RSS bounded", async () => {
    const pid = b.proc.pid;
    await sleep(2000); // settle after link setup
    const idleMb = vmKb(pid, "VmRSS") / 1024;
    const server = b.host.spawn("iperf3", ["-s", "-1", "-B", "10.79.0.2"], { name: "iperf3-s" });
    try {
      await waitFor("iperf3 server", async () =>
        (await b.host.exec(["ss", "-ltn"])).stdout.includes("10.79.0.2:5201"),
      );
      const flood = a.host.exec(
        ["iperf3", "-u", "-b", "0", "-l", "1200", "-c", "10.79.0.2", "-t", String(FLOOD_SECONDS), "-J"],
        { timeoutMs: (FLOOD_SECONDS + 60) * 1000 },
      );
      const samples: number[] = [];
      const end = Date.now() + FLOOD_SECONDS * 1000;
      try {
        while (Date.now() < end) {
          process.kill(pid, "SIGSTOP");
          await sleep(STOP_MS);
          process.kill(pid, "SIGCONT");
          await sleep(RUN_MS);
          samples.push(vmKb(pid, "VmRSS") / 1024);
        }
      } finally {
        process.kill(pid, "SIGCONT");
      }
      const run = await flood;
      expect(run.code, run.stderr).toBe(0);
      const sum = floodSummary(run.stdout);
      const peakMb = vmKb(pid, "VmHWM") / 1024;
      const lastMb = samples.at(-1) ?? 0;
      const firstHalfMax = Math.max(...samples.slice(0, samples.length >> 1));
      console.log(
        `flood: ${((sum.bytes * 8) / FLOOD_SECONDS / 1e6).toFixed(0)} Mbit/s sent, ${sum.lost_percent?.toFixed(1) ?? "?"} % lost; ` +
          `receiver RSS idle ${idleMb.toFixed(0)} MB, first half max ${firstHalfMax.toFixed(0)}, last ${lastMb.toFixed(0)}, peak ${peakMb.toFixed(0)} MB`,
      );
      // The flood did reach the receiver and overran it (else nothing was tested).
      expect(sum.bytes).toBeGreaterThan(10e6);
      if (sum.lost_percent !== null) expect(sum.lost_percent).toBeGreaterThan(10);
      expect(peakMb - idleMb).toBeLessThan(GROWTH_BOUND_MB);
      // Bounded, not just slow: the second half grows no more than a few MB over the first.
      expect(lastMb - firstHalfMax).toBeLessThan(8);
      // The receiver still works afterwards.
      const ping = await a.host.exec(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "10.79.0.2"]);
      expect(ping.code, ping.stdout).toBe(0);
    } finally {
      await server.stop(2000);
    }
  }, 120_000);
});
