// Datapath perf harness (a dev tool, not part of the build or the tests): two namespaces, two
// tincan datapaths, one link; runs iperf3 TCP/UDP, ping, an idle window through the tunnel and
// prints drops, per-thread CPU (and run-queue wait), CPU-seconds per Gbit and peak RSS.
// Run as root from the repo root: npx tsx packages/datapath/scripts/perf-run.ts [ping,tcp,rr,udp,idle]
// (rr: ping during the TCP tests). Env:
//   TINCAN_TUNE='{"rtp":false,"offload":false,"rxQueueMs":0}' / TINCAN_SCTP='{...}': passed to both
//   datapaths (A/B comparisons in one run); OLD_A / OLD_B=path/to/cli.js: run that side from another
//   build (compatibility with an older datapath); REPS (TCP repetitions, 2); TCP_ARGS ("-t 12");
//   UDP_RATES ("100,200,300,400,600" Mbit/s, stops above 5% loss); IDLE_SEC (30); TXQLEN (tincan0
//   txqueuelen); LAB_PREFIX (namespace prefix, e.g. to attach perf); VERBOSE (counters per UDP step).
import { readdirSync, readFileSync } from "node:fs";
import { uidForIpv4 } from "@tincan/protocol";
import { Lab } from "../../../test/lab/index.js";
import { connectLink, DatapathHandle, TINCAN_BIN, waitFor } from "../../../test/support/datapath-driver.js";

