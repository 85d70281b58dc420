import { DatapathTune, parsePrefix, prefixContains, type RouteInfo, type Signal } from "@tincan/protocol";
import type { FakeDatapath, FakeLink, SimPacket } from "./fake-datapath.js";
import type { SimNode } from "./sim-node.js";
import type { VirtualClock } from "./virtual-clock.js";

export interface SimParams {
  /** One way, controller -> XMPP server -> controller. */
  signalLatencyMs: number;
  /** One way over a link (per overlay hop). */
  linkLatencyMs: number;
  /** From link.complete until ICE and DTLS connected both sides. */
  iceDelayMs: number;
  /** A setup whose other side does not match by then fails (ICE found no path). */
  iceFailMs: number;
  /** A datapath reports `disconnected` this long after its peer vanished (crash, partition). */
  deadAfterMs: number;
  /** The XMPP server marks a crashed client offline this long after it vanished. */
  xmppDeadAfterMs: number;
  /** SDP size in offers and answers; candidates per side and setup. */
  descriptionBytes: number;
  candidates: number;
  /** The datapath's hop limit (`tune.hopLimit`; default: the datapath's). */
  hopLimit: number;
}

export const DEFAULT_PARAMS: SimParams = {
  signalLatencyMs: 50,
  linkLatencyMs: 10,
  iceDelayMs: 1500,
  iceFailMs: 10_000,
  deadAfterMs: 10_000,
  xmppDeadAfterMs: 30_000,
  descriptionBytes: 600,
  candidates: 2,
  hopLimit: DatapathTune.parse({}).hopLimit,
};

/** Message and byte counters of one node (XMPP: stanzas through the server; icc: over links). */
export interface Traffic {
  xmppStanzas: number;
  xmppBytes: number;
  iccMessages: number;
  iccBytes: number;
}

export interface PacketStats {
  sent: number;
  delivered: number;
  hops: number[];
  drops: Map<string, number>;
}

/** XMPP stanza framing around a payload (message/presence element, JIDs, namespaces). */
const STANZA_OVERHEAD = 120;
const PRESENCE_BYTES = 330;

/**
 * The world between the nodes: an XMPP server (presence to every member of the one roster group,
 * signals with a latency) and the network under the links (ICE pairing, liveness, partitions,
 * packet carriage). Counts what each node sends and receives.
 */
export class SimNetwork {
  readonly nodes = new Map<string, SimNode>();
  private readonly byFullJid = new Map<string, SimNode>();
  /** Nodes whose presence the members have (online for the XMPP server). */
  readonly online = new Map<string, SimNode>();
  private partition: ((n: SimNode) => number) | null = null;
  readonly packets: PacketStats = { sent: 0, delivered: 0, hops: [], drops: new Map() };
  private readonly sdpPadding: string;
  private readonly candidateText: string;
  private readonly sizes = new WeakMap<object, number>();

  constructor(
    readonly clock: VirtualClock,
    readonly params: SimParams,
  ) {
    this.sdpPadding = "v".repeat(Math.max(0, params.descriptionBytes - 30));
    this.candidateText = `candidate:1 1 UDP 2122252543 10.0.0.1 40000 typ host ${"c".repeat(20)}`;
  }

  add(node: SimNode): void {
    this.nodes.set(node.uid, node);
    this.byFullJid.set(node.fullJid, node);
  }

  /** Whether two nodes can signal and link (a partition cuts both). */
  reachable(a: SimNode, b: SimNode): boolean {
    return this.partition === null || this.partition(a) === this.partition(b);
  }

  // ---- XMPP ------------------------------------------------------------------------------------------

  /** A node logs in and sends presence: the server sends it every member's presence, and it to every member. */
  login(node: SimNode): void {
    count(node.traffic, PRESENCE_BYTES * (this.online.size + 1), this.online.size + 1);
    for (const m of this.online.values()) count(m.traffic, PRESENCE_BYTES, 1);
    this.clock.at(this.params.signalLatencyMs, () => {
      if (!node.up) return;
      const before = [...this.online.values()];
      this.online.set(node.uid, node);
      for (const m of before) m.memberOnline(node);
      for (const m of before) node.memberOnline(m);
    });
  }

