// A network lab built from Linux network namespaces: an "internet" (a bridge in its own namespace),
// hosts directly on it, hosts behind NAT routers, and servers (prosody, coturn) on internet
// addresses. Everything it creates lives inside namespaces it creates; teardown is by PID and by
// namespace name, never by process name. See README.md in this directory.
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type EjabberdClusterHandle,
  type EjabberdClusterOptions,
  startEjabberdCluster,
} from "./ejabberd-cluster.js";
import {
  type ExecOptions,
  type ExecResult,
  execIn,
  execSyncQuiet,
  killPid,
  LabProcess,
  pidAlive,
  roomForNeighbours,
  runIn,
  type SpawnOptions,
  sleep,
} from "./proc.js";
import {
  type CoturnHandle,
  type CoturnOptions,
  type EjabberdHandle,
  type ProsodyHandle,
  type ProsodyOptions,
  startCoturn,
  startEjabberd,
  startProsody,
  type XmppServerOptions,
} from "./servers.js";

/** The lab's "internet": a /24 from the shared address space 100.64.0.0/10 (RFC 6598). */
export const INTERNET_PREFIX = "100.64.0";
export const INTERNET_SUBNET = `${INTERNET_PREFIX}.0/24`;
/** Address of the internet bridge itself (servers started without a host run here). */
export const INTERNET_GATEWAY = `${INTERNET_PREFIX}.1`;
/** Host/router WAN addresses are handed out from .10 upwards. */
const FIRST_INTERNET_HOST = 10;
/** Direct veth pairs (Lab.pair / addPair) use 198.18.N.0/24 (RFC 2544 benchmarking space). */
export const PAIR_PREFIX = "198.18";
/** NAT LANs are 192.168.N.0/24: router .1, host .2. */
export const LAN_PREFIX = "192.168";

export type NatKind = "masquerade" | "symmetric";

export interface HostOptions {
  /** Put the host behind its own router namespace doing this kind of NAT. Default: directly on the internet. */
  nat?: NatKind;
  /**
   * Random packet loss in percent (0-100), emulated with `iptables -m statistic` (no netem here).
   * Behind NAT: dropped in the router's FORWARD chain (both directions). Direct host: dropped in
   * the host's INPUT chain (incoming only; dropping in OUTPUT would make send() fail with EPERM).
   */
  lossPercent?: number;
  /** MTU of the host's uplink (and its router's links). Default 1500. */
  mtu?: number;
}

export interface LabOptions {
  /** Short unique prefix for namespace names: [a-z][a-z0-9]{0,9} (no "-"). */
  prefix: string;
  /** Build the internet bridge namespace (default true; Lab.pair passes false). */
  internet?: boolean;
}

/** Anything the lab can run commands in: a namespace it created. */
export class Netns {
  constructor(
    readonly lab: Lab,
    /** Short name given by the user ("h1", "r-h2", "inet"). */
    readonly name: string,
    /** Full netns name ("<prefix>-h1"). */
    readonly ns: string,
  ) {}

  /** Run a command in this namespace; resolves {code, stdout, stderr}, never throws on exit code. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    return execIn(this.ns, argv, opts);
  }

  /** Run a command in this namespace; resolves stdout, throws when the exit code is non-zero. */
  run(argv: string[], opts?: ExecOptions): Promise<string> {
    return runIn(this.ns, argv, opts);
  }

  /**
   * Start a long-running process in this namespace in its own process group, output to a log file
   * under the lab dir (or opts.logFile). The lab stops it on destroy().
   */
  spawn(cmd: string, args: string[] = [], opts: SpawnOptions & { name?: string } = {}): LabProcess {
    return this.lab.spawnIn(this, cmd, args, opts);
  }

  /** PIDs of all processes currently in this namespace. */
  async pids(): Promise<number[]> {
    const r = await execIn(undefined, ["ip", "netns", "pids", this.ns]);
    return parsePids(r.stdout);
  }
}

export class Router extends Netns {
  constructor(
    lab: Lab,
    name: string,
    ns: string,
    public wanIp: string,
    readonly lanIp: string,
    readonly lanSubnet: string,
    readonly nat: NatKind,
  ) {
    super(lab, name, ns);
  }
}

