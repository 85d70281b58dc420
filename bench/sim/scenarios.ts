import { linkStats, mean, percentile, reachableBothWays, ringGaps, routeStats, trace } from "./measure.js";
import type { SimParams, Traffic } from "./network.js";
import type { SimNode } from "./sim-node.js";
import { type PolicyName, Simulation } from "./simulation.js";

export const SCENARIOS = [
  "join",
  "leave",
  "crash",
  "partition",
  "traffic",
  "churn",
  "targets",
  "all",
] as const;
/** The steps after the join phase of each composite scenario (`targets`: what issue #18's targets need). */
const STEPS: Partial<Record<ScenarioName, ScenarioName[]>> = {
  all: ["join", "traffic", "churn", "crash", "partition"],
  targets: ["join", "traffic", "crash"],
};
export type ScenarioName = (typeof SCENARIOS)[number];

export interface ScenarioOptions {
  nodes: number;
  policy: PolicyName;
  scenario: ScenarioName;
  seed: string;
  /** All nodes join over this many seconds (default max(30, nodes/50)). */
  joinSec?: number;
  /** Sources sampled for reachability and pairs for hop counts (default 500). */
  sample?: number;
  params?: Partial<SimParams>;
  /** Structured: groups up to this many other members route every member (default: the policy's). */
  eagerRoutesUpTo?: number;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
  /** A line of where the run is (virtual time, nodes, timers, RSS, CPU) every this many wall seconds (0: none). */
  progressEverySec?: number;
}

export interface Row {
  metric: string;
  value: string;
  target?: string;
}

export interface Report {
  rows: Row[];
  /** The figures as numbers, for tests (names as in `rows`). */
  figures: Record<string, number>;
  hookErrors: Map<string, number>;
}

const SEC = 1000;
const GIVE_UP_SEC = 300;

/** Runs one scenario on a fresh simulation and reports its figures. */
export async function runScenario(o: ScenarioOptions): Promise<Report> {
  const sim = new Simulation({
    policy: o.policy,
    seed: o.seed,
    expectedNodes: o.nodes + 1,
    ...(o.params ? { params: o.params } : {}),
    ...(o.eagerRoutesUpTo !== undefined ? { eagerRoutesUpTo: o.eagerRoutesUpTo } : {}),
  });
  const rows: Row[] = [];
  const figures: Record<string, number> = {};
  const log = o.progress ?? (() => {});
  const put = (metric: string, value: number, digits = 1, target?: string) => {
    figures[metric] = value;
    log(`${metric}: ${Number.isFinite(value) ? value.toFixed(digits) : "never"}`);
    rows.push({
      metric,
      value: Number.isFinite(value) ? value.toFixed(digits) : "never",
      ...(target ? { target } : {}),
    });
  };
  const note = (metric: string, value: string) => rows.push({ metric, value });
  const sample = o.sample ?? 500;
  const log2n = Math.log2(o.nodes);
  const stopWatch = o.progressEverySec ? watch(sim, log, o.progressEverySec) : () => {};
  try {
    // Everyone joins, then the overlay settles.
    const joinSec = o.joinSec ?? Math.max(30, Math.round(o.nodes / 50));
    const before = sim.totalTraffic();
    for (let i = 0; i < o.nodes; i++) sim.clock.at((i * joinSec * SEC) / o.nodes, () => sim.join());
    await sim.run(joinSec * SEC);
    log(`${o.nodes} nodes joined at ${sec(sim)} s virtual`);
    await untilOr(sim, 120, () => ringGaps(sim.live()) === 0);
    await sim.run(30 * SEC);
    const joined = sim.totalTraffic();
    perNodeMinute(put, "join phase", diff(joined, before), o.nodes, sec(sim) / 60);
    const links = linkStats(sim.live());
    put("links per node, mean", links.mean, 1, o.policy === "proactive" ? "n-1 (full mesh)" : undefined);
    put("links per node, max", links.max, 0);
    put("ring gaps after join", ringGaps(sim.live()), 0, "0");
    const routes = routeStats(sim.live());
    put("routes per node, mean", routes.mean, 1);
    put("routes per node, max", routes.max, 0);
    const hops = traceHops(sim, sample);
    put("overlay hops (trace), mean", hops.mean, 2, `<= log2(N) = ${log2n.toFixed(1)}`);
    put("overlay hops (trace), p99", hops.p99, 0);
    put("pairs routable (trace), %", hops.okPercent, 1);
    const idleStart = sim.totalTraffic();
    await sim.run(60 * SEC);
    perNodeMinute(put, "idle minute", diff(sim.totalTraffic(), idleStart), sim.live().length, 1);
    log(`settled at ${sec(sim)} s virtual`);

    const steps = STEPS[o.scenario] ?? [o.scenario];
    for (const step of steps) {
      if (step === "join") await newNodeReachable(sim, put, note, sample);
      if (step === "traffic") await traffic(sim, put, sample);
      if (step === "crash" || step === "leave") await churn(sim, put, step, o.nodes, sample);
      if (step === "partition") await partition(sim, put);
      if (step === "churn") await churnWithTraffic(sim, put, o.nodes, sample);
      log(`${step} done at ${sec(sim)} s virtual`);
    }
    const after = routeStats(sim.live());
    put("routes per node at the end, mean", after.mean, 1);
    put("routes per node at the end, max", after.max, 0);
    const mem = process.memoryUsage();
    put("virtual time, s", sim.now() / SEC - sim.clock.startMs / SEC, 0);
    put("timers fired", sim.clock.fired, 0);
    put("RSS, MB", mem.rss / 2 ** 20, 0);
    put("heap used, MB", mem.heapUsed / 2 ** 20, 0);
    return { rows, figures, hookErrors: sim.hookErrors };
  } finally {
    stopWatch();
    sim.close();
  }
}

