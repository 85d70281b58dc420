// Side-by-side performance of plain veth, wireguard-go, nebula and TinCan-TS between two network
// namespaces over one veth pair, measured in one run (issues #4 and #7). See bench/README.md.
//
//   ns A (client, sender)  eth0 198.18.1.1/24 <== veth ==> eth0 198.18.1.2/24  ns B (server)
//   tunnel interface per system: wg-a/wg-b, neb-a/neb-b, tincan0/tincan0
//
// Each system is set up, measured and torn down before the next one, so they never share the CPU.
// Every process is started through the lab (ended by PID on teardown, on error and on Ctrl-C) and
// the lab deletes both namespaces at the end.
//
// Usage: npx tsx bench/bench.ts [--quick | --full] [--runs N] [--seconds S] [--idle S]
//          [--pings N] [--only veth,wireguard,nebula,tincan] [--udp-rates 100,200,400,800,1600]
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { uidForIpv4 } from "../packages/protocol/dist/index.js";
import { type Host, Lab, type LabProcess, waitListening } from "../test/lab/index.js";
import { connectLink, DatapathHandle, REPO } from "../test/support/datapath-driver.js";

// ---------------------------------------------------------------------------------------------
// Flags

const HELP = `Usage: bash bench/run [flags]   (or: npx tsx bench/bench.ts [flags])

  --quick            1 run per TCP test, idle 30 s (default)
  --full             3 runs per TCP test (medians), idle 120 s
  --runs N           runs per TCP test; the table shows the median
  --seconds S        length of each iperf3 test (default 5)
  --idle S           idle-cost window (default 30, --full: 120)
  --pings N          pings per RTT test (default 200)
  --ping-interval S  seconds between pings (default 0.01; this VM's wake-up from idle shows at longer ones)
  --only LIST        systems to run, comma separated: veth,wireguard,nebula,tincan (default all)
  --udp-rates LIST   UDP rates in Mbit/s tried in order until loss >= 1% (default 25,50,100,200,400,800,1600)
  --out DIR          where results-<timestamp>.json goes (default bench/out)
  --help`;

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean" },
    full: { type: "boolean" },
    runs: { type: "string" },
    seconds: { type: "string" },
    idle: { type: "string" },
    pings: { type: "string" },
    "ping-interval": { type: "string" },
    only: { type: "string" },
    "udp-rates": { type: "string" },
    out: { type: "string" },
    help: { type: "boolean" },
  },
  strict: true,
});
if (flags.help) {
  console.log(HELP);
  process.exit(0);
}

const SYSTEMS = ["veth", "wireguard", "nebula", "tincan"] as const;
type SystemName = (typeof SYSTEMS)[number];

function posInt(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name}: a positive integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

