import type { DatapathApi } from "@tincan/controller";
import {
  hostPrefix,
  type NotificationMethod,
  type NotificationParamsOf,
  type RouteInfo,
  type RpcMethod,
  type RpcParamsOf,
  type RpcResults,
} from "@tincan/protocol";
import { linkInfo } from "../../packages/controller/src/testing.js";
import { DIRECT_LINK_GRACE_MS, inDirectLinkGrace } from "../../packages/datapath/src/outside.js";
import type { SimNetwork } from "./network.js";

/** One side of a link in a fake datapath: its own setup token and, once known, the peer's. */
export interface FakeLink {
  peerUid: string;
  local: string;
  remote: string | null;
  state: "new" | "connecting" | "connected" | "disconnected" | "failed";
  /** Offerer side: the ICE check is scheduled. */
  checking: boolean;
  /** Virtual time it connected (both sides at once). */
  connectedAt?: number;
}

/** A packet on its way: where it goes, how many links it crossed, what hop limit it has left. */
export interface SimPacket {
  src: string;
  dst: string;
  hops: number;
  hopLimit: number;
  sentAt: number;
  bytes: number;
}

type Handler = (params: unknown) => void;

/** A route and the counters route.query reports (packets from the vNIC it routed, packets from its peer). */
type CountedRoute = RouteInfo & { txPackets: number; txBytes: number; rxPackets: number };

const MAX_HELD_PER_DESTINATION = 16;
/**
 * A spoofed drop on a link this young is told apart: packets sent over the ring before it came up that
 * arrived just after the datapath's grace for a new direct link.
 */
const JUST_CONNECTED_MS = DIRECT_LINK_GRACE_MS + 1000;
const JUST_CONNECTED = `spoofed:otherLinkUp(<${JUST_CONNECTED_MS / 1000}s)`;
/** Held packets older than this are dropped when the held queue is looked at (the datapath's hold time). */
export const HOLD_MS = 10_000;

/**
 * The datapath RPC surface the controller code uses, in memory: links that connect through the
 * network's ICE model, a route table with `via` next hops, held packets reported as unmapped, and
 * transit forwarding with a hop limit (the rules of the real datapath's inside.ts / outside.ts).
 */
export class FakeDatapath implements Pick<DatapathApi, "call" | "on"> {
  readonly links = new Map<string, FakeLink>();
  readonly routes = new Map<string, CountedRoute>();
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly held = new Map<string, SimPacket[]>();
  /** Routes that are not host routes (router mode): longest-prefix match only when there are some. */
  private prefixRoutes = 0;
  private tokens = 0;
  alive = true;

  constructor(
    readonly uid: string,
    readonly ipv4: string,
    private readonly net: SimNetwork,
  ) {}

  on<N extends NotificationMethod>(name: N, handler: (p: NotificationParamsOf<N>) => void): () => void {
    const set = this.handlers.get(name) ?? new Set<Handler>();
    this.handlers.set(name, set);
    set.add(handler as Handler);
    return () => set.delete(handler as Handler);
  }

  emit<N extends NotificationMethod>(name: N, params: NotificationParamsOf<N>): void {
    if (!this.alive) return;
    for (const h of this.handlers.get(name) ?? []) h(params);
  }

  async call<M extends RpcMethod>(method: M, params: RpcParamsOf<M>): Promise<RpcResults[M]> {
    if (!this.alive) throw new Error("datapath gone");
    return this.handle(method, params as Record<string, unknown>) as RpcResults[M];
  }

  isConnected(peerUid: string): boolean {
    return this.links.get(peerUid)?.state === "connected";
  }

  connectedPeers(): string[] {
    const out: string[] = [];
    for (const l of this.links.values()) if (l.state === "connected") out.push(l.peerUid);
    return out;
  }

  /** The next hop of a packet to `dst` by the route table (host route first, then longest prefix). */
  nextHopFor(dst: string): string | undefined {
    const r = this.routeFor(dst);
    return r ? (r.via ?? r.peerUid) : undefined;
  }