/** Logs every `everySec` wall seconds where the run is (a 10,000-node join phase takes many minutes). */
function watch(sim: Simulation, log: (line: string) => void, everySec: number): () => void {
  const cpu0 = process.cpuUsage();
  let firedBefore = sim.clock.fired;
  return sim.clock.everyWallMs(everySec * SEC, () => {
    const cpu = process.cpuUsage(cpu0);
    const fired = sim.clock.fired;
    log(
      [
        `at ${sec(sim)} s virtual`,
        `${sim.live().length} up of ${sim.nodes.length} joined`,
        `timers ${fired} fired (+${fired - firedBefore}), ${sim.clock.pending} queued`,
        `RSS ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MB`,
        `CPU ${((cpu.user + cpu.system) / 1e6).toFixed(0)} s`,
      ].join(", "),
    );
    firedBefore = fired;
  });
}

type Put = (metric: string, value: number, digits?: number, target?: string) => void;

/** A node joins the settled overlay: seconds until it reaches and is reached from every sampled node. */
async function newNodeReachable(
  sim: Simulation,
  put: Put,
  note: (m: string, v: string) => void,
  sample: number,
): Promise<void> {
  if (sim.opts.policy === "on-demand") {
    note("new node reachable from all, s", "n/a (links on the first packet)");
    return;
  }
  const sources = sim.pick(sample);
  const start = sim.now();
  const node = sim.join();
  const t = await untilOr(sim, 120, () => reachableBothWays(sim.net, node, sources) === sources.length);
  put(
    "new node reachable from all, s",
    t === null ? Number.POSITIVE_INFINITY : (t - start) / SEC,
    1,
    "<= 30",
  );
}

