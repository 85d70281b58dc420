// Link setup time and idle XMPP cost of GroupVPN (issues #5 and #7), on the flat lab with prosody.
// One node pings the others, each ping setting up a fresh on-demand link; links are trimmed when
// idle and set up again, until `--setups` setups were timed (first echo request sent -> first reply,
// from ping's own RTT of that first packet). Then everything sits idle for `--idle` seconds while
// iptables counters in each node count the bytes of its XMPP connection.
//   node --import tsx bench/link-setup.ts [--setups 20] [--targets 5] [--idle 60]
import { parseArgs } from "node:util";
import { Lab } from "../test/lab/index.js";
import { waitFor } from "../test/support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "../test/support/vpn-node.js";

const { values } = parseArgs({
  options: {
    setups: { type: "string", default: "20" },
    targets: { type: "string", default: "5" },
    idle: { type: "string", default: "60" },
  },
});
const SETUPS = Number(values.setups);
const TARGETS = Number(values.targets);
const IDLE_SEC = Number(values.idle);

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
};

const lab = await Lab.create({ prefix: "bls" });
try {
  const names = ["src", ...Array.from({ length: TARGETS }, (_, i) => `t${i + 1}`)];
  const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
  const nodes = await addGroupNodes(lab, prosody, names, "10.10.3", {
    links: { policy: "on-demand", idleTimeoutSec: 1 },
    logLevel: process.env.LOG_LEVEL ?? "info",
  });
  await Promise.all(nodes.map((n) => n.start()));
  await new Promise((r) => setTimeout(r, 2000)); // presence settles
  const [src, ...targets] = nodes as [VpnNode, ...VpnNode[]];
  const times: number[] = [];
  const failures: string[] = [];
  while (times.length + failures.length < SETUPS) {
    for (const t of targets) {
      if (times.length + failures.length >= SETUPS) break;
      const r = await src.ping(t.address, 1, 5);
      const ms = Number(r.stdout.match(/time=([\d.]+) ms/)?.[1]);
      if (r.code === 0 && Number.isFinite(ms)) times.push(ms);
      else failures.push(t.opts.user);
    }
    // Let every link go idle and be trimmed before the next round.
    await waitFor("links trimmed", async () => (await src.links()).length === 0, 30_000);
  }

  // Idle XMPP cost: count the bytes of each node's c2s connection (both directions).
  for (const n of nodes) {
    await n.host.run(["iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", String(prosody.port)]);
    await n.host.run(["iptables", "-A", "INPUT", "-p", "tcp", "--sport", String(prosody.port)]);
  }
  await new Promise((r) => setTimeout(r, IDLE_SEC * 1000));
  const perNode: number[] = [];
  for (const n of nodes) {
    const out = await n.host.run(["iptables", "-L", "-v", "-x", "-n"]);
    const bytes = [...out.matchAll(/^\s*\d+\s+(\d+)\s.*[ds]pt:\d+/gm)].reduce((s, m) => s + Number(m[1]), 0);
    perNode.push((bytes / IDLE_SEC) * 60);
  }
  const result = {
    date: new Date().toISOString(),
    setups: times.length,
    timesMs: times,
    failures,
    setupMs: {
      p50: percentile(times, 50),
      p95: percentile(times, 95),
      min: Math.min(...times),
      max: Math.max(...times),
    },
    xmppIdleBytesPerNodePerMinute: { median: percentile(perNode, 50), max: Math.max(...perNode) },
  };
  console.log(JSON.stringify(result, null, 2));
  for (const n of nodes) await n.stop();
} finally {
  await lab.destroy();
}
process.exit(0);
