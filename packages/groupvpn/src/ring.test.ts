import { uidOf } from "@tincan/protocol";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  clockwiseDistance,
  estimateRingSize,
  nextHop,
  RING_SIZE,
  Ring,
  ringPosition,
  seededRandom,
} from "./ring.js";

/** The model's long-distance count: log2(N) links of a node's own, rounded (at least 1). */
function longDistanceCount(estimatedSize: number): number {
  return Math.max(1, Math.round(Math.log2(Math.max(2, estimatedSize))));
}

const uid = fc.stringMatching(/^[0-9a-f]{32}$/);
const memberSet = (min: number, max: number) => fc.uniqueArray(uid, { minLength: min, maxLength: max });

/** Reference: every other member sorted by clockwise distance from `self`. */
function clockwiseOrder(self: string, members: readonly string[]): string[] {
  const origin = ringPosition(self);
  return members
    .filter((member) => member !== self)
    .map((member) => ({ member, distance: clockwiseDistance(origin, ringPosition(member)) }))
    .sort((a, b) => (a.distance < b.distance ? -1 : a.distance > b.distance ? 1 : 0))
    .map(({ member }) => member);
}

/**
 * The overlay of the structured policy: k successors, k predecessors, Symphony links. A link is two-way
 * (both ends route over it) unless `twoWay` is off: then a node routes only over the links it chose.
 */
function buildOverlay(
  members: readonly string[],
  k: number,
  seed: string,
  twoWay = true,
): Map<string, Set<string>> {
  const ring = new Ring(members);
  const links = new Map(members.map((member) => [member, new Set<string>()]));
  const link = (a: string, b: string) => {
    links.get(a)?.add(b);
    if (twoWay) links.get(b)?.add(a);
  };
  for (const member of members) {
    const successors = ring.successors(member, k);
    const predecessors = ring.predecessors(member, k);
    const estimatedSize = estimateRingSize(member, successors, predecessors);
    const longDistance = ring.longDistanceTargets(member, {
      count: longDistanceCount(estimatedSize),
      estimatedSize,
      random: seededRandom(`${seed}/${member}`),
      exclude: new Set([...successors, ...predecessors]),
    });
    for (const neighbour of [...successors, ...predecessors, ...longDistance]) link(member, neighbour);
  }
  return links;
}

/** Greedy route; asserts each hop makes clockwise progress without passing the destination. */
function route(links: Map<string, Set<string>>, source: string, destination: string): string[] {
  const path = [source];
  let current = source;
  const target = ringPosition(destination);
  while (current !== destination) {
    const hop = nextHop(current, destination, links.get(current) ?? []);
    if (hop === null) throw new Error(`stuck at ${current} towards ${destination}`);
    const before = clockwiseDistance(ringPosition(current), target);
    const after = clockwiseDistance(ringPosition(hop), target);
    if (!(after < before)) throw new Error(`no progress ${current} -> ${hop}`);
    // Never past the destination: the hop lies on the clockwise arc (current, destination].
    if (clockwiseDistance(ringPosition(current), ringPosition(hop)) > before) throw new Error("overshoot");
    if (path.includes(hop)) throw new Error(`loop at ${hop}`);
    path.push(hop);
    current = hop;
  }
  return path;
}

describe("ring positions and distance", () => {
  it("rejects what is not a UID", () => {
    expect(() => ringPosition("xyz")).toThrow(/not a UID/);
    expect(() => ringPosition("A".repeat(32))).toThrow(/not a UID/);
    expect(() => new Ring(["0".repeat(31)])).toThrow(/not a UID/);
  });

  it("clockwise distances around the ring add up to the ring", () => {
    fc.assert(
      fc.property(uid, uid, (a, b) => {
        const [x, y] = [ringPosition(a), ringPosition(b)];
        expect(clockwiseDistance(x, x)).toBe(0n);
        const there = clockwiseDistance(x, y);
        expect(there >= 0n && there < RING_SIZE).toBe(true);
        if (a !== b) expect(there + clockwiseDistance(y, x)).toBe(RING_SIZE);
      }),
    );
  });
});

