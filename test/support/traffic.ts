// Traffic through lab hosts for system tests: ping loss, a short iperf3 TCP run, raw UDP datagrams
// (forged or garbage underlay packets from a third namespace).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import type { Host, Netns } from "../lab/index.js";
import { waitFor } from "./datapath-driver.js";

/** `count` pings at `intervalSec`; returns how many were lost. */
export async function pingLoss(from: Host, to: string, count: number, intervalSec = 0.05): Promise<number> {
  const r = await from.exec(
    ["ping", "-n", "-q", "-c", String(count), "-i", String(intervalSec), "-W", "2", to],
    {
      timeoutMs: 120_000,
    },
  );
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  if (!m) throw new Error(`ping output: ${r.stdout}${r.stderr}`);
  return Number(m[1]) - Number(m[2]);
}

export async function iperfTcp(client: Host, server: Host, dst: string, seconds: number): Promise<number> {
  const srv = server.spawn("iperf3", ["-s", "-1", "-B", dst], { name: "iperf3-s" });
  try {
    await waitFor("iperf3 server", async () =>
      (await server.exec(["ss", "-ltn"])).stdout.includes(`${dst}:5201`),
    );
    const run = await client.exec(["iperf3", "-c", dst, "-t", String(seconds), "-J"], { timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(0);
    return JSON.parse(run.stdout).end.sum_received.bits_per_second as number;
  } finally {
    await srv.stop(2000);
  }
}

/** Sends UDP datagrams (hex payloads) from `from` to addr:port. */
export async function sendUdp(from: Netns, addr: string, port: number, payloadsHex: string[]): Promise<void> {
  const file = join(from.lab.dir, `${from.name}-datagrams.json`);
  writeFileSync(file, JSON.stringify(payloadsHex));
  const script = `
const s = require("node:dgram").createSocket("udp4");
const list = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
let i = 0;
const next = () => { if (i >= list.length) return s.close(); s.send(Buffer.from(list[i++], "hex"), ${port}, "${addr}", next); };
next();`;
  const r = await from.exec(["node", "-e", script, file], { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
}
