import type { Fib } from "./fib.js";
import { FrameBuilder } from "./frame.js";
import { FRAME_HEADER, FRAME_OFFLOAD, FRAME_PACKETS, type Link } from "./link.js";
import {
  META_GSO,
  META_KNOWN,
  META_PARTIAL,
  offloadMetaValid,
  toPlainPackets,
  VNET_HDR_BYTES,
  writeVnetHdr,
} from "./offload.js";
import { dstOffset, ipPacketLength, ipVersion, srcOffset } from "./packet.js";
import { translateIpv4 } from "./translate.js";

/**
 * Link -> vNIC: each packet of a received frame is accepted only if its source is routed to
 * the link it came on (anti-spoofing, like WireGuard's allowed IPs), then written to the vNIC
 * when it is for us (translated for SocialVPN), or forwarded to the next hop while the hop
 * limit lasts (multi-hop transit). Packets of offload frames keep their offload state (TCP
 * super-packet, partial checksum) to the vNIC, or are made plain when the vNIC has no offload.
 */
export class Outside {
  private readonly vnetHdr = new Uint8Array(VNET_HDR_BYTES);
  private readonly transitBuilders = new Map<Link, FrameBuilder>();
  private readonly touched: FrameBuilder[] = [];

  constructor(private readonly fib: Fib) {}

  onFrame(link: Link, frame: Buffer): void {
    const type = frame[0];
    if (frame.length < FRAME_HEADER || (type !== FRAME_PACKETS && type !== FRAME_OFFLOAD)) {
      link.counters.drop("badFrame");
      return;
    }
    // A peer cannot make packets live longer than our own hop limit allows.
    const hops = Math.min(frame[1] as number, this.fib.hopLimit);
    const end = frame.length;
    let off = FRAME_HEADER;
    while (off < end) {
      let meta = 0;
      let csumStart = 0;
      let gsoSize = 0;
      if (type === FRAME_OFFLOAD) {
        meta = frame[off++] as number;
        if (meta & META_PARTIAL) {
          csumStart = ((frame[off] as number) << 8) | (frame[off + 1] as number);
          off += 2;
        }
        if (meta & META_GSO) {
          gsoSize = ((frame[off] as number) << 8) | (frame[off + 1] as number);
          off += 2;
        }
        if (meta & ~META_KNOWN || off > end) {
          link.counters.drop("malformed");
          break;
        }
      }
      const len = ipPacketLength(frame, off, end - off);
      if (len < 0) {
        link.counters.drop("malformed");
        break;
      }
      link.counters.rx(1, len);
      if (offloadMetaValid(frame, off, len, meta, csumStart, gsoSize)) {
        this.deliver(link, frame, off, len, hops, meta, csumStart, gsoSize);
      } else {
        link.counters.drop("malformed");
      }
      off += len;
    }
    if (this.touched.length > 0) {
      for (const b of this.touched) b.flush();
      this.touched.length = 0;
    }
  }

  private deliver(
    link: Link,
    buf: Buffer,
    off: number,
    len: number,
    hops: number,
    meta: number,
    csumStart: number,
    gsoSize: number,
  ): void {
    const fib = this.fib;
    const version = ipVersion(buf, off);

    if (version === 4 && fib.translate) {
      // SocialVPN: the link says who sent it; addresses are rewritten to our local view, so the
      // peer's own numbering never reaches our stack and it cannot pose as another buddy.
      const localOfPeer = fib.localIpv4Of(link.peerUid);
      if (localOfPeer === undefined || fib.ownIpv4 === null) {
        link.counters.drop("unmappedPeer");
        return;
      }
      translateIpv4(buf, off, len, localOfPeer, fib.ownIpv4, (meta & META_PARTIAL) !== 0);
      this.writeToVnic(buf, off, len, meta, csumStart, gsoSize);
      return;
    }

    const source = fib.routes.lookup(buf, off + srcOffset(version), version);
    if (!source || source.value.nextHop !== link.peerUid) {
      link.counters.drop("spoofed");
      return;
    }
    if (fib.isOwnAddress(buf, off + dstOffset(version), version)) {
      this.writeToVnic(buf, off, len, meta, csumStart, gsoSize);
      return;
    }
    this.transit(link, buf, off, len, hops, version, meta, csumStart, gsoSize);
  }

  private transit(
    from: Link,
    buf: Buffer,
    off: number,
    len: number,
    hops: number,
    version: number,
    meta: number,
    csumStart: number,
    gsoSize: number,
  ): void {
    const route = this.fib.routes.lookup(buf, off + dstOffset(version), version);
    const next = route ? this.fib.links.get(route.value.nextHop) : undefined;
    if (!next?.isConnected) {
      from.counters.drop("noRoute");
      return;
    }
    if (next === from) {
      from.counters.drop("loop");
      return;
    }
    if (hops <= 1) {
      from.counters.drop("hopLimit");
      return;
    }
    let builder = this.transitBuilders.get(next);
    if (!builder) {
      builder = new FrameBuilder(next, 16_384, hops - 1);
      this.transitBuilders.set(next, builder);
    }
    builder.setHopLimit(hops - 1);
    if (builder.isEmpty) this.touched.push(builder);
    builder.append(buf, off, len, meta, csumStart, gsoSize);
  }

  /** A removed link's transit frame buffer goes with it. */
  forgetLink(link: Link): void {
    this.transitBuilders.delete(link);
  }

  private writeToVnic(
    buf: Buffer,
    off: number,
    len: number,
    meta: number,
    csumStart: number,
    gsoSize: number,
  ): void {
    const vnic = this.fib.vnic;
    const counters = this.fib.vnicCounters;
    if (!vnic) {
      counters.drop("noVnic");
      return;
    }
    if (meta === 0) {
      this.writePlain(buf, off, len);
      return;
    }
    if (!vnic.offload) {
      if (!toPlainPackets(buf, off, len, meta, csumStart, gsoSize, this.writePlain))
        counters.drop("malformed");
      return;
    }
    const hdr = this.vnetHdr;
    if (!writeVnetHdr(hdr, buf, off, len, meta, csumStart, gsoSize)) {
      counters.drop("malformed");
      return;
    }
    let ok: boolean;
    try {
      ok = vnic.write(buf, off, len, hdr);
    } catch {
      // The kernel refused the header (EINVAL): a bad packet from the peer.
      counters.drop("vnicRejected");
      return;
    }
    if (ok) counters.tx(1, len);
    else counters.drop("vnicFull");
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
    if (ok) counters.tx(1, len);
    else counters.drop("vnicFull");
  };
}