/** Random pairs send one packet a second for 20 s: hops of delivered packets, losses by reason. */
async function traffic(sim: Simulation, put: Put, sample: number): Promise<void> {
  const live = sim.live();
  const pairs: Array<[SimNode, SimNode]> = [];
  for (let i = 0; i < Math.min(sample, live.length); i++) {
    const [a, b] = sim.pick(2);
    if (a && b) pairs.push([a, b]);
  }
  sim.net.resetPackets();
  for (let s = 0; s < 20; s++) {
    for (const [a, b] of pairs) if (a.up && b.up) sim.net.send(a, b.ipv4);
    await sim.run(SEC);
  }
  await sim.run(15 * SEC);
  const p = sim.net.packets;
  put("traffic: packets delivered, %", (100 * p.delivered) / Math.max(1, p.sent), 1);
  put("traffic: hops per packet, mean", mean(p.hops), 2);
  put("traffic: hops per packet, p99", percentile(p.hops, 99), 0);
  for (const [reason, n] of p.drops) put(`traffic: dropped (${reason})`, n, 0);
  const links = linkStats(sim.live());
  put("links per node after traffic, mean", links.mean, 1);
  put("links per node after traffic, max", links.max, 0);
}

/**
 * 10 % of the nodes crash (or leave): seconds until every live node links to its live successor, and
 * until sampled pairs of survivors are routable again as often as before.
 */
async function churn(
  sim: Simulation,
  put: Put,
  how: "crash" | "leave",
  nodes: number,
  sample: number,
): Promise<void> {
  const victims = new Set(sim.pick(Math.max(1, Math.round(nodes / 10))));
  const survivors = sim.live().filter((n) => !victims.has(n));
  const pairs = randomPairs(sim, survivors, sample);
  const before = routablePercent(sim, pairs);
  const start = sim.now();
  for (const v of victims) how === "crash" ? v.crash() : v.leave();
  put(`pairs routable right after ${how}, %`, routablePercent(sim, pairs), 1);
  const seconds = (t: number | null) => (t === null ? Number.POSITIVE_INFINITY : (t - start) / SEC);
  const healed = await untilOr(sim, GIVE_UP_SEC, () => ringGaps(sim.live()) === 0);
  const label = how === "crash" ? "ring healed after 10 % crash, s" : "ring healed after 10 % leave, s";
  put(label, seconds(healed), 1, how === "crash" ? "<= 60" : undefined);
  const routable = await untilOr(sim, GIVE_UP_SEC, () => routablePercent(sim, pairs) >= before);
  put(`pairs routable as before (${before.toFixed(0)} %) after ${how}, s`, seconds(routable), 1);
}

const CHURN_MINUTES = 5;

/**
 * Churn: for CHURN_MINUTES, 1 % of the nodes leave and as many new ones join each minute (spread over
 * the minute) while `sample` random pairs of nodes that stay send one packet a second: delivery and
 * signalling per node per minute while the membership moves.
 */
async function churnWithTraffic(sim: Simulation, put: Put, nodes: number, sample: number): Promise<void> {
  const perMinute = Math.max(1, Math.round(nodes / 100));
  const leaving = new Set(sim.pick(perMinute * CHURN_MINUTES));
  const staying = sim.live().filter((n) => !leaving.has(n));
  const pairs = randomPairs(sim, staying, sample);
  const queue = [...leaving];
  const before = sim.totalTraffic();
  sim.net.resetPackets();
  const gapMs = (60 * SEC) / perMinute;
  for (let i = 0; i < perMinute * CHURN_MINUTES; i++) {
    sim.clock.at(i * gapMs, () => {
      queue.pop()?.leave();
      sim.join();
    });
  }
  for (let s = 0; s < CHURN_MINUTES * 60; s++) {
    for (const [a, b] of pairs) sim.net.send(a, b.ipv4);
    await sim.run(SEC);
  }
  await sim.run(15 * SEC);
  const p = sim.net.packets;
  put("churn 1 %/min: packets delivered, %", (100 * p.delivered) / Math.max(1, p.sent), 2);
  put("churn 1 %/min: hops per packet, mean", mean(p.hops), 2);
  for (const [reason, n] of p.drops) put(`churn 1 %/min: dropped (${reason})`, n, 0);
  perNodeMinute(
    put,
    "churn 1 %/min",
    diff(sim.totalTraffic(), before),
    sim.live().length,
    CHURN_MINUTES + 0.25,
  );
  put("ring gaps after churn", ringGaps(sim.live()), 0);
}

