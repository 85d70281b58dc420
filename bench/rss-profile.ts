// Where a one-process node's memory goes under TCP (#19): two one-process GroupVPN nodes
// (`groupvpn --with-datapath`, fast path) in a lab, idle, then TCP A -> B with iperf3. For each side
// it prints the peak of /proc/PID/smaps by kind of mapping, of process.memoryUsage() and of V8's heap
// spaces (sampled inside the node by bench/mem-sampler.mjs), idle and under TCP, with the TCP rate
// and CPU. Variants (node flags, environment) are interleaved round by round.
//
//   node --import tsx bench/rss-profile.ts [--rounds 2] [--idle 15] [--seconds 10] [--streams 1] [--lab rssp]
//     [--variant 'name=FLAGS[;ENV=VALUE...]' ...]
//   e.g. --variant 'semi1=--max-semi-space-size=1 --v8-pool-size=1' --variant 'semi4=--max-semi-space-size=4 --v8-pool-size=1'
//
// Root only (namespaces, pagemap). Take the lab lock of your slot around it.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Lab, sleep } from "../test/lab/index.js";
import { DAEMON_NODE_FLAGS, REPO } from "../test/support/datapath-driver.js";
import { addGroupNodes, labUsers, VpnNode } from "../test/support/vpn-node.js";
import { pagesOnceMB, procStats } from "./memory.js";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    idle: { type: "string", default: "15" },
    seconds: { type: "string", default: "10" },
    streams: { type: "string", default: "1" },
    lab: { type: "string", default: "rssp" },
    variant: { type: "string", multiple: true },
  },
});

interface Variant {
  name: string;
  nodeFlags: string[];
  env: Record<string, string>;
}

function parseVariant(text: string): Variant {
  const [name = "", rest = ""] = text.split(/=(.*)/s, 2);
  const [nodeFlags = "", ...envs] = rest.split(";");
  const env: Record<string, string> = {};
  for (const e of envs) {
    const [k = "", v = ""] = e.split(/=(.*)/s, 2);
    if (k.trim()) env[k.trim()] = v;
  }
  return { name, nodeFlags: nodeFlags.split(/\s+/).filter(Boolean), env };
}

const variants: Variant[] = (flags.variant ?? [`default=${DAEMON_NODE_FLAGS.join(" ")}`]).map(parseVariant);
const CONTROLLER = join(REPO, "packages/groupvpn/dist/cli.js");
const SAMPLER = join(REPO, "bench/mem-sampler.mjs");
const MB = 1024;

/** kB of Rss by kind of mapping, from /proc/PID/smaps. */
type Smaps = Record<string, number>;

function smapsByKind(pid: number): Smaps {
  const out: Smaps = {};
  let kind = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = line.match(/^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/);
    if (head) {
      const [, lo = "0", , perms = "", path = ""] = head;
      const start = BigInt(`0x${lo}`);
      if (path.endsWith("/node")) kind = "node binary";
      else if (path.endsWith(".node")) kind = "addons (.node)";
      else if (path.startsWith("/")) kind = "other files";
      else if (path === "[heap]") kind = "malloc [heap]";
      else if (path.startsWith("[")) kind = "stacks, vdso";
      // glibc's per-thread malloc arenas are 64 MiB-aligned reservations (HEAP_MAX_SIZE).
      else if (perms.startsWith("rw") && start % (64n << 20n) === 0n) kind = "anon: thread arenas";
      else kind = "anon: V8 heap, ArrayBuffers, mmapped malloc";
      continue;
    }
    const rss = line.match(/^Rss:\s+(\d+) kB/);
    if (rss) out[kind] = (out[kind] ?? 0) + Number(rss[1]);
  }
  out.total = Object.values(out).reduce((a, b) => a + b, 0);
  return out;
}

function threads(pid: number): string {
  const names: Record<string, number> = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const n = readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim();
    names[n] = (names[n] ?? 0) + 1;
  }
  return Object.entries(names)
    .map(([n, c]) => (c > 1 ? `${n} x${c}` : n))
    .join(", ");
}

interface Sample {
  t: number;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, { size: number; used: number; phys: number }>;
}