/** The cable between a host (or its router) and the network: the two ends of one veth. */
export interface Uplink {
  /** Host side: the host's eth0, or its router's wan0. */
  inner: { ns: string; ifname: string };
  /** Network side: the internet bridge port, or the peer's eth0 for Lab.pair hosts. */
  outer: { ns: string; ifname: string };
}

export class Host extends Netns {
  constructor(
    lab: Lab,
    name: string,
    ns: string,
    /** The host's address on its own network (LAN address behind NAT); changed by `roam()`. */
    public ip: string,
    /** Its address as seen from the internet: its own, or its router's WAN address; changed by `roam()`. */
    public publicIp: string,
    /** Prefix length of `ip`. */
    readonly prefixLen: number,
    readonly uplink: Uplink,
    readonly router?: Router,
  ) {
    super(lab, name, ns);
  }

  get nat(): NatKind | undefined {
    return this.router?.nat;
  }

  /**
   * Plug / unplug the cable: sets the network side of the uplink down or up (the host keeps its
   * addresses and routes; its side just loses carrier). For Lab.pair hosts this cuts the pair.
   */
  async setLinkUp(up: boolean): Promise<void> {
    const { ns, ifname } = this.uplink.outer;
    await runIn(undefined, ["ip", "-n", ns, "link", "set", ifname, up ? "up" : "down"]);
  }

  /**
   * Moves to a new internet address, as a laptop does when it changes networks: the old address is
   * deleted (sockets bound to it lose their route), a new one added, the default route set again.
   * Behind NAT, the router's WAN address moves instead (as when a carrier renumbers its NAT): the
   * host's own address stays, its public one changes, and MASQUERADE forgets its old mappings.
   * Returns the new public address.
   */
  async roam(): Promise<string> {
    const { ns, ifname } = this.uplink.inner;
    const next = this.lab.allocInternetIp();
    const ip = (...a: string[]) => runIn(undefined, ["ip", "-n", ns, ...a]);
    // Delete first: deleting a primary address also deletes the secondaries of its subnet.
    await ip("addr", "del", `${this.publicIp}/24`, "dev", ifname);
    await ip("addr", "add", `${next}/24`, "dev", ifname);
    await ip("route", "replace", "default", "via", INTERNET_GATEWAY);
    if (this.router) this.router.wanIp = next;
    else this.ip = next;
    this.publicIp = next;
    return next;
  }

  /**
   * Random loss in percent (0 removes it), in chain LABLOSS of the router (jumped to from FORWARD,
   * both directions) or, for a host without router, of the host itself (from INPUT, incoming only).
   */
  async setLoss(percent: number): Promise<void> {
    if (!(percent >= 0 && percent <= 100)) throw new Error(`loss percent must be 0..100: ${percent}`);
    const where: Netns = this.router ?? this;
    const from = this.router ? "FORWARD" : "INPUT";
    await where.exec(["iptables", "-N", "LABLOSS"]); // exists already: fine
    if ((await where.exec(["iptables", "-C", from, "-j", "LABLOSS"])).code !== 0) {
      await where.run(["iptables", "-A", from, "-j", "LABLOSS"]);
    }
    await where.run(["iptables", "-F", "LABLOSS"]);
    if (percent > 0) {
      const p = (percent / 100).toFixed(4);
      await where.run(`iptables -A LABLOSS -m statistic --mode random --probability ${p} -j DROP`.split(" "));
    }
  }

  /**
   * Limit the uplink to `mbit` Mbit/s in each direction with tc tbf on both veth ends
   * (undefined removes the limit). netem is not available here, so no delay emulation.
   */
  async setRate(mbit: number | undefined): Promise<void> {
    for (const { ns, ifname } of [this.uplink.inner, this.uplink.outer]) {
      if (mbit === undefined) {
        await execIn(ns, ["tc", "qdisc", "del", "dev", ifname, "root"]); // none set: fine
      } else {
        const burst = Math.max(32, Math.ceil((mbit * 1000) / 8 / 100)); // kbyte: ~10 ms worth, >= 32k
        await runIn(
          ns,
          `tc qdisc replace dev ${ifname} root tbf rate ${mbit}mbit burst ${burst}kb latency 50ms`.split(" "),
        );
      }
    }
  }
}

