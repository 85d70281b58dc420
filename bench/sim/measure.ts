import type { SimNetwork } from "./network.js";
import type { SimNode } from "./sim-node.js";

/** Connected links per live node (each link counted at both ends, as each node holds one). */
export function linkStats(live: readonly SimNode[]): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (const n of live) {
    const c = n.dp.connectedPeers().length;
    sum += c;
    max = Math.max(max, c);
  }
  return { mean: live.length ? sum / live.length : 0, max };
}

/** Routes in each live node's datapath (mean, max). */
export function routeStats(live: readonly SimNode[]): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  for (const n of live) {
    sum += n.dp.routes.size;
    max = Math.max(max, n.dp.routes.size);
  }
  return { mean: live.length ? sum / live.length : 0, max };
}

/** Live nodes in ring order (a UID's hex text sorts as its ring position). */
export function ringOrder(live: readonly SimNode[]): SimNode[] {
  return [...live].sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
}

/** Pairs of ring neighbours (each live node and its live successor) without a link connected at both ends. */
export function ringGaps(live: readonly SimNode[]): number {
  const ring = ringOrder(live);
  if (ring.length < 2) return 0;
  let gaps = 0;
  for (let i = 0; i < ring.length; i++) {
    const a = ring[i] as SimNode;
    const b = ring[(i + 1) % ring.length] as SimNode;
    if (!a.dp.isConnected(b.uid) || !b.dp.isConnected(a.uid)) gaps++;
  }
  return gaps;
}

export interface TraceResult {
  ok: boolean;
  /** Why it stops short (noRoute, noLink, loop, hopLimit, linkDead). */
  why?: string;
  hops: number;
  /** UIDs of the nodes it passes, from the source on. */
  path: string[];
}

/**
 * Where a packet from `src` to `dst` would go now, by the routes and connected links of each node on
 * the way, and where a node has no route, by the next hop its policy would map on demand (no side
 * effects: nothing is held, reported or mapped, no link is asked for).
 */
export function trace(net: SimNetwork, src: SimNode, dst: SimNode): TraceResult {
  let at = src;
  let hopLimit = net.params.hopLimit;
  let hops = 0;
  let from: string | null = null;
  const path = [src.uid];
  const fail = (why: string): TraceResult => ({ ok: false, why, hops, path });
  for (;;) {
    const next = at.nextHopTo(dst.ipv4, dst.uid);
    if (next === undefined) return fail("noRoute");
    if (!at.dp.isConnected(next)) return fail(from ? "noRoute" : "noLink");
    if (next === from) return fail("loop");
    if (from !== null) {
      if (hopLimit <= 1) return fail("hopLimit");
      hopLimit--;
    }
    const peer = net.nodes.get(next);
    if (!peer?.up || !net.reachable(at, peer) || !peer.dp.isConnected(at.uid)) return fail("linkDead");
    hops++;
    path.push(peer.uid);
    if (peer === dst) return { ok: true, hops, path };
    from = at.uid;
    at = peer;
  }
}

/** Of `sources`, how many reach `target` and are reached from it now. */
export function reachableBothWays(net: SimNetwork, target: SimNode, sources: readonly SimNode[]): number {
  let ok = 0;
  for (const s of sources) {
    if (s === target) continue;
    if (trace(net, s, target).ok && trace(net, target, s).ok) ok++;
  }
  return ok;
}

export function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}