function readOr(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function readSamples(file: string): Sample[] {
  try {
    return readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Sample);
  } catch {
    return [];
  }
}

/** Peak of each sampled figure between t0 and t1 (MB). */
function peaks(samples: Sample[], t0: number, t1: number): Record<string, number> {
  const out: Record<string, number> = {};
  const put = (k: string, v: number) => {
    out[k] = Math.max(out[k] ?? 0, v);
  };
  for (const s of samples) {
    if (s.t < t0 || s.t > t1) continue;
    for (const k of ["rss", "heapTotal", "heapUsed", "external", "arrayBuffers"] as const) put(k, s[k]);
    for (const [name, sp] of Object.entries(s.spaces)) put(`${name} (phys)`, sp.phys);
  }
  return out;
}

interface SideResult {
  idle: { smaps: Smaps; pagesOnce: number; inside: Record<string, number> };
  tcp: { smaps: Smaps; pagesOnce: number; inside: Record<string, number>; hwm: number };
  cpuS: number;
  threads: string;
  /** Top Buffer allocations by caller (TINCAN_MEM_TRACE=1 in a variant's environment). */
  allocs: string;
}

const cpuSecondsOf = (pid: number): number => procStats(pid)?.cpuS ?? 0;

interface Bed {
  lab: Lab;
  /** The two nodes as first made: each run starts fresh ones of the same options on their hosts. */
  nodes: VpnNode[];
}

async function runOnce(
  bed: Bed,
  v: Variant,
  round: number,
): Promise<{ a: SideResult; b: SideResult; mbps: number }> {
  const { lab } = bed;
  const sampleFile = join(lab.dir, `mem-${v.name}-${round}`);
  const savedEnv = { ...process.env };
  Object.assign(process.env, v.env, {
    NODE_OPTIONS: `--import ${SAMPLER}`,
    TINCAN_MEM_SAMPLES: sampleFile,
  });
  const commands = { controller: ["node", ...v.nodeFlags, CONTROLLER] };
  const nodes = bed.nodes.map((n) => new VpnNode(lab, n.host, { ...n.opts, commands }));
  try {
    for (const n of nodes) await n.start();
    const [na, nb] = nodes as [VpnNode, VpnNode];
    const t0 = Date.now();
    while ((await na.ping(nb.address, 1, 1)).code !== 0) {
      if (Date.now() - t0 > 60_000) throw new Error("no ping through the VPN");
    }
    // The fast path takes over a few seconds after the link connects; measure it, not the RTP path.
    while (!(await na.connectedLinks()).some((l) => String(l.transport ?? "").startsWith("fast"))) {
      if (Date.now() - t0 > 90_000) throw new Error("the link never moved to the fast path");
      await sleep(500);
    }
    const pids = { a: na.controller.pid, b: nb.controller.pid };
    await sleep(Number(flags.idle) * 1000);
    const idleEnd = Date.now();
    const idle = (pid: number) => ({ smaps: smapsByKind(pid), pagesOnce: pagesOnceMB([pid]) ?? 0 });
    const idleA = idle(pids.a);
    const idleB = idle(pids.b);
    const cpu0 = { a: cpuSecondsOf(pids.a), b: cpuSecondsOf(pids.b) };
    const server = nb.host.spawn("iperf3", ["-s", "-1"], { name: "iperf3" });
    await sleep(500);
    const best = { a: { smaps: {} as Smaps, pagesOnce: 0 }, b: { smaps: {} as Smaps, pagesOnce: 0 } };
    let done = false;
    const watcher = (async () => {
      while (!done) {
        for (const side of ["a", "b"] as const) {
          const pagesOnce = pagesOnceMB([pids[side]]) ?? 0;
          if (pagesOnce > best[side].pagesOnce) best[side] = { smaps: smapsByKind(pids[side]), pagesOnce };
        }
        await sleep(500);
      }
    })();
    const tcpStart = Date.now();
    const r = await na.host.exec(
      ["iperf3", "-c", nb.address, "-t", flags.seconds as string, "-P", flags.streams as string, "-J"],
      {
        timeoutMs: Number(flags.seconds) * 1000 + 30_000,
      },
    );
    await sleep(1000);
    done = true;
    await watcher;
    const tcpEnd = Date.now();
    await server.stop(2000).catch(() => {});
    const mbps =
      ((JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
        .bits_per_second ?? 0) / 1e6;
    const side = (s: "a" | "b", idleS: { smaps: Smaps; pagesOnce: number }): SideResult => {
      const samples = readSamples(`${sampleFile}.${pids[s]}`);
      return {
        idle: { ...idleS, inside: peaks(samples, idleEnd - 5000, idleEnd) },
        tcp: {
          ...best[s],
          inside: peaks(samples, tcpStart, tcpEnd),
          hwm: (procStats(pids[s])?.hwmBytes ?? 0) / 2 ** 20,
        },
        cpuS: cpuSecondsOf(pids[s]) - cpu0[s],
        threads: threads(pids[s]),
        allocs: readOr(`${sampleFile}.${pids[s]}.alloc`),
      };
    };
    return { a: side("a", idleA), b: side("b", idleB), mbps };
  } finally {
    process.env = savedEnv;
    for (const n of nodes) await n.stop().catch(() => {});
  }
}

const f1 = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(1));

