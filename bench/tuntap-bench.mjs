#!/usr/bin/env node
// Micro-benchmark of @tincan/tuntap (build it first: pnpm --filter @tincan/tuntap run build).
// Needs root. Everything happens in a network namespace made for the run and deleted at the end.
//
//   generator process            kernel (ip_forward=1)             measured process
//   tun "tbb" 10.98.0.1/24  --writeBatch--> forward --> tun "tba" 10.99.0.1/24 --> JS reads
//   (UDP 10.98.0.2:5000 -> 10.99.0.2:9999, 1400-byte packets)      [echo: swap addresses and
//                                                                   ports, writeBatch back into
//                                                                   tba -> forwarded to tbb]
// Phases:
//   read   JS reads batches (onPackets) and counts them.
//   echo   JS reads a batch, swaps src/dst in place and writes the batch back (writeBatch).
//   write  JS writes one valid packet (10.99.0.2 -> 10.99.0.1, closed UDP port) in a loop,
//          with writeBatch(64) and with write(); no reader involved.
// Each phase runs --repeat times; the table shows the median run (by rx or tx pkt/s), the JSON
// line has every run. The numbers move a lot on a shared VM: look at the cpu column too.
// Usage: node bench/tuntap-bench.mjs [--seconds 3] [--batch 64] [--size 1400] [--repeat 3]
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { Tun } from "../packages/tuntap/dist/index.js";
import { udp4Packet } from "../packages/tuntap/test-fixtures/packets.mjs";

const self = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const SECONDS = Number(opt("seconds", "3"));
const BATCH = Number(opt("batch", "64"));
const SIZE = Number(opt("size", "1400"));
const REPEAT = Number(opt("repeat", "3"));
const WARMUP_MS = 500;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

function benchPacket(src, dst, sport, dport) {
  return udp4Packet({ src, dst, sport, dport, data: Buffer.alloc(SIZE - 28, 0x5a) });
}

function cpuPercent(startUsage, startNs) {
  const u = process.cpuUsage(startUsage);
  const wallUs = Number(process.hrtime.bigint() - startNs) / 1000;
  return Math.round(((u.user + u.system) / wallUs) * 100);
}

// ---- roles, run inside the namespace -----------------------------------------------------

async function roleSink(mode) {
  const tun = new Tun({ name: "tba", batchSize: BATCH });
  tun.ipv4 = "10.99.0.1/24";
  tun.mtu = 1500;
  tun.isUp = true;
  let batches = 0;
  let written = 0;
  if (mode === "echo") {
    tun.onPackets((buf, offsets, lengths, count) => {
      batches++;
      for (let i = 0; i < count; i++) {
        const o = offsets[i];
        // IPv4 (IHL 5) + UDP: swap addresses and ports; checksums stay valid
        for (let k = 0; k < 4; k++) {
          const a = buf[o + 12 + k];
          buf[o + 12 + k] = buf[o + 16 + k];
          buf[o + 16 + k] = a;
        }
        for (let k = 0; k < 2; k++) {
          const a = buf[o + 20 + k];
          buf[o + 20 + k] = buf[o + 22 + k];
          buf[o + 22 + k] = a;
        }
      }
      written += tun.writeBatch(buf, offsets, lengths, count);
    });
  } else {
    tun.onPackets((_buf, _offsets, _lengths, _count) => {
      batches++;
    });
  }
  out({ ready: tun.name });
  // wait for traffic, warm up, then measure a window
  while (tun.stats.rxPackets === 0) await sleep(5);
  await sleep(WARMUP_MS);
  const s0 = tun.stats;
  const q0 = Number(readFileSync("/sys/class/net/tba/statistics/tx_dropped", "utf8"));
  const b0 = batches;
  const w0 = written;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(SECONDS * 1000);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuPercent(c0, t0);
  const s1 = tun.stats;
  // packets the kernel dropped because the tun queue was full (reader too slow / not scheduled)
  const queueDrops = Number(readFileSync("/sys/class/net/tba/statistics/tx_dropped", "utf8")) - q0;
  tun.release();
  out({
    mode,
    queueDrops,
    seconds: secs,
    rxPps: (s1.rxPackets - s0.rxPackets) / secs,
    rxMbps: ((s1.rxBytes - s0.rxBytes) * 8) / secs / 1e6,
    txPps: (s1.txPackets - s0.txPackets) / secs,
    txDropsEagain: s1.txDropsEagain - s0.txDropsEagain,
    avgBatch: (s1.rxPackets - s0.rxPackets) / Math.max(1, batches - b0),
    writtenCheck: written - w0,
    cpuPercent: cpu,
  });
}

