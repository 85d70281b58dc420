import { FRAME_HEADER, FRAME_OFFLOAD, FRAME_PACKETS, type Link, RTP_HEADER } from "./link.js";
import { META_GSO, META_PARTIAL, toPlainPackets } from "./offload.js";

/** Largest per-packet prefix in an offload frame: meta, csumStart, gsoSize. */
const MAX_PREFIX = 5;

/**
 * Packs the packets going to one link during one vNIC batch into as few messages as possible.
 * - type 1 (FRAME_PACKETS): [1][hop limit][IP packet][IP packet]...; each IP header carries its
 *   own length. Packets are plain: complete checksums, no super-packets.
 * - type 2 (FRAME_OFFLOAD), to peers that announced it: [2][hop limit] then per packet
 *   [meta][csumStart u16 if partial][gsoSize u16 if GSO][IP packet] (see offload.ts), so partial
 *   checksums (and, on the data channel, TCP super-packets) cross the link as the kernel made them.
 * A link that sends frames as RTP packets gets frames of up to one underlay datagram, except a
 * TCP super-packet, which travels alone in a frame that the link cuts into RTP fragments.
 */
export class FrameBuilder {
  private readonly buf: Buffer;
  private used = RTP_HEADER + FRAME_HEADER;
  private packets = 0;
  private payload = 0;
  private offload = false;
  private limit: number;

  constructor(
    private readonly link: Link,
    private readonly maxFrameBytes: number,
    private hopLimit: number,
  ) {
    // Room for the RTP header, one frame and the largest possible IP packet: append never overflows.
    this.buf = Buffer.allocUnsafe(RTP_HEADER + maxFrameBytes + 65_536 + MAX_PREFIX);
    this.limit = maxFrameBytes;
  }

  get isEmpty(): boolean {
    return this.packets === 0;
  }

  /** Sets the hop limit of the frames built from now on (flushes a frame built with another). */
  setHopLimit(hops: number): void {
    if (hops === this.hopLimit) return;
    this.flush();
    this.hopLimit = hops;
  }

  /** Appends one packet with its offload state (meta 0: a plain packet). */
  append(src: Uint8Array, off: number, len: number, meta: number, csumStart: number, gsoSize: number): void {
    if (this.packets === 0) this.begin();
    if (!this.offload) {
      if (meta === 0) this.appendPlain(src, off, len);
      else if (!toPlainPackets(src, off, len, meta, csumStart, gsoSize, this.appendPlain))
        this.link.counters.drop("malformed");
      return;
    }
    const prefix = 1 + (meta & META_PARTIAL ? 2 : 0) + (meta & META_GSO ? 2 : 0);
    this.makeRoom(prefix + len);
    const b = this.buf;
    let u = this.used;
    b[u++] = meta;
    if (meta & META_PARTIAL) {
      b[u++] = csumStart >> 8;
      b[u++] = csumStart & 0xff;
    }
    if (meta & META_GSO) {
      b[u++] = gsoSize >> 8;
      b[u++] = gsoSize & 0xff;
    }
    b.set(src.subarray(off, off + len), u);
    this.used = u + len;
    this.packets++;
    this.payload += len;
  }

  flush(): void {
    if (this.packets === 0) return;
    this.link.sendFrame(this.buf, this.used, this.packets, this.payload);
    this.used = RTP_HEADER + FRAME_HEADER;
    this.packets = 0;
    this.payload = 0;
  }

  private begin(): void {
    const link = this.link;
    this.offload = link.peerOffload;
    this.limit = link.usesRtp ? Math.min(this.maxFrameBytes, link.maxFrame) : this.maxFrameBytes;
    this.buf[RTP_HEADER] = this.offload ? FRAME_OFFLOAD : FRAME_PACKETS;
    this.buf[RTP_HEADER + 1] = this.hopLimit;
  }

  /** Flushes first when `bytes` more would not fit the frame (a lone packet always fits). */
  private makeRoom(bytes: number): void {
    if (this.packets > 0 && this.used - RTP_HEADER + bytes > this.limit) {
      this.flush();
      this.begin();
    }
  }

  private readonly appendPlain = (src: Uint8Array, off: number, len: number): void => {
    if (this.packets === 0) this.begin();
    else this.makeRoom(1 + len);
    // The peer's announcement may arrive between two frames of one batch.
    if (this.offload) this.buf[this.used++] = 0;
    this.buf.set(src.subarray(off, off + len), this.used);
    this.used += len;
    this.packets++;
    this.payload += len;
  };
}
