import { rtpClock } from "./delay-gate.js";
import type { Fib } from "./fib.js";
import { FrameBuilder } from "./frame.js";
import type { Link } from "./link.js";
import { META_GSO, type PacketOffload, readVnetHdr, toPlainPackets, VNET_HDR_BYTES } from "./offload.js";
import {
  addressText,
  dstOffset,
  ipPacketLength,
  ipVersion,
  isMulticastDestination,
  srcOffset,
} from "./packet.js";
import { IPV6_MIN_MTU, TooBig } from "./too-big.js";
import type { TxQueue } from "./tx-queue.js";
import type { HeldPackets, UnmappedPackets } from "./unmapped.js";

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
  private readonly builders = new Map<Link, FrameBuilder>();
  private readonly touched: FrameBuilder[] = [];
  /** While held packets are routed again: when they were first held. */
  private heldSince: number | undefined;
  private readonly po: PacketOffload = { meta: 0, csumStart: 0, gsoSize: 0 };
  private drainScheduled = false;
  private readonly tooBig = new TooBig();

  constructor(
    private readonly fib: Fib,
    private readonly unmapped: UnmappedPackets,
    private readonly options: { maxFrameBytes: number; hopLimit: number; turnBytes: number },
    private readonly reportUnmapped: (report: UnmappedReport) => void,
    private readonly txQueue: TxQueue | null = null,
  ) {}

  /** Handles one batch of packets read from the vNIC (buf is reused after this returns). */
  onBatch(buf: Buffer, offsets: ArrayLike<number>, lengths: ArrayLike<number>, count: number): void {
    const counters = this.fib.vnicCounters;
    const vnet = this.fib.vnic?.vnetHdr === true;
    const po = this.po;
    const queue = this.txQueue;
    // Straight through while nothing waits; what is beyond this turn's budget is queued.
    let direct = queue === null ? Number.POSITIVE_INFINITY : queue.isEmpty ? this.options.turnBytes : 0;
    const now = queue === null ? 0 : rtpClock();
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number;
      const len = lengths[i] as number;
      counters.rx(1, len);
      if (!vnet) {
        po.meta = 0;
        po.csumStart = 0;
        po.gsoSize = 0;
      } else if (off < VNET_HDR_BYTES || !readVnetHdr(buf, off - VNET_HDR_BYTES, po)) {
        counters.drop("offloadUnsupported");
        continue;
      }
      if (direct > 0) {
        direct -= len;
        this.route(buf, off, len, po.meta, po.csumStart, po.gsoSize);
      } else {
        (queue as TxQueue).enqueue(buf, off, len, po.meta, po.csumStart, po.gsoSize, now);
      }
    }
    this.flushTouched();
    if (queue !== null && !queue.isEmpty) this.scheduleDrain();
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(this.drain);
  }

  /** One turn's share of the send queue; the vNIC is read again before the next share. */
  private readonly drain = (): void => {
    this.drainScheduled = false;
    const queue = this.txQueue as TxQueue;
    queue.dequeue(this.options.turnBytes, rtpClock(), this.routeQueued);
    this.flushTouched();
    if (!queue.isEmpty) this.scheduleDrain();
  };

  private readonly routeQueued = (buf: Buffer, meta: number, csumStart: number, gsoSize: number): void => {
    this.route(buf, 0, buf.length, meta, csumStart, gsoSize);
  };

  /** Routes packets that waited elsewhere (e.g. in a removed link's queue; always plain). */
  resubmit(packets: Buffer[]): void {
    for (const p of packets) this.route(p, 0, p.length, 0, 0, 0);
    this.flushTouched();
  }

  /** Routes held packets again; those held once more keep the time they were first held. */
  resubmitHeld(groups: HeldPackets[]): void {
    for (const { since, packets } of groups) {
      this.heldSince = since;
      for (const p of packets) this.route(p, 0, p.length, 0, 0, 0);
    }
    this.heldSince = undefined;
    this.flushTouched();
  }

  /** Drops what waits in the send queue. */
  close(): void {
    this.txQueue?.clear();
  }

  forgetLink(link: Link): void {
    this.builders.delete(link);
  }

  private route(
    buf: Buffer | Uint8Array,
    off: number,
    len: number,
    meta: number,
    csumStart: number,
    gsoSize: number,
  ): void {
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
    const route = fib.routes.lookup(buf, off + dstOffset(version), version);
    const link = route ? fib.links.get(route.value.nextHop) : undefined;
    if (!link || link.state === "closed" || link.state === "failed") {
      // Queues copy packets without their offload state: hold them as plain packets.
      if (meta === 0) this.hold(buf, off, len, version);
      else if (!toPlainPackets(buf, off, len, meta, csumStart, gsoSize, this.holdPlain))
        fib.vnicCounters.drop("malformed");
      return;
    }
    if (!link.isConnected) {
      if (meta === 0) link.pending.push(buf, off, len);
      else if (
        !toPlainPackets(buf, off, len, meta, csumStart, gsoSize, (b, o, l) => link.pending.push(b, o, l))
      ) {
        fib.vnicCounters.drop("malformed");
      }
      return;
    }
    let builder = this.builders.get(link);
    if (!builder) {
      builder = new FrameBuilder(link, this.options.maxFrameBytes, this.options.hopLimit);
      this.builders.set(link, builder);
    }
    // Too big for one datagram on the link: like a router, refuse what must not be fragmented
    // (IPv4 with DF, IPv6 while the path takes 1280) with ICMP; the link fragments the rest.
    // A super-packet is cut into fragments whatever its size: its segments are the sender's MSS.
    if (len > link.tooBigAbove && (meta & META_GSO) === 0 && this.refuseTooBig(link, buf, off, len, version))
      return;
    if (builder.isEmpty) this.touched.push(builder);
    builder.append(buf, off, len, meta, csumStart, gsoSize);
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
    const dst = addressText(buf, off + dstOffset(version), version);
    const now = Date.now();
    if (this.unmapped.hold(dst, buf, off, len, now, this.heldSince ?? now)) {
      this.reportUnmapped({
        src: addressText(buf, off + srcOffset(version), version),
        dst,
        proto: version === 4 ? (buf[off + 9] as number) : (buf[off + 6] as number),
        length: len,
      });
    }
  }

  private flushTouched(): void {
    for (const b of this.touched) b.flush();
    this.touched.length = 0;
  }
}
