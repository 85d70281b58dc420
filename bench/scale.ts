// Scale of a proactive GroupVPN (issue #7): N nodes on the flat lab with prosody, every node linking
// to every other. Reports the time from "all controllers running" until every node reaches every
// other (one ping per pair, all pairs of each node in parallel), and the memory (sum of peak RSS)
// and CPU seconds of all tincan and groupvpn processes. `ownMachineMbPerNode` is what one node would
// take on a machine of its own: both processes' anonymous memory plus the file pages (the node binary,
// its libraries and addons: ~34 MB for a bare Node process) counted once.
// The XMPP server's side (issue #18, bench/xmpp-cost.ts): bytes per node, stanzas and server CPU from the
// start until all pairs ping ("join"), then over `--idle` seconds of idle, then while `--churn` nodes'
// controllers restart one after the other (each logs out and in again: presence to and from all others).
//   node --import tsx bench/scale.ts [--nodes 20] [--timeout 180] [--log-level info]
//     [--xmpp prosody|ejabberd|ejabberd-cluster] [--idle 0] [--churn 0] [--policy proactive|structured]
//   (--policy structured: the ring overlay with its defaults, issue #18; links per node are then
//   about 2k + log2(N) instead of N - 1)
//   (--timeout: seconds to wait for all pairs; KEEP_LAB=1 keeps the lab dir with every node's logs)
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { Lab } from "../test/lab/index.js";
import { addGroupNodes, labUsers } from "../test/support/vpn-node.js";
import { startXmppUnderTest, XMPP_SERVER_KINDS, XmppMeter, type XmppServerKind } from "./xmpp-cost.js";

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "20" },
    timeout: { type: "string", default: "180" },
    "log-level": { type: "string", default: "info" },
    xmpp: { type: "string", default: "prosody" },
    idle: { type: "string", default: "0" },
    churn: { type: "string", default: "0" },
    policy: { type: "string", default: "proactive" },
  },
});
const N = Number(values.nodes);
if (!["error", "warn", "info", "debug"].includes(values["log-level"])) {
  throw new Error(`--log-level must be error, warn, info or debug, not ${values["log-level"]}`);
}
const TIMEOUT_MS = Number(values.timeout) * 1000;
const XMPP = values.xmpp as XmppServerKind;
if (!XMPP_SERVER_KINDS.includes(XMPP))
  throw new Error(`--xmpp must be one of ${XMPP_SERVER_KINDS.join(", ")}`);
const IDLE_SEC = Number(values.idle);
const CHURN = Number(values.churn);
const POLICY = values.policy;
if (POLICY !== "proactive" && POLICY !== "structured")
  throw new Error(`--policy must be proactive or structured, not ${POLICY}`);

interface ProcStats {
  rssMb: number;
  nowMb: number;
  pssMb: number;
  anonMb: number;
  fileMb: number;
  cpuSec: number;
}

function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const hwm = Number(status.match(/VmHWM:\s+(\d+)/)?.[1] ?? 0);
  const now = Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0);
  const anon = Number(status.match(/RssAnon:\s+(\d+)/)?.[1] ?? 0);
  const file = Number(status.match(/RssFile:\s+(\d+)/)?.[1] ?? 0);
  // PSS shares the pages of the node binary and libraries among the processes mapping them.
  const pss = Number(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+)/m)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    rssMb: hwm / 1024,
    nowMb: now / 1024,
    pssMb: pss / 1024,
    anonMb: anon / 1024,
    fileMb: file / 1024,
    cpuSec: (Number(f[11]) + Number(f[12])) / 100,
  };
}

/** The node process itself (the lab spawns it via `ip netns exec`, which execs into node). */
function sum(pids: number[]): ProcStats {
  const total: ProcStats = { rssMb: 0, nowMb: 0, pssMb: 0, anonMb: 0, fileMb: 0, cpuSec: 0 };
  for (const s of pids.map(procStats)) {
    for (const k of Object.keys(total) as (keyof ProcStats)[]) total[k] += s[k];
  }
  return total;
}

/** Memory per node (totals over the N nodes) and the CPU seconds of all of them. */
function perNode(s: ProcStats) {
  return {
    peakRssMbPerNode: Math.round(s.rssMb / N),
    rssNowMbPerNode: Math.round(s.nowMb / N),
    pssMbPerNode: Math.round(s.pssMb / N),
    anonMbPerNode: Math.round(s.anonMb / N),
    cpuSec: s.cpuSec,
  };
}

