import type { Fib } from "./fib.js";
import { FrameBuilder } from "./frame.js";
import type { Link } from "./link.js";
import { addressText, dstOffset, ipPacketLength, ipVersion, isMulticastDestination, srcOffset } from "./packet.js";
import type { UnmappedPackets } from "./unmapped.js";

export interface UnmappedReport {
  src: string;
  dst: string;
  proto: number;
  length: number;
}

/**
 * vNIC -> link: each packet read from the vNIC is routed by longest-prefix match on its
 * destination and appended to its next-hop link's frame; frames are sent once per batch.
 */
export class Inside {
  private readonly builders = new Map<Link, FrameBuilder>();
  private readonly touched: FrameBuilder[] = [];

  constructor(
    private readonly fib: Fib,
    private readonly unmapped: UnmappedPackets,
    private readonly options: { maxFrameBytes: number; hopLimit: number },
    private readonly reportUnmapped: (report: UnmappedReport) => void,
  ) {}

  /** Handles one batch of packets read from the vNIC (buf is reused after this returns). */
  onBatch(buf: Buffer, offsets: ArrayLike<number>, lengths: ArrayLike<number>, count: number): void {
    const counters = this.fib.vnicCounters;
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number;
      const len = lengths[i] as number;
      counters.rx(1, len);
      this.route(buf, off, len);
    }
    this.flushTouched();
  }

  /** Routes packets that waited elsewhere (held while unmapped). */
  resubmit(packets: Buffer[]): void {
    for (const p of packets) this.route(p, 0, p.length);
    this.flushTouched();
  }

  forgetLink(link: Link): void {
    this.builders.delete(link);
  }

  private route(buf: Buffer, off: number, len: number): void {
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
      this.hold(buf, off, len, version);
      return;
    }
    if (!link.isConnected) {
      link.pending.push(buf, off, len);
      return;
    }
    let builder = this.builders.get(link);
    if (!builder) {
      builder = new FrameBuilder(link, this.options.maxFrameBytes, this.options.hopLimit);
      this.builders.set(link, builder);
    }
    if (builder.isEmpty) this.touched.push(builder);
    builder.append(buf, off, len);
  }

  private hold(buf: Buffer, off: number, len: number, version: number): void {
    const dst = addressText(buf, off + dstOffset(version), version);
    if (this.unmapped.hold(dst, buf, off, len, Date.now())) {
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