async function main(): Promise<void> {
  const lab = await Lab.create({ prefix: flags.lab as string });
  const bed: Bed = { lab, nodes: [] };
  const results: { v: string; round: number; r: Awaited<ReturnType<typeof runOnce>> }[] = [];
  try {
    const prosody = await lab.startProsody({ users: labUsers(["a", "b"]), groups: { lab: ["a", "b"] } });
    bed.nodes = await addGroupNodes(lab, prosody, ["a", "b"], "10.78.0", {
      links: { policy: "proactive" },
      logLevel: "info",
      oneProcess: { tincan: { log: { level: "info" } } },
    });
    for (let round = 1; round <= Number(flags.rounds); round++) {
      for (const v of variants) {
        const r = await runOnce(bed, v, round);
        results.push({ v: v.name, round, r });
        console.log(
          `${v.name} round ${round}: TCP ${r.mbps.toFixed(0)} Mbit/s; pages once idle A/B ${f1(r.a.idle.pagesOnce)} / ${f1(r.b.idle.pagesOnce)}, peak under TCP ${f1(r.a.tcp.pagesOnce)} / ${f1(r.b.tcp.pagesOnce)}; VmHWM ${f1(r.a.tcp.hwm)} / ${f1(r.b.tcp.hwm)}; CPU s ${r.a.cpuS.toFixed(1)} / ${r.b.cpuS.toFixed(1)}`,
        );
      }
    }
  } finally {
    await lab.destroy();
  }
  for (const { v, round, r } of results) {
    console.log(`\n### ${v}, round ${round} (TCP ${r.mbps.toFixed(0)} Mbit/s)`);
    for (const s of ["a", "b"] as const) {
      const x = r[s];
      console.log(`side ${s.toUpperCase()} threads: ${x.threads}`);
      if (x.allocs) console.log(`Buffers of 2 KiB and more made from JS, by caller:\n${x.allocs}`);
      const kinds = [...new Set([...Object.keys(x.idle.smaps), ...Object.keys(x.tcp.smaps)])];
      console.log("| smaps Rss MB | idle | peak under TCP |\n|---|---:|---:|");
      for (const k of kinds)
        console.log(`| ${k} | ${f1((x.idle.smaps[k] ?? 0) / MB)} | ${f1((x.tcp.smaps[k] ?? 0) / MB)} |`);
      console.log(`| pages once | ${f1(x.idle.pagesOnce)} | ${f1(x.tcp.pagesOnce)} |`);
      const keys = [...new Set([...Object.keys(x.idle.inside), ...Object.keys(x.tcp.inside)])];
      console.log("| inside (peak MB) | idle (last 5 s) | under TCP |\n|---|---:|---:|");
      for (const k of keys) console.log(`| ${k} | ${f1(x.idle.inside[k])} | ${f1(x.tcp.inside[k])} |`);
    }
  }
}

await main();