describe("successors and predecessors", () => {
  it("match a naive sort by clockwise distance, for members and outsiders", () => {
    fc.assert(
      fc.property(
        memberSet(0, 40),
        uid,
        fc.integer({ min: 0, max: 6 }),
        fc.boolean(),
        (members, outsider, k, inside) => {
          const self = inside && members.length > 0 ? (members[0] as string) : outsider;
          const ring = new Ring(members);
          const order = clockwiseOrder(self, members);
          expect(ring.successors(self, k)).toEqual(order.slice(0, k));
          expect(ring.predecessors(self, k)).toEqual(order.reverse().slice(0, k));
        },
      ),
    );
  });

  it("pass over the members to skip (suspected of a crash) as if they were gone", () => {
    fc.assert(
      fc.property(memberSet(1, 40), fc.integer({ min: 0, max: 6 }), fc.nat(), (members, k, seed) => {
        const self = members[0] as string;
        const skip = new Set(members.filter((_, i) => (i * 7 + seed) % 3 === 0));
        const ring = new Ring(members);
        const order = clockwiseOrder(self, members).filter((m) => !skip.has(m));
        expect(ring.successors(self, k, skip)).toEqual(order.slice(0, k));
        expect(ring.predecessors(self, k, skip)).toEqual(order.reverse().slice(0, k));
      }),
    );
  });

  it("a ring kept up to date by joins, leaves and reads in between equals one built from its members", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("join", "leave", "read"), fc.integer({ min: 0, max: 30 })), {
          maxLength: 120,
        }),
        memberSet(31, 31),
        (ops, pool) => {
          const ring = new Ring([]);
          const reference = new Set<string>();
          for (const [op, i] of ops) {
            const member = pool[i] as string;
            if (op === "read") {
              // A read applies what is pending (spliced when few, merged when many).
              const built = new Ring(reference);
              expect(ring.successors(member, 3)).toEqual(built.successors(member, 3));
              expect(ring.predecessors(member, 3)).toEqual(built.predecessors(member, 3));
              expect(ring.size).toBe(reference.size);
              continue;
            }
            const join = op === "join";
            expect(join ? ring.add(member) : ring.remove(member)).toBe(join !== reference.has(member));
            if (join) reference.add(member);
            else reference.delete(member);
            expect(ring.size).toBe(reference.size);
          }
          expect(ring.members()).toEqual(new Ring(reference).members());
          for (const member of pool) expect(ring.has(member)).toBe(reference.has(member));
        },
      ),
    );
  });

  it("batches of joins and leaves, read between batches, give the ring of the members left", () => {
    fc.assert(
      fc.property(
        memberSet(0, 200),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 30 })), {
          minLength: 1,
          maxLength: 5,
        }),
        memberSet(330, 330),
        (start, batches, pool) => {
          const ring = new Ring(start);
          const reference = new Set(start);
          let from = 0;
          for (const [joins, leaves] of batches) {
            // A batch may repeat members, and hold members the ring has already.
            const batch = [
              ...pool.slice(from, from + joins),
              ...start.slice(0, 2),
              ...pool.slice(from, from + 1),
            ];
            from += joins;
            ring.addAll(batch);
            for (const member of batch) reference.add(member);
            for (const member of [...reference].slice(0, leaves)) {
              expect(ring.remove(member)).toBe(true);
              reference.delete(member);
            }
            expect(ring.members()).toEqual([...reference].sort());
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it("the successor links of all members form one ring", () => {
    fc.assert(
      fc.property(memberSet(1, 80), fc.integer({ min: 1, max: 4 }), (members, k) => {
        const ring = new Ring(members);
        const next = new Map(members.map((member) => [member, ring.successors(member, k)[0] ?? member]));
        // Following the first successor from any member visits every member once and comes back.
        const start = members[0] as string;
        const seen = new Set<string>();
        let current = start;
        do {
          expect(seen.has(current)).toBe(false);
          seen.add(current);
          current = next.get(current) as string;
        } while (current !== start);
        expect(seen.size).toBe(members.length);
        for (const member of members) {
          // Predecessor is the inverse of successor, and the i-th successor is i first-successor steps away.
          expect(ring.predecessors(next.get(member) as string, 1)[0] ?? member).toBe(member);
          let step = member;
          for (const successor of ring.successors(member, k)) {
            step = next.get(step) as string;
            expect(successor).toBe(step);
          }
        }
      }),
    );
  });
});

