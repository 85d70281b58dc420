// Side-by-side performance of plain veth, wireguard-go, nebula and TinCan-TS between two network
// namespaces over one veth pair, measured in one run (issues #4, #7 and #19). See bench/README.md.
//
//   ns A (client, sender)  eth0 198.18.1.1/24 <== veth ==> eth0 198.18.1.2/24  ns B (server)
//   tunnel interface per system: wg-a/wg-b, neb-a/neb-b, tincan0/tincan0
//
// The systems take turns: every round sets up each system once (the first one rotating), measures it
// after a discarded warm-up transfer and tears it down before the next, so they never share the CPU
// and none is always first or always after the heaviest load; the table shows medians over rounds.
// Idle cost is measured last, per system, over a longer window. Every process is started through
// the lab (ended by PID on teardown, on error and on Ctrl-C), all of them in one CPU cgroup of the
// bench (see cpuGroup below), and the lab deletes both namespaces at the end.
//
// Usage: npx tsx bench/bench.ts [--quick | --full] [--runs N] [--seconds S] [--idle S]
//          [--pings N] [--only veth,wireguard,nebula,tincan] [--udp-rates 100,200,400,800,1600]
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { uidForIpv4 } from "../packages/protocol/dist/index.js";
import { type Host, Lab, type LabProcess, waitListening } from "../test/lab/index.js";
import {
  connectLink,
  DAEMON_NODE_FLAGS,
  DatapathHandle,
  REPO,
  TINCAN_BIN,
} from "../test/support/datapath-driver.js";
import { labUsers, VpnNode } from "../test/support/vpn-node.js";
import { PeakSampler, pagesOnceMB, procStats } from "./memory.js";
import {
  cpuSecondsPerGB,
  type Figures,
  median,
  medianOf,
  percentile,
  type RatioRow,
  ratioRows,
  roundOrder,
} from "./stats.js";

// ---------------------------------------------------------------------------------------------
// Flags

const HELP = `Usage: bash bench/run [flags]   (or: npx tsx bench/bench.ts [flags])

  --quick            1 round, idle 30 s (default)
  --full             3 rounds (medians), idle 120 s
  --runs N           rounds: each system measured N times, interleaved; the table shows medians
  --seconds S        length of each iperf3 test (default 5)
  --warmup S         discarded TCP transfer after each setup, seconds (default 3; 0: none)
  --idle S           idle-cost window per system (default 30, --full: 120)
  --pings N          pings per RTT test (default 200)
  --ping-interval S  seconds between pings (default 0.01; this VM's wake-up from idle shows at longer ones)
  --only LIST        systems to run, comma separated: veth,wireguard,nebula,tincan (default all)
  --udp-rates LIST   UDP rates in Mbit/s tried in order until loss >= 1% (default 25,50,100,200,400,800,1600)
  --nebula-routines N  nebula's routines (default 1: its docs recommend at most half the cores, and
                     both ends share this machine's)
  --no-fast-path     TinCan-TS with tune.fastPath off (links on node-datachannel's media track, as
                     before 2026-12-07); by default it runs as shipped, fast path on
  --one-process      also run TinCan-TS as one-process nodes (system "tincan1p": groupvpn
                     --with-datapath, one Node process per side), interleaved with the others
  --datapath-only    TinCan-TS without controllers: the driver sets the link up over RPC (as before
                     2026-12-07); by default each side runs tincan and a GroupVPN controller
                     (prosody on A), so peak RSS counts both, as a node runs them
  --sessions         leave each process in its own scheduler autogroup (the lab's setsid) instead of
                     one CPU cgroup for the whole bench: how bench/ ran before 2026-12-07
  --out DIR          where results-<timestamp>.json goes (default bench/out)
  --help`;

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean" },
    full: { type: "boolean" },
    runs: { type: "string" },
    seconds: { type: "string" },
    warmup: { type: "string" },
    idle: { type: "string" },
    pings: { type: "string" },
    "ping-interval": { type: "string" },
    only: { type: "string" },
    "udp-rates": { type: "string" },
    "nebula-routines": { type: "string" },
    sessions: { type: "boolean" },
    "no-fast-path": { type: "boolean" },
    "datapath-only": { type: "boolean" },
    "one-process": { type: "boolean" },
    out: { type: "string" },
    help: { type: "boolean" },
  },
  strict: true,
});
if (flags.help) {
  console.log(HELP);
  process.exit(0);
}

const SYSTEMS = ["veth", "wireguard", "nebula", "tincan", "tincan1p"] as const;
type SystemName = (typeof SYSTEMS)[number];
/** The systems TinCan-TS is compared with. */
const REFERENCES: readonly SystemName[] = ["wireguard", "nebula"];

