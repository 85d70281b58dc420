// Soak (issue #13): 5 GroupVPN nodes on demand in the lab for a long time, with mixed traffic,
// link churn, and faults on a schedule. It reports whether memory and file descriptors stay flat
// after warm-up, how many pings each fault cost, and whether every route is still there at the end.
//   node --import tsx bench/soak.ts [--minutes 30] [--fault-every 5] [--json FILE]
// Per node: a steady ping (5/s) to its ring neighbour, a TCP burst (iperf3, 5 s) every 2 min to a
// random node, a one-off ping to a random node every 20 s (on-demand links come and go: idle links
// are trimmed after 30 s). Every `--fault-every` minutes one fault, in turn: prosody restarted
// gracefully (SIGTERM), prosody killed (SIGKILL) and started again, a node roams to a new address.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Lab, sleep } from "../test/lab/index.js";
import { addGroupNodes, labUsers, type VpnNode } from "../test/support/vpn-node.js";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    "fault-every": { type: "string", default: "5" },
    json: { type: "string" },
  },
});
const RUN_MS = Number(values.minutes) * 60_000;
const FAULT_MS = Number(values["fault-every"]) * 60_000;
const SAMPLE_MS = 30_000;
const WARMUP_MS = Math.min(5 * 60_000, RUN_MS / 3);
if (!(RUN_MS > 0 && FAULT_MS > 0)) throw new Error("--minutes and --fault-every must be positive numbers");

interface Sample {
  atSec: number;
  rssMb: Record<string, number>;
  fds: Record<string, number>;
  links: Record<string, number>;
}

interface Fault {
  atSec: number;
  kind: string;
}

/** Resident MB of a process (0 once it has exited). */
function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Open file descriptors of a process (0 once it has exited). */
function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;