  private routeFor(address: string): CountedRoute | undefined {
    const host = this.routes.get(hostPrefixOf(address));
    return host ?? (this.prefixRoutes > 0 ? this.net.longestMatch(this.routes, address) : undefined);
  }

  /** A packet from the vNIC (or held in transit): send on the next hop's link, or hold it and report it unmapped. */
  fromVnic(p: SimPacket): void {
    if (p.hops > 0 && this.routeFor(p.src) === undefined) {
      this.hold(p); // in transit, its source still not routed here
      return;
    }
    const route = this.routeFor(p.dst);
    if (route && p.hops === 0) {
      route.txPackets++;
      route.txBytes += p.bytes;
    }
    const next = route ? (route.via ?? route.peerUid) : undefined;
    if (next !== undefined && this.isConnected(next)) {
      this.net.carry(this, next, p);
      return;
    }
    this.hold(p);
  }

  /** A packet from a link: ours, or forwarded while the hop limit lasts. */
  fromLink(from: string, p: SimPacket): void {
    // The source check of outside.ts: the source must be a member; a packet for us from a member
    // routed over its own link must come on it (one routed via a neighbour may come on any link, and
    // so may one whose own link is being set up or connected less than DIRECT_LINK_GRACE_MS ago);
    // a packet in transit may come on any link.
    const source = this.routeFor(p.src);
    const forUs = p.dst === this.ipv4;
    if (!source && !forUs) {
      // outside.ts parks a packet in transit from a source not routed here yet, as one with no route.
      if (p.hopLimit <= 1) this.net.dropped(p, "hopLimit");
      else this.hold({ ...p, hopLimit: p.hopLimit - 1 });
      return;
    }
    if (
      !source ||
      (forUs &&
        (source.via ?? source.peerUid) !== from &&
        !source.via &&
        !this.directLinkYoung(source.peerUid))
    ) {
      this.net.dropped(
        p,
        !source
          ? "spoofed:noSourceRoute"
          : this.isConnected(source.peerUid)
            ? Date.now() - (this.links.get(source.peerUid)?.connectedAt ?? 0) < JUST_CONNECTED_MS
              ? JUST_CONNECTED
              : "spoofed:otherLinkUp"
            : "spoofed:directRouteNoLink",
      );
      return;
    }
    source.rxPackets++;
    if (forUs) {
      this.net.delivered(p);
      return;
    }
    const next = this.nextHopFor(p.dst);
    if (p.hopLimit <= 1) {
      this.net.dropped(p, "hopLimit");
      return;
    }
    if (next === undefined || !this.isConnected(next)) {
      // outside.ts parks it: held and reported as unmapped, sent on by the next route or link change.
      this.hold({ ...p, hopLimit: p.hopLimit - 1 });
      return;
    }
    if (next === from) {
      this.net.dropped(p, "loop");
      return;
    }
    this.net.carry(this, next, { ...p, hopLimit: p.hopLimit - 1 });
  }

  /** outside.ts's grace for a new direct link, on virtual time. */
  private directLinkYoung(peerUid: string): boolean {
    const own = this.links.get(peerUid);
    return own !== undefined && inDirectLinkGrace(own.state, own.connectedAt ?? null, Date.now());
  }

  /** Routes held packets again (a link connected or a route changed). */
  resubmitHeld(): void {
    if (this.held.size === 0) return;
    const groups = [...this.held.values()];
    this.held.clear();
    const now = Date.now();
    for (const list of groups) {
      for (const p of list) {
        if (now - p.sentAt > HOLD_MS) this.net.dropped(p, "heldTooLong");
        else this.fromVnic(p);
      }
    }
  }

