// Self-test of the network lab: NAT behaviour, prosody, coturn, teardown.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CoturnHandle,
  type Host,
  INTERNET_GATEWAY,
  Lab,
  listNetns,
  type ProsodyHandle,
  pidAlive,
  ping,
  startUdpEcho,
  stunBinding,
  turnAllocate,
  udpProbe,
  waitFor,
  waitListening,
  xmppFeatures,
  xmppRoster,
} from "./index.js";

const can = Lab.canRun();
if (!can.ok) console.warn(`[lab.test] SKIPPED: ${can.reason}. Run the system tests as root on Linux.`);

const PREFIX = "labst";
const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, "../..");
const fixture = (name: string) => join(here, "fixtures", name);

describe.skipIf(!can.ok)("network lab", () => {
  let lab: Lab;
  let h1: Host;
  let h2: Host;
  let h3: Host;
  let xmpp: ProsodyHandle;
  let turn: CoturnHandle;
  const users = { alice: "alice-pw", bob: "bob-pw", carol: "carol-pw" };

  beforeAll(async () => {
    lab = await Lab.create({ prefix: PREFIX });
    h1 = await lab.addHost("h1");
    h2 = await lab.addHost("h2", { nat: "masquerade" });
    h3 = await lab.addHost("h3", { nat: "symmetric", lossPercent: 3 });
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it("builds namespaces with the documented addresses", () => {
    expect(lab.netnsNames).toEqual(["inet", "h1", "r-h2", "h2", "r-h3", "h3"].map((n) => `${PREFIX}-${n}`));
    expect(listNetns()).toEqual(expect.arrayContaining(lab.netnsNames));
    expect(h1.ip).toMatch(/^100\.64\.0\.\d+$/);
    expect(h1.publicIp).toBe(h1.ip);
    expect(h2.ip).toMatch(/^192\.168\.\d+\.2$/);
    expect(h2.publicIp).toBe(h2.router?.wanIp);
    expect(h2.publicIp).toMatch(/^100\.64\.0\.\d+$/);
    expect(h3.nat).toBe("symmetric");
    expect(lab.internet.ip).toBe(INTERNET_GATEWAY);
  });

  it("NAT host reaches the internet; the internet cannot reach its private address", async () => {
    expect(await ping(h2, h1.ip, { count: 1, timeoutSec: 2 })).toBe(true);
    expect(await ping(h2, lab.internet.ip)).toBe(true);
    expect(await ping(h1, h2.ip, { count: 1, timeoutSec: 1 })).toBe(false);
    expect(await ping(h1, h3.ip, { count: 1, timeoutSec: 1 })).toBe(false);
  });

  it("UDP from behind NAT arrives with the router's WAN address as source", async () => {
    const echo = await startUdpEcho(h1, 7001);
    const seen2 = await udpProbe(h2, h1.ip, 7001);
    expect(seen2.split(":")[0]).toBe(h2.publicIp);
    // symmetric NAT with 3% loss: the probe retries, so it still gets through
    const seen3 = await udpProbe(h3, h1.ip, 7001, 5000);
    expect(seen3.split(":")[0]).toBe(h3.publicIp);
    await echo.stop();
    expect(echo.exited).toBe(true);
  });

  it("exec resolves code/stdout/stderr; iptables state is per namespace", async () => {
    const r = await routerOf(h3).exec(["iptables", "-S"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/-A FORWARD -j LABLOSS/);
    expect(r.stdout).toMatch(/-A LABLOSS -m statistic --mode random --probability 0\.0(3|29999)/);
    expect((await routerOf(h2).run(["iptables", "-S"])).includes("LABLOSS")).toBe(false);
    expect(await h1.run(["iptables", "-S"])).not.toMatch(/LABLOSS|statistic/);
    const nat = await routerOf(h3).run(["iptables", "-t", "nat", "-S", "POSTROUTING"]);
    expect(nat).toMatch(/MASQUERADE --random-fully/);
    const bad = await h1.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(bad).toEqual({ code: 3, stdout: "out\n", stderr: "err\n" });
  });

  it("prosody: STARTTLS required, shared roster group, survives restart", async () => {
    xmpp = await lab.startProsody({
      domain: "lab.local",
      users: Object.entries(users).map(([name, password]) => ({ name, password })),
      groups: { lab: ["alice", "bob"] },
    });
    expect(xmpp.host).toBe(INTERNET_GATEWAY);
    expect(xmpp.port).toBe(5222);
    const features = await xmppFeatures(h1, xmpp.host, xmpp.port, xmpp.domain);
    expect(features).toMatch(/<starttls xmlns=['"]urn:ietf:params:xml:ns:xmpp-tls['"]>\s*<required\/>/);

    const aliceRoster = await xmppRoster(h2, xmpp, "alice", users.alice);
    expect(aliceRoster).toEqual([{ jid: "bob@lab.local", subscription: "both", groups: ["lab"] }]);
    // From a lossless host: this checks the roster, not TCP through the lossy symmetric NAT.
    const carolRoster = await xmppRoster(h1, xmpp, "carol", users.carol);
    expect(carolRoster).toEqual([]);
    await expect(xmppRoster(h1, xmpp, "alice", "wrong")).rejects.toThrow(/not-authorized|auth/i);

    const oldPid = xmpp.process.pid;
    await xmpp.restart();
    expect(xmpp.process.pid).not.toBe(oldPid);
    expect(pidAlive(oldPid)).toBe(false);
    const bobRoster = await xmppRoster(h1, xmpp, "bob", users.bob);
    expect(bobRoster).toEqual([{ jid: "alice@lab.local", subscription: "both", groups: ["lab"] }]);
  });

  it("coturn: STUN binding from behind NAT shows the router's WAN address", async () => {
    turn = await lab.startCoturn({ user: "u", password: "p" });
    expect(turn.stunUrl).toBe(`stun:${INTERNET_GATEWAY}:3478`);
    expect(turn.turnUrlWithCredentials).toBe(`turn:u:p@${INTERNET_GATEWAY}:3478?transport=udp`);
    const m2 = await stunBinding(h2, turn.host, turn.port);
    expect(m2.address).toBe(h2.publicIp);
    const m3 = await stunBinding(h3, turn.host, turn.port, 5000);
    expect(m3.address).toBe(h3.publicIp);
    const m1 = await stunBinding(h1, turn.host, turn.port);
    expect(m1.address).toBe(h1.ip);
    const alloc = await turnAllocate(h2, turn);
    expect(alloc.relayed.split(":")[0]).toBe(turn.host);
    expect(alloc.mapped.split(":")[0]).toBe(h2.publicIp);
    await expect(turnAllocate(h1, { ...turn, credential: "wrong" })).rejects.toThrow(/401/);
  });

  it("symmetric NAT maps one socket to different ports per destination; masquerade keeps it", async () => {
    const e1 = await startUdpEcho(h1, 7002);
    const e2 = await startUdpEcho(lab.internet, 7003);
    const probeFrom = async (h: Host, localPort: number) => {
      // one socket (fixed local port) to two destinations
      const a = await h.run([
        process.execPath,
        "-e",
        probeTwo,
        h1.ip,
        "7002",
        INTERNET_GATEWAY,
        "7003",
        String(localPort),
      ]);
      return JSON.parse(a) as string[];
    };
    const [m2a, m2b] = await probeFrom(h2, 40002);
    expect(m2a).toBe(m2b); // endpoint-independent mapping (port kept)
    expect(m2a).toBe(`${h2.publicIp}:40002`);
    const [m3a, m3b] = await probeFrom(h3, 40003);
    expect(m3a?.split(":")[0]).toBe(h3.publicIp);
    expect(m3a).not.toBe(m3b); // endpoint-dependent mapping (random ports)
    await Promise.all([e1.stop(), e2.stop()]);
  });

  it("setLinkUp / setLoss cut and restore a host's connectivity", async () => {
    await h2.setLinkUp(false);
    expect(await ping(h2, h1.ip)).toBe(false);
    await h2.setLinkUp(true);
    expect(await ping(h2, h1.ip, { count: 1, timeoutSec: 2 })).toBe(true);
    await h2.setLoss(100);
    expect(await ping(h2, h1.ip)).toBe(false);
    await h2.setLoss(0);
    expect(await ping(h2, h1.ip)).toBe(true);
    await h1.setLoss(100); // direct host: incoming loss
    expect(await ping(h2, h1.ip)).toBe(false);
    await h1.setLoss(0);
    expect(await ping(h2, h1.ip)).toBe(true);
  });

  it("roam() moves a host (or its NAT) to a new internet address", async () => {
    const echo = await startUdpEcho(lab.internet, 7003);
    for (const h of [h1, h2]) {
      const before = h.publicIp;
      const after = await h.roam();
      expect(after).not.toBe(before);
      expect(h.publicIp).toBe(after);
      expect((await udpProbe(h, lab.internet.ip, 7003)).split(":")[0]).toBe(after);
    }
    expect(h1.ip).toBe(h1.publicIp);
    expect(h2.router?.wanIp).toBe(h2.publicIp);
    expect(await ping(h2, h1.ip, { count: 1, timeoutSec: 2 })).toBe(true);
    await echo.stop();
  });

  it("Lab.pair: two namespaces over one veth; setRate limits throughput (iperf3)", async () => {
    const { lab: pl, a, b } = await Lab.pair({ prefix: `${PREFIX}p` });
    try {
      expect(a.ip).toBe("198.18.1.1");
      expect(b.ip).toBe("198.18.1.2");
      expect(await ping(a, b.ip)).toBe(true);
      expect(() => pl.internet).toThrow(/no internet/);
      await a.setRate(50);
      const server = b.spawn("iperf3", ["-s", "-1", "-B", b.ip]);
      await waitListening(b, "tcp", b.ip, 5201, 5000, server);
      const out = await a.run(["iperf3", "-c", b.ip, "-t", "2", "-J"]);
      const mbit = (JSON.parse(out) as IperfResult).end.sum_received.bits_per_second / 1e6;
      expect(mbit).toBeGreaterThan(30);
      expect(mbit).toBeLessThan(60);
      await a.setRate(undefined);
    } finally {
      await pl.destroy();
    }
    expect(listNetns().filter((n) => n.startsWith(`${PREFIX}p-`))).toEqual([]);
  });

  it("destroy() kills every process and deletes every namespace; it is idempotent", async () => {
    const sleeper = h2.spawn("sleep", ["1000"]);
    // a process the lab did not spawn itself, found through `ip netns pids`
    await h3.run(["sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 < /dev/null &"]);
    const pids = new Set<number>([...lab.running.map((p) => p.pid)]);
    for (const n of [lab.internet, h1, h2, h3, ...lab.routers]) for (const p of await n.pids()) pids.add(p);
    expect(pids.has(sleeper.pid)).toBe(true);
    expect(pids.has(xmpp.process.pid)).toBe(true);
    expect(pids.has(turn.process.pid)).toBe(true);
    expect(pids.size).toBeGreaterThanOrEqual(4);
    const dir = lab.dir;
    await lab.destroy();
    await lab.destroy();
    // A SIGKILLed process may need a moment to be scheduled and die.
    await waitFor("the lab's processes to exit", () => ![...pids].some(pidAlive), 2000, 50);
    for (const pid of pids) expect(pidAlive(pid), `pid ${pid} still alive`).toBe(false);
    expect(listNetns().filter((n) => n.startsWith(`${PREFIX}-`))).toEqual([]);
    if (process.env.KEEP_LAB !== "1") expect(existsSync(dir)).toBe(false);
    expect(() => lab.internet.spawn("sleep", ["1"])).toThrow(/destroyed/);
  });

  it("a process killed by SIGTERM/SIGINT tears its lab down (exit hooks)", async () => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      const prefix = `${PREFIX}${sig === "SIGTERM" ? "t" : "i"}`;
      const child = spawn(process.execPath, ["--import", "tsx", fixture("hold-lab.ts"), prefix], {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "inherit"],
      });
      const line = await new Promise<string>((resolve, reject) => {
        let buf = "";
        child.stdout.on("data", (d: Buffer) => {
          buf += d.toString();
          if (buf.includes("\n")) resolve(buf.split("\n")[0] ?? "");
        });
        child.once("exit", (code) => reject(new Error(`fixture exited early (${code})`)));
      });
      const info = JSON.parse(line) as { dir: string; pids: number[]; netns: string[] };
      expect(info.netns.length).toBe(4);
      expect(listNetns()).toEqual(expect.arrayContaining(info.netns));
      const exited = new Promise((r) => child.once("exit", r));
      child.kill(sig);
      await exited;
      expect(listNetns().filter((n) => n.startsWith(`${prefix}-`))).toEqual([]);
      for (const pid of info.pids) expect(pidAlive(pid)).toBe(false);
      if (process.env.KEEP_LAB !== "1") expect(existsSync(info.dir)).toBe(false);
    }
  });

  it("cleanupStale removes leftover namespaces of a prefix by name", async () => {
    const { execFileSync } = await import("node:child_process");
    const ns = `${PREFIX}s-left`;
    execFileSync("ip", ["netns", "add", ns]);
    execFileSync("sh", ["-c", `ip netns exec ${ns} setsid sleep 1000 >/dev/null 2>&1 < /dev/null &`]);
    const leftPids = execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8" })
      .trim()
      .split(/\s+/)
      .map(Number);
    expect(leftPids.length).toBe(1);
    expect(await Lab.cleanupStale(`${PREFIX}s`)).toEqual([ns]);
    expect(listNetns()).not.toContain(ns);
    for (const pid of leftPids) expect(pidAlive(pid)).toBe(false);
  });
});

interface IperfResult {
  end: { sum_received: { bits_per_second: number } };
}

function routerOf(h: Host) {
  if (!h.router) throw new Error(`${h.name} has no router`);
  return h.router;
}

// Sends from one UDP socket (fixed local port) to two echo servers; prints both observed sources.
const probeTwo = `
const dgram = require("node:dgram");
const [a, ap, b, bp, lp] = process.argv.slice(1);
const s = dgram.createSocket("udp4");
const seen = {};
s.on("message", (m, r) => {
  seen[r.address + ":" + r.port] = m.toString();
  const x = seen[a + ":" + ap], y = seen[b + ":" + bp];
  if (x && y) { console.log(JSON.stringify([x, y])); process.exit(0); }
});
s.bind(Number(lp), () => {
  const send = () => { s.send("p", Number(ap), a); s.send("p", Number(bp), b); };
  send(); setInterval(send, 200);
});
setTimeout(() => { console.error("timeout"); process.exit(1); }, 5000);
`;
