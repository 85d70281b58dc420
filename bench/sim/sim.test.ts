import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ringDistance, ringPosition } from "../../packages/groupvpn/src/ring.js";
import { ringGaps, ringOrder, trace } from "./measure.js";
import { runScenario } from "./scenarios.js";
import type { SimNode } from "./sim-node.js";
import { type PolicyName, Simulation } from "./simulation.js";

/**
 * The policies whose links the ring properties hold for (on-demand links only on traffic); structured
 * also with routes on demand only (as in groups of more than EAGER_ROUTES_UP_TO members).
 */
const RING_POLICIES: Array<{ name: string; policy: PolicyName; eagerRoutesUpTo?: number }> = [
  { name: "proactive", policy: "proactive" },
  { name: "structured", policy: "structured" },
  { name: "structured, routes on demand", policy: "structured", eagerRoutesUpTo: 0 },
];

type Op = { kind: "join" } | { kind: "leave" | "crash"; pick: number } | { kind: "wait"; sec: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ kind: "join" }),
  fc.record({ kind: fc.constantFrom("leave" as const, "crash" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("wait" as const), sec: fc.integer({ min: 0, max: 20 }) }),
);

/**
 * Greedy progress: every hop gets closer to the destination on the ring (either way round), or goes
 * to a node with a link to the destination (the one-hop lookahead of a neighbour's link
 * announcement); no node comes twice.
 */
function greedyWithoutLoops(sim: Simulation, path: string[], dst: string): boolean {
  const target = ringPosition(dst);
  for (let i = 1; i < path.length; i++) {
    const here = path[i] as string;
    const before = ringDistance(ringPosition(path[i - 1] as string), target);
    const after = ringDistance(ringPosition(here), target);
    const linkedToDestination = here === dst || sim.net.nodes.get(here)?.dp.isConnected(dst) === true;
    if (after >= before && !linkedToDestination) return false;
  }
  return new Set(path).size === path.length;
}

async function churned(
  { policy, eagerRoutesUpTo }: (typeof RING_POLICIES)[number],
  seed: number,
  initial: number,
  ops: Op[],
): Promise<Simulation> {
  const sim = new Simulation({
    policy,
    seed: `prop-${seed}`,
    expectedNodes: initial + ops.length,
    ...(eagerRoutesUpTo !== undefined ? { eagerRoutesUpTo } : {}),
  });
  for (let i = 0; i < initial; i++) sim.join();
  await sim.run(5_000);
  for (const o of ops) {
    const live = sim.live();
    if (o.kind === "join") sim.join();
    else if (o.kind === "wait") await sim.run(o.sec * 1000);
    else if (live.length > 3) {
      const victim = live[o.pick % live.length] as SimNode;
      if (o.kind === "crash") victim.crash();
      else victim.leave();
    }
  }
  // Enough for crashed links to be noticed (10 s + 5 s grace) and every retry to succeed; the last
  // 2.5 s put the check between the structured policy's 5-second rounds (a link trimmed at a round
  // is still closing at the peer for the link latency).
  await sim.run(122_500);
  return sim;
}

describe.each(RING_POLICIES)("simulated GroupVPN, $name policy", (policy) => {
  it("after any joins, leaves and crashes the live nodes' successor links form one ring", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.integer({ min: 4, max: 10 }),
        fc.array(op, { maxLength: 8 }),
        async (seed, n, ops) => {
          const sim = await churned(policy, seed, n, ops);
          try {
            expect(sim.hookErrors).toEqual(new Map());
            expect(ringGaps(sim.live())).toBe(0);
          } finally {
            sim.close();
          }
        },
      ),
      { numRuns: 8 },
    );
  }, 60_000);

  it("greedy routing between any two live nodes arrives, each hop closer, without loops", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.integer({ min: 4, max: 12 }),
        fc.array(op, { maxLength: 6 }),
        async (seed, n, ops) => {
          const sim = await churned(policy, seed, n, ops);
          try {
            const live = ringOrder(sim.live());
            for (const a of live) {
              for (const b of live) {
                if (a === b) continue;
                const r = trace(sim.net, a, b);
                expect(r.ok, `${a.ipv4} -> ${b.ipv4}: ${r.why}`).toBe(true);
                expect(greedyWithoutLoops(sim, r.path, b.uid), r.path.join(" > ")).toBe(true);
              }
            }
          } finally {
            sim.close();
          }
        },
      ),
      { numRuns: 6, seed: Number(process.env.SIM_SEED ?? 18), endOnFailure: true },
    );
  }, 60_000);
});