async function roleGen() {
  const tun = new Tun({ name: "tbb" });
  tun.ipv4 = "10.98.0.1/24";
  tun.mtu = 1500;
  tun.isUp = true;
  const pkt = benchPacket("10.98.0.2", "10.99.0.2", 5000, 9999);
  const n = 64;
  const buf = Buffer.alloc(n * 2048);
  const offsets = new Uint32Array(n);
  const lengths = new Uint32Array(n).fill(pkt.length);
  for (let i = 0; i < n; i++) {
    offsets[i] = i * 2048;
    pkt.copy(buf, offsets[i]);
  }
  const end = Date.now() + (SECONDS * 1000 + WARMUP_MS + 1500);
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  let sent = 0;
  while (Date.now() < end) {
    for (let k = 0; k < 16; k++) sent += tun.writeBatch(buf, offsets, lengths, n);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuPercent(c0, t0);
  const st = tun.stats;
  tun.release();
  out({ role: "gen", pps: sent / secs, drops: st.txDropsEagain, cpuPercent: cpu });
}

async function roleWrite() {
  const tun = new Tun({ name: "tba" });
  tun.ipv4 = "10.99.0.1/24";
  tun.mtu = 1500;
  tun.isUp = true;
  // to a local address, closed port: the kernel's UDP input drops it (ICMP replies are
  // rate-limited and queue up unread in the tun, then drop)
  const pkt = benchPacket("10.99.0.2", "10.99.0.1", 5000, 9);
  const n = 64;
  const buf = Buffer.alloc(n * 2048);
  const offsets = new Uint32Array(n);
  const lengths = new Uint32Array(n).fill(pkt.length);
  for (let i = 0; i < n; i++) {
    offsets[i] = i * 2048;
    pkt.copy(buf, offsets[i]);
  }
  const result = {};
  for (const how of ["writeBatch", "write"]) {
    const end = Date.now() + SECONDS * 1000;
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let sent = 0;
    while (Date.now() < end) {
      if (how === "writeBatch") {
        for (let k = 0; k < 16; k++) sent += tun.writeBatch(buf, offsets, lengths, n);
      } else {
        for (let k = 0; k < 1024; k++) if (tun.write(pkt)) sent++;
      }
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    result[how] = { pps: sent / secs, cpuPercent: cpuPercent(c0, t0) };
  }
  result.txDropsEagain = tun.stats.txDropsEagain;
  tun.release();
  out({ role: "write", ...result });
}

// ---- driver ---------------------------------------------------------------------------------

function nsExec(ns, cmd) {
  execFileSync("ip", ["netns", "exec", ns, ...cmd], { stdio: ["ignore", "ignore", "inherit"] });
}

/** Starts a role in the namespace pinned to a CPU; resolves lines of JSON as they come. */
function startRole(ns, cpu, role, extra = []) {
  const argv = ["netns", "exec", ns, "taskset", "-c", String(cpu), process.execPath, self, "--role", role];
  argv.push("--seconds", String(SECONDS), "--batch", String(BATCH), "--size", String(SIZE), ...extra);
  const child = spawn("ip", argv, { stdio: ["ignore", "pipe", "inherit"] });
  const lines = [];
  const waiters = [];
  let buf = "";
  child.stdout.on("data", (d) => {
    buf += d;
    let i = buf.indexOf("\n");
    while (i >= 0) {
      const obj = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      lines.push(obj);
      for (const w of waiters.splice(0)) w();
      i = buf.indexOf("\n");
    }
  });
  const exited = new Promise((resolve, reject) =>
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${role} exited with ${code}`)))),
  );
  return {
    async next(pred) {
      for (;;) {
        const hit = lines.find(pred);
        if (hit) return hit;
        await Promise.race([new Promise((r) => waiters.push(r)), exited]);
      }
    },
    exited,
  };
}

async function driver() {
  if (process.getuid?.() !== 0) {
    console.error("tuntap-bench: must run as root (creates a network namespace and TUN devices)");
    process.exit(2);
  }
  const ns = `ttb-${process.pid}`;
  const cpus = os.cpus().length;
  const [cpuA, cpuB] = cpus > 1 ? [0, 1] : [0, 0];
  execFileSync("ip", ["netns", "add", ns]);
  const runs = { read: [], echo: [], write: [] };
  try {
    nsExec(ns, ["ip", "link", "set", "lo", "up"]);
    nsExec(ns, [
      "sysctl",
      "-qw",
      "net.ipv4.ip_forward=1",
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
      "net.ipv6.conf.all.disable_ipv6=1",
      "net.ipv6.conf.default.disable_ipv6=1",
    ]);
    for (let rep = 0; rep < REPEAT; rep++) {
      for (const mode of ["read", "echo"]) {
        const sink = startRole(ns, cpuA, "sink", ["--mode", mode]);
        await sink.next((l) => l.ready);
        const gen = startRole(ns, cpuB, "gen");
        const r = await sink.next((l) => l.mode === mode);
        const g = await gen.next((l) => l.role === "gen");
        await Promise.all([sink.exited, gen.exited]);
        runs[mode].push({ ...r, generatorPps: g.pps, generatorCpuPercent: g.cpuPercent });
      }
      const w = startRole(ns, cpuA, "write");
      runs.write.push(await w.next((l) => l.role === "write"));
      await w.exited;
    }
  } finally {
    execFileSync("ip", ["netns", "del", ns]);
  }

  const median = (list, key) => [...list].sort((a, b) => key(a) - key(b))[Math.floor((list.length - 1) / 2)];
  const results = {
    read: median(runs.read, (r) => r.rxPps),
    echo: median(runs.echo, (r) => r.rxPps),
    write: {
      writeBatch: median(
        runs.write.map((r) => r.writeBatch),
        (r) => r.pps,
      ),
      write: median(
        runs.write.map((r) => r.write),
        (r) => r.pps,
      ),
    },
  };
  const best = {
    readPps: Math.max(...runs.read.map((r) => r.rxPps)),
    echoPps: Math.max(...runs.echo.map((r) => r.rxPps)),
    writeBatchPps: Math.max(...runs.write.map((r) => r.writeBatch.pps)),
  };
  // packets per second of CPU actually used by the measured process: steadier than pkt/s when
  // other work competes for the CPU
  const perCpu = (pps, cpu) => (cpu > 0 ? k((pps * 100) / cpu) : "-");
  const k = (x) => `${(x / 1000).toFixed(0)}k`;
  const rows = [
    [
      "read (onPackets)",
      k(results.read.rxPps),
      "-",
      results.read.avgBatch.toFixed(1),
      `${results.read.cpuPercent}%`,
      perCpu(results.read.rxPps, results.read.cpuPercent),
      k(results.read.queueDrops / results.read.seconds),
      k(results.read.generatorPps),
    ],
    [
      "echo (read+writeBatch)",
      k(results.echo.rxPps),
      k(results.echo.txPps),
      results.echo.avgBatch.toFixed(1),
      `${results.echo.cpuPercent}%`,
      perCpu(results.echo.rxPps, results.echo.cpuPercent),
      k(results.echo.queueDrops / results.echo.seconds),
      k(results.echo.generatorPps),
    ],
    [
      "write only (writeBatch 64)",
      "-",
      k(results.write.writeBatch.pps),
      "-",
      `${results.write.writeBatch.cpuPercent}%`,
      perCpu(results.write.writeBatch.pps, results.write.writeBatch.cpuPercent),
      "-",
      "-",
    ],
    [
      "write only (write)",
      "-",
      k(results.write.write.pps),
      "-",
      `${results.write.write.cpuPercent}%`,
      perCpu(results.write.write.pps, results.write.write.cpuPercent),
      "-",
      "-",
    ],
  ];
  const head = [
    "phase (median)",
    "rx pkt/s",
    "tx pkt/s",
    "avg batch",
    "cpu",
    "pkt/cpu-s",
    "queue drops/s",
    "generator pkt/s",
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const fmt = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join("  ");
  console.log(
    `tuntap bench: ${SIZE}-byte packets, batchSize ${BATCH}, ${SECONDS}s windows, node ${process.version}, ${os.cpus()[0]?.model ?? "?"} x${cpus}, kernel ${os.release()}`,
  );
  console.log(fmt(head));
  for (const r of rows) console.log(fmt(r));
  console.log(
    `best of ${REPEAT}: read ${k(best.readPps)}, echo ${k(best.echoPps)}, writeBatch ${k(best.writeBatchPps)} pkt/s`,
  );
  out({
    bench: "tuntap",
    size: SIZE,
    batch: BATCH,
    seconds: SECONDS,
    repeat: REPEAT,
    node: process.version,
    kernel: os.release(),
    cpus,
    median: results,
    best,
    runs,
  });
}

const role = opt("role", null);
if (role === "sink") await roleSink(opt("mode", "read"));
else if (role === "gen") await roleGen();
else if (role === "write") await roleWrite();
else await driver();
