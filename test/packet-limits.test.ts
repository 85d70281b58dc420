// System test of the packet path's limits: no packet size silently lost over small underlay MTUs
// (path MTU probing, ICMP "fragmentation needed" / "packet too big", link-layer fragments), and
// the receive memory of a CPU-starved datapath bounded under a UDP flood (the receive window).
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { connectLink, DatapathHandle, waitFor } from "./support/datapath-driver.js";
import { floodStarvedReceiver } from "./support/flood.js";

const can = Lab.canRun();
const VNIC_MTU = 1280;
const A4 = "10.79.0.1";
const B4 = "10.79.0.2";
const A6 = "fd50::79:1";
const B6 = "fd50::79:2";
/** Most the receiving datapath's RSS may grow during the flood. */
const RSS_BOUND_MB = 40;

/** A pair of datapaths over one veth pair of the given MTU, linked, with routes both ways. */
async function linkedPair(
  lab: Lab,
  mtu: number,
  name = String(mtu),
  tune: Record<string, unknown> = {},
): Promise<[DatapathHandle, DatapathHandle]> {
  const [ha, hb] = await lab.addPair(`a${name}`, `b${name}`, { mtu });
  const a = await DatapathHandle.start(lab, ha, { tune });
  const b = await DatapathHandle.start(lab, hb, { tune });
  await a.configure(uidForIpv4(A4), `${A4}/24`, { ipv6: `${A6}/64`, mtu: VNIC_MTU });
  await b.configure(uidForIpv4(B4), `${B4}/24`, { ipv6: `${B6}/64`, mtu: VNIC_MTU });
  for (const [x, y, p4, p6] of [
    [a, b, B4, B6],
    [b, a, A4, A6],
  ] as const) {
    await x.call("route.set", { prefix: `${p4}/32`, peerUid: y.uid });
    await x.call("route.set", { prefix: `${p6}/128`, peerUid: y.uid });
  }
  await connectLink(a, b);
  return [a, b];
}

type Outcome = "reply" | "told" | "lost";

/** One ping with DF (`-M do`): a reply, the sender told the size does not fit, or silence. */
async function pingDf(a: DatapathHandle, dst: string, size: number, v6: boolean): Promise<Outcome> {
  const args = ["ping", ...(v6 ? ["-6"] : []), "-M", "do", "-c", "1", "-W", "1", "-s", String(size), dst];
  const r = await a.host.exec(args);
  if (r.code === 0) return "reply";
  // The ICMP error itself ("Frag needed and DF set", "Packet too big"), or the local refusal once
  // the kernel has learnt the path MTU from it ("message too long, mtu=N").
  return /frag needed|packet too big|message too long/i.test(r.stdout + r.stderr) ? "told" : "lost";
}

/** Plain ping (the kernel's default, DF + PMTU discovery): how many of 3 were answered. */
async function pingPlain(a: DatapathHandle, dst: string, size: number, v6: boolean): Promise<number> {
  const args = ["ping", ...(v6 ? ["-6"] : []), "-c", "3", "-i", "0.2", "-W", "1", "-s", String(size), dst];
  const r = await a.host.exec(args);
  return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? 0);
}

/** Ping payload sizes: every 100 bytes, the vNIC's limit, and both sides of the link's path MTU. */
function sizes(headers: number, pathMtu: number | null): number[] {
  const max = VNIC_MTU - headers;
  const set = new Set<number>([0, 56, max]);
  for (let s = 100; s < max; s += 100) set.add(s);
  if (pathMtu !== null)
    for (const d of [-1, 0, 1]) {
      const s = pathMtu - headers + d;
      if (s > 0 && s <= max) set.add(s);
    }
  return [...set].sort((x, y) => x - y);
}

async function tcpTransfer(a: DatapathHandle, b: DatapathHandle, dst: string): Promise<number> {
  const server = b.host.spawn("iperf3", ["-s", "-1", "-B", dst], { name: "iperf3-s" });
  try {
    await waitFor("iperf3 server", async () => (await b.host.exec(["ss", "-ltn"])).stdout.includes(":5201"));
    const run = await a.host.exec(["iperf3", "-c", dst, "-t", "2", "-J"], { timeoutMs: 30_000 });
    if (run.code !== 0) return 0;
    return JSON.parse(run.stdout).end.sum_received.bytes as number;
  } finally {
    await server.stop(2000);
  }
}