function posInt(name: string, v: string | undefined, def: number, min = 1): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name}: an integer >= ${min}, got ${JSON.stringify(v)}`);
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
  warmupSeconds: posInt("warmup", flags.warmup, 3, 0),
  idleSeconds: posInt("idle", flags.idle, full ? 120 : 30),
  pings: posInt("pings", flags.pings, 200),
  pingInterval: pingInterval(flags["ping-interval"]),
  udpRates: (flags["udp-rates"] ?? "25,50,100,200,400,800,1600")
    .split(",")
    .map((r) => posInt("udp-rates", r, 0)),
  only: (flags.only ?? SYSTEMS.filter((s) => s !== "tincan1p").join(","))
    .split(",")
    .map((s) => s.trim()) as SystemName[],
  nebulaRoutines: posInt("nebula-routines", flags["nebula-routines"], 1),
  cpuGroup: flags.sessions !== true,
  fastPath: flags["no-fast-path"] !== true,
  controllers: flags["datapath-only"] !== true,
  outDir: flags.out ?? join(REPO, "bench/out"),
};
if (flags["one-process"] && !opts.only.includes("tincan1p")) opts.only.push("tincan1p");
for (const s of opts.only) {
  if (!SYSTEMS.includes(s)) {
    console.error(`--only: unknown system ${JSON.stringify(s)} (one of ${SYSTEMS.join(", ")})`);
    process.exit(2);
  }
}
opts.only = SYSTEMS.filter((s) => opts.only.includes(s));

const LOSS_LIMIT_PCT = 1;
const UDP_LEN = 1200;
/** After a teardown, before the next setup: the kernel finishes removing devices and sockets. */
const SETTLE_MS = 2000;
/**
 * Before the idle window: the fresh tunnel interface's IPv6 autoconfiguration (RS, MLD) is over, and
 * a TinCan-TS link on the fast path has closed its PeerConnection (tune.fastPcCloseMs, 20 s after the
 * switch), so the window sees a link's steady idle cost, not its first minute's.
 */
const IDLE_SETTLE_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (msg: string) =>
  console.error(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${msg}`);

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

function readOr(file: string, fallback = ""): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return fallback;
  }
}

/**
 * One CPU cgroup (v1 `cpu` controller, or cgroup2 with `cpu` enabled) for the driver and so for every
 * process it starts. The lab starts each process in a session of its own (setsid), and with
 * autogroup scheduling (kernel.sched_autogroup_enabled=1, the default here) each session is then a
 * scheduling group of its own: the two tunnel ends and the iperf3 server become groups of their own
 * (the iperf3 client runs in the driver's), which the scheduler balances as groups; that cost nebula ~30 % of its TCP rate (wireguard-go up to 37 %) against a
 * one-session shell harness (bench/two-ns.sh, bench/RESULTS.md 2026-12-07). A task inside a cgroup other
 * than the root is outside autogroup, so in one cgroup all threads compete as they do on a machine
 * without autogroup and in a shell harness that starts everything from one session.
 */
const cpuGroup = {
  dir: undefined as string | undefined,
  /** The cgroup's directory, or undefined when no CPU controller is writable here. */
  enter(): string | undefined {
    const v2 = "/sys/fs/cgroup";
    const roots = [
      "/sys/fs/cgroup/cpu", // v1 (hybrid hierarchy, as on this machine kind)
      ...(readOr(join(v2, "cgroup.subtree_control")).split(/\s+/).includes("cpu") ? [v2] : []),
    ];
    for (const root of roots) {
      const dir = join(root, `tincan-bench-${process.pid}`);
      try {
        mkdirSync(dir);
        writeFileSync(join(dir, "cgroup.procs"), String(process.pid));
        this.dir = dir;
        return dir;
      } catch {
        try {
          rmdirSync(dir);
        } catch {
          // not made here
        }
      }
    }
    return undefined;
  },
  /** Moves the driver back to the root group and removes the (then empty) directory. */
  leave(): void {
    if (!this.dir) return;
    try {
      writeFileSync(join(this.dir, "..", "cgroup.procs"), String(process.pid));
      rmdirSync(this.dir);
    } catch {
      // a process of ours is still inside: the lab's teardown ends it; the empty dir is harmless
    }
    this.dir = undefined;
  },
};

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
  /** TinCan-TS: which path carries the link now, both ends (`transport` from link.query, else the ICE path). */
  links?(): Promise<string>;
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
  rmSync(dir, { recursive: true, force: true }); // fresh CA and certs per setup
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
routines: ${opts.nebulaRoutines}
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
    notes: [
      "tun MTU 1300 (nebula's default)",
      `routines ${opts.nebulaRoutines}`,
      "A is the lighthouse, static host map, punchy and relays off",
    ],
    async stop() {
      for (const p of procs) await p.stop(3000);
    },
  };
}

