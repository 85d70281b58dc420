import { createHash } from "node:crypto";
import { UID_PATTERN } from "@tincan/protocol";

/**
 * The structured overlay's ring (issue #18): a UID (32 hex chars) is a position on a ring of 2^128.
 * Pure logic, no I/O: the structured link policy and the simulator build on it.
 */

export const RING_BITS = 128;
export const RING_SIZE = 1n << BigInt(RING_BITS);
const RING_MASK = RING_SIZE - 1n;

/** The ring position of a UID; throws on anything that is not a UID. */
export function ringPosition(uid: string): bigint {
  checkUid(uid);
  return BigInt(`0x${uid}`);
}

/** Throws on anything that is not a UID (a member joins every node's ring: no zod or BigInt per join). */
function checkUid(uid: string): void {
  if (typeof uid !== "string" || !UID_PATTERN.test(uid))
    throw new Error(`not a UID (32 lowercase hex characters): ${JSON.stringify(uid)}`);
}

/** How far `to` is from `from` going clockwise (towards larger positions, wrapping at 2^128). */
export function clockwiseDistance(from: bigint, to: bigint): bigint {
  return (to - from) & RING_MASK;
}

/** How far apart two ring positions are, the shorter way round. */
export function ringDistance(a: bigint, b: bigint): bigint {
  const clockwise = clockwiseDistance(a, b);
  return clockwise * 2n <= RING_SIZE ? clockwise : RING_SIZE - clockwise;
}

/**
 * Ring size seen from one node: its successors and predecessors cover an arc of the ring cut into
 * that many segments, so N ~ segments * 2^128 / arc (Symphony's estimate; noisy with few neighbours,
 * which is good enough for log2(N)).
 */
export function estimateRingSize(
  self: string,
  successors: readonly string[],
  predecessors: readonly string[],
): number {
  const segments = successors.length + predecessors.length;
  if (segments === 0) return 1;
  const position = ringPosition(self);
  const ahead =
    successors.length > 0 ? clockwiseDistance(position, ringPosition(successors.at(-1) as string)) : 0n;
  const behind =
    predecessors.length > 0 ? clockwiseDistance(ringPosition(predecessors.at(-1) as string), position) : 0n;
  const arc = ahead + behind;
  if (arc === 0n) return 1;
  return Math.max(segments, Math.round((segments * Number(RING_SIZE)) / Number(arc)));
}

/**
 * A reproducible random source in [0, 1): SHA-256 of the seed and a counter. The simulator and the
 * tests pass one; a live node may pass Math.random.
 */
export function seededRandom(seed: string): () => number {
  let counter = 0;
  return () => {
    const digest = createHash("sha256").update(`${seed}:${counter++}`).digest();
    return digest.readUIntBE(0, 6) / 2 ** 48;
  };
}

/**
 * Greedy next hop towards `destination` among our linked `neighbours`: the one closest to it going
 * clockwise that lies between us and it (never past it), so every hop shortens the clockwise distance
 * and a route cannot loop. Null when we are the destination or no neighbour is closer than ourselves.
 */
export function nextHop(self: string, destination: string, neighbours: Iterable<string>): string | null {
  const target = ringPosition(destination);
  let best: string | null = null;
  let bestDistance = clockwiseDistance(ringPosition(self), target);
  for (const neighbour of neighbours) {
    const distance = clockwiseDistance(ringPosition(neighbour), target);
    if (distance < bestDistance) {
      best = neighbour;
      bestDistance = distance;
    }
  }
  return best;
}

/** Pending changes applied one by one (a splice each) at most; more are merged in one pass. */
const SPLICES_PER_MERGE = 16;

/**
 * A member set in ring order; answers who follows whom. Members are deduplicated. Kept sorted as
 * UID text (lowercase hex of a fixed length sorts as its number does), so no position is stored per
 * member. Joins and leaves are taken lazily: they wait in two sets and are merged into the sorted
 * array when the order is next read. A node in a large group gets hundreds of presences between two
 * reads (the policy reads once per recompute or maintenance round), and one merge pass costs about
 * what two splices into a 10,000-member array do (V8 moves a pointer array element by element).
 */
export class Ring {
  private uids: string[];
  /** Members not yet in `uids`. */
  private readonly joining = new Set<string>();
  /** Members still in `uids` that are gone. */
  private readonly leaving = new Set<string>();

  constructor(members: Iterable<string>) {
    const unique = [...new Set(members)];
    for (const uid of unique) checkUid(uid);
    this.uids = unique.sort();
  }

  get size(): number {
    return this.uids.length + this.joining.size - this.leaving.size;
  }

  members(): readonly string[] {
    this.settle();
    return this.uids;
  }

  has(uid: string): boolean {
    if (this.joining.has(uid)) return true;
    return !this.leaving.has(uid) && this.sortedHas(uid);
  }