describe("Symphony long-distance links", () => {
  it("are the same for the same seed, members, and not self or excluded", () => {
    fc.assert(
      fc.property(memberSet(2, 60), fc.string(), (members, seed) => {
        const ring = new Ring(members);
        const self = members[0] as string;
        const exclude = new Set(ring.successors(self, 1));
        const draw = () =>
          ring.longDistanceTargets(self, {
            count: 5,
            estimatedSize: members.length,
            random: seededRandom(seed),
            exclude,
          });
        const targets = draw();
        expect(draw()).toEqual(targets);
        expect(new Set(targets).size).toBe(targets.length);
        for (const target of targets) {
          expect(target).not.toBe(self);
          expect(exclude.has(target)).toBe(false);
          expect(members).toContain(target);
        }
      }),
    );
  });

  it("land harmonically: log of the distance is uniform over [1/N, 1) of the ring", () => {
    // On a dense ring the owner of a point is about the point, so bucket log(distance) directly.
    const dense = new Ring(Array.from({ length: 20_000 }, (_, i) => uidOf(`dense-${i}`)));
    const self = dense.members()[0] as string;
    const size = 1024;
    const random = seededRandom("harmonic");
    const buckets = new Array<number>(5).fill(0);
    for (let i = 0; i < 2000; i++) {
      const [target] = dense.longDistanceTargets(self, { count: 1, estimatedSize: size, random });
      if (target === undefined) continue;
      const fraction =
        Number(clockwiseDistance(ringPosition(self), ringPosition(target))) / Number(RING_SIZE);
      const u = 1 + Math.log(fraction) / Math.log(size); // uniform on [0, 1) if harmonic
      const bucket = Math.min(4, Math.max(0, Math.floor(u * 5)));
      buckets[bucket] = (buckets[bucket] ?? 0) + 1;
    }
    for (const count of buckets) expect(count).toBeGreaterThan(300);
  });

  it("about log2(N) of them, N estimated from the neighbours", () => {
    expect(longDistanceCount(1)).toBe(1);
    expect(longDistanceCount(1000)).toBe(10);
    expect(estimateRingSize(uidOf("alone"), [], [])).toBe(1);
    // From 2 successors and 2 predecessors, log2 of the estimate is right to about one on average.
    const ring = new Ring(Array.from({ length: 1000 }, (_, i) => uidOf(`member-${i}`)));
    const counts = ring
      .members()
      .map((member) =>
        longDistanceCount(estimateRingSize(member, ring.successors(member, 2), ring.predecessors(member, 2))),
      );
    const mean = counts.reduce((sum, count) => sum + count, 0) / counts.length;
    console.log(`ring N=1000 k=2: long-distance links per node mean ${mean.toFixed(2)} (log2 N = 9.97)`);
    expect(Math.abs(mean - Math.log2(1000))).toBeLessThan(1);
  });
});

describe("greedy next hop", () => {
  it("picks the neighbour closest to the destination without passing it, or null (vs a naive scan)", () => {
    fc.assert(
      fc.property(uid, uid, memberSet(0, 30), (self, destination, neighbours) => {
        const hop = nextHop(self, destination, neighbours);
        const target = ringPosition(destination);
        const ours = clockwiseDistance(ringPosition(self), target);
        const closer = neighbours.filter((n) => clockwiseDistance(ringPosition(n), target) < ours);
        if (closer.length === 0) {
          expect(hop).toBeNull();
          return;
        }
        expect(hop).not.toBeNull();
        const best = closer.reduce((a, b) =>
          clockwiseDistance(ringPosition(b), target) < clockwiseDistance(ringPosition(a), target) ? b : a,
        );
        expect(hop).toBe(best);
        expect(clockwiseDistance(ringPosition(self), ringPosition(hop as string))).toBeLessThanOrEqual(ours);
      }),
    );
  });

  it("routes from any member to any member over successor + long-distance links, without loops", () => {
    fc.assert(
      fc.property(memberSet(2, 120), fc.integer({ min: 1, max: 3 }), fc.string(), (members, k, seed) => {
        const links = buildOverlay(members, k, seed);
        for (const source of members) {
          for (const destination of members) {
            const path = route(links, source, destination);
            expect(path.length - 1).toBeLessThan(members.length);
          }
        }
      }),
      { numRuns: 30 },
    );
  });

  it.each([
    ["two-way links", true],
    ["only the links a node chose", false],
  ])("takes about log2(N) hops or fewer on average at N = 1000 (%s)", (label, twoWay) => {
    const size = 1000;
    const members = Array.from({ length: size }, (_, i) => uidOf(`member-${i}`));
    const links = buildOverlay(members, 2, "n1000", twoWay);
    const random = seededRandom("pairs");
    const hops: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const source = members[Math.floor(random() * size)] as string;
      const destination = members[Math.floor(random() * size)] as string;
      hops.push(route(links, source, destination).length - 1);
    }
    hops.sort((a, b) => a - b);
    const mean = hops.reduce((sum, h) => sum + h, 0) / hops.length;
    const degrees = [...links.values()].map((set) => set.size);
    const meanDegree = degrees.reduce((sum, d) => sum + d, 0) / size;
    console.log(
      `ring N=${size} k=2, ${label}: hops mean ${mean.toFixed(2)} p99 ${hops[Math.floor(hops.length * 0.99)]}` +
        ` max ${hops.at(-1)} (log2 N = ${Math.log2(size).toFixed(2)}); links per node mean ${meanDegree.toFixed(1)}` +
        ` max ${Math.max(...degrees)}`,
    );
    expect(mean).toBeLessThanOrEqual(Math.log2(size));
  });
});
