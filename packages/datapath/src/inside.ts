import { rtpClock } from "./delay-gate.js";
import { type Fib, ownTraffic } from "./fib.js";
import type { Link } from "./link.js";
import { META_GSO, readVnetHdr, toPlainPackets, VNET_HDR_BYTES } from "./offload.js";
import {
  addressText,
  dstOffset,
  ipPacketLength,
  ipVersion,
  isMulticastDestination,
  srcOffset,
} from "./packet.js";
import { PacketView } from "./packet-view.js";
import { IPV6_MIN_MTU, TooBig } from "./too-big.js";
import type { TxQueue } from "./tx-queue.js";
import type { HeldPackets, UnmappedPackets } from "./unmapped.js";
import type { FrameBuilders } from "./wire/index.js";

export interface UnmappedReport {
  src: string;
  dst: string;
  proto: number;
  length: number;
}

/**
 * vNIC -> link: each packet read from the vNIC is routed by longest-prefix match on its
 * destination and appended to its next-hop link's frame; frames are sent once per batch.
 * With offload, a packet may be a TCP super-packet with a partial checksum (its virtio-net
 * header sits right before it); it crosses the link whole when the peer takes offload frames.
 * With a send queue, each event-loop turn sends at most `turnBytes`; what the vNIC delivered
 * beyond that waits in the queue (FQ-CoDel, see tx-queue.ts) instead of in the TUN device.
 */
export class Inside {
  /** While held packets are routed again: when they were first held. */
  private heldSince: number | undefined;
  /** The packet being held has a route (only its link is missing). */
  private holdRouted = true;
  /** The packet being routed (from a batch, or resubmitted). */
  private readonly view = new PacketView();
  private drainScheduled = false;
  private readonly tooBig = new TooBig();
  /** Told when the send queue starts and stops holding packets (native forwarding waits behind it). */
  onQueueBusy: ((busy: boolean) => void) | null = null;
  private queueBusy = false;

  constructor(
    private readonly fib: Fib,
    private readonly unmapped: UnmappedPackets,
    private readonly options: { hopLimit: number; turnBytes: number },
    private readonly frames: FrameBuilders<Link>,
    private readonly reportUnmapped: (report: UnmappedReport) => void,
    private readonly txQueue: TxQueue | null = null,
  ) {}

