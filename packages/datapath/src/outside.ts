import type { LinkState } from "@tincan/protocol";
import type { Counters } from "./counters.js";
import { type Fib, ownTraffic, type RouteEntry } from "./fib.js";
import { holdPacket, type UnmappedReport } from "./inside.js";
import type { Link } from "./link.js";
import { META_PARTIAL, offloadMetaValid, toPlainPackets, VNET_HDR_BYTES, writeVnetHdr } from "./offload.js";
import { dstOffset, ipVersion, srcOffset } from "./packet.js";
import { PacketView } from "./packet-view.js";
import { translateIpv4 } from "./translate.js";
import type { HeldPackets, UnmappedPackets } from "./unmapped.js";
import {
  FRAME_HEADER,
  type FrameBuilders,
  frameHopLimit,
  isPacketFrame,
  readFramePacket,
} from "./wire/index.js";

/**
 * A member routed over its own link may still send over the overlay (via neighbours) while that link
 * is being set up and for this long after it connected: packets it sent before the link came up
 * arrive after our route moved to the link, and must not be lost when a direct link replaces an
 * overlay path. Until then its packets could only come over the overlay, as a `via` route's do.
 */
export const DIRECT_LINK_GRACE_MS = 2000;

/**
 * A member's own link is being set up (never connected yet), or connected less than
 * DIRECT_LINK_GRACE_MS before `now` (the clock `connectedAt` was read on). With no link, or one that
 * failed or has been up longer, the strict rule holds.
 */
export function inDirectLinkGrace(state: LinkState, connectedAt: number | null, now: number): boolean {
  if (connectedAt === null) return state === "new" || state === "connecting";
  return now - connectedAt < DIRECT_LINK_GRACE_MS;
}

/**
 * Link -> vNIC: each packet of a received frame needs a source routed to a member (or a prefix
 * behind one), never to this node. A packet written to the vNIC (for us, translated for SocialVPN,
 * or for a prefix behind us) must also come on its source's own link unless that source is routed
 * `via` a neighbour or its own link is being set up or connected less than DIRECT_LINK_GRACE_MS ago
 * (anti-spoofing, like WireGuard's allowed IPs); a packet in transit is
 * forwarded from any link while the hop limit lasts, as the overlay's routes are not symmetric and
 * the node it is for checks it. Packets of offload frames keep their offload state (TCP
 * super-packet, partial checksum) to the vNIC, or are made plain when the vNIC has no offload.
 */
export class Outside {
  private readonly vnetHdr = new Uint8Array(VNET_HDR_BYTES);
  /** Packets were written to the vNIC since the last readReplies(). */
  private wroteVnic = false;
  /** The packet of the received frame being delivered. */
  private readonly view = new PacketView();

  /** While held transit packets go on: when they were first held. */
  private heldSince: number | undefined;

  /**
   * @param frames the links' frame builders (tune.maxFrameBytes), for packets in transit; shared with Inside
   * @param parked packets in transit with no way on yet (see park); without it they are dropped `noRoute`
   */
  constructor(
    private readonly fib: Fib,
    private readonly frames: FrameBuilders<Link>,
    private readonly parked?: { held: UnmappedPackets; report: (report: UnmappedReport) => void },
  ) {}

  onFrame(link: Link, frame: Buffer): void {
    if (!isPacketFrame(frame)) {
      link.counters.drop("badFrame");
      return;
    }
    // A peer cannot make packets live longer than our own hop limit allows.
    const hops = Math.min(frameHopLimit(frame), this.fib.hopLimit);
    const p = this.view;
    let off = FRAME_HEADER;
    while (off < frame.length) {
      off = readFramePacket(frame, off, p);
      if (off < 0) {
        link.counters.drop("malformed");
        break;
      }
      link.counters.rx(1, p.len);
      if (offloadMetaValid(p)) this.deliver(link, p, hops);
      else link.counters.drop("malformed");
    }
    this.frames.flush();
  }

  /**
   * Ends a batch of received frames: when it wrote to the vNIC, reads the vNIC at once. The
   * kernel answers a packet while we write it (a ping's echo reply, TCP ACKs), so the answer
   * leaves in this turn instead of the next event-loop iteration's.
   */
  readReplies(): void {
    if (!this.wroteVnic) return;
    this.wroteVnic = false;
    this.fib.vnic?.readNow?.();
  }

  private deliver(link: Link, p: PacketView, hops: number): void {
    const fib = this.fib;
    const { buf, off } = p;
    const version = ipVersion(buf, off);

    if (version === 4 && fib.translate) {
      // SocialVPN: the link says who sent it; addresses are rewritten to our local view, so the
      // peer's own numbering never reaches our stack and it cannot pose as another buddy.
      const localOfPeer = fib.localIpv4Of(link.peerUid);
      if (localOfPeer === undefined || fib.ownIpv4 === null) {
        link.counters.drop("unmappedPeer");
        return;
      }
      translateIpv4(buf, off, p.len, localOfPeer, fib.ownIpv4, (p.meta & META_PARTIAL) !== 0);
      this.writeToVnic(p);
      return;
    }

    const source = fib.routes.lookup(buf, off + srcOffset(version), version);
    const forUs = fib.isOwnAddress(buf, off + dstOffset(version), version);
    if (!source && !forUs && this.parked && !fib.isOwnAddress(buf, off + srcOffset(version), version)) {
      // In transit from a source not routed here yet: its route request may still be on its way.
      if (hops <= 1) link.counters.drop("hopLimit");
      else this.park(link.counters, p, version);
      return;
    }
    if (
      !source ||
      source.value.peerUid === fib.ownUid ||
      fib.isOwnAddress(buf, off + srcOffset(version), version)
    ) {
      link.counters.drop("spoofed");
      return;
    }
    if (forUs) {
      this.deliverToVnic(link, p, source.value, version);
      return;
    }
    this.transit(link, p, hops, version, source.value);
  }

