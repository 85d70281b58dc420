import type { Fib } from "./fib.js";
import { FRAME_HEADER, FRAME_PACKETS, type Link } from "./link.js";
import { dstOffset, ipPacketLength, ipVersion, srcOffset } from "./packet.js";
import { translateIpv4 } from "./translate.js";

/**
 * Link -> vNIC: each packet of a received frame is accepted only if its source is routed to
 * the link it came on (anti-spoofing, like WireGuard's allowed IPs), then written to the vNIC
 * when it is for us (translated for SocialVPN), or forwarded to the next hop while the hop
 * limit lasts (multi-hop transit).
 */
export class Outside {
  constructor(private readonly fib: Fib) {}

  onFrame(link: Link, frame: Buffer): void {
    if (frame.length < FRAME_HEADER || frame[0] !== FRAME_PACKETS) {
      link.counters.drop("badFrame");
      return;
    }
    const hops = frame[1] as number;
    let off = FRAME_HEADER;
    while (off < frame.length) {
      const len = ipPacketLength(frame, off, frame.length - off);
      if (len < 0) {
        link.counters.drop("malformed");
        return;
      }
      link.counters.rx(1, len);
      this.deliver(link, frame, off, len, hops);
      off += len;
    }
  }

  private deliver(link: Link, buf: Buffer, off: number, len: number, hops: number): void {
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
      translateIpv4(buf, off, len, localOfPeer, fib.ownIpv4);
      this.writeToVnic(buf, off, len);
      return;
    }

    const source = fib.routes.lookup(buf, off + srcOffset(version), version);
    if (!source || source.value.nextHop !== link.peerUid) {
      link.counters.drop("spoofed");
      return;
    }
    if (fib.isOwnAddress(buf, off + dstOffset(version), version)) {
      this.writeToVnic(buf, off, len);
      return;
    }
    this.transit(link, buf, off, len, hops, version);
  }

  private transit(from: Link, buf: Buffer, off: number, len: number, hops: number, version: number): void {
    const route = this.fib.routes.lookup(buf, off + dstOffset(version), version);
    const next = route ? this.fib.links.get(route.value.nextHop) : undefined;
    if (!next || !next.isConnected) {
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
    const frame = Buffer.allocUnsafe(FRAME_HEADER + len);
    frame[0] = FRAME_PACKETS;
    frame[1] = hops - 1;
    buf.copy(frame, FRAME_HEADER, off, off + len);
    next.sendFrame(frame, 1, len);
  }

  private writeToVnic(buf: Buffer, off: number, len: number): void {
    const vnic = this.fib.vnic;
    const counters = this.fib.vnicCounters;
    if (!vnic) {
      counters.drop("noVnic");
      return;
    }
    if (vnic.write(buf, off, len)) counters.tx(1, len);
    else counters.drop("vnicFull");
  }
}