  /** Handles one batch of packets read from the vNIC (buf is reused after this returns). */
  onBatch(buf: Buffer, offsets: ArrayLike<number>, lengths: ArrayLike<number>, count: number): void {
    const counters = this.fib.vnicCounters;
    const vnet = this.fib.vnic?.vnetHdr === true;
    const p = this.view;
    const queue = this.txQueue;
    // Straight through while nothing waits; what is beyond this turn's budget is queued.
    let direct = queue === null ? Number.POSITIVE_INFINITY : queue.isEmpty ? this.options.turnBytes : 0;
    const now = queue === null ? 0 : rtpClock();
    let immediate = 0;
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number;
      const len = lengths[i] as number;
      counters.rx(1, len);
      p.plain(buf, off, len);
      if (vnet && (off < VNET_HDR_BYTES || !readVnetHdr(buf, off - VNET_HDR_BYTES, p))) {
        counters.drop("offloadUnsupported");
        continue;
      }
      if (direct > 0) {
        direct -= len;
        immediate++;
        this.route(p);
      } else {
        (queue as TxQueue).enqueue(p, now);
      }
    }
    this.frames.flush();
    if (queue === null) return;
    queue.delay.recordImmediate(immediate);
    if (!queue.isEmpty) this.scheduleDrain();
  }

  private setQueueBusy(busy: boolean): void {
    if (busy === this.queueBusy) return;
    this.queueBusy = busy;
    this.onQueueBusy?.(busy);
  }

  private scheduleDrain(): void {
    this.setQueueBusy(true);
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(this.drain);
  }

  /** One turn's share of the send queue; the vNIC is read again before the next share. */
  private readonly drain = (): void => {
    this.drainScheduled = false;
    const queue = this.txQueue as TxQueue;
    queue.dequeue(this.options.turnBytes, rtpClock(), this.routeQueued);
    this.frames.flush();
    if (!queue.isEmpty) this.scheduleDrain();
    else this.setQueueBusy(false);
  };

  private readonly routeQueued = (p: PacketView): void => this.route(p);

  /** Routes packets that waited elsewhere (e.g. in a removed link's queue; always plain). */
  resubmit(packets: Buffer[]): void {
    for (const p of packets) this.route(this.view.plain(p, 0, p.length));
    this.frames.flush();
  }

  /** Routes held packets again; those held once more keep the time they were first held. */
  resubmitHeld(groups: HeldPackets[]): void {
    for (const { since, packets } of groups) {
      this.heldSince = since;
      for (const p of packets) this.route(this.view.plain(p, 0, p.length));
    }
    this.heldSince = undefined;
    this.frames.flush();
  }

  /** Drops what waits in the send queue. */
  close(): void {
    this.txQueue?.clear();
    this.setQueueBusy(false);
  }

  private route(p: PacketView): void {
    const { buf, off, len, meta } = p;
    const fib = this.fib;
    const version = ipVersion(buf, off);
    if (ipPacketLength(buf, off, len) !== len) {
      fib.vnicCounters.drop("malformed");
      return;
    }
    if (isMulticastDestination(buf, off, version)) {
      fib.vnicCounters.drop("multicast");
      return;
    }
    const route = fib.routes.lookup(buf, off + dstOffset(version), version, ownTraffic);
    if (route && route.value.nextHop === fib.ownUid) {
      // A prefix behind this node came back from the kernel: no link carries it.
      fib.vnicCounters.drop("noRoute");
      return;
    }
    if (route) {
      route.value.txPackets++;
      route.value.txBytes += len;
    }
    const link = route ? fib.links.get(route.value.nextHop) : undefined;
    if (!link || link.state === "closed" || link.state === "failed") {
      this.holdRouted = route !== null;
      // Queues copy packets without their offload state: hold them as plain packets.
      if (meta === 0) this.hold(buf, off, len, version);
      else if (!toPlainPackets(p, this.holdPlain)) fib.vnicCounters.drop("malformed");
      return;
    }
    if (!link.isConnected) {
      if (meta === 0) link.pending.push(buf, off, len);
      else if (!toPlainPackets(p, (b, o, l) => link.pending.push(b, o, l))) {
        fib.vnicCounters.drop("malformed");
      }
      return;
    }
    // Too big for one datagram on the link: like a router, refuse what must not be fragmented
    // (IPv4 with DF, IPv6 while the path takes 1280) with ICMP; the link fragments the rest.
    // A super-packet is cut into fragments whatever its size: its segments are the sender's MSS.
    if (len > link.tooBigAbove && (meta & META_GSO) === 0 && this.refuseTooBig(link, buf, off, len, version))
      return;
    this.frames.append(link, this.options.hopLimit, p);
  }

  /** Answers a packet too big for the link with ICMP; false (send it in fragments) when it may not. */
  private refuseTooBig(link: Link, buf: Uint8Array, off: number, len: number, version: number): boolean {
    const mtu = link.tooBigAbove;
    const mayRefuse = version === 4 ? ((buf[off + 6] as number) & 0x40) !== 0 : mtu >= IPV6_MIN_MTU;
    const vnic = this.fib.vnic;
    // When the rate limit holds the error back, the packet goes in fragments: nothing is lost.
    if (!mayRefuse || !vnic || !this.tooBig.answer(buf, off, len, version, mtu, Date.now(), vnic))
      return false;
    this.fib.vnicCounters.drop("tooBig");
    return true;
  }

  private readonly holdPlain = (buf: Uint8Array, off: number, len: number): void => {
    this.hold(buf, off, len, ipVersion(buf, off));
  };

  private hold(buf: Uint8Array, off: number, len: number, version: number): void {
    const now = Date.now();
    const since = this.heldSince ?? now;
    holdPacket(this.unmapped, this.reportUnmapped, buf, off, len, version, now, since, this.holdRouted);
  }
}

/** Holds a plain packet for its destination; reports it when the controller is to be told (packet.unmapped). */
export function holdPacket(
  held: UnmappedPackets,
  report: (report: UnmappedReport) => void,
  buf: Uint8Array,
  off: number,
  len: number,
  version: number,
  now: number,
  since: number,
  routed = true,
): void {
  const dst = addressText(buf, off + dstOffset(version), version);
  if (held.hold(dst, buf, off, len, now, since, routed)) {
    report({
      src: addressText(buf, off + srcOffset(version), version),
      dst,
      proto: version === 4 ? (buf[off + 9] as number) : (buf[off + 6] as number),
      length: len,
    });
  }
}