function randomPairs(sim: Simulation, nodes: readonly SimNode[], count: number): Array<[SimNode, SimNode]> {
  const pairs: Array<[SimNode, SimNode]> = [];
  if (nodes.length < 2) return pairs;
  for (let i = 0; i < count; i++) {
    const a = nodes[Math.floor(sim.random() * nodes.length)] as SimNode;
    const b = nodes[Math.floor(sim.random() * nodes.length)] as SimNode;
    if (a !== b) pairs.push([a, b]);
  }
  return pairs;
}

function routablePercent(sim: Simulation, pairs: ReadonlyArray<[SimNode, SimNode]>): number {
  const ok = pairs.filter(([a, b]) => trace(sim.net, a, b).ok).length;
  return pairs.length ? (100 * ok) / pairs.length : 100;
}

/** Two random halves cannot signal or link for 60 s; then seconds until the one ring is back. */
async function partition(sim: Simulation, put: Put): Promise<void> {
  const side = new Map<string, number>();
  for (const n of sim.nodes) side.set(n.uid, sim.random() < 0.5 ? 0 : 1);
  sim.net.setPartition((n) => side.get(n.uid) ?? 0);
  await sim.run(60 * SEC);
  put("ring gaps during partition", ringGaps(sim.live()), 0);
  sim.net.setPartition(null);
  const start = sim.now();
  const t = await untilOr(sim, GIVE_UP_SEC, () => ringGaps(sim.live()) === 0);
  put("ring merged after partition heals, s", t === null ? Number.POSITIVE_INFINITY : (t - start) / SEC, 1);
}

function traceHops(sim: Simulation, pairs: number): { mean: number; p99: number; okPercent: number } {
  const hops: number[] = [];
  let tried = 0;
  for (let i = 0; i < pairs; i++) {
    const [a, b] = sim.pick(2);
    if (!a || !b) break;
    tried++;
    const r = trace(sim.net, a, b);
    if (r.ok) hops.push(r.hops);
  }
  return { mean: mean(hops), p99: percentile(hops, 99), okPercent: tried ? (100 * hops.length) / tried : 0 };
}

/** Runs a second at a time until `done` (returns that virtual time) or `limitSec` (null). */
async function untilOr(sim: Simulation, limitSec: number, done: () => boolean): Promise<number | null> {
  for (let s = 0; s <= limitSec; s++) {
    if (done()) return sim.now();
    await sim.run(SEC);
  }
  return null;
}

function perNodeMinute(put: Put, phase: string, t: Traffic, nodes: number, minutes: number): void {
  const per = (x: number) => x / Math.max(1, nodes) / minutes;
  put(`${phase}: XMPP stanzas per node per min`, per(t.xmppStanzas), 1);
  put(`${phase}: XMPP kB per node per min`, per(t.xmppBytes) / 1000, 1);
  put(`${phase}: icc messages per node per min`, per(t.iccMessages), 1);
  put(`${phase}: icc kB per node per min`, per(t.iccBytes) / 1000, 1);
}

function diff(a: Traffic, b: Traffic): Traffic {
  return {
    xmppStanzas: a.xmppStanzas - b.xmppStanzas,
    xmppBytes: a.xmppBytes - b.xmppBytes,
    iccMessages: a.iccMessages - b.iccMessages,
    iccBytes: a.iccBytes - b.iccBytes,
  };
}

const sec = (sim: Simulation): number => Math.round((sim.now() - sim.clock.startMs) / SEC);
