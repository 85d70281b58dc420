import { FRAME_HEADER, FRAME_PACKETS, type Link } from "./link.js";

/**
 * Packs the packets going to one link during one vNIC batch into as few messages as possible:
 * per-message cost, not bytes, bounds node-datachannel's throughput. A frame is
 * [type=1][hop limit][IP packet][IP packet]...; each IP header carries its own length.
 */
export class FrameBuilder {
  private readonly buf: Buffer;
  private used = FRAME_HEADER;
  private packets = 0;

  constructor(
    private readonly link: Link,
    private readonly maxFrameBytes: number,
    hopLimit: number,
  ) {
    // Room for one frame plus the largest possible IP packet, so append never overflows.
    this.buf = Buffer.allocUnsafe(maxFrameBytes + 65_536);
    this.buf[0] = FRAME_PACKETS;
    this.buf[1] = hopLimit;
  }

  get isEmpty(): boolean {
    return this.packets === 0;
  }

  append(src: Uint8Array, off: number, len: number): void {
    if (this.packets > 0 && this.used + len > this.maxFrameBytes) this.flush();
    this.buf.set(src.subarray(off, off + len), this.used);
    this.used += len;
    this.packets++;
  }

  flush(): void {
    if (this.packets === 0) return;
    this.link.sendFrame(this.buf.subarray(0, this.used), this.packets, this.used - FRAME_HEADER);
    this.used = FRAME_HEADER;
    this.packets = 0;
  }
}