  /**
   * A source routed over its own link must come on it; one routed `via` a neighbour is a member
   * reached over the overlay, whose packets may come on any link (routes need not be symmetric).
   * So may a directly routed source's packets while its link is young (see DIRECT_LINK_GRACE_MS).
   * A source routed only for transit counts by the route it has besides, if any.
   */
  private deliverToVnic(link: Link, p: PacketView, route: RouteEntry, version: number): void {
    const source = route.transit
      ? this.fib.routes.lookup(p.buf, p.off + srcOffset(version), version, ownTraffic)?.value
      : route;
    if (
      !source ||
      source.peerUid === this.fib.ownUid ||
      (source.nextHop !== link.peerUid && source.via === null && !this.directLinkYoung(source.nextHop))
    ) {
      link.counters.drop("spoofed");
      return;
    }
    source.rxPackets++;
    this.writeToVnic(p);
  }

  private directLinkYoung(peerUid: string): boolean {
    const own = this.fib.links.get(peerUid);
    return own !== undefined && inDirectLinkGrace(own.state, own.connectedAt, performance.now());
  }

  private transit(from: Link, p: PacketView, hops: number, version: number, source: RouteEntry): void {
    const route = this.fib.routes.lookup(p.buf, p.off + dstOffset(version), version);
    if (route && route.value.nextHop === this.fib.ownUid) {
      // A prefix behind this node (router mode): the kernel forwards it on.
      this.deliverToVnic(from, p, source, version);
      return;
    }
    source.rxPackets++;
    const next = route ? this.fib.links.get(route.value.nextHop) : undefined;
    if (hops <= 1) {
      from.counters.drop("hopLimit");
      return;
    }
    if (!next?.isConnected) {
      this.park(from.counters, p, version);
      return;
    }
    if (next === from) {
      from.counters.drop("loop");
      return;
    }
    this.frames.append(next, hops - 1, p);
  }

  /**
   * A packet in transit with no way on yet: its destination's or its source's route is on demand and
   * not set yet (a route request still on its way to our controller, or one that went another way
   * before the path changed, or a route just trimmed), or its link is being set up. The
   * datapath does not know the ring, so it cannot choose a next hop itself: the packet is held like
   * our own packets (bounded, counted `unmappedExpired` when it waited too long) and reported as
   * packet.unmapped, and goes on when a route is set (the controller's greedy next hop) or a link
   * comes up (resubmitHeld; with our hop limit again, so a packet is held at most once per change).
   */
  private park(counters: Counters, p: PacketView, version: number): void {
    const parked = this.parked;
    if (!parked) {
      counters.drop("noRoute");
      return;
    }
    const now = Date.now();
    const since = this.heldSince ?? now;
    const keep = (buf: Uint8Array, off: number, len: number) =>
      holdPacket(parked.held, parked.report, buf, off, len, version, now, since);
    if (p.meta === 0) keep(p.buf, p.off, p.len);
    else if (!toPlainPackets(p, keep)) counters.drop("malformed");
  }

  /** Held transit packets go on by the routes as they are now (after a route or link change). */
  resubmitHeld(groups: HeldPackets[]): void {
    const fib = this.fib;
    const p = this.view;
    for (const { since, packets } of groups) {
      this.heldSince = since;
      for (const packet of packets) {
        p.plain(packet, 0, packet.length);
        const version = ipVersion(packet, 0);
        const source = fib.routes.lookup(packet, srcOffset(version), version);
        const route = fib.routes.lookup(packet, dstOffset(version), version);
        const next = route ? fib.links.get(route.value.nextHop) : undefined;
        if (source?.value.peerUid === fib.ownUid || route?.value.nextHop === fib.ownUid)
          fib.vnicCounters.drop("spoofed");
        else if (source && next?.isConnected) this.frames.append(next, fib.hopLimit, p);
        else this.park(fib.vnicCounters, p, version);
      }
    }
    this.heldSince = undefined;
    this.frames.flush();
  }

  private writeToVnic(p: PacketView): void {
    const vnic = this.fib.vnic;
    const counters = this.fib.vnicCounters;
    if (!vnic) {
      counters.drop("noVnic");
      return;
    }
    if (p.meta === 0) {
      this.writePlain(p.buf, p.off, p.len);
      return;
    }
    if (!vnic.offload) {
      if (!toPlainPackets(p, this.writePlain)) counters.drop("malformed");
      return;
    }
    const hdr = this.vnetHdr;
    if (!writeVnetHdr(hdr, p)) {
      counters.drop("malformed");
      return;
    }
    let ok: boolean;
    try {
      ok = vnic.write(p.buf, p.off, p.len, hdr);
    } catch {
      // The kernel refused the header (EINVAL): a bad packet from the peer.
      counters.drop("vnicRejected");
      return;
    }
    if (ok) {
      counters.tx(1, p.len);
      this.wroteVnic = true;
    } else counters.drop("vnicFull");
  }

  private readonly writePlain = (buf: Uint8Array, off: number, len: number): void => {
    const vnic = this.fib.vnic;
    const counters = this.fib.vnicCounters;
    let ok: boolean | undefined;
    try {
      ok = vnic?.write(buf, off, len);
    } catch {
      // The kernel (or the binding's own bounds check) refused a packet a peer sent.
      counters.drop("vnicRejected");
      return;
    }
    if (ok) {
      counters.tx(1, len);
      this.wroteVnic = true;
    } else counters.drop("vnicFull");
  };
}
