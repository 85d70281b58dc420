// Observability of a running node: the controller's Prometheus metrics (metrics.listen) checked against
// `tincanctl status --json`, JSON log lines, and the log level changed at run time (tincanctl
// log-level, SIGUSR1/SIGUSR2) without a restart.
import { join } from "node:path";
import { DROP_REASONS } from "@tincan/protocol";
import parsePrometheusTextFormat, { type PromFamily } from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const TINCANCTL = join(REPO, "packages/controller/dist/tincanctl.js");
const METRICS = "127.0.0.1:9480";

type Link = { peerUid: string; state: string; path: string | null; rxBytes: number; txBytes: number };

function series(families: PromFamily[], name: string, labels: Record<string, string> = {}): number[] {
  const family = families.find((f) => f.name === name);
  return (family?.metrics ?? [])
    .filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
    .map((m) => Number(m.value ?? m.count));
}

function one(families: PromFamily[], name: string, labels: Record<string, string> = {}): number {
  const values = series(families, name, labels);
  if (values.length !== 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${values.length} series`);
  return values[0] as number;
}

/** The controller's log lines as objects (the controller logs JSON: every line must parse). */
function jsonLines(log: string): Array<Record<string, unknown>> {
  return log
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe.skipIf(!can.ok)("observability: metrics and logs of a GroupVPN node", () => {
  let lab: Lab;
  let alice: VpnNode;
  let bob: VpnNode;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "omet" });
    const names = ["alice", "bob"];
    const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    [alice, bob] = (await addGroupNodes(lab, prosody, names, "10.31.0")) as [VpnNode, VpnNode];
    // on-demand links: the first ping sets the link up, after the log level was raised
    alice.opts.extra = { log: { level: "info", format: "json" }, metrics: { listen: METRICS } };
    await Promise.all([alice.start(), bob.start()]);
  }, 120_000);

  afterAll(async () => {
    for (const n of [alice, bob]) await n?.stop().catch(() => {});
    await lab?.destroy();
  });

  let rawText = "";
  const scrape = async () => {
    rawText = await alice.host.run(["curl", "-sf", `http://${METRICS}/metrics`]);
    return parsePrometheusTextFormat(rawText);
  };
  const tincanctl = (...args: string[]) =>
    alice.host.run(["node", TINCANCTL, ...args, "--token-file", alice.tokenFile]);

  it("the controller logs JSON lines at info: no debug lines", () => {
    const lines = jsonLines(alice.controller.log());
    expect(lines.length).toBeGreaterThan(3);
    for (const l of lines) {
      expect(typeof l.timestamp).toBe("string");
      expect(["error", "warn", "info"]).toContain(l.level);
      expect(typeof l.message).toBe("string");
    }
    expect(lines.some((l) => l.component === "groupvpn" && l.message === "controller running")).toBe(true);
  });

  it("tincanctl log-level debug raises the datapath (RPC) and the controller (SIGUSR1) without restart", async () => {
    // the controller writes its status file (with its PID) shortly after start
    await waitFor("the controller's status file", async () => (await alice.status()).controller, 10_000);
    expect(await tincanctl("log-level")).toBe("tincan: debug\n"); // vpn-node starts tincan at debug
    expect(await tincanctl("log-level", "info")).toMatch(
      /^tincan: info\ngroupvpn \(pid \d+\): its configured level \(SIGUSR2\)\n$/,
    );
    expect(await tincanctl("log-level")).toBe("tincan: info\n");
    const out = await tincanctl("log-level", "debug");
    expect(out).toMatch(/^tincan: debug\ngroupvpn \(pid \d+\): debug \(SIGUSR1\)\n$/);
    await alice.controller.waitForLog(/"message":"log level set"/, 5000);
    const before = Date.now();
    expect((await alice.ping(bob.address, 3, 2)).code).toBe(0);
    const debug = jsonLines(alice.controller.log()).filter((l) => l.level === "debug");
    console.log(`debug lines after SIGUSR1 and a link setup: ${debug.length} (${Date.now() - before} ms)`);
    expect(debug.some((l) => l.component === "links" && l.message === "offering a link")).toBe(true);
  });

  it("serves Prometheus metrics on loopback that match tincanctl status --json", async () => {
    await waitFor("alice's link to bob connected", async () => {
      await alice.ping(bob.address, 1, 1); // on-demand: a packet asks for the link
      return (await alice.connectedLinks()).length === 1;
    });
    const ping = await alice.ping(bob.address, 20, 2);
    expect(ping.code).toBe(0);
    // and one-way traffic (bob answers at most a few small ICMP errors), so that in and out differ
    const udp = `const s=require("dgram").createSocket("udp4");let n=0;const f=()=>s.send(Buffer.alloc(1000),9,"${bob.address}",()=>{if(++n<50)f();else s.close()});f()`;
    await alice.host.run(["node", "-e", udp]);
    const bobUid = (await alice.connectedLinks())[0]!.peerUid;
    const sum = (links: Link[], k: "rxBytes" | "txBytes") =>
      links.filter((l) => l.peerUid === bobUid).reduce((n, l) => n + l[k], 0);
    // the counters only grow: the scrape lies between the two status reads
    const first = (await alice.status()).links as Link[];
    const families = await scrape();
    const second = (await alice.status()).links as Link[];
    const rx = one(families, "tincan_peer_bytes_total", { uid: bobUid, dir: "in", peer: "bob@lab.local" });
    const tx = one(families, "tincan_peer_bytes_total", { uid: bobUid, dir: "out" });
    console.log(
      `bytes to bob: status ${sum(first, "txBytes")}..${sum(second, "txBytes")}, metrics ${tx}; from bob: status ${sum(first, "rxBytes")}..${sum(second, "rxBytes")}, metrics ${rx}`,
    );
    expect(tx).toBeGreaterThan(rx + 20_000);
    expect(tx).toBeGreaterThanOrEqual(sum(first, "txBytes"));
    expect(tx).toBeLessThanOrEqual(sum(second, "txBytes"));
    expect(rx).toBeGreaterThanOrEqual(sum(first, "rxBytes"));
    expect(rx).toBeLessThanOrEqual(sum(second, "rxBytes"));
    expect(one(families, "tincan_peer_packets_total", { uid: bobUid, dir: "out" })).toBeGreaterThanOrEqual(
      20,
    );

    const connected = second.filter((l) => l.state === "connected");
    const path = connected[0]?.path ?? "none";
    expect(one(families, "tincan_links", { state: "connected", path })).toBe(connected.length);
    expect(one(families, "tincan_link_phases", { phase: "connected" })).toBe(1);
    expect(one(families, "tincan_link_setups_total", { outcome: "connected" })).toBeGreaterThanOrEqual(1);
    expect(one(families, "tincan_link_setup_duration_seconds")).toBeGreaterThanOrEqual(1);
    expect(one(families, "tincan_xmpp_online")).toBe(1);
    expect(one(families, "tincan_datapath_up")).toBe(1);
    expect(one(families, "tincan_rpc_calls_total", { method: "link.query" })).toBeGreaterThan(0);
    // parse-prometheus-text-format 1.1 loses the labels, sum and count of labelled histograms: the raw line
    expect(rawText).toMatch(/^tincan_rpc_duration_seconds_count\{method="link\.create"\} [1-9]/m);
    for (const reason of families.find((f) => f.name === "tincan_drops_total")?.metrics ?? [])
      expect(DROP_REASONS).toContain(reason.labels?.reason);
  });

  it("the send-queue delay histogram counts the packets sent under a flood (which queues them on node-datachannel)", async () => {
    const delay = async () => {
      const text = await alice.host.run(["curl", "-sf", `http://${METRICS}/metrics`]);
      const read = (suffix: string) =>
        Number(
          new RegExp(`^tincan_send_queue_delay_seconds_${suffix} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN,
        );
      const count = read("count");
      return { count, sum: read("sum"), waited: count - read('bucket\\{le="0\\.0005"\\}') };
    };
    await waitFor("alice's link to bob connected", async () => {
      await alice.ping(bob.address, 1, 1);
      return (await alice.connectedLinks()).length === 1;
    });
    const txPackets = async () =>
      ((await alice.connectedLinks())[0] as { txPackets?: number } | undefined)?.txPackets ?? 0;
    const before = await delay();
    const txBefore = await txPackets();
    expect(before.count).toBeGreaterThan(0);
    // 3 s of 1200-byte datagrams as fast as alice's kernel takes them: more than the datapath can
    // encrypt and send, so they queue (the queue's CoDel drops some, which is fine)
    const flood = `const s=require("dgram").createSocket("udp4");const b=Buffer.alloc(1200);const end=Date.now()+3000;let n=0;const pump=()=>{while(n<64&&Date.now()<end){n++;s.send(b,9,"${bob.address}",()=>{n--;pump()})}if(n===0)s.close()};pump()`;
    await alice.host.run(["node", "-e", flood]);
    const after = await delay();
    console.log(
      `send-queue delay: ${after.count - before.count} packets sent in the flood, ${after.waited - before.waited} of them waited > 0.5 ms, mean ${(((after.sum - before.sum) / (after.count - before.count)) * 1000).toFixed(2)} ms`,
    );
    expect(after.waited - before.waited).toBeLessThanOrEqual(after.count - before.count);
    expect(after.sum).toBeGreaterThanOrEqual(before.sum);
    // On node-datachannel the flood outruns the link and packets queue; the fast path (sendmmsg into
    // the kernel) keeps up with it, so there they need not wait at all, and with the native forwarding
    // table (tune.nativeForward) plain packets do not pass JavaScript's send queue: only the link's
    // counters see them.
    const transport = ((await alice.connectedLinks())[0] as { transport?: string } | undefined)?.transport;
    const sent = (await txPackets()) - txBefore;
    console.log(`send-queue delay: the link's transport is ${transport}; it sent ${sent} packets`);
    expect(sent).toBeGreaterThan(1000);
    if (transport !== "fast") {
      expect(after.count - before.count).toBeGreaterThan(1000);
      expect(after.waited - before.waited).toBeGreaterThan(100);
      expect(after.sum).toBeGreaterThan(before.sum);
    }
  });

  it("metrics are served on loopback only, and nothing but /metrics", async () => {
    const wan = (await alice.host.run(["ip", "-4", "-o", "addr", "show", "scope", "global"])).match(
      /inet (\d+\.\d+\.\d+\.\d+)/,
    )?.[1];
    expect(wan).toBeDefined();
    const outside = await alice.host.exec(["curl", "-s", "--max-time", "2", `http://${wan}:9480/metrics`]);
    expect(outside.code).not.toBe(0);
    const other = await alice.host.run([
      "curl",
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `http://${METRICS}/`,
    ]);
    expect(other).toBe("404");
  });
});