  /** Adds a member (true) or does nothing when it is one already (false). */
  add(uid: string): boolean {
    checkUid(uid);
    if (this.joining.has(uid)) return false;
    if (this.sortedHas(uid)) return this.leaving.delete(uid);
    this.joining.add(uid);
    return true;
  }

  /** Adds members (those that are none yet). */
  addAll(uids: readonly string[]): void {
    for (const uid of uids) this.add(uid);
  }

  /** Removes a member (true), or does nothing when it is none (false). */
  remove(uid: string): boolean {
    if (this.joining.delete(uid)) return true;
    if (this.leaving.has(uid) || !this.sortedHas(uid)) return false;
    this.leaving.add(uid);
    return true;
  }

  /** The first member at or clockwise after `point` (the owner of that point). */
  owner(point: bigint): string | undefined {
    this.settle();
    if (this.uids.length === 0) return undefined;
    return this.uids[this.indexAtOrAfter(point) % this.uids.length];
  }

  /**
   * Up to k members following `self` clockwise, nearest first (`self` need not be a member); members
   * in `skip` are passed over.
   */
  successors(self: string, k: number, skip?: ReadonlySet<string>): string[] {
    this.settle();
    const start = this.indexAtOrAfter(ringPosition(self) + 1n);
    return this.walk(start, 1, k, self, skip);
  }

  /** Up to k members preceding `self` counter-clockwise, nearest first; members in `skip` passed over. */
  predecessors(self: string, k: number, skip?: ReadonlySet<string>): string[] {
    this.settle();
    const start = this.indexOfText(self) - 1;
    return this.walk(start, -1, k, self, skip);
  }

  /**
   * Symphony long-distance link targets of `self`: `count` draws of a clockwise distance from the
   * harmonic distribution on [1/N, 1) of the ring (density 1/(x ln N)), each linked to the owner of
   * the point it lands on. Members in `exclude` (e.g. the ring neighbours) and repeats are drawn again,
   * at most 4*count draws in all, so fewer targets come back from a small ring.
   */
  longDistanceTargets(
    self: string,
    options: { count: number; estimatedSize: number; random: () => number; exclude?: ReadonlySet<string> },
  ): string[] {
    const origin = ringPosition(self);
    const logSize = Math.log(Math.max(2, options.estimatedSize));
    const targets = new Set<string>();
    for (let draw = 0; draw < 4 * options.count && targets.size < options.count; draw++) {
      const fraction = Math.exp(logSize * (options.random() - 1));
      const distance = BigInt(Math.floor(fraction * 2 ** 53)) << BigInt(RING_BITS - 53);
      const target = this.owner((origin + distance) & RING_MASK);
      if (target === undefined || target === self || options.exclude?.has(target)) continue;
      targets.add(target);
    }
    return [...targets];
  }

  /** Applies the pending joins and leaves to the sorted array. */
  private settle(): void {
    const pending = this.joining.size + this.leaving.size;
    if (pending === 0) return;
    if (pending <= SPLICES_PER_MERGE) {
      for (const uid of this.leaving) this.uids.splice(this.indexOfText(uid), 1);
      for (const uid of this.joining) this.uids.splice(this.indexOfText(uid), 0, uid);
    } else {
      this.uids = this.merged();
    }
    this.joining.clear();
    this.leaving.clear();
  }

  /** The sorted array with the leaving members left out and the joining ones merged in, in one pass. */
  private merged(): string[] {
    const incoming = [...this.joining].sort();
    const leaving = this.leaving.size > 0 ? this.leaving : null;
    const out: string[] = [];
    let i = 0;
    let j = 0;
    while (i < this.uids.length || j < incoming.length) {
      const a = this.uids[i];
      const b = incoming[j];
      if (b === undefined || (a !== undefined && a < b)) {
        if (!leaving?.has(a as string)) out.push(a as string);
        i++;
      } else {
        out.push(b);
        j++;
      }
    }
    return out;
  }

  private sortedHas(uid: string): boolean {
    return this.uids[this.indexOfText(uid)] === uid;
  }

  /** Up to `count` members from index `start` on in direction `step`, once round the ring at most. */
  private walk(
    start: number,
    step: 1 | -1,
    count: number,
    self: string,
    skip: ReadonlySet<string> | undefined,
  ): string[] {
    const size = this.uids.length;
    const found: string[] = [];
    for (let i = start, seen = 0; found.length < count && seen < size; i += step, seen++) {
      const uid = this.uids[((i % size) + size) % size] as string;
      if (uid !== self && !skip?.has(uid)) found.push(uid);
    }
    return found;
  }

  /** Index of the first position >= point, or size when none. */
  private indexAtOrAfter(point: bigint): number {
    if (point >= RING_SIZE) return this.uids.length;
    return this.indexOfText(point.toString(16).padStart(RING_BITS / 4, "0"));
  }

  /** Index of the first UID >= `text` (32 hex characters), or size when none (binary search). */
  private indexOfText(text: string): number {
    let low = 0;
    let high = this.uids.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.uids[middle] as string) < text) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