const lab = await Lab.create({ prefix: "soak" });
const t0 = Date.now();
const sec = () => Math.round((Date.now() - t0) / 1000);
let running = true;
try {
  const names = ["s1", "s2", "s3", "s4", "s5"];
  const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
  const nodes = await addGroupNodes(lab, prosody, names, "10.10.9", {
    links: { policy: "on-demand", idleTimeoutSec: 30 },
    logLevel: "info",
  });
  await Promise.all(nodes.map((n) => n.start()));
  console.error(
    `soak: ${nodes.length} nodes running; ${values.minutes} min, a fault every ${values["fault-every"]} min`,
  );

  const samples: Sample[] = [];
  const faults: Fault[] = [];
  const tcpMbit: number[] = [];
  const deadline = t0 + RUN_MS;

  const procs = (n: VpnNode) =>
    [
      [`${n.opts.user}/tincan`, n.tincan.pid],
      [`${n.opts.user}/groupvpn`, n.controller.pid],
    ] as const;

  const sampler = (async () => {
    while (running && Date.now() < deadline) {
      const s: Sample = { atSec: sec(), rssMb: {}, fds: {}, links: {} };
      for (const n of nodes) {
        for (const [name, pid] of procs(n)) {
          s.rssMb[name] = Math.round(rssMb(pid) * 10) / 10;
          s.fds[name] = fdCount(pid);
        }
        s.links[n.opts.user] = (await n.connectedLinks().catch(() => [])).length;
      }
      samples.push(s);
      await sleep(SAMPLE_MS);
    }
  })();

  // A steady ping from each node to the next, in 60-s windows (one ping process each). A sequence
  // number without a reply is a lost ping, at window start + seq * interval.
  const lostAtSec: number[] = [];
  let pingsSent = 0;
  const steady = nodes.map(async (a, i) => {
    const b = nodes[(i + 1) % nodes.length] as VpnNode;
    while (running && Date.now() < deadline - 60_000) {
      const start = (Date.now() - t0) / 1000;
      const r = await a.host.exec(["ping", "-c", "300", "-i", "0.2", "-W", "1", b.address], {
        timeoutMs: 90_000,
      });
      const sent = Number(r.stdout.match(/(\d+) packets transmitted/)?.[1] ?? 0);
      const answered = new Set([...r.stdout.matchAll(/icmp_seq=(\d+) ttl=/g)].map((m) => Number(m[1])));
      pingsSent += sent;
      for (let seq = 1; seq <= sent; seq++) if (!answered.has(seq)) lostAtSec.push(start + (seq - 1) * 0.2);
    }
  });

  const churn = (async () => {
    while (running && Date.now() < deadline - 60_000) {
      const a = pick(nodes);
      const b = pick(nodes.filter((n) => n !== a));
      await a.ping(b.address, 3, 2);
      await sleep(20_000);
    }
  })();

  const bursts = (async () => {
    let port = 5300;
    while (running && Date.now() < deadline - 60_000) {
      await sleep(120_000);
      const a = pick(nodes);
      const b = pick(nodes.filter((n) => n !== a));
      port++;
      const server = b.host.spawn("iperf3", ["-s", "-1", "-p", String(port), "-B", b.address], {
        name: `iperf3-s-${port}`,
      });
      await sleep(500);
      const r = await a.host.exec(["iperf3", "-c", b.address, "-p", String(port), "-t", "5", "-J"], {
        timeoutMs: 30_000,
      });
      try {
        tcpMbit.push(Math.round(JSON.parse(r.stdout).end.sum_received.bits_per_second / 1e6));
      } catch {
        tcpMbit.push(0);
      }
      await server.stop(2000);
    }
  })();

  const faultLoop = (async () => {
    const kinds = ["xmpp-restart-graceful", "roam", "xmpp-restart-hard"];
    for (let k = 0; running && Date.now() + FAULT_MS < deadline; k++) {
      await sleep(FAULT_MS);
      const kind = kinds[k % kinds.length] as string;
      faults.push({ atSec: sec(), kind });
      console.error(`soak: ${sec()} s: ${kind}`);
      if (kind === "roam") await pick(nodes).host.roam();
      else await prosody.restart({ graceful: kind === "xmpp-restart-graceful" });
    }
  })();

  await Promise.all([sampler, ...steady, churn, bursts, faultLoop]);
  running = false;

  // No lost routes: after the run every node still reaches every other.
  let unreachedPairs = 0;
  for (const a of nodes) {
    const targets = nodes.filter((b) => b !== a).map((b) => b.address);
    const r = await a.host.exec(["fping", "-a", "-r", "3", "-t", "2000", ...targets]);
    unreachedPairs += targets.length - r.stdout.split("\n").filter((l) => l.trim()).length;
  }

  const afterWarmup = samples.filter((s) => s.atSec * 1000 >= WARMUP_MS);
  const first = afterWarmup[0];
  const last = afterWarmup.at(-1);
  const growth = (key: "rssMb" | "fds") =>
    first && last
      ? Object.fromEntries(
          Object.keys(first[key]).map((p) => [
            p,
            Math.round(((last[key][p] ?? 0) - (first[key][p] ?? 0)) * 10) / 10,
          ]),
        )
      : {};
  // Pings lost from a fault until the next one (the first span: before any fault).
  const marks = [0, ...faults.map((f) => f.atSec), Number.POSITIVE_INFINITY];
  const lostBetween = (from: number, to: number) => lostAtSec.filter((t) => t >= from && t < to).length;
  const result = {
    date: new Date().toISOString(),
    minutes: Number(values.minutes),
    nodes: nodes.length,
    pingsSent,
    pingsLost: lostAtSec.length,
    pingsLostBeforeFirstFault: lostBetween(0, marks[1] as number),
    faults: faults.map((f, i) => ({
      ...f,
      pingsLostUntilNext: lostBetween(f.atSec, marks[i + 2] as number),
    })),
    tcpBurstsMbit: tcpMbit,
    rssGrowthAfterWarmupMb: growth("rssMb"),
    fdGrowthAfterWarmup: growth("fds"),
    rssMbFirstLast: { first: first?.rssMb, last: last?.rssMb },
    unreachedPairsAtEnd: unreachedPairs,
    processesExited: nodes
      .flatMap((n) => [n.tincan, n.controller])
      .filter((p) => p.exited)
      .map((p) => p.name),
    samples,
  };
  const text = JSON.stringify(result, null, 2);
  if (values.json) writeFileSync(values.json, `${text}\n`);
  console.log(text);
  await Promise.all(nodes.map((n) => n.stop()));
} finally {
  running = false;
  await lab.destroy();
}
process.exit(0);