async function setupTincan(lab: Lab, a: Host, b: Host): Promise<Tunnel> {
  // log level info: the driver waits for the " ready " line, which is logged at info.
  const config = join(lab.dir, "tincan-bench.json");
  writeFileSync(config, JSON.stringify({ tune: { fastPath: opts.fastPath } }));
  if (opts.controllers) return setupTincanNodes(lab, a, b, config, false);
  const start = { args: ["--config", config] };
  const da = await DatapathHandle.start(lab, a, start);
  let db: DatapathHandle | undefined;
  try {
    db = await DatapathHandle.start(lab, b, start);
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
  const mtu = (await a.run(["cat", "/sys/class/net/tincan0/mtu"])).trim();
  const pkg = JSON.parse(readFileSync(join(REPO, "packages/datapath/package.json"), "utf8")) as {
    version: string;
  };
  const dbh = db;
  return {
    name: "tincan",
    label: opts.fastPath ? "TinCan-TS (fast path)" : "TinCan-TS (media track)",
    version: pkg.version,
    addrB: "10.77.0.2",
    ifA: "tincan0",
    ifB: "tincan0",
    procs: { a: [da.proc], b: [dbh.proc] },
    notes: [`vnic MTU ${mtu}`],
    // Both ends' view: `transport` ("fast" | "datachannel") where the datapath reports it, and the
    // selected ICE pair's type (host, srflx, prflx, relay).
    async links() {
      const out: string[] = [];
      for (const [side, h, peer] of [
        ["A", da, dbh],
        ["B", dbh, da],
      ] as const) {
        const [l] = (await h.call("link.query", { peerUid: peer.uid })) as {
          transport?: string;
          path?: string | null;
        }[];
        const ice = `ICE ${l?.path ?? "?"}`;
        out.push(`${side}: ${l?.transport ? `${l.transport} (${ice})` : ice}`);
      }
      return out.join(", ");
    },
    async stop() {
      await da.stop();
      await dbh.stop();
    },
  };
}

/**
 * TinCan-TS as a node runs it: tincan and a GroupVPN controller per side, prosody on A; or, with
 * `oneProcess`, one process per side (`groupvpn --with-datapath`).
 */
async function setupTincanNodes(
  lab: Lab,
  a: Host,
  b: Host,
  config: string,
  oneProcess: boolean,
): Promise<Tunnel> {
  const users = [a.name, b.name];
  const prosody = await lab.startProsody({ host: a, users: labUsers(users), groups: { lab: users } });
  const nodes = ([a, b] as const).map(
    (h, i) =>
      new VpnNode(lab, h, {
        user: h.name,
        ipv4: `10.77.0.${i + 1}/24`,
        prosody,
        links: { policy: "proactive" },
        logLevel: "info",
        ...(oneProcess
          ? { oneProcess: { tincan: { tune: { fastPath: opts.fastPath }, log: { level: "info" } } } }
          : { commands: { tincan: ["node", ...DAEMON_NODE_FLAGS, TINCAN_BIN, "--config", config] } }),
      }),
  ) as [VpnNode, VpnNode];
  const stop = async () => {
    for (const n of nodes) await n.stop();
  };
  try {
    for (const n of nodes) await n.start();
    await waitPing(a, "10.77.0.2", "tincan", 60_000);
  } catch (e) {
    await stop();
    throw e;
  }
  const mtu = (await a.run(["cat", "/sys/class/net/tincan0/mtu"])).trim();
  const [na, nb] = nodes;
  return {
    name: oneProcess ? "tincan1p" : "tincan",
    label: `TinCan-TS${opts.fastPath ? " (fast path)" : ""} + GroupVPN${oneProcess ? ", one process" : ""}`,
    version: (
      JSON.parse(readFileSync(join(REPO, "packages/datapath/package.json"), "utf8")) as { version: string }
    ).version,
    addrB: "10.77.0.2",
    ifA: "tincan0",
    ifB: "tincan0",
    procs: oneProcess
      ? { a: [na.controller], b: [nb.controller] }
      : { a: [na.tincan, na.controller], b: [nb.tincan, nb.controller] },
    notes: [
      `vnic MTU ${mtu}`,
      oneProcess
        ? "peak RSS: the one process per side (groupvpn --with-datapath)"
        : "peak RSS: tincan + groupvpn per side (sum of each process's VmHWM)",
    ],
    async links() {
      const out: string[] = [];
      for (const [side, n] of [
        ["A", na],
        ["B", nb],
      ] as const) {
        const [l] = await n.connectedLinks();
        const ice = `ICE ${l?.path ?? "?"}`;
        out.push(`${side}: ${l?.transport ? `${String(l.transport)} (${ice})` : ice}`);
      }
      return out.join(", ");
    },
    stop,
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
  tincan1p: async (lab, a, b) => {
    const config = join(lab.dir, "tincan-bench.json");
    writeFileSync(config, JSON.stringify({ tune: { fastPath: opts.fastPath } }));
    return setupTincanNodes(lab, a, b, config, true);
  },
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
    sum_received?: { bits_per_second: number; bytes: number };
    sum_sent?: { retransmits?: number };
    /** UDP only */
    sum?: { bits_per_second: number; bytes: number; lost_percent: number };
  };
}

interface IperfRun {
  mbit: number;
  /** Bytes the receiver got. */
  bytes: number;
  lossPct?: number;
  retransmits?: number;
  overheadPct?: number;
  /** utime+stime of the tunnel processes over the run, seconds per side, and % of a core. */
  cpu: { a: number; b: number; aPct: number; bPct: number };
  /** Both ends' CPU seconds per GB received. */
  cpuSPerGB?: number;
}

function cpuOf(ps: LabProcess[]): number {
  return ps.reduce((s, p) => s + (procStats(p.pid)?.cpuS ?? 0), 0);
}

async function iperf(a: Host, t: Tunnel, extra: string[], seconds = opts.seconds): Promise<IperfRun> {
  const ifs = t.ifA === "eth0" ? ["eth0"] : ["eth0", t.ifA];
  const c0 = await readCounters(a, ifs);
  const cpuA0 = cpuOf(t.procs.a);
  const cpuB0 = cpuOf(t.procs.b);
  const w0 = Date.now();
  const r = await a.exec(["iperf3", "-c", t.addrB, "-t", String(seconds), "-J", ...extra], {
    timeoutMs: seconds * 1000 + 30_000,
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
  const lossPct = j.end.sum?.lost_percent ?? 0;
  // What the receiver got (iperf3 3.12 has end.sum_received for UDP too; older ones only end.sum).
  const got = j.end.sum_received ?? {
    bytes: (j.end.sum?.bytes ?? 0) * (1 - lossPct / 100),
    bits_per_second: (j.end.sum?.bits_per_second ?? 0) * (1 - lossPct / 100),
  };
  const bytes = got.bytes;
  const run: IperfRun = {
    mbit: got.bits_per_second / 1e6,
    bytes,
    cpu: { a: cpuA, b: cpuB, aPct: (100 * cpuA) / wall, bPct: (100 * cpuB) / wall },
  };
  if (t.procs.a.length) run.cpuSPerGB = cpuSecondsPerGB(cpuA + cpuB, bytes);
  if (udp) run.lossPct = lossPct;
  else run.retransmits = j.end.sum_sent?.retransmits;
  if (t.ifA !== "eth0" && inner > 0) run.overheadPct = (100 * veth) / inner - 100;
  return run;
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

/** Bytes on the wire between the namespaces with the tunnel up and nothing sent, per direction. */
interface IdleResult {
  seconds: number;
  /** Both directions: A's veth tx + rx (a veth pair: what A sends is what B receives). */
  bytesPerSec: number;
  aToBBytesPerSec: number;
  bToABytesPerSec: number;
}

async function idleCost(a: Host): Promise<IdleResult> {
  const c0 = (await readCounters(a, ["eth0"])).eth0 as { tx: number; rx: number };
  await sleep(opts.idleSeconds * 1000);
  const c1 = (await readCounters(a, ["eth0"])).eth0 as { tx: number; rx: number };
  const s = opts.idleSeconds;
  return {
    seconds: s,
    bytesPerSec: (c1.tx - c0.tx + c1.rx - c0.rx) / s,
    aToBBytesPerSec: (c1.tx - c0.tx) / s,
    bToABytesPerSec: (c1.rx - c0.rx) / s,
  };
}

/** One round of one system: set up, warm up (discarded), measure, tear down. */
interface RoundResult {
  round: number;
  /** 0 = this round's first system. */
  position: number;
  error?: string;
  warmupMbit?: number;
  rttIdle?: RttStats;
  tcp1?: IperfRun;
  tcp4?: IperfRun;
  udp?: UdpResult;
  rttLoaded?: RttStats & { loadMbit?: number };
  /** Peak RSS (VmHWM) of the measured processes at the end of the throughput tests, MB per side. */
  peakRssMB?: { a: number; b: number };
  /** Peak (2 s samples) of a side's processes' pages counted once (bench/memory.ts), MB per side. */
  peakOnceMB?: { a: number; b: number };
  /** A side's processes' pages counted once right after the TCP 1-stream test, MB. */
  onceAfterTcp1MB?: { a?: number | undefined; b?: number | undefined };
  /**
   * VmHWM (peak RSS) of each measured process (in `processes` order) after each phase, MB: the
   * phase in which a process's value grows made its peak.
   */
  hwmByPhaseMB?: { after: string; a: number[]; b: number[] }[];
  /** TinCan-TS: which path carried the link, read after the TCP 1-stream test. */
  links?: string;
  loadavg: number;
}

interface SystemResult {
  name: SystemName;
  label: string;
  version?: string;
  notes: string[];
  processes?: { a: string[]; b: string[] };
  rounds: RoundResult[];
  /** Rounds that failed and were run again. */
  failedRounds: RoundResult[];
  idle?: IdleResult;
  /** TinCan-TS: a side's processes' pages counted once at the end of the idle window, MB. */
  idleOnceMB?: { a?: number | undefined; b?: number | undefined };
  idleError?: string;
}

/** Sets the system up with an iperf3 server in B, runs `body`, tears both down and lets the kernel settle. */
async function withTunnel<T>(
  lab: Lab,
  a: Host,
  b: Host,
  res: SystemResult,
  body: (t: Tunnel, restartServer: () => Promise<void>) => Promise<T>,
): Promise<T> {
  let t: Tunnel | undefined;
  let server: LabProcess | undefined;
  const startServer = async (tn: Tunnel) => {
    await server?.stop(3000);
    server = b.spawn("iperf3", ["-s", "-B", tn.addrB], { name: `iperf3-s-${tn.name}` });
    await waitListening(b, "tcp", tn.addrB, 5201, 10_000, server);
  };
  try {
    t = await SETUP[res.name](lab, a, b);
    Object.assign(res, { label: t.label, version: t.version, notes: t.notes });
    res.processes = {
      a: t.procs.a.map((p) => p.argv.join(" ")),
      b: t.procs.b.map((p) => p.argv.join(" ")),
    };
    await startServer(t);
    await a.exec(["ping", "-n", "-q", "-c", "5", "-i", "0.05", t.addrB]);
    const tn = t;
    return await body(t, () => startServer(tn));
  } finally {
    await server?.stop(3000);
    await t?.stop();
    // A setup that failed half-way leaves its first processes running (e.g. A's datapath when B's
    // never got ready): end whatever the lab still runs, so the next setup starts from nothing.
    for (const p of lab.running) await p.stop(3000);
    await sleep(SETTLE_MS);
  }
}

async function measureRound(
  lab: Lab,
  a: Host,
  b: Host,
  res: SystemResult,
  round: number,
  position: number,
): Promise<RoundResult> {
  const rr: RoundResult = { round, position, loadavg: os.loadavg()[0] as number };
  const tag = `${res.name} round ${round + 1}/${opts.runs}`;
  log(`${tag}: setting up (load ${rr.loadavg.toFixed(1)})`);
  try {
    await withTunnel(lab, a, b, res, async (t, restartServer) => {
      if (opts.warmupSeconds > 0) {
        rr.warmupMbit = (await iperf(a, t, [], opts.warmupSeconds)).mbit;
        log(`${tag}: warm-up ${rr.warmupMbit.toFixed(0)} Mbit/s (discarded)`);
      }
      const hwmOf = (ps: LabProcess[]) =>
        ps.map((p) => Number(((procStats(p.pid)?.hwmBytes ?? 0) / 1e6).toFixed(1)));
      const phases: { after: string; a: number[]; b: number[] }[] = [];
      const phase = (after: string) => phases.push({ after, a: hwmOf(t.procs.a), b: hwmOf(t.procs.b) });
      phase("setup and warm-up");
      rr.rttIdle = await pingRtt(a, t.addrB);
      log(`${tag}: RTT idle median ${rr.rttIdle.medianMs.toFixed(3)} ms`);
      // TinCan-TS nodes: their processes' pages counted once, sampled.
      const pids = { a: t.procs.a.map((p) => p.pid), b: t.procs.b.map((p) => p.pid) };
      const sampler = t.name.startsWith("tincan") ? new PeakSampler(pids) : undefined;
      rr.tcp1 = await iperf(a, t, []);
      log(`${tag}: TCP x1 ${rr.tcp1.mbit.toFixed(0)} Mbit/s, ${f1(rr.tcp1.cpuSPerGB)} CPU s/GB`);
      phase("TCP x1");
      if (sampler) rr.onceAfterTcp1MB = { a: pagesOnceMB(pids.a), b: pagesOnceMB(pids.b) };
      if (t.links) rr.links = await t.links();
      rr.tcp4 = await iperf(a, t, ["-P", "4"]);
      log(`${tag}: TCP x4 ${rr.tcp4.mbit.toFixed(0)} Mbit/s`);
      phase("TCP x4");
      rr.udp = await udpSearch(a, t);
      // an overloaded step can leave the server's control connection hanging
      if (rr.udp.aborted) await restartServer();
      phase("UDP steps");
      rr.rttLoaded = await pingLoaded(a, t);
      log(`${tag}: RTT loaded median ${rr.rttLoaded.medianMs.toFixed(3)} ms`);
      phase("RTT under load");
      if (t.procs.a.length) rr.hwmByPhaseMB = phases;
      const hwm = (ps: LabProcess[]) => ps.reduce((s, p) => s + (procStats(p.pid)?.hwmBytes ?? 0), 0) / 1e6;
      if (t.procs.a.length) rr.peakRssMB = { a: hwm(t.procs.a), b: hwm(t.procs.b) };
      rr.peakOnceMB = sampler?.stop();
    });
  } catch (e) {
    rr.error = (e as Error).message;
    log(`${tag}: FAILED: ${rr.error}`);
  }
  return rr;
}

async function measureIdle(lab: Lab, a: Host, b: Host, res: SystemResult): Promise<void> {
  log(`${res.name}: idle cost over ${opts.idleSeconds} s`);
  try {
    await withTunnel(lab, a, b, res, async (t) => {
      await sleep(IDLE_SETTLE_MS);
      res.idle = await idleCost(a);
      if (t.name.startsWith("tincan"))
        res.idleOnceMB = {
          a: pagesOnceMB(t.procs.a.map((p) => p.pid)),
          b: pagesOnceMB(t.procs.b.map((p) => p.pid)),
        };
    });
    log(`${res.label}: idle ${f1(res.idle?.bytesPerSec)} B/s`);
  } catch (e) {
    res.idleError = (e as Error).message;
    log(`${res.name}: idle FAILED: ${res.idleError}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Medians over rounds

interface Summary {
  tcp1?: number;
  tcp4?: number;
  tcp1Runs: number[];
  tcp4Runs: number[];
  udp?: number;
  udpRate?: number;
  udpCapped: boolean;
  rttIdle?: { min?: number; med?: number; p99?: number };
  rttLoaded?: { min?: number; med?: number; p99?: number };
  overheadTcp?: number;
  overheadUdp?: number;
  cpuPct?: { a?: number; b?: number };
  cpuSPerGB?: { tcp1?: number; tcp4?: number };
  peakRssMB?: { a: number; b: number };
  peakOnceMB?: { a: number; b: number };
  links: string[];
  roundsOk: number;
}

function summarize(r: SystemResult): Summary {
  const ok = r.rounds.filter((x) => !x.error);
  const m = (f: (x: RoundResult) => number | null | undefined) => medianOf(ok.map(f));
  const rtt = (f: (x: RoundResult) => RttStats | undefined) => ({
    min: m((x) => f(x)?.minMs),
    med: m((x) => f(x)?.medianMs),
    p99: m((x) => f(x)?.p99Ms),
  });
  const rss = ok.map((x) => x.peakRssMB).filter((x): x is { a: number; b: number } => x !== undefined);
  const once = ok.map((x) => x.peakOnceMB).filter((x): x is { a: number; b: number } => x !== undefined);
  return {
    tcp1: m((x) => x.tcp1?.mbit),
    tcp4: m((x) => x.tcp4?.mbit),
    tcp1Runs: ok.flatMap((x) => (x.tcp1 ? [x.tcp1.mbit] : [])),
    tcp4Runs: ok.flatMap((x) => (x.tcp4 ? [x.tcp4.mbit] : [])),
    udp: m((x) => x.udp?.bestReceivedMbit),
    udpRate: m((x) => x.udp?.bestRateMbit),
    udpCapped: ok.some((x) => x.udp?.capped),
    rttIdle: rtt((x) => x.rttIdle),
    rttLoaded: rtt((x) => x.rttLoaded),
    overheadTcp: m((x) => x.tcp1?.overheadPct),
    overheadUdp: m((x) => x.udp?.overheadPct),
    cpuPct: { a: m((x) => x.tcp1?.cpu.aPct), b: m((x) => x.tcp1?.cpu.bPct) },
    cpuSPerGB: { tcp1: m((x) => x.tcp1?.cpuSPerGB), tcp4: m((x) => x.tcp4?.cpuSPerGB) },
    peakRssMB: rss.length
      ? { a: Math.max(...rss.map((x) => x.a)), b: Math.max(...rss.map((x) => x.b)) }
      : undefined,
    peakOnceMB: once.length
      ? { a: Math.max(...once.map((x) => x.a)), b: Math.max(...once.map((x) => x.b)) }
      : undefined,
    links: [...new Set(ok.flatMap((x) => (x.links ? [x.links] : [])))],
    roundsOk: ok.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const f0 = (x: number | undefined | null) => (x === undefined || x === null ? "-" : x.toFixed(0));
const f1 = (x: number | undefined | null) => (x === undefined || x === null ? "-" : x.toFixed(1));
const f2 = (x: number | undefined | null) => (x === undefined || x === null ? "-" : x.toFixed(2));
const rttCell = (r?: { min?: number; med?: number; p99?: number }) =>
  r?.med !== undefined ? `${f2(r.min)} / ${f2(r.med)} / ${f2(r.p99)}` : "-";
const runsCell = (med: number | undefined, runs: number[]) =>
  runs.length > 1 ? `${f0(med)} (${runs.map((x) => x.toFixed(0)).join(", ")})` : f0(med);

function udpCell(s: Summary): string {
  if (s.udp === undefined) return s.roundsOk ? `- (${opts.udpRates[0]}M lost >= 1%)` : "-";
  return `${f0(s.udp)} (${s.udpCapped ? "all passed, up to " : ""}${f0(s.udpRate)}M offered)`;
}

function table(results: SystemResult[]): string {
  const rows = [
    "| system | TCP 1 stream Mbit/s (runs) | TCP 4 streams Mbit/s (runs) | UDP Mbit/s received, < 1% loss | RTT idle min / med / p99 ms | RTT under TCP load min / med / p99 ms | overhead TCP % | overhead UDP % | idle B/s A->B + B->A | peak RSS A / B MB (pages once) | CPU % of a core A / B (TCP 1) | CPU s per GB TCP 1 / TCP 4 | path |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const r of results) {
    const s = summarize(r);
    const isVeth = r.name === "veth";
    if (s.roundsOk === 0) {
      const err = r.rounds.find((x) => x.error)?.error ?? "no round ran";
      rows.push(`| ${r.label} | not measured: ${err.split("\n")[0]?.replace(/\|/g, "/")} ||||||||||||`);
      continue;
    }
    const idle = r.idle
      ? `${f1(r.idle.bytesPerSec)} = ${f1(r.idle.aToBBytesPerSec)} + ${f1(r.idle.bToABytesPerSec)}`
      : "-";
    const path = isVeth ? "-" : r.name.startsWith("tincan") ? s.links.join("; ") || "?" : "direct UDP";
    rows.push(
      `| ${r.label} ${r.version ? `(${r.version.replace(/^kernel /, "")})` : ""} | ${runsCell(s.tcp1, s.tcp1Runs)} | ${runsCell(s.tcp4, s.tcp4Runs)} | ${udpCell(s)} | ${rttCell(s.rttIdle)} | ${rttCell(s.rttLoaded)} | ${isVeth ? "0 (ref)" : f1(s.overheadTcp)} | ${isVeth ? "0 (ref)" : f1(s.overheadUdp)} | ${idle} | ${s.peakRssMB ? `${f0(s.peakRssMB.a)} / ${f0(s.peakRssMB.b)}` : "-"}${s.peakOnceMB ? ` (${f0(s.peakOnceMB.a)} / ${f0(s.peakOnceMB.b)})` : ""} | ${isVeth ? "-" : `${f0(s.cpuPct?.a)} / ${f0(s.cpuPct?.b)}`} | ${isVeth ? "-" : `${f1(s.cpuSPerGB?.tcp1)} / ${f1(s.cpuSPerGB?.tcp4)}`} | ${path} |`,
    );
  }
  return rows.join("\n");
}

/** TinCan-TS: memory counted once (idle, after TCP x1) and which phase raised each process's peak. */
function memoryLines(r: SystemResult): string[] {
  const ab = (x?: { a?: number | undefined; b?: number | undefined }) => `${f0(x?.a)} / ${f0(x?.b)}`;
  const ok = r.rounds.filter((x) => !x.error);
  return [
    `- ${r.label}, MB counted once (A / B): idle ${ab(r.idleOnceMB)}; after TCP x1 ${ok.map((x) => ab(x.onceAfterTcp1MB)).join(", ")}; peak ${ok.map((x) => ab(x.peakOnceMB)).join(", ")}`,
    ...ok.map(
      (x) =>
        `- ${r.label} round ${x.round + 1}, VmHWM per process after each phase (A; B): ${(x.hwmByPhaseMB ?? []).map((p) => `${p.after} ${p.a.map(f0).join("+")}; ${p.b.map(f0).join("+")}`).join(" | ")}`,
    ),
  ];
}

function figures(r: SystemResult): Figures {
  const s = summarize(r);
  return { label: r.label, tcp1: s.tcp1, tcp4: s.tcp4, udp: s.udp, rttIdleMs: s.rttIdle?.med };
}

function ratios(results: SystemResult[]): RatioRow[] {
  const tc = results.find((r) => r.name === "tincan");
  if (!tc) return [];
  const refs = results.filter((r) => REFERENCES.includes(r.name) && summarize(r).roundsOk > 0);
  return refs.length ? ratioRows(figures(tc), refs.map(figures)) : [];
}

function ratioTable(rs: RatioRow[]): string {
  if (rs.length === 0) return "(no ratios: TinCan-TS or the references were not measured)";
  const x = (v?: number) => (v === undefined ? "-" : `${v.toFixed(2)}x`);
  const ms = (v?: number) => (v === undefined ? "-" : `${v >= 0 ? "+" : ""}${v.toFixed(2)}`);
  return [
    "| TinCan-TS / reference | TCP 1 stream | TCP 4 streams | UDP < 1% loss | idle RTT difference ms |",
    "|---|---:|---:|---:|---:|",
    ...rs.map(
      (r) => `| ${r.reference} | ${x(r.tcp1)} | ${x(r.tcp4)} | ${x(r.udp)} | ${ms(r.rttIdleDiffMs)} |`,
    ),
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
  const { lab, a, b } = await Lab.pair({ prefix: "bench" });
  // The lab's own handlers (installed first, so they run first) SIGKILL everything it started and
  // delete the namespaces; then this one removes what is left outside the lab dir and exits.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      lab.destroySync();
      removeStrayFiles();
      cpuGroup.leave();
      console.error(`[bench] ${sig}: stopped, lab torn down`);
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
  // after the lab exists (a prefix in use throws before anything is to undo)
  const group = opts.cpuGroup ? cpuGroup.enter() : undefined;
  process.once("exit", () => cpuGroup.leave());
  const sched = group
    ? `one CPU cgroup (${group})`
    : `a session (autogroup) per process${opts.cpuGroup ? ": NO writable CPU cgroup here" : ""}`;
  log(
    `mode ${opts.mode}: ${opts.runs} round(s), ${opts.seconds} s per iperf3 test, warm-up ${opts.warmupSeconds} s, idle ${opts.idleSeconds} s, systems ${opts.only.join(",")}, ${sched}`,
  );
  const results: SystemResult[] = opts.only.map((name) => ({
    name,
    label: name,
    notes: [],
    rounds: [],
    failedRounds: [],
  }));
  try {
    for (const [round, order] of roundOrder(results, opts.runs).entries()) {
      for (const [position, res] of order.entries()) {
        let rr = await measureRound(lab, a, b, res, round, position);
        // once more after a failure (on a loaded machine a setup can time out); both are in the JSON
        if (rr.error) {
          res.failedRounds.push(rr);
          rr = await measureRound(lab, a, b, res, round, position);
        }
        res.rounds.push(rr);
      }
    }
    for (const res of results) await measureIdle(lab, a, b, res);
  } finally {
    await lab.destroy();
    removeStrayFiles();
    cpuGroup.leave();
  }
  const loadavgAtEnd = os.loadavg().map((x) => Number(x.toFixed(2)));
  const started = new Date(t0);
  const rs = ratios(results);
  const retried = results.flatMap((r) =>
    r.failedRounds.map((x) => `- ${r.label} round ${x.round + 1} failed once and ran again: ${x.error}`),
  );
  const partial = results
    .map((r) => ({ r, ok: summarize(r).roundsOk }))
    .filter(({ ok }) => ok < opts.runs)
    .map(({ r, ok }) => `- ${r.label}: medians and ratios over ${ok} of ${opts.runs} rounds`);
  const failed = results.flatMap((r) => [
    ...r.rounds.filter((x) => x.error).map((x) => `- ${r.label} round ${x.round + 1}: FAILED: ${x.error}`),
    ...(r.idleError ? [`- ${r.label} idle: FAILED: ${r.idleError}`] : []),
  ]);
  const md = [
    `## TinCan-TS bench, ${started.toISOString()} (${opts.mode}: ${opts.runs} round(s), systems interleaved, ${opts.warmupSeconds} s warm-up discarded, ${opts.seconds} s per test, idle ${opts.idleSeconds} s, pings ${opts.pingInterval} s apart, ${sched})`,
    "",
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memGB} GB, kernel ${machine.kernel}, node ${machine.node}, ${machine.iperf3}, tree ${machine.commit}; load average (1/5/15 min) ${machine.loadavgAtStart.join(" ")} at start, ${loadavgAtEnd.join(" ")} at end`,
    "",
    table(results),
    "",
    ratioTable(rs),
    "",
    ...partial,
    ...failed,
    ...retried,
    ...results.filter((r) => r.notes.length).map((r) => `- ${r.label}: ${r.notes.join("; ")}`),
    ...results.filter((r) => r.name.startsWith("tincan")).flatMap(memoryLines),
    `- load average (1 min) at each setup: ${results.map((r) => `${r.label} ${r.rounds.map((x) => x.loadavg.toFixed(1)).join(", ")}`).join("; ")}`,
    `- total time ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  ].join("\n");
  console.log(md);
  mkdirSync(opts.outDir, { recursive: true });
  const file = join(opts.outDir, `results-${started.toISOString().replace(/[:.]/g, "-")}.json`);
  const summaries = Object.fromEntries(results.map((r) => [r.name, summarize(r)]));
  writeFileSync(
    file,
    `${JSON.stringify({ started: started.toISOString(), options: opts, machine: { ...machine, loadavgAtEnd }, results, summaries, ratios: rs, markdown: md }, null, 2)}\n`,
  );
  log(`wrote ${file}`);
  if (failed.length) process.exitCode = 1;
}

await main();