describe("simulator scenarios (deterministic)", () => {
  it("a proactive mesh of 16: full mesh, one ring, a new node reachable in seconds, crash healed", async () => {
    const report = await runScenario({
      nodes: 16,
      policy: "proactive",
      scenario: "all",
      seed: "test",
      joinSec: 10,
      sample: 50,
    });
    const f = report.figures;
    expect(report.hookErrors).toEqual(new Map());
    expect(f["links per node, mean"]).toBe(15);
    expect(f["ring gaps after join"]).toBe(0);
    expect(f["overlay hops (trace), mean"]).toBe(1);
    expect(f["new node reachable from all, s"]).toBeLessThanOrEqual(5);
    expect(f["traffic: packets delivered, %"]).toBe(100);
    expect(f["ring healed after 10 % crash, s"]).toBeLessThanOrEqual(60);
    expect(f["pairs routable as before (100 %) after crash, s"]).toBeLessThanOrEqual(1);
    expect(f["ring merged after partition heals, s"]).toBeLessThanOrEqual(90);
    // Every node learns every other's presence: about n presence stanzas each while they join.
    expect(f["join phase: XMPP stanzas per node per min"]).toBeGreaterThan(10);
  });

  it("structured, 32 nodes: about 2k + log2(N) links, hops <= log2(N), a crash healed in time", async () => {
    const report = await runScenario({
      nodes: 32,
      policy: "structured",
      scenario: "crash",
      seed: "test",
      joinSec: 10,
      sample: 100,
    });
    const f = report.figures;
    expect(report.hookErrors).toEqual(new Map());
    expect(f["ring gaps after join"]).toBe(0);
    expect(f["links per node, mean"]).toBeLessThanOrEqual(2 * 2 + Math.log2(32) + 2);
    expect(f["overlay hops (trace), mean"]).toBeLessThanOrEqual(Math.log2(32));
    expect(f["ring healed after 10 % crash, s"]).toBeLessThanOrEqual(60);
    const routableAgain = Object.entries(f).find(([k]) => k.startsWith("pairs routable as before"));
    expect(routableAgain?.[1]).toBeLessThanOrEqual(60);
  }, 60_000);

  it("structured, routes on demand: two ring neighbours crash; the ring heals before their presence goes", async () => {
    const sim = new Simulation({
      policy: "structured",
      seed: "adjacent",
      expectedNodes: 24,
      eagerRoutesUpTo: 0,
    });
    try {
      for (let i = 0; i < 24; i++) sim.join();
      await sim.run(60_000);
      expect(ringGaps(sim.live())).toBe(0);
      // Two neighbours: the members on either side of them hold no link to each other (k = 2).
      const [a, b] = ringOrder(sim.live()).slice(5, 7) as [SimNode, SimNode];
      const start = sim.now();
      a.crash();
      b.crash();
      let healedAt: number | null = null;
      for (let s = 0; s < 60 && healedAt === null; s++) {
        await sim.run(1000);
        if (ringGaps(sim.live()) === 0) healedAt = sim.now();
      }
      expect(sim.hookErrors).toEqual(new Map());
      // The links die after deadAfterMs (10 s); the XMPP server drops the presence after 30 s.
      const seconds = healedAt === null ? Number.POSITIVE_INFINITY : (healedAt - start) / 1000;
      expect(seconds).toBeLessThan(sim.net.params.xmppDeadAfterMs / 1000);
    } finally {
      sim.close();
    }
  });

  it("on demand: the first packet to a member sets its link up, later ones take 1 hop", async () => {
    const report = await runScenario({
      nodes: 20,
      policy: "on-demand",
      scenario: "traffic",
      seed: "test",
      joinSec: 10,
      sample: 40,
    });
    const f = report.figures;
    expect(report.hookErrors).toEqual(new Map());
    expect(f["links per node, mean"]).toBe(0);
    expect(f["traffic: packets delivered, %"]).toBeGreaterThanOrEqual(99);
    expect(f["traffic: hops per packet, mean"]).toBe(1);
    expect(f["links per node after traffic, mean"]).toBeGreaterThan(0);
  });
});