const lab = await Lab.create({ prefix: "bsc" });
try {
  const names = Array.from({ length: N }, (_, i) => `n${i + 1}`);
  const xmpp = await startXmppUnderTest(lab, XMPP, labUsers(names));
  const nodes = await addGroupNodes(lab, xmpp.servers[0]!, names, "10.10.4", {
    links: { policy: POLICY, maxLinks: 256 },
    logLevel: values["log-level"],
    // 2N Node processes start at once on 2 cores: logging in takes a while.
    startTimeoutMs: 180_000,
  });
  for (const [i, n] of nodes.entries()) n.opts.prosody = xmpp.servers[i % xmpp.servers.length]!;
  const meter = await XmppMeter.install(xmpp);
  const xmppAtStart = await meter.sample();
  const t0 = Date.now();
  await Promise.all(nodes.map((n) => n.start()));
  const running = Date.now();
  // Each round, every node pings all peers it has not reached yet with one fping (one process per
  // node and round, not one per pair: a spawn per pair loads 2 cores enough to slow the mesh down).
  const pending = new Map(nodes.map((a) => [a, new Set(nodes.filter((b) => b !== a).map((b) => b.address))]));
  const unreached = () => [...pending.values()].reduce((n, s) => n + s.size, 0);
  while (unreached() > 0 && Date.now() - running < TIMEOUT_MS) {
    const round = Date.now();
    await Promise.all(
      [...pending].map(async ([a, targets]) => {
        if (targets.size === 0) return;
        const r = await a.host.exec(["fping", "-a", "-r", "0", "-t", "1000", ...targets]);
        // fping exits 1 when some target did not answer; more means it could not run at all, except
        // 124: killed after exec's 60 s on a machine so loaded that it could not finish; next round
        if (r.code === 124) return;
        if (r.code > 1) throw new Error(`fping failed (exit ${r.code}): ${r.stderr.trim()}`);
        for (const alive of r.stdout.split("\n")) targets.delete(alive.trim());
      }),
    );
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - round))));
  }
  const allPairs = Date.now();
  const xmppAtAllPairs = await meter.sample();
  await new Promise((r) => setTimeout(r, IDLE_SEC * 1000));
  const xmppAtEnd = await meter.sample();
  for (const n of nodes.slice(0, CHURN)) {
    await n.controller.stop(5000);
    await n.startController(); // a new process, with a log file of its own
    await n.controller.waitForLog(/xmpp online/, 120_000);
  }
  await new Promise((r) => setTimeout(r, CHURN > 0 ? 5000 : 0)); // presence and signals settle
  const xmppAfterChurn = await meter.sample();
  const died = nodes.flatMap((n) => [n.tincan, n.controller]).filter((p) => p.exited);
  for (const p of died) {
    console.error(
      `${p.name} (pid ${p.pid}) exited with ${p.exitCode}:\n${p.log().split("\n").slice(-30).join("\n")}`,
    );
  }
  const alive = (ps: { pid: number; exited: boolean }[]) => ps.filter((p) => !p.exited).map((p) => p.pid);
  const tincan = sum(alive(nodes.map((n) => n.tincan)));
  const ctl = sum(alive(nodes.map((n) => n.controller)));
  // One `tincanctl status` at a time: 50 at once on a loaded host outlast exec's 60 s.
  const linkCounts: number[] = [];
  for (const n of nodes)
    linkCounts.push(
      await n.connectedLinks().then(
        (l) => l.length,
        () => Number.NaN,
      ),
    );
  const answered = linkCounts.filter((c) => !Number.isNaN(c));
  // The controller's warning when RPCs to its datapath go unanswered (each one a run of timeouts).
  const unresponsiveWarnings = nodes
    .map(
      (n) =>
        n.controller
          .log()
          .split("\n")
          .filter((l) => l.includes("datapath unresponsive")).length,
    )
    .reduce((a, b) => a + b, 0);
  console.log(
    JSON.stringify(
      {
        date: new Date().toISOString(),
        nodes: N,
        startMs: running - t0,
        allPairsPingMsAfterStart: unreached() === 0 ? allPairs - running : null,
        pairsNotReached: unreached(),
        processesExited: died.map((p) => `${p.name} ${p.exitCode}`),
        policy: POLICY,
        linksPerNode: {
          mean: Math.round((answered.reduce((a, b) => a + b, 0) / answered.length) * 10) / 10,
          max: Math.max(...answered),
          unanswered: linkCounts.filter(Number.isNaN).length,
        },
        datapathUnresponsiveWarnings: unresponsiveWarnings,
        ownMachineMbPerNode: Math.round(
          (tincan.anonMb + ctl.anonMb + Math.max(tincan.fileMb, ctl.fileMb)) / N,
        ),
        tincan: perNode(tincan),
        groupvpn: perNode(ctl),
        xmpp: {
          server: XMPP,
          join: meter.cost(xmppAtStart, xmppAtAllPairs, N),
          ...(IDLE_SEC > 0 ? { idle: meter.cost(xmppAtAllPairs, xmppAtEnd, N) } : {}),
          ...(CHURN > 0 ? { churn: { restarts: CHURN, ...meter.cost(xmppAtEnd, xmppAfterChurn, N) } } : {}),
        },
        loadAvg: loadavg().map((l) => Math.round(l * 100) / 100),
      },
      null,
      2,
    ),
  );
  await Promise.all(nodes.map((n) => n.stop()));
} finally {
  await lab.destroy();
}
process.exit(0);