function pingInterval(v: string | undefined): string {
  if (v === undefined) return "0.01";
  if (!/^\d*\.?\d+$/.test(v) || Number(v) < 0.002 || Number(v) > 1) {
    console.error(`--ping-interval: seconds from 0.002 to 1, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return v;
}

const full = flags.full === true;
const opts = {
  mode: full ? "full" : "quick",
  runs: posInt("runs", flags.runs, full ? 3 : 1),
  seconds: posInt("seconds", flags.seconds, 5),
  idleSeconds: posInt("idle", flags.idle, full ? 120 : 30),
  pings: posInt("pings", flags.pings, 200),
  pingInterval: pingInterval(flags["ping-interval"]),
  udpRates: (flags["udp-rates"] ?? "25,50,100,200,400,800,1600")
    .split(",")
    .map((r) => posInt("udp-rates", r, 0)),
  only: (flags.only ?? SYSTEMS.join(",")).split(",").map((s) => s.trim()) as SystemName[],
  outDir: flags.out ?? join(REPO, "bench/out"),
};
for (const s of opts.only) {
  if (!SYSTEMS.includes(s)) {
    console.error(`--only: unknown system ${JSON.stringify(s)} (one of ${SYSTEMS.join(", ")})`);
    process.exit(2);
  }
}

const LOSS_LIMIT_PCT = 1;
const UDP_LEN = 1200;

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (msg: string) =>
  console.error(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${msg}`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Nearest-rank percentile. */
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

async function readCounters(h: Host, ifs: string[]): Promise<Record<string, { tx: number; rx: number }>> {
  const files = ifs.flatMap((i) => [
    `/sys/class/net/${i}/statistics/tx_bytes`,
    `/sys/class/net/${i}/statistics/rx_bytes`,
  ]);
  // `ip netns exec` mounts the namespace's own sysfs, so this reads the namespace's counters.
  const nums = (await h.run(["cat", ...files])).trim().split(/\s+/).map(Number);
  const out: Record<string, { tx: number; rx: number }> = {};
  ifs.forEach((i, k) => {
    out[i] = { tx: nums[2 * k] as number, rx: nums[2 * k + 1] as number };
  });
  return out;
}

/** utime+stime in seconds (all threads) and VmHWM/VmRSS in bytes, read from the shared /proc. */
function procStats(pid: number): { cpuS: number; hwmBytes: number; rssBytes: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(f[11]) + Number(f[12]); // fields 14 and 15 of stat(5)
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(status.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0) * 1024;
    return { cpuS: ticks / CLK_TCK, hwmBytes: kb("VmHWM"), rssBytes: kb("VmRSS") };
  } catch {
    return undefined;
  }
}
const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux/x86-64 and arm64

// ---------------------------------------------------------------------------------------------
// Systems under test

interface Tunnel {
  name: SystemName;
  label: string;
  version: string;
  /** Address of B reached from A (the tunnel address, or B's veth address for plain veth). */
  addrB: string;
  /** Interface in A that carries the inner traffic (eth0 for plain veth). */
  ifA: string;
  ifB: string;
  /** Processes whose CPU and memory are measured, per side. */
  procs: { a: LabProcess[]; b: LabProcess[] };
  notes: string[];
  stop(): Promise<void>;
}

async function ver(h: Host, argv: string[], re: RegExp): Promise<string> {
  const r = await h.exec(argv);
  return (r.stdout + r.stderr).match(re)?.[1] ?? "?";
}

async function waitPing(h: Host, addr: string, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if ((await h.exec(["ping", "-n", "-q", "-c", "1", "-W", "1", addr])).code === 0) return;
    await sleep(200);
  }
  throw new Error(`${what}: no ping reply from ${addr} within ${timeoutMs} ms`);
}

async function setupVeth(_lab: Lab, _a: Host, b: Host): Promise<Tunnel> {
  return {
    name: "veth",
    label: "plain veth",
    version: `kernel ${os.release()}`,
    addrB: b.ip,
    ifA: "eth0",
    ifB: "eth0",
    procs: { a: [], b: [] },
    notes: [],
    async stop() {},
  };
}

/**
 * Files our processes create outside the lab dir: wireguard-go's UAPI sockets. wireguard-go removes
 * its socket on SIGTERM, but not when the lab's signal-time teardown SIGKILLs it.
 */
const strayFiles = new Set<string>();
function removeStrayFiles(): void {
  for (const f of strayFiles) rmSync(f, { force: true });
}

async function setupWireguard(lab: Lab, a: Host, b: Host): Promise<Tunnel> {
  const sides = [
    { h: a, dev: "wg-a", addr: "10.70.0.1", port: 51820 },
    { h: b, dev: "wg-b", addr: "10.70.0.2", port: 51820 },
  ] as const;
  const keys = [];
  for (const s of sides) {
    const priv = (await s.h.run(["wg", "genkey"])).trim();
    const pub = (await s.h.run(["wg", "pubkey"], { input: `${priv}\n` })).trim();
    const file = join(lab.dir, `${s.dev}.key`);
    writeFileSync(file, `${priv}\n`, { mode: 0o600 });
    keys.push({ file, pub });
  }
  const procs: LabProcess[] = [];
  try {
    for (const s of sides) {
      // -f: stay in the foreground, so the PID we hold is the daemon itself. The UAPI socket lives
      // in /var/run/wireguard/<dev>.sock, shared by all namespaces: hence distinct device names.
      strayFiles.add(`/var/run/wireguard/${s.dev}.sock`);
      const p = s.h.spawn("wireguard-go", ["-f", s.dev], { name: s.dev, env: { LOG_LEVEL: "error" } });
      procs.push(p);
      await waitFor(`${s.dev} UAPI socket`, async () => {
        if (p.exited) throw new Error(`wireguard-go ${s.dev} exited: ${p.log()}`);
        return (await s.h.exec(["wg", "show", s.dev])).code === 0;
      });
    }
    for (const [i, s] of sides.entries()) {
      const peer = sides[1 - i] as (typeof sides)[number];
      await s.h.run([
        "wg",
        "set",
        s.dev,
        "private-key",
        (keys[i] as { file: string }).file,
        "listen-port",
        String(s.port),
        "peer",
        (keys[1 - i] as { pub: string }).pub,
        "allowed-ips",
        `${peer.addr}/32`,
        "endpoint",
        `${peer.h.ip}:${peer.port}`,
      ]);
      await s.h.run(["ip", "addr", "add", `${s.addr}/24`, "dev", s.dev]);
      await s.h.run(["ip", "link", "set", s.dev, "up"]);
    }
    await waitPing(a, "10.70.0.2", "wireguard-go");
  } catch (e) {
    for (const p of procs) await p.stop(3000);
    throw e;
  }
  const mtu = (await a.run(["cat", "/sys/class/net/wg-a/mtu"])).trim();
  return {
    name: "wireguard",
    label: "wireguard-go",
    version: await ver(a, ["wireguard-go", "--version"], /wireguard-go (v\S+)/),
    addrB: "10.70.0.2",
    ifA: "wg-a",
    ifB: "wg-b",
    procs: { a: [procs[0] as LabProcess], b: [procs[1] as LabProcess] },
    notes: [`tun MTU ${mtu}`, "no persistent keepalive"],
    async stop() {
      for (const p of procs) await p.stop(3000);
    },
  };
}

async function setupNebula(lab: Lab, a: Host, b: Host): Promise<Tunnel> {
  const dir = join(lab.dir, "nebula");
  mkdirSync(dir, { recursive: true });
  const run = (args: string[]) => a.run(["nebula-cert", ...args], { cwd: dir });
  await run(["ca", "-name", "bench", "-out-crt", join(dir, "ca.crt"), "-out-key", join(dir, "ca.key")]);
  const sides = [
    { h: a, name: "a", dev: "neb-a", addr: "10.71.0.1", lighthouse: true },
    { h: b, name: "b", dev: "neb-b", addr: "10.71.0.2", lighthouse: false },
  ] as const;
  for (const s of sides) {
    await run([
      "sign",
      "-ca-crt",
      join(dir, "ca.crt"),
      "-ca-key",
      join(dir, "ca.key"),
      "-name",
      s.name,
      "-ip",
      `${s.addr}/24`,
      "-out-crt",
      join(dir, `${s.name}.crt`),
      "-out-key",
      join(dir, `${s.name}.key`),
    ]);
  }
  const procs: LabProcess[] = [];
  try {
    for (const [i, s] of sides.entries()) {
      const peer = sides[1 - i] as (typeof sides)[number];
      // A is the lighthouse; B knows it from the static host map. Punching and relays off: the
      // two nodes see each other directly. Firewall: allow everything in and out.
      const yaml = `pki:
  ca: ${join(dir, "ca.crt")}
  cert: ${join(dir, `${s.name}.crt`)}
  key: ${join(dir, `${s.name}.key`)}
static_host_map:
  "${peer.addr}": ["${peer.h.ip}:4242"]
lighthouse:
  am_lighthouse: ${s.lighthouse}
  interval: 60
  hosts: [${s.lighthouse ? "" : `"${peer.addr}"`}]
listen:
  host: ${s.h.ip}
  port: 4242
punchy:
  punch: false
relay:
  am_relay: false
  use_relays: false
tun:
  disabled: false
  dev: ${s.dev}
  drop_local_broadcast: false
  drop_multicast: false
  tx_queue: 500
  mtu: 1300
logging:
  level: warning
  format: text
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
`;
      const file = join(dir, `${s.name}.yml`);
      writeFileSync(file, yaml);
      const p = s.h.spawn("nebula", ["-config", file], { name: s.dev });
      procs.push(p);
      await waitFor(`${s.dev} up`, async () => {
        if (p.exited) throw new Error(`nebula ${s.dev} exited: ${p.log()}`);
        return (await s.h.exec(["ip", "addr", "show", "dev", s.dev])).stdout.includes(s.addr);
      });
    }
    await waitPing(a, "10.71.0.2", "nebula");
  } catch (e) {
    for (const p of procs) await p.stop(3000);
    throw e;
  }
  return {
    name: "nebula",
    label: "nebula",
    version: await ver(a, ["nebula", "-version"], /Version: (\S+)/),
    addrB: "10.71.0.2",
    ifA: "neb-a",
    ifB: "neb-b",
    procs: { a: [procs[0] as LabProcess], b: [procs[1] as LabProcess] },
    notes: ["tun MTU 1300", "A is the lighthouse, static host map, punchy and relays off"],
    async stop() {
      for (const p of procs) await p.stop(3000);
    },
  };
}

async function setupTincan(lab: Lab, a: Host, b: Host): Promise<Tunnel> {
  // log level info: the driver waits for the " ready " line, which is logged at info.
  const da = await DatapathHandle.start(lab, a);
  let db: DatapathHandle | undefined;
  try {
    db = await DatapathHandle.start(lab, b);
    await da.configure(uidForIpv4("10.77.0.1"), "10.77.0.1/24");
    await db.configure(uidForIpv4("10.77.0.2"), "10.77.0.2/24");
    await da.call("route.set", { prefix: "10.77.0.2/32", peerUid: db.uid });
    await db.call("route.set", { prefix: "10.77.0.1/32", peerUid: da.uid });
    const ms = await connectLink(da, db);
    log(`tincan link connected in ${ms} ms`);
    await waitPing(a, "10.77.0.2", "tincan");
  } catch (e) {
    await db?.stop();
    await da.stop();
    throw e;
  }
  const [link] = await da.call("link.query", { peerUid: db.uid });
  const mtu = (await a.run(["cat", "/sys/class/net/tincan0/mtu"])).trim();
  const pkg = JSON.parse(readFileSync(join(REPO, "packages/datapath/package.json"), "utf8")) as {
    version: string;
  };
  const dbh = db;
  return {
    name: "tincan",
    label: "TinCan-TS",
    version: pkg.version,
    addrB: "10.77.0.2",
    ifA: "tincan0",
    ifB: "tincan0",
    procs: { a: [da.proc], b: [dbh.proc] },
    notes: [`vnic MTU ${mtu}`, `link path ${link?.path ?? "?"}`],
    async stop() {
      await da.stop();
      await dbh.stop();
    },
  };
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const SETUP: Record<SystemName, (lab: Lab, a: Host, b: Host) => Promise<Tunnel>> = {
  veth: setupVeth,
  wireguard: setupWireguard,
  nebula: setupNebula,
  tincan: setupTincan,
};

// ---------------------------------------------------------------------------------------------
// Measurements

interface RttStats {
  sent: number;
  received: number;
  minMs: number;
  medianMs: number;
  p99Ms: number;
  maxMs: number;
}

async function pingRtt(a: Host, addr: string): Promise<RttStats> {
  const r = await a.exec(["ping", "-n", "-c", String(opts.pings), "-i", opts.pingInterval, "-W", "1", addr], {
    timeoutMs: opts.pings * (Number(opts.pingInterval) * 1000 + 100) + 10_000,
  });
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (rtts.length === 0) throw new Error(`ping ${addr}: no replies\n${r.stdout}${r.stderr}`);
  return {
    sent: opts.pings,
    received: rtts.length,
    minMs: Math.min(...rtts),
    medianMs: median(rtts),
    p99Ms: percentile(rtts, 99),
    maxMs: Math.max(...rtts),
  };
}

/** The parts of `iperf3 -J` (3.12) output used here. */
interface IperfJson {
  error?: string;
  end: {
    sum_received?: { bits_per_second: number };
    sum_sent?: { retransmits?: number };
    sum: { bits_per_second: number; lost_percent: number };
  };
}

interface IperfRun {
  mbit: number;
  retransmits?: number;
  lossPct?: number;
  /** Bytes out of A's veth / bytes out of A's tunnel interface - 1, in percent. */
  overheadPct?: number;
  /** CPU seconds of the measured processes during the run, and that as % of one core. */
  cpu: { a: number; b: number; aPct: number; bPct: number };
}

function cpuOf(ps: LabProcess[]): number {
  return ps.reduce((s, p) => s + (procStats(p.pid)?.cpuS ?? 0), 0);
}

async function iperf(a: Host, t: Tunnel, extra: string[]): Promise<IperfRun> {
  const ifs = t.ifA === "eth0" ? ["eth0"] : ["eth0", t.ifA];
  const c0 = await readCounters(a, ifs);
  const cpuA0 = cpuOf(t.procs.a);
  const cpuB0 = cpuOf(t.procs.b);
  const w0 = Date.now();
  const r = await a.exec(["iperf3", "-c", t.addrB, "-t", String(opts.seconds), "-J", ...extra], {
    timeoutMs: opts.seconds * 1000 + 30_000,
  });
  const wall = (Date.now() - w0) / 1000;
  const cpuA = cpuOf(t.procs.a) - cpuA0;
  const cpuB = cpuOf(t.procs.b) - cpuB0;
  const c1 = await readCounters(a, ifs);
  let j: IperfJson;
  try {
    j = JSON.parse(r.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 ${extra.join(" ")}: no JSON (exit ${r.code}): ${r.stderr || r.stdout}`);
  }
  if (j.error) throw new Error(`iperf3 ${extra.join(" ")}: ${j.error}`);
  const veth = (c1.eth0?.tx ?? 0) - (c0.eth0?.tx ?? 0);
  const inner = t.ifA === "eth0" ? veth : (c1[t.ifA]?.tx ?? 0) - (c0[t.ifA]?.tx ?? 0);
  const udp = extra.includes("-u");
  const run: IperfRun = {
    // What the receiver got (iperf3 3.12 has end.sum_received for UDP too; older ones only end.sum).
    mbit:
      (j.end.sum_received?.bits_per_second ??
        j.end.sum.bits_per_second * (1 - j.end.sum.lost_percent / 100)) / 1e6,
    cpu: { a: cpuA, b: cpuB, aPct: (100 * cpuA) / wall, bPct: (100 * cpuB) / wall },
  };
  if (udp) run.lossPct = j.end.sum.lost_percent;
  else run.retransmits = j.end.sum_sent?.retransmits;
  if (t.ifA !== "eth0" && inner > 0) run.overheadPct = (100 * veth) / inner - 100;
  return run;
}

interface TcpResult {
  mbit: number;
  runsMbit: number[];
  overheadPct?: number;
  cpu: { a: number; b: number; aPct: number; bPct: number };
  retransmits: number;
}

async function tcp(a: Host, t: Tunnel, streams: number): Promise<TcpResult> {
  const runs: IperfRun[] = [];
  for (let i = 0; i < opts.runs; i++) {
    runs.push(await iperf(a, t, streams > 1 ? ["-P", String(streams)] : []));
    log(`${t.label}: TCP x${streams} run ${i + 1}/${opts.runs}: ${runs.at(-1)?.mbit.toFixed(0)} Mbit/s`);
  }
  const m = (f: (r: IperfRun) => number | undefined) => {
    const xs = runs.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  return {
    mbit: m((r) => r.mbit) as number,
    runsMbit: runs.map((r) => r.mbit),
    overheadPct: m((r) => r.overheadPct),
    cpu: {
      a: m((r) => r.cpu.a) as number,
      b: m((r) => r.cpu.b) as number,
      aPct: m((r) => r.cpu.aPct) as number,
      bPct: m((r) => r.cpu.bPct) as number,
    },
    retransmits: m((r) => r.retransmits) ?? 0,
  };
}

interface UdpResult {
  /** Highest offered rate (Mbit/s) with < 1% loss, or null when even the lowest lost more. */
  bestRateMbit: number | null;
  /** The highest rate B received at any offered rate that passed. */
  bestReceivedMbit: number | null;
  /** True when the last (highest) rate still passed: the real limit is higher. */
  capped: boolean;
  /** True when the last step ended without an iperf3 report (its server may still be busy). */
  aborted?: boolean;
  overheadPct?: number;
  tries: { rateMbit: number; receivedMbit: number; lossPct: number }[];
}

async function udpSearch(a: Host, t: Tunnel): Promise<UdpResult> {
  const res: UdpResult = { bestRateMbit: null, bestReceivedMbit: null, capped: false, tries: [] };
  for (const rate of opts.udpRates) {
    // -w 4M: iperf3's own sockets get a 4 MB buffer, so the loss we see is the tunnel's, not the
    // iperf3 server's 208 KB default receive buffer overflowing whenever it is descheduled.
    let r: IperfRun;
    try {
      r = await iperf(a, t, ["-u", "-b", `${rate}M`, "-l", String(UDP_LEN), "-w", "4M"]);
    } catch (err) {
      // An overloaded tunnel can starve iperf3's own control connection, so the step ends with no
      // report: that rate did not pass, and what the lower rates measured still stands.
      res.tries.push({ rateMbit: rate, receivedMbit: 0, lossPct: 100 });
      res.aborted = true;
      log(
        `${t.label}: UDP ${rate}M: no result (${(err as Error).message.split("\n")[0]}): counted as failed`,
      );
      return res;
    }
    res.tries.push({ rateMbit: rate, receivedMbit: r.mbit, lossPct: r.lossPct ?? 100 });
    log(`${t.label}: UDP ${rate}M: ${r.mbit.toFixed(0)} Mbit/s received, ${r.lossPct?.toFixed(2)}% loss`);
    if ((r.lossPct ?? 100) >= LOSS_LIMIT_PCT) return res;
    res.bestRateMbit = rate;
    // The most B received at any passing rate: when the sender cannot keep up with the offered
    // rate (CPU), a higher step can pass with less received than the step before.
    if (r.mbit > (res.bestReceivedMbit ?? 0)) {
      res.bestReceivedMbit = r.mbit;
      res.overheadPct = r.overheadPct;
    }
    await sleep(500);
  }
  res.capped = true;
  return res;
}

/** RTT while a TCP bulk transfer runs in parallel on the same tunnel. */
async function pingLoaded(a: Host, t: Tunnel): Promise<RttStats & { loadMbit?: number }> {
  const pingSeconds = Math.ceil(opts.pings * (Number(opts.pingInterval) + 0.002) + 1);
  const load = a.spawn("iperf3", ["-c", t.addrB, "-t", String(pingSeconds + 2), "-J"], {
    name: `iperf3-load-${t.name}`,
  });
  try {
    await sleep(1000);
    const rtt = await pingRtt(a, t.addrB);
    await load.wait();
    let loadMbit: number | undefined;
    try {
      const text = load.log();
      loadMbit = JSON.parse(text.slice(text.indexOf("{"))).end.sum_received.bits_per_second / 1e6;
    } catch {
      // no JSON: leave it out
    }
    return { ...rtt, loadMbit };
  } finally {
    await load.stop(3000);
  }
}

/** Bytes per second on A's veth (both directions) with the tunnel up and nothing sent. */
async function idleCost(a: Host): Promise<{ bytesPerSec: number; seconds: number }> {
  await sleep(2000); // let the last ping's echo and any handshake settle
  const c0 = (await readCounters(a, ["eth0"])).eth0 as { tx: number; rx: number };
  await sleep(opts.idleSeconds * 1000);
  const c1 = (await readCounters(a, ["eth0"])).eth0 as { tx: number; rx: number };
  return { bytesPerSec: (c1.tx - c0.tx + c1.rx - c0.rx) / opts.idleSeconds, seconds: opts.idleSeconds };
}

interface SystemResult {
  name: SystemName;
  label: string;
  version?: string;
  notes: string[];
  error?: string;
  rttIdle?: RttStats;
  idle?: { bytesPerSec: number; seconds: number };
  tcp1?: TcpResult;
  tcp4?: TcpResult;
  udp?: UdpResult;
  rttLoaded?: RttStats & { loadMbit?: number };
  /** Peak RSS (VmHWM) of the measured processes at the end of the throughput tests, MB per side. */
  peakRssMB?: { a: number; b: number };
  processes?: { a: string[]; b: string[] };
}

async function measure(lab: Lab, a: Host, b: Host, name: SystemName): Promise<SystemResult> {
  const res: SystemResult = { name, label: name, notes: [] };
  let t: Tunnel | undefined;
  let server: LabProcess | undefined;
  try {
    log(`${name}: setting up`);
    t = await SETUP[name](lab, a, b);
    Object.assign(res, { label: t.label, version: t.version, notes: t.notes });
    res.processes = {
      a: t.procs.a.map((p) => `${p.argv.join(" ")} (pid ${p.pid})`),
      b: t.procs.b.map((p) => `${p.argv.join(" ")} (pid ${p.pid})`),
    };
    server = b.spawn("iperf3", ["-s", "-B", t.addrB], { name: `iperf3-s-${name}` });
    await waitListening(b, "tcp", t.addrB, 5201, 10_000, server);
    await a.exec(["ping", "-n", "-q", "-c", "5", "-i", "0.05", t.addrB]); // warm up
    res.rttIdle = await pingRtt(a, t.addrB);
    log(`${t.label}: RTT idle median ${res.rttIdle.medianMs.toFixed(3)} ms`);
    res.idle = await idleCost(a);
    log(`${t.label}: idle ${res.idle.bytesPerSec.toFixed(1)} B/s`);
    res.tcp1 = await tcp(a, t, 1);
    res.tcp4 = await tcp(a, t, 4);
    res.udp = await udpSearch(a, t);
    if (res.udp.aborted) {
      await server.stop(3000);
      server = b.spawn("iperf3", ["-s", "-B", t.addrB], { name: `iperf3-s-${name}` });
      await waitListening(b, "tcp", t.addrB, 5201, 10_000, server);
    }
    res.rttLoaded = await pingLoaded(a, t);
    log(`${t.label}: RTT loaded median ${res.rttLoaded.medianMs.toFixed(3)} ms`);
    const hwm = (ps: LabProcess[]) => ps.reduce((s, p) => s + (procStats(p.pid)?.hwmBytes ?? 0), 0) / 1e6;
    if (t.procs.a.length) res.peakRssMB = { a: hwm(t.procs.a), b: hwm(t.procs.b) };
  } catch (e) {
    res.error = (e as Error).message;
    log(`${name}: FAILED: ${res.error}`);
  } finally {
    await server?.stop(3000);
    await t?.stop();
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// Report

const f0 = (x: number | undefined | null) => (x === undefined || x === null ? "-" : x.toFixed(0));
const f1 = (x: number | undefined | null) => (x === undefined || x === null ? "-" : x.toFixed(1));
const f2 = (x: number | undefined | null) => (x === undefined || x === null ? "-" : x.toFixed(2));
const rttCell = (r?: RttStats) => (r ? `${f2(r.minMs)} / ${f2(r.medianMs)} / ${f2(r.p99Ms)}` : "-");

function udpCell(u?: UdpResult): string {
  if (!u) return "-";
  if (u.bestRateMbit === null) return `- (${opts.udpRates[0]}M lost >= 1%)`;
  return `${f0(u.bestReceivedMbit)} (${u.capped ? "all passed, up to " : ""}${u.bestRateMbit}M offered)`;
}

function table(results: SystemResult[]): string {
  const rows = [
    "| system | TCP 1 stream Mbit/s | TCP 4 streams Mbit/s | UDP Mbit/s received, < 1% loss | RTT idle min / med / p99 ms | RTT under TCP load min / med / p99 ms | overhead TCP % | overhead UDP % | idle B/s | peak RSS A / B MB | CPU % of a core A / B (TCP 1) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    if (r.error) {
      rows.push(`| ${r.label} | not measured: ${r.error.split("\n")[0]?.replace(/\|/g, "/")} |||||||||||`);
      continue;
    }
    const isVeth = r.name === "veth";
    rows.push(
      `| ${r.label} ${r.version ? `(${r.version.replace(/^kernel /, "")})` : ""} | ${f0(r.tcp1?.mbit)} | ${f0(r.tcp4?.mbit)} | ${udpCell(r.udp)} | ${rttCell(r.rttIdle)} | ${rttCell(r.rttLoaded)} | ${isVeth ? "0 (ref)" : f1(r.tcp1?.overheadPct)} | ${isVeth ? "0 (ref)" : f1(r.udp?.overheadPct)} | ${f1(r.idle?.bytesPerSec)} | ${r.peakRssMB ? `${f0(r.peakRssMB.a)} / ${f0(r.peakRssMB.b)}` : "-"} | ${r.peakRssMB ? `${f0(r.tcp1?.cpu.aPct)} / ${f0(r.tcp1?.cpu.bPct)}` : "-"} |`,
    );
  }
  return rows.join("\n");
}

interface Ratio {
  reference: string;
  tcp1?: number;
  tcp4?: number;
  udp?: number;
}

function ratios(results: SystemResult[]): Ratio[] {
  const tc = results.find((r) => r.name === "tincan" && !r.error);
  if (!tc) return [];
  const div = (x?: number | null, y?: number | null) => (x && y ? x / y : undefined);
  return results
    .filter((r) => r.name !== "tincan" && !r.error)
    .map((r) => ({
      reference: r.label,
      tcp1: div(tc.tcp1?.mbit, r.tcp1?.mbit),
      tcp4: div(tc.tcp4?.mbit, r.tcp4?.mbit),
      udp: div(tc.udp?.bestReceivedMbit, r.udp?.bestReceivedMbit),
    }));
}

function ratioTable(rs: Ratio[]): string {
  if (rs.length === 0) return "(no ratios: TinCan-TS or the references were not measured)";
  const pct = (x?: number) => (x === undefined ? "-" : `${x.toFixed(2)} (${(100 * x).toFixed(0)} %)`);
  return [
    "| TinCan-TS / reference | TCP 1 stream | TCP 4 streams | UDP (received at max < 1% loss rate) |",
    "|---|---:|---:|---:|",
    ...rs.map((r) => `| ${r.reference} | ${pct(r.tcp1)} | ${pct(r.tcp4)} | ${pct(r.udp)} |`),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Main

/** Commit of the tree that was built, "-dirty" when packages/ has uncommitted changes. */
function gitDescribe(): string {
  try {
    const head = execFileSync("git", ["-C", REPO, "rev-parse", "--short", "HEAD"], {
      encoding: "utf8",
    }).trim();
    const dirty = execFileSync("git", ["-C", REPO, "status", "--porcelain", "--", "packages"], {
      encoding: "utf8",
    }).trim();
    return dirty ? `${head}-dirty` : head;
  } catch {
    return "?";
  }
}

async function main(): Promise<void> {
  const can = Lab.canRun();
  if (!can.ok) {
    console.error(`bench: cannot run: ${can.reason}`);
    process.exit(2);
  }
  const machine = {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? "?",
    memGB: Math.round(os.totalmem() / 1e9),
    kernel: os.release(),
    node: process.version,
    iperf3: execFileSync("iperf3", ["--version"], { encoding: "utf8" }).split("\n")[0],
    commit: gitDescribe(),
    loadavgAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
  log(
    `mode ${opts.mode}: runs ${opts.runs}, ${opts.seconds} s per iperf3 test, idle ${opts.idleSeconds} s, systems ${opts.only.join(",")}`,
  );
  const { lab, a, b } = await Lab.pair({ prefix: "bench" });
  // The lab's own handlers (installed first, so they run first) SIGKILL everything it started and
  // delete the namespaces; then this one removes what is left outside the lab dir and exits.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      lab.destroySync();
      removeStrayFiles();
      console.error(`[bench] ${sig}: stopped, lab torn down`);
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
  const results: SystemResult[] = [];
  try {
    for (const name of SYSTEMS) if (opts.only.includes(name)) results.push(await measure(lab, a, b, name));
  } finally {
    await lab.destroy();
    removeStrayFiles();
  }
  const loadavgAtEnd = os.loadavg().map((x) => Number(x.toFixed(2)));
  const started = new Date(t0);
  const rs = ratios(results);
  const md = [
    `## TinCan-TS bench, ${started.toISOString()} (${opts.mode}: ${opts.runs} run(s) per TCP test, ${opts.seconds} s each, idle ${opts.idleSeconds} s, pings ${opts.pingInterval} s apart)`,
    "",
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memGB} GB, kernel ${machine.kernel}, node ${machine.node}, ${machine.iperf3}, tree ${machine.commit}; load average (1/5/15 min) ${machine.loadavgAtStart.join(" ")} at start, ${loadavgAtEnd.join(" ")} at end`,
    "",
    table(results),
    "",
    ratioTable(rs),
    "",
    ...results.filter((r) => r.error).map((r) => `- ${r.label}: NOT MEASURED: ${r.error}`),
    ...results.filter((r) => !r.error && r.notes.length).map((r) => `- ${r.label}: ${r.notes.join("; ")}`),
    `- total time ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  ].join("\n");
  console.log(md);
  mkdirSync(opts.outDir, { recursive: true });
  const file = join(opts.outDir, `results-${started.toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ started: started.toISOString(), options: opts, machine: { ...machine, loadavgAtEnd }, results, ratios: rs, markdown: md }, null, 2)}\n`,
  );
  log(`wrote ${file}`);
  if (results.some((r) => r.error)) process.exitCode = 1;
}

await main();