describe.skipIf(!can.ok)("packet limits", () => {
  let lab: Lab;
  const started: DatapathHandle[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "pl", internet: false });
  });

  afterAll(async () => {
    for (const d of started) await d.stop();
    await lab?.destroy();
  });

  for (const underlay of [1280, 1400, 1500]) {
    it(`loses no ping size silently over an underlay of MTU ${underlay}`, async () => {
      const pair = await linkedPair(lab, underlay);
      started.push(...pair);
      const [a, b] = pair;
      const pathMtu = await waitFor("path MTU", async () => {
        const [l] = await a.call("link.query", { peerUid: b.uid });
        return typeof l?.pathMtu === "number" ? (l.pathMtu as number) : undefined;
      });
      const rows: string[] = [];
      const lost: string[] = [];
      for (const [v6, dst, headers] of [
        [false, B4, 28],
        [true, B6, 48],
      ] as const) {
        for (const size of sizes(headers, pathMtu)) {
          // A size the path drops silently loses every try; one lost echo on a loaded host is noise.
          let df = await pingDf(a, dst, size, v6);
          for (let retry = 0; retry < 2 && df === "lost"; retry++) df = await pingDf(a, dst, size, v6);
          let plain = await pingPlain(a, dst, size, v6);
          if (plain === 0) plain = await pingPlain(a, dst, size, v6);
          rows.push(`${v6 ? "v6" : "v4"} ${String(size).padStart(5)} ${df.padEnd(5)} plain ${plain}/3`);
          if (df === "lost" || plain === 0)
            lost.push(`${v6 ? "v6" : "v4"} ${size} (${df}, plain ${plain}/3)`);
        }
      }
      if (underlay === 1400) {
        // A vNIC MTU above the path MTU, which is at least IPv6's 1280: IPv6 gets "packet too big".
        await a.call("vnic.configure", { uid: a.uid, mtu: 1400 });
        const big = await pingDf(a, B6, pathMtu - 48 + 1, true);
        const fits = await pingDf(a, B6, pathMtu - 48, true);
        rows.push(`v6 ${pathMtu - 48 + 1} ${big} / ${pathMtu - 48} ${fits} (vNIC MTU 1400)`);
        expect([big, fits]).toEqual(["told", "reply"]);
        await a.call("vnic.configure", { uid: a.uid, mtu: VNIC_MTU });
      }
      const tcp4 = await tcpTransfer(a, b, B4);
      const tcp6 = await tcpTransfer(a, b, B6);
      const [link] = await a.call("link.query", { peerUid: b.uid });
      const vnic = await a.call("vnic.query");
      console.log(
        `underlay MTU ${underlay}: link pathMtu ${pathMtu} (${link.transport}), TCP ${tcp4} B (v4) / ${tcp6} B (v6) in 2 s, ` +
          `vNIC drops ${JSON.stringify(vnic.drops)}, link drops ${JSON.stringify(link.drops)}\n` +
          `  size outcome(-M do) plain\n  ${rows.join("\n  ")}`,
      );
      expect(lost, `silently lost: ${lost.join(", ")}`).toEqual([]);
      expect(tcp4).toBeGreaterThan(1e6);
      expect(tcp6).toBeGreaterThan(1e6);
      // The path MTU is the largest packet one underlay datagram carries: it grows with the underlay.
      expect(pathMtu).toBeLessThanOrEqual(underlay - 20 - 8 - 12);
      if (underlay === 1280) expect(pathMtu).toBeLessThan(VNIC_MTU);
      for (const d of pair) {
        await d.stop();
        started.splice(started.indexOf(d), 1);
      }
    }, 90_000);
  }

  it("keeps a CPU-starved receiver's memory bounded under a UDP flood, counting the drops", async () => {
    // The receive window is the media track's (a link on the fast path reads with recvmmsg into fixed
    // buffers: test/rss-flood.test.ts), so this link stays on node-datachannel.
    const pair = await linkedPair(lab, 1500, "flood", { fastPath: false });
    started.push(...pair);
    const [a, b] = pair;
    const { sent, before, peak, after, code, stderr } = await floodStarvedReceiver(a, b, B4, 15_000);
    const [la] = await a.call("link.query", { peerUid: b.uid });
    const [lb] = await b.call("link.query", { peerUid: a.uid });
    console.log(
      `UDP flood (${sent} datagrams in 15 s) at a CPU-starved receiver: RSS before ${before} MB, ` +
        `peak ${peak} MB, after ${after} MB; sender link tx ${la.txPackets} packets, drops ${JSON.stringify(la.drops)}, ` +
        `receiver link rx ${lb.rxPackets} packets, drops ${JSON.stringify(lb.drops)}`,
    );
    expect(code, stderr).toBe(0);
    // The window holds 4096 RTP packets (~5.4 MB of payload; more with libdatachannel's per-message
    // overhead); without it RSS grew by 59-124 MB in these 15 s on a loaded 2-core machine.
    expect(peak - before).toBeLessThan(RSS_BOUND_MB);
    expect(la.drops.peerBacklog ?? 0).toBeGreaterThan(0);
    const ping = await a.host.exec(["ping", "-c", "3", "-i", "0.2", "-W", "2", B4]);
    expect(ping.code, ping.stdout).toBe(0);
  }, 90_000);
});