/** The internet namespace: holds bridge br0 with address INTERNET_GATEWAY. */
export class Internet extends Netns {
  readonly ip = INTERNET_GATEWAY;
  readonly subnet = INTERNET_SUBNET;
  readonly bridge = "br0";
}

const PREFIX_RE = /^[a-z][a-z0-9]{0,9}$/;
const NAME_RE = /^[a-z0-9][a-z0-9_]{0,19}$/;

const liveLabs = new Set<Lab>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", () => {
    for (const lab of [...liveLabs]) lab.destroySync();
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const handler = () => {
      for (const lab of [...liveLabs]) lab.destroySync();
      // If nobody else handles the signal, behave like the default action (terminate).
      if (process.listenerCount(sig) <= 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

export function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((p) => p !== process.pid);
}

/** `ip netns list` → names. */
export function listNetns(): string[] {
  return execSyncQuiet(["ip", "netns", "list"])
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter(Boolean);
}

function labDirPrefix(prefix: string): string {
  return `tincan-lab-${prefix}-`;
}

/** Kill every process in namespace ns (by PID, SIGKILL) and delete the namespace. Sync, never throws. */
function killAndDeleteNetnsSync(ns: string): void {
  for (let i = 0; i < 3; i++) {
    const pids = parsePids(execSyncQuiet(["ip", "netns", "pids", ns]));
    if (pids.length === 0) break;
    for (const pid of pids) killPid(pid, "SIGKILL");
  }
  execSyncQuiet(["ip", "netns", "del", ns]);
}

export class Lab {
  readonly prefix: string;
  /** Working dir: configs, logs, certs, pid files. */
  readonly dir: string;
  readonly logDir: string;
  private readonly namespaces: string[] = [];
  private readonly processes = new Set<LabProcess>();
  private readonly hostMap = new Map<string, Host>();
  private readonly routerList: Router[] = [];
  private inet: Internet | undefined;
  private nextInternetHost = FIRST_INTERNET_HOST;
  private nextLan = 1;
  private nextPair = 1;
  private logCounter = 0;
  private destroying: Promise<void> | undefined;
  private destroyed = false;

  private constructor(prefix: string) {
    this.prefix = prefix;
    this.dir = join(tmpdir(), `${labDirPrefix(prefix)}${process.pid}`);
    this.logDir = join(this.dir, "logs");
  }

  /** Can labs run here? (root + `ip netns` works). */
  static canRun(): { ok: boolean; reason?: string } {
    if (process.platform !== "linux") return { ok: false, reason: "network labs need Linux" };
    if (typeof process.getuid === "function" && process.getuid() !== 0) {
      return { ok: false, reason: "network labs need root (network namespaces, iptables)" };
    }
    const probe = `tincan-probe-${process.pid}`;
    try {
      execSyncQuiet(["ip", "netns", "add", probe]);
      const ok = listNetns().includes(probe);
      execSyncQuiet(["ip", "netns", "del", probe]);
      if (!ok) return { ok: false, reason: "`ip netns add` does not work here (missing CAP_SYS_ADMIN?)" };
    } catch (e) {
      return { ok: false, reason: `ip netns: ${(e as Error).message}` };
    }
    return { ok: true };
  }

  /**
   * Create a lab. Leftover namespaces with this prefix from a crashed earlier run are cleaned up
   * first; if a live process (this one or another) still owns a lab with the prefix, this throws.
   */
  static async create(opts: LabOptions): Promise<Lab> {
    const { prefix } = opts;
    if (!PREFIX_RE.test(prefix))
      throw new Error(`lab prefix must match ${PREFIX_RE}: ${JSON.stringify(prefix)}`);
    for (const other of liveLabs) {
      if (other.prefix === prefix)
        throw new Error(`a lab with prefix "${prefix}" is already running in this process`);
    }
    const owner = Lab.liveOwner(prefix);
    if (owner !== undefined) {
      throw new Error(`lab prefix "${prefix}" is in use by live process ${owner}; pick another prefix`);
    }
    await Lab.cleanupStale(prefix);
    roomForNeighbours();
    const lab = new Lab(prefix);
    installExitHooks();
    liveLabs.add(lab);
    try {
      mkdirSync(lab.logDir, { recursive: true });
      if (opts.internet !== false) await lab.buildInternet();
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  /** Two namespaces joined by one veth pair (198.18.1.1/24 <-> 198.18.1.2/24), no internet, no NAT. */
  static async pair(opts: {
    prefix: string;
    names?: [string, string];
    mtu?: number;
  }): Promise<{ lab: Lab; a: Host; b: Host }> {
    const lab = await Lab.create({ prefix: opts.prefix, internet: false });
    try {
      const [a, b] = await lab.addPair(opts.names?.[0] ?? "a", opts.names?.[1] ?? "b", { mtu: opts.mtu });
      return { lab, a, b };
    } catch (e) {
      await lab.destroy();
      throw e;
    }
  }

  /** PID of another live process whose lab dir for this prefix still exists, if any. */
  private static liveOwner(prefix: string): number | undefined {
    const start = labDirPrefix(prefix);
    let entries: string[] = [];
    try {
      entries = readdirSync(tmpdir());
    } catch {
      return undefined;
    }
    for (const e of entries) {
      if (!e.startsWith(start)) continue;
      const pid = Number(e.slice(start.length));
      if (Number.isInteger(pid) && pid !== process.pid && pidAlive(pid)) {
        // Only a real owner if its namespaces exist (a KEEP_LAB dir of a live shell is not a lab).
        if (listNetns().some((n) => n.startsWith(`${prefix}-`))) return pid;
      }
    }
    return undefined;
  }

  /**
   * Delete leftover namespaces named "<prefix>-*" (killing the processes inside them by PID first)
   * and lab dirs of dead processes for this prefix. Safe to call any time for a prefix you own.
   */
  static async cleanupStale(prefix: string): Promise<string[]> {
    if (!PREFIX_RE.test(prefix))
      throw new Error(`lab prefix must match ${PREFIX_RE}: ${JSON.stringify(prefix)}`);
    const stale = listNetns().filter((n) => n.startsWith(`${prefix}-`));
    for (const ns of stale) {
      const pids = parsePids((await execIn(undefined, ["ip", "netns", "pids", ns])).stdout);
      for (const pid of pids) killPid(pid, "SIGTERM");
      if (pids.length) await sleep(200);
      killAndDeleteNetnsSync(ns);
    }
    const start = labDirPrefix(prefix);
    for (const e of safeReaddir(tmpdir())) {
      if (!e.startsWith(start)) continue;
      const pid = Number(e.slice(start.length));
      if (Number.isInteger(pid) && pid !== process.pid && !pidAlive(pid) && process.env.KEEP_LAB !== "1") {
        rmSync(join(tmpdir(), e), { recursive: true, force: true });
      }
    }
    return stale;
  }

  /** The internet namespace (bridge br0, 100.64.0.1/24). */
  get internet(): Internet {
    if (!this.inet) throw new Error("this lab has no internet (created with internet: false)");
    return this.inet;
  }

  get hosts(): Host[] {
    return [...this.hostMap.values()];
  }

  get routers(): Router[] {
    return [...this.routerList];
  }

  host(name: string): Host {
    const h = this.hostMap.get(name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** Names of all namespaces this lab created (full netns names). */
  get netnsNames(): string[] {
    return [...this.namespaces];
  }

  private nsName(name: string): string {
    return `${this.prefix}-${name}`;
  }

  private assertAlive(): void {
    if (this.destroyed || this.destroying) throw new Error(`lab ${this.prefix} is destroyed`);
  }

  private async addNetns(name: string): Promise<string> {
    const ns = this.nsName(name);
    if (this.namespaces.includes(ns)) throw new Error(`namespace ${ns} exists already`);
    await runIn(undefined, ["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    await runIn(undefined, ["ip", "-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  /** The next free address on the internet bridge (new hosts, Host.roam()). */
  allocInternetIp(): string {
    if (this.nextInternetHost > 250) throw new Error("internet address pool exhausted");
    return `${INTERNET_PREFIX}.${this.nextInternetHost++}`;
  }

  private async buildInternet(): Promise<void> {
    const ns = await this.addNetns("inet");
    const ip = (...a: string[]) => runIn(undefined, ["ip", "-n", ns, ...a]);
    await ip("link", "add", "br0", "type", "bridge");
    await ip("addr", "add", `${INTERNET_GATEWAY}/24`, "dev", "br0");
    await ip("link", "set", "br0", "up");
    this.inet = new Internet(this, "inet", ns);
  }

  /** veth from the internet bridge into namespace `ns` (named `ifname` there), addressed `addr/24`. */
  private async plugIntoInternet(ns: string, ifname: string, addr: string, mtu: number): Promise<Uplink> {
    const inet = this.internet.ns;
    const port = `p${addr.split(".")[3]}`; // bridge port named after the address: unique, short
    await runIn(undefined, [
      "ip",
      "-n",
      inet,
      "link",
      "add",
      port,
      "type",
      "veth",
      "peer",
      "name",
      ifname,
      "netns",
      ns,
    ]);
    await runIn(undefined, [
      "ip",
      "-n",
      inet,
      "link",
      "set",
      port,
      "mtu",
      String(mtu),
      "master",
      "br0",
      "up",
    ]);
    await runIn(undefined, ["ip", "-n", ns, "link", "set", ifname, "mtu", String(mtu), "up"]);
    await runIn(undefined, ["ip", "-n", ns, "addr", "add", `${addr}/24`, "dev", ifname]);
    await runIn(undefined, ["ip", "-n", ns, "route", "add", "default", "via", INTERNET_GATEWAY]);
    return { inner: { ns, ifname }, outer: { ns: inet, ifname: port } };
  }

  /**
   * Add a host: directly on the internet (eth0 = 100.64.0.X/24, default via 100.64.0.1), or with
   * `nat` behind its own router namespace "r-NAME" (host eth0 = 192.168.N.2/24 default via .1;
   * router lan0 = 192.168.N.1, wan0 = 100.64.0.X, iptables MASQUERADE on wan0, `--random-fully`
   * for "symmetric").
   */
  async addHost(name: string, opts: HostOptions = {}): Promise<Host> {
    this.assertAlive();
    if (!NAME_RE.test(name)) throw new Error(`host name must match ${NAME_RE}: ${JSON.stringify(name)}`);
    if (this.hostMap.has(name)) throw new Error(`host ${name} exists already`);
    const mtu = opts.mtu ?? 1500;
    const loss = opts.lossPercent ?? 0;
    if (!(loss >= 0 && loss <= 100)) throw new Error(`lossPercent must be 0..100: ${loss}`);
    if (!opts.nat) {
      const ns = await this.addNetns(name);
      const addr = this.allocInternetIp();
      const uplink = await this.plugIntoInternet(ns, "eth0", addr, mtu);
      const host = new Host(this, name, ns, addr, addr, 24, uplink);
      if (loss > 0) await host.setLoss(loss);
      this.hostMap.set(name, host);
      return host;
    }

    const rname = `r-${name}`;
    const rns = await this.addNetns(rname);
    const hns = await this.addNetns(name);
    const wan = this.allocInternetIp();
    const lanN = this.nextLan++;
    if (lanN > 254) throw new Error("LAN pool exhausted");
    const lanIp = `${LAN_PREFIX}.${lanN}.1`;
    const hostIp = `${LAN_PREFIX}.${lanN}.2`;
    const uplink = await this.plugIntoInternet(rns, "wan0", wan, mtu);
    await runIn(undefined, [
      "ip",
      "-n",
      rns,
      "link",
      "add",
      "lan0",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      hns,
    ]);
    await runIn(undefined, ["ip", "-n", rns, "link", "set", "lan0", "mtu", String(mtu), "up"]);
    await runIn(undefined, ["ip", "-n", rns, "addr", "add", `${lanIp}/24`, "dev", "lan0"]);
    await runIn(undefined, ["ip", "-n", hns, "link", "set", "eth0", "mtu", String(mtu), "up"]);
    await runIn(undefined, ["ip", "-n", hns, "addr", "add", `${hostIp}/24`, "dev", "eth0"]);
    await runIn(undefined, ["ip", "-n", hns, "route", "add", "default", "via", lanIp]);
    await runIn(rns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    const masq = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"];
    if (opts.nat === "symmetric") masq.push("--random-fully");
    await runIn(rns, masq);
    const router = new Router(this, rname, rns, wan, lanIp, `${LAN_PREFIX}.${lanN}.0/24`, opts.nat);
    this.routerList.push(router);
    const host = new Host(this, name, hns, hostIp, wan, 24, uplink, router);
    if (loss > 0) await host.setLoss(loss);
    this.hostMap.set(name, host);
    return host;
  }

  /**
   * A LAN behind `gateway` (a host's container bridge, say): bridge `lan0` in the gateway with
   * 192.168.N.1/24 and fd00:N::1/64 (N: the next LAN number), forwarding on, no NAT; one host per
   * name on it at .2, .3, ... (`fd00:N::2`, ...), default routes via the gateway.
   */
  async addLan(gateway: Host, names: string[]): Promise<Host[]> {
    this.assertAlive();
    const lanN = this.nextLan++;
    if (lanN > 254) throw new Error("LAN pool exhausted");
    const gw = (...a: string[]) => runIn(undefined, ["ip", "-n", gateway.ns, ...a]);
    await gw("link", "add", "lan0", "type", "bridge");
    await gw("addr", "add", `${LAN_PREFIX}.${lanN}.1/24`, "dev", "lan0");
    await gw("-6", "addr", "add", `fd00:${lanN}::1/64`, "dev", "lan0", "nodad");
    await gw("link", "set", "lan0", "up");
    await runIn(gateway.ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    await runIn(gateway.ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
    const hosts: Host[] = [];
    for (const [i, name] of names.entries()) {
      if (!NAME_RE.test(name)) throw new Error(`host name must match ${NAME_RE}: ${JSON.stringify(name)}`);
      if (this.hostMap.has(name)) throw new Error(`host ${name} exists already`);
      const ns = await this.addNetns(name);
      const port = `lan0p${i + 2}`;
      const ip = `${LAN_PREFIX}.${lanN}.${i + 2}`;
      await gw("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns);
      await gw("link", "set", port, "master", "lan0", "up");
      const h = (...a: string[]) => runIn(undefined, ["ip", "-n", ns, ...a]);
      await h("link", "set", "eth0", "up");
      await h("addr", "add", `${ip}/24`, "dev", "eth0");
      await h("-6", "addr", "add", `fd00:${lanN}::${i + 2}/64`, "dev", "eth0", "nodad");
      await h("route", "add", "default", "via", `${LAN_PREFIX}.${lanN}.1`);
      await h("-6", "route", "add", "default", "via", `fd00:${lanN}::1`);
      const uplink = { inner: { ns, ifname: "eth0" }, outer: { ns: gateway.ns, ifname: port } };
      const host = new Host(this, name, ns, ip, gateway.publicIp, 24, uplink);
      this.hostMap.set(name, host);
      hosts.push(host);
    }
    return hosts;
  }

  /** Two namespaces joined directly by one veth pair on 198.18.N.0/24 (.1 and .2). */
  async addPair(nameA: string, nameB: string, opts: { mtu?: number } = {}): Promise<[Host, Host]> {
    this.assertAlive();
    for (const n of [nameA, nameB]) {
      if (!NAME_RE.test(n)) throw new Error(`host name must match ${NAME_RE}: ${JSON.stringify(n)}`);
      if (this.hostMap.has(n)) throw new Error(`host ${n} exists already`);
    }
    const n = this.nextPair++;
    const mtu = String(opts.mtu ?? 1500);
    const nsA = await this.addNetns(nameA);
    const nsB = await this.addNetns(nameB);
    const ipA = `${PAIR_PREFIX}.${n}.1`;
    const ipB = `${PAIR_PREFIX}.${n}.2`;
    await runIn(undefined, [
      "ip",
      "-n",
      nsA,
      "link",
      "add",
      "eth0",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      nsB,
    ]);
    for (const [ns, addr] of [
      [nsA, ipA],
      [nsB, ipB],
    ] as const) {
      await runIn(undefined, ["ip", "-n", ns, "link", "set", "eth0", "mtu", mtu, "up"]);
      await runIn(undefined, ["ip", "-n", ns, "addr", "add", `${addr}/24`, "dev", "eth0"]);
    }
    const endA = { ns: nsA, ifname: "eth0" };
    const endB = { ns: nsB, ifname: "eth0" };
    const a = new Host(this, nameA, nsA, ipA, ipA, 24, { inner: endA, outer: endB });
    const b = new Host(this, nameB, nsB, ipB, ipB, 24, { inner: endB, outer: endA });
    this.hostMap.set(nameA, a);
    this.hostMap.set(nameB, b);
    return [a, b];
  }

  /** A fresh log file path under the lab's log dir. */
  logPath(base: string): string {
    const safe = base.replace(/[^A-Za-z0-9_.-]/g, "_");
    let p = join(this.logDir, `${safe}.log`);
    while (existsSync(p)) p = join(this.logDir, `${safe}.${++this.logCounter}.log`);
    return p;
  }

  /** Start a process in `where` (a Netns of this lab, or undefined = root namespace). */
  spawnIn(
    where: Netns | undefined,
    cmd: string,
    args: string[] = [],
    opts: SpawnOptions & { name?: string } = {},
  ): LabProcess {
    this.assertAlive();
    const name = opts.name ?? cmd.split("/").pop() ?? "proc";
    const logFile = opts.logFile ?? this.logPath(`${where?.name ?? "root"}-${name}`);
    const p = new LabProcess(`${where?.name ?? "root"}/${name}`, where?.ns, [cmd, ...args], logFile, opts);
    this.processes.add(p);
    void p.wait().then(() => {
      // keep exited processes out of the teardown list
      this.processes.delete(p);
    });
    return p;
  }

  /** Processes started by this lab that are still running. */
  get running(): LabProcess[] {
    return [...this.processes].filter((p) => !p.exited);
  }

  /** Start prosody (see servers.ts). Default: in the internet namespace on 100.64.0.1. */
  startProsody(opts: ProsodyOptions): Promise<ProsodyHandle> {
    this.assertAlive();
    return startProsody(this, opts);
  }

  /** Start ejabberd and its epmd (see servers.ts). Default: in the internet namespace on 100.64.0.1. */
  startEjabberd(opts: XmppServerOptions): Promise<EjabberdHandle> {
    this.assertAlive();
    return startEjabberd(this, opts);
  }

  /**
   * Start an ejabberd cluster (see ejabberd-cluster.ts): each node on a new host of its own
   * ("xmpp1", "xmpp2", ...), joined into one Mnesia cluster, then the users and groups made.
   */
  startEjabberdCluster(opts: EjabberdClusterOptions = {}): Promise<EjabberdClusterHandle> {
    this.assertAlive();
    return startEjabberdCluster(this, opts);
  }

  /** Start coturn (see servers.ts). Default: in the internet namespace on 100.64.0.1. */
  startCoturn(opts: CoturnOptions): Promise<CoturnHandle> {
    this.assertAlive();
    return startCoturn(this, opts);
  }

  /**
   * Stop every process the lab started (SIGTERM to its process group, SIGKILL after 3 s), kill any
   * other process left inside the lab's namespaces (by PID), delete the namespaces (which removes
   * their interfaces and iptables state) and the lab dir (unless KEEP_LAB=1). Idempotent.
   */
  destroy(): Promise<void> {
    this.destroying ??= this.doDestroy();
    return this.destroying;
  }

  private async doDestroy(): Promise<void> {
    await Promise.all([...this.processes].map((p) => p.stop(3000).catch(() => undefined)));
    for (const ns of [...this.namespaces].reverse()) {
      const pids = parsePids((await execIn(undefined, ["ip", "netns", "pids", ns])).stdout);
      for (const pid of pids) killPid(pid, "SIGTERM");
      if (pids.length) await sleep(300);
      killAndDeleteNetnsSync(ns);
    }
    this.finish();
  }

  /** Synchronous SIGKILL teardown, for process exit / signal handlers. */
  destroySync(): void {
    if (this.destroyed) return;
    for (const p of this.processes) p.killSync();
    for (const ns of [...this.namespaces].reverse()) killAndDeleteNetnsSync(ns);
    this.finish();
  }

  private finish(): void {
    this.namespaces.length = 0;
    this.processes.clear();
    if (process.env.KEEP_LAB !== "1") rmSync(this.dir, { recursive: true, force: true });
    this.destroyed = true;
    liveLabs.delete(this);
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