  private hold(p: SimPacket): void {
    const first = !this.held.has(p.dst);
    const list = this.held.get(p.dst) ?? [];
    this.held.set(p.dst, list);
    if (list.length >= MAX_HELD_PER_DESTINATION) {
      this.net.dropped(p, "heldFull");
      return;
    }
    list.push(p);
    if (first) this.emit("packet.unmapped", { src: p.src, dst: p.dst, proto: 1, length: p.bytes });
  }

  private handle(method: string, params: Record<string, unknown>): unknown {
    switch (method) {
      case "link.create":
      case "link.accept": {
        const peerUid = params.peerUid as string;
        const local = `${this.uid}:${++this.tokens}`;
        const remote = method === "link.accept" ? sdpToken(params.description) : null;
        this.replaceLink({ peerUid, local, remote, state: "new", checking: false });
        if (remote !== null) this.net.gatherCandidates(this, peerUid);
        const type = method === "link.create" ? "offer" : "answer";
        return { description: { type, sdp: this.net.fakeSdp(local) } };
      }
      case "link.complete": {
        const link = this.links.get(params.peerUid as string);
        if (!link) throw new Error("no such link");
        link.remote = sdpToken(params.description);
        link.state = "connecting";
        this.net.gatherCandidates(this, link.peerUid);
        this.net.checkIce(this, link);
        return {};
      }
      case "link.remove": {
        const link = this.links.get(params.peerUid as string);
        if (link && !params.relayOnly) this.removeLink(link);
        return {};
      }
      case "link.query": {
        const peer = params.peerUid as string | undefined;
        const list = peer ? [this.links.get(peer)].filter((l) => l !== undefined) : [...this.links.values()];
        return list.map((l) =>
          linkInfo(l.peerUid, { state: l.state, path: l.state === "connected" ? "host" : null }),
        );
      }
      case "route.set": {
        const r = params as unknown as RouteInfo;
        const old = this.routes.get(r.prefix);
        if (!old && !isHostPrefix(r.prefix)) this.prefixRoutes++;
        const counters =
          old?.peerUid === r.peerUid
            ? { txPackets: old.txPackets, txBytes: old.txBytes, rxPackets: old.rxPackets }
            : { txPackets: 0, txBytes: 0, rxPackets: 0 };
        this.routes.set(r.prefix, {
          prefix: r.prefix,
          peerUid: r.peerUid,
          via: r.via ?? null,
          mapTo: null,
          ...counters,
        });
        this.resubmitHeld();
        return {};
      }
      case "route.remove":
        if (this.routes.delete(params.prefix as string) && !isHostPrefix(params.prefix as string))
          this.prefixRoutes--;
        return {};
      case "route.query":
        return [...this.routes.values()];
      case "icc.send": {
        const peerUid = params.peerUid as string;
        if (!this.isConnected(peerUid)) throw new Error("no connected link");
        this.net.icc(this, peerUid, params.data);
        return {};
      }
      default:
        return {};
    }
  }

  private replaceLink(link: FakeLink): void {
    const old = this.links.get(link.peerUid);
    if (old) this.removeLink(old);
    this.links.set(link.peerUid, link);
  }

  /** Removes a link; the peer's side, if connected to it, sees it close (the DTLS close reaches it). */
  private removeLink(link: FakeLink): void {
    this.links.delete(link.peerUid);
    this.net.closedBy(this, link);
  }
}

const hostPrefixes = new Map<string, string>();

/** hostPrefix of an address, cached (the simulator's addresses are few and looked up per packet). */
function hostPrefixOf(address: string): string {
  let prefix = hostPrefixes.get(address);
  if (prefix === undefined) {
    prefix = hostPrefix(address);
    hostPrefixes.set(address, prefix);
  }
  return prefix;
}

function isHostPrefix(prefix: string): boolean {
  return prefix.endsWith(prefix.includes(":") ? "/128" : "/32");
}

function sdpToken(description: unknown): string {
  const sdp = (description as { sdp?: string } | undefined)?.sdp ?? "";
  return sdp.split(" ", 1)[0] as string;
}