  /** The server sends the node's unavailable presence to every member (after `delayMs`). */
  logout(node: SimNode, delayMs: number): void {
    this.clock.at(delayMs, () => {
      if (this.online.get(node.uid) !== node) return;
      this.online.delete(node.uid);
      for (const m of this.online.values()) {
        count(m.traffic, PRESENCE_BYTES, 1);
        m.memberOffline(node);
      }
    });
  }

  sendSignal(from: SimNode, fullJid: string, signal: Signal): void {
    const bytes = STANZA_OVERHEAD + 2 * fullJid.length + JSON.stringify(signal).length;
    count(from.traffic, bytes, 1);
    const to = this.byFullJid.get(fullJid);
    if (!to) return;
    this.clock.at(this.params.signalLatencyMs, () => {
      if (!to.up || this.online.get(to.uid) !== to || !this.reachable(from, to)) return;
      count(to.traffic, bytes, 1);
      to.onSignal(from, signal);
    });
  }

  fakeSdp(token: string): string {
    return `${token} ${this.sdpPadding}`;
  }

  // ---- links -----------------------------------------------------------------------------------------

  /** The datapath's local candidates of a setup, reported one by one (they go out as signals). */
  gatherCandidates(dp: FakeDatapath, peerUid: string): void {
    const link = dp.links.get(peerUid);
    for (let i = 0; i < this.params.candidates; i++) {
      this.clock.at(5 * (i + 1), () => {
        if (dp.links.get(peerUid) !== link) return;
        dp.emit("link.candidate", { peerUid, candidate: this.candidateText, mid: "0" });
      });
    }
  }

  /** The offerer's side applied the answer: ICE connects when both sides match, else fails later. */
  checkIce(dp: FakeDatapath, link: FakeLink): void {
    if (link.checking) return;
    link.checking = true;
    const attempt = (last: boolean) => {
      if (dp.links.get(link.peerUid) !== link || link.state !== "connecting") return;
      const peer = this.nodes.get(link.peerUid);
      const theirs = peer?.dp.links.get(dp.uid);
      const self = this.nodes.get(dp.uid);
      const ok =
        peer !== undefined &&
        self !== undefined &&
        dp.alive &&
        peer.dp.alive &&
        this.reachable(self, peer) &&
        theirs?.local === link.remote &&
        theirs.remote === link.local;
      if (ok && theirs && peer) {
        link.state = theirs.state = "connected";
        link.connectedAt = theirs.connectedAt = this.clock.now();
        dp.emit("link.state", { peerUid: peer.uid, state: "connected", path: "host" });
        peer.dp.emit("link.state", { peerUid: dp.uid, state: "connected", path: "host" });
        dp.resubmitHeld();
        peer.dp.resubmitHeld();
        return;
      }
      if (!last) {
        this.clock.at(this.params.iceFailMs - this.params.iceDelayMs, () => attempt(true));
        return;
      }
      link.state = "failed";
      dp.emit("link.state", { peerUid: link.peerUid, state: "failed", reason: "ice" });
    };
    this.clock.at(this.params.iceDelayMs, () => attempt(false));
  }

  /** A connected link was removed on one side: the other side sees it closed. */
  closedBy(dp: FakeDatapath, link: FakeLink): void {
    this.clock.at(this.params.linkLatencyMs, () => {
      const peer = this.nodes.get(link.peerUid);
      const theirs = peer?.dp.links.get(dp.uid);
      if (!peer || !theirs || theirs.remote !== link.local || theirs.state !== "connected") return;
      theirs.state = "failed";
      peer.dp.emit("link.state", { peerUid: dp.uid, state: "closed" });
    });
  }

  /** The peer vanished or became unreachable: after deadAfterMs the connected side reports it. */
  private linkDies(dp: FakeDatapath, link: FakeLink): void {
    this.clock.at(this.params.deadAfterMs, () => {
      const peer = this.nodes.get(link.peerUid);
      const self = this.nodes.get(dp.uid);
      if (dp.links.get(link.peerUid) !== link || link.state !== "connected" || !peer || !self) return;
      if (peer.dp.alive && this.reachable(self, peer) && peer.dp.links.get(dp.uid)?.remote === link.local)
        return;
      link.state = "disconnected";
      dp.emit("link.state", { peerUid: link.peerUid, state: "disconnected" });
    });
  }