const what = new Set((process.argv[2] ?? "ping,tcp,udp").split(","));
const reps = Number(process.env.REPS ?? 2);
function threads(pid: number) {
  const out: Record<string, number> = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out[`${name}`] = (out[name] ?? 0) + Number(f[11]) + Number(f[12]);
      const wait = Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[1]) / 1e7;
      out[`${name}(wait)`] = (out[`${name}(wait)`] ?? 0) + wait;
    } catch {}
  }
  return out;
}
function rss(pid: number) {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
}
const pair = await Lab.pair({ prefix: process.env.LAB_PREFIX ?? `pr${process.pid % 10000}` });
const lab = pair.lab;
try {
  // OLD_A / OLD_B=path/to/cli.js: run A / B from another build (e.g. the datapath before a change), for compatibility.
  for (const [host, old] of [
    [pair.a, process.env.OLD_A],
    [pair.b, process.env.OLD_B],
  ] as const) {
    if (!old) continue;
    const spawn = host.spawn.bind(host);
    host.spawn = (cmd, args = [], opts = {}) =>
      spawn(
        cmd,
        args.map((x) => (x === TINCAN_BIN ? old : x)),
        opts,
      );
  }
  const a = await DatapathHandle.start(lab, pair.a);
  const b = await DatapathHandle.start(lab, pair.b);
  await a.configure(uidForIpv4("10.77.0.1"), "10.77.0.1/24");
  await b.configure(uidForIpv4("10.77.0.2"), "10.77.0.2/24");
  await a.call("route.set", { prefix: "10.77.0.2/32", peerUid: b.uid });
  await b.call("route.set", { prefix: "10.77.0.1/32", peerUid: a.uid });
  console.log("connect ms", await connectLink(a, b));
  if (process.env.TXQLEN) {
    for (const h of [a.host, b.host])
      await h.run(["ip", "link", "set", "tincan0", "txqueuelen", process.env.TXQLEN]);
  }
  if (process.env.VERBOSE)
    console.log(
      (await a.host.exec(["ip", "-d", "link", "show", "tincan0"])).stdout,
      (await a.host.exec(["tc", "qdisc", "show", "dev", "tincan0"])).stdout,
    );
  const find = async (h: DatapathHandle) =>
    (await h.host.pids()).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("cli.js");
      } catch {
        return false;
      }
    })[0]!;
  const pa = await find(a);
  const pb = await find(b);
  const server = b.host.spawn("iperf3", ["-s", "-B", "10.77.0.2"], { name: "iperf3-s" });
  await waitFor("iperf3", async () => (await b.host.exec(["ss", "-ltn"])).stdout.includes("10.77.0.2:5201"));
  if (what.has("ping")) {
    await a.host.exec(["ping", "-c", "3", "-i", "0.2", "10.77.0.2"]);
    // Several intervals: a VM's wake-up latency from idle shows as a longer RTT at low rates.
    for (const interval of (process.env.PING_INTERVALS ?? "0.02").split(",")) {
      const ping = await a.host.exec(["ping", "-c", "100", "-i", interval, "-q", "10.77.0.2"]);
      console.log(`ping idle (-i ${interval}):`, ping.stdout.trim().split("\n").pop());
    }
  }
  const cpuDuring = async (fn: () => Promise<number>, secs: number) => {
    const ta0 = threads(pa),
      tb0 = threads(pb);
    const mbit = await fn();
    const ta1 = threads(pa),
      tb1 = threads(pb);
    let cpu = 0;
    for (const [t0, t1] of [
      [ta0, ta1],
      [tb0, tb1],
    ] as const)
      for (const [k, v] of Object.entries(t1)) if (!k.endsWith("(wait)")) cpu += (v - (t0[k] ?? 0)) / 100;
    console.log(`  efficiency: ${(cpu / ((mbit * secs) / 1000)).toFixed(2)} cpu-s per Gbit (both datapaths)`);
    for (const [n, t0, t1] of [
      ["  cpu A", ta0, ta1],
      ["  cpu B", tb0, tb1],
    ] as const) {
      console.log(
        n,
        Object.entries(t1)
          .map(([k, v]) => [k, v - (t0[k] ?? 0)] as const)
          .filter(([, v]) => v > 5)
          .map(([k, v]) => `${k}=${(v / secs).toFixed(0)}%`)
          .join(" "),
      );
    }
  };
  if (what.has("tcp")) {
    for (let i = 0; i < reps; i++) {
      for (const args of process.env.TCP_ARGS
        ? [process.env.TCP_ARGS.split(" ")]
        : [
            ["-t", "5"],
            ["-t", "5", "-R"],
          ]) {
        await cpuDuring(async () => {
          const pingP = what.has("rr")
            ? a.host.exec(["ping", "-c", "20", "-i", "0.2", "-q", "10.77.0.2"])
            : null;
          const r = await a.host.exec(["iperf3", "-c", "10.77.0.2", ...args, "-J"], { timeoutMs: 30000 });
          const j = JSON.parse(r.stdout);
          const s = j.end.sum_received;
          console.log(
            "TCP",
            args.join(" "),
            (s.bits_per_second / 1e6).toFixed(0),
            "Mbit/s",
            "retr",
            j.end.sum_sent.retransmits,
          );
          if (pingP) console.log("  ping under load:", (await pingP).stdout.trim().split("\n").pop());
          return s.bits_per_second / 1e6;
        }, Number(args[1]));
      }
    }
  }
  if (what.has("udp")) {
    for (const rate of (process.env.UDP_RATES ?? "100,200,300,400,600").split(",")) {
      const r = await a.host.exec(
        ["iperf3", "-c", "10.77.0.2", "-u", "-b", `${rate}M`, "-l", "1200", "-t", "3", "-J"],
        { timeoutMs: 30000 },
      );
      const s = JSON.parse(r.stdout).end?.sum;
      if (!s) {
        console.log(`UDP ${rate}M: failed`, r.stdout.slice(0, 300), r.stderr.slice(0, 300));
        continue;
      }
      console.log(
        `UDP ${rate}M:`,
        (s.bits_per_second / 1e6).toFixed(0),
        "Mbit/s",
        `loss ${s.lost_percent.toFixed(2)}%`,
        `sent ${s.packets}`,
      );
      if (process.env.VERBOSE) {
        const la = (await a.call("link.query"))[0],
          lb = (await b.call("link.query"))[0];
        const va = await a.call("vnic.query"),
          vb = await b.call("vnic.query");
        console.log(
          `  A vnic rx ${va.rxPackets} link tx ${la.txPackets} | B link rx ${lb.rxPackets} vnic tx ${vb.txPackets}`,
        );
        console.log(
          "  B",
          (await b.host.exec(["nstat", "-az", "UdpRcvbufErrors", "UdpInDatagrams"])).stdout
            .split("\n")
            .filter((l) => /^Udp/.test(l))
            .map((l) => l.replace(/\s+/g, " "))
            .join(" | "),
        );
      }
      if (s.lost_percent > 5) break;
    }
  }
  if (what.has("idle")) {
    const secs = Number(process.env.IDLE_SEC ?? 30);
    const bytes = async () => {
      const s = await a.host.run([
        "cat",
        "/sys/class/net/eth0/statistics/tx_bytes",
        "/sys/class/net/eth0/statistics/rx_bytes",
      ]);
      return s
        .trim()
        .split("\n")
        .map(Number)
        .reduce((x, y) => x + y, 0);
    };
    await new Promise((r) => setTimeout(r, 3000));
    const b0 = await bytes();
    await new Promise((r) => setTimeout(r, secs * 1000));
    const b1 = await bytes();
    console.log(`idle: ${((b1 - b0) / secs).toFixed(1)} B/s on the wire (both directions) over ${secs}s`);
  }
  const la = (await a.call("link.query"))[0];
  const lb = (await b.call("link.query"))[0];
  console.log(
    "drops A",
    JSON.stringify(la.drops),
    "B",
    JSON.stringify(lb.drops),
    "vnic A",
    JSON.stringify((await a.call("vnic.query")).drops),
    "B",
    JSON.stringify((await b.call("vnic.query")).drops),
  );
  console.log(`peak RSS A ${rss(pa).toFixed(0)} MB, B ${rss(pb).toFixed(0)} MB`);
  await server.stop();
  await a.stop();
  await b.stop();
} finally {
  await lab.destroy();
}
