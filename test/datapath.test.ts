// System test of the datapath alone: real tincan processes in network namespaces, links set up
// by a test driver over the RPC API (no XMPP), real ping / iperf3 / forged packets across them.

import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { connectLink, DatapathHandle, linkedPair, waitFor } from "./support/datapath-driver.js";

const can = Lab.canRun();

describe.skipIf(!can.ok)("datapath between two namespaces over veth", () => {
  let lab: Lab;
  let a: DatapathHandle;
  let b: DatapathHandle;

  beforeAll(async () => {
    const pair = await Lab.pair({ prefix: "tdp" });
    lab = pair.lab;
    // No controller here to set a link up again: keep the PeerConnection open on the fast path, so a
    // link whose fast path fell silent falls back and recovers by itself (test/fast-idle covers closing it).
    [a, b] = await linkedPair(lab, [pair.a, pair.b], "10.77.0", { fastPcCloseMs: 0 });
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await lab?.destroy();
  });

  it("carries ping both ways over a direct host path", async () => {
    const ping = await a.host.exec(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2"]);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
    expect(ping.stdout).toMatch(/3 received/);
    const back = await b.host.exec(["ping", "-c", "1", "-W", "2", "10.77.0.1"]);
    expect(back.code).toBe(0);
    const [link] = await a.call("link.query", { peerUid: b.uid });
    expect(link.state).toBe("connected");
    // A direct path: "prflx" when the peer's check arrived before its trickled candidate.
    expect(["host", "prflx"]).toContain(link.path);
    // ICE must not run the link over the overlay itself.
    expect(link.remote).not.toMatch(/^10\.77\./);
  });

  it("carries an iperf3 TCP stream", async () => {
    const server = b.host.spawn("iperf3", ["-s", "-1", "-B", "10.77.0.2"], { name: "iperf3-s" });
    await waitFor("iperf3 server", async () =>
      (await b.host.exec(["ss", "-ltn"])).stdout.includes("10.77.0.2:5201"),
    );
    const run = await a.host.exec(["iperf3", "-c", "10.77.0.2", "-t", "3", "-J"], { timeoutMs: 30_000 });
    await server.stop(2000);
    expect(run.code, run.stderr).toBe(0);
    const bps = JSON.parse(run.stdout).end.sum_received.bits_per_second as number;
    console.log(`iperf3 TCP through tincan: ${(bps / 1e6).toFixed(0)} Mbit/s`);
    expect(bps).toBeGreaterThan(10e6);
  });

  it("drops a packet with a forged source at the receiver", async () => {
    const before = (await b.call("link.query", { peerUid: a.uid }))[0].drops.spoofed ?? 0;
    // A source address A does not own: A's kernel sends it into the tunnel, B must refuse it.
    await a.host.run(["ip", "addr", "add", "10.77.0.99/32", "dev", "tincan0"]);
    const ping = await a.host.exec([
      "ping",
      "-c",
      "2",
      "-i",
      "0.2",
      "-W",
      "1",
      "-I",
      "10.77.0.99",
      "10.77.0.2",
    ]);
    expect(ping.code).not.toBe(0);
    const after = (await b.call("link.query", { peerUid: a.uid }))[0].drops.spoofed ?? 0;
    expect(after - before).toBeGreaterThanOrEqual(2);
  });

  it("rejects bad RPC input without changing state", async () => {
    const routes = await a.call("route.query");
    const wrong = await a.raw(
      "route.set",
      { prefix: "10.77.0.3/32", peerUid: b.uid },
      "not-the-token-at-all",
    );
    expect(wrong.error.code).toBe(-32001);
    const bad = await a.raw("route.set", { prefix: "10.77.0.3/33", peerUid: b.uid });
    expect(bad.error.code).toBe(-32602);
    expect(bad.error.message).toMatch(/prefix/);
    expect(await a.call("route.query")).toEqual(routes);
  });

  it("reports a peer whose packets stop disconnected within ~15 s, and connected when they return", async () => {
    const stateAtA = async () => (await a.call("link.query", { peerUid: b.uid }))[0]?.state;
    // B neither hears A nor answers: to A, B is dead (ICE consent alone would take ~30 s).
    const rules = [
      ["INPUT", "-p", "udp", "-s", "198.18.1.1", "-j", "DROP"],
      ["OUTPUT", "-p", "udp", "-d", "198.18.1.1", "-j", "DROP"],
    ];
    for (const r of rules) await b.host.run(["iptables", "-I", ...r]);
    const start = Date.now();
    try {
      await waitFor(
        "A to see the link disconnected",
        async () => (await stateAtA()) === "disconnected",
        20_000,
      );
      // On the fast path (the default) a peer is silent after max(silenceMs, 15 s); links are checked
      // once a second. The target is ~15 s.
      expect(Date.now() - start).toBeLessThan(16_500);
    } finally {
      for (const r of rules) await b.host.run(["iptables", "-D", ...r]);
    }
    await waitFor(
      "A to see the link connected again",
      async () => (await stateAtA()) === "connected",
      10_000,
    );
    const ping = await a.host.exec(["ping", "-c", "1", "-W", "2", "10.77.0.2"]);
    expect(ping.code).toBe(0);
  }, 60_000);
});

describe.skipIf(!can.ok)("multi-hop: A reaches C via B", () => {
  let lab: Lab;
  const dp: DatapathHandle[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "tmh" });
    const hosts = [await lab.addHost("a"), await lab.addHost("b"), await lab.addHost("c")];
    for (const [i, h] of hosts.entries()) {
      const d = await DatapathHandle.start(lab, h);
      await d.configure(uidForIpv4(`10.78.0.${i + 1}`), `10.78.0.${i + 1}/24`);
      dp.push(d);
    }
  });

  afterAll(async () => {
    for (const d of dp) await d.stop();
    await lab?.destroy();
  });

  it("pings end to end over two links with no A-C link", async () => {
    const [a, b, c] = dp as [DatapathHandle, DatapathHandle, DatapathHandle];
    await a.call("route.set", { prefix: "10.78.0.2/32", peerUid: b.uid });
    await a.call("route.set", { prefix: "10.78.0.3/32", peerUid: c.uid, via: b.uid });
    await b.call("route.set", { prefix: "10.78.0.1/32", peerUid: a.uid });
    await b.call("route.set", { prefix: "10.78.0.3/32", peerUid: c.uid });
    await c.call("route.set", { prefix: "10.78.0.2/32", peerUid: b.uid });
    await c.call("route.set", { prefix: "10.78.0.1/32", peerUid: a.uid, via: b.uid });
    await connectLink(a, b);
    await connectLink(b, c);
    const ping = await a.host.exec(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.78.0.3"]);
    expect(ping.code, ping.stdout).toBe(0);
    expect(await a.call("link.query", { peerUid: c.uid })).toEqual([]);
  });
});