  /** The node's host died: no goodbye on XMPP or links. */
  crashed(node: SimNode): void {
    for (const link of node.dp.links.values()) {
      const peer = this.nodes.get(link.peerUid);
      const theirs = peer?.dp.links.get(node.uid);
      if (peer && theirs?.state === "connected") this.linkDies(peer.dp, theirs);
    }
    this.logout(node, this.params.xmppDeadAfterMs);
  }

  /** The node shut down: its datapath closes its links, its XMPP session says unavailable. */
  left(node: SimNode): void {
    for (const link of node.dp.links.values()) this.closedBy(node.dp, link);
    this.logout(node, this.params.signalLatencyMs);
  }

  /** Splits the world by `sideOf` (signals and links cut between sides); null heals it. */
  setPartition(sideOf: ((n: SimNode) => number) | null): void {
    this.partition = sideOf;
    if (!sideOf) return;
    for (const node of this.nodes.values()) {
      if (!node.up) continue;
      for (const link of node.dp.links.values()) {
        const peer = this.nodes.get(link.peerUid);
        if (link.state === "connected" && peer && !this.reachable(node, peer)) this.linkDies(node.dp, link);
      }
    }
  }

  icc(dp: FakeDatapath, peerUid: string, data: unknown): void {
    const bytes = this.iccBytes(data);
    const from = this.nodes.get(dp.uid);
    const to = this.nodes.get(peerUid);
    if (!from || !to) return;
    countIcc(from.traffic, bytes);
    this.clock.at(this.params.linkLatencyMs, () => {
      if (!to.up || !to.dp.isConnected(dp.uid) || !this.reachable(from, to)) return;
      countIcc(to.traffic, bytes);
      to.dp.emit("icc.message", { peerUid: dp.uid, data: data as never });
    });
  }

  /** Payload size of an icc message (one announcement goes to every neighbour: sized once). */
  private iccBytes(data: unknown): number {
    if (typeof data !== "object" || data === null) return JSON.stringify(data).length + 8;
    const known = this.sizes.get(data);
    if (known !== undefined) return known;
    const bytes = JSON.stringify(data).length + 8;
    this.sizes.set(data, bytes);
    return bytes;
  }

  // ---- packets ---------------------------------------------------------------------------------------

  /** Sends a packet from `src`'s vNIC to address `dst`. */
  send(src: SimNode, dst: string, bytes = 100): void {
    this.packets.sent++;
    src.dp.fromVnic({
      src: src.ipv4,
      dst,
      hops: 0,
      hopLimit: this.params.hopLimit,
      sentAt: this.clock.now(),
      bytes,
    });
  }

  carry(dp: FakeDatapath, nextUid: string, p: SimPacket): void {
    const from = this.nodes.get(dp.uid);
    this.clock.at(this.params.linkLatencyMs, () => {
      const to = this.nodes.get(nextUid);
      if (!from || !to?.up || !this.reachable(from, to) || !to.dp.isConnected(dp.uid))
        return this.dropped(p, "linkDead");
      to.dp.fromLink(dp.uid, { ...p, hops: p.hops + 1 });
    });
  }

  delivered(p: SimPacket): void {
    this.packets.delivered++;
    this.packets.hops.push(p.hops);
  }

  dropped(_p: SimPacket, reason: string): void {
    this.packets.drops.set(reason, (this.packets.drops.get(reason) ?? 0) + 1);
  }

  resetPackets(): void {
    this.packets.sent = this.packets.delivered = 0;
    this.packets.hops = [];
    this.packets.drops.clear();
  }

  /** Longest-prefix match for routes that are not host routes (router mode prefixes). */
  longestMatch<R extends RouteInfo>(routes: ReadonlyMap<string, R>, dst: string): R | undefined {
    let best: { len: number; r: R } | undefined;
    for (const r of routes.values()) {
      const p = parsePrefix(r.prefix);
      if (p.length === 32 || (best && p.length <= best.len)) continue;
      if (prefixContains(p, dst)) best = { len: p.length, r };
    }
    return best?.r;
  }
}

function count(t: Traffic, bytes: number, stanzas: number): void {
  t.xmppStanzas += stanzas;
  t.xmppBytes += bytes;
}

function countIcc(t: Traffic, bytes: number): void {
  t.iccMessages++;
  t.iccBytes += bytes;
}
