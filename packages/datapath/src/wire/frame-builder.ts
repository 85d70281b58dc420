import type { Counters } from "../counters.js";
import { META_GSO, META_PARTIAL, toPlainPackets } from "../offload.js";
import type { PacketView } from "../packet-view.js";
import { FRAME_HEADER, FRAME_HEADROOM, FRAME_OFFLOAD, FRAME_PACKETS } from "./types.js";

/** Largest per-packet prefix in an offload frame: meta, csumStart, gsoSize. */
const MAX_PREFIX = 5;

/** Where built frames go (a Link): what the peer takes, and the send. */
export interface FrameSink {
  /** The peer takes offload frames (type 2). */
  readonly peerOffload: boolean;
  /** Frames go out one per datagram (RTP), each of up to maxFrame bytes (else fragmented). */
  readonly usesRtp: boolean;
  readonly maxFrame: number;
  readonly counters: Pick<Counters, "drop">;
  /** Sends the frame at buf[FRAME_HEADROOM..end) holding `packets` packets of `payloadBytes`. */
  sendFrame(buf: Buffer, end: number, packets: number, payloadBytes: number): void;
}

/**
 * Packs the packets going to one link during one vNIC batch (or one received frame, in transit)
 * into as few frames as possible.
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
  private used = FRAME_HEADROOM + FRAME_HEADER;
  private packets = 0;
  private payload = 0;
  private offload = false;
  private limit: number;

  constructor(
    private readonly sink: FrameSink,
    private readonly maxFrameBytes: number,
    private hopLimit: number,
  ) {
    // Room for the headroom, one frame and the largest possible IP packet: append never overflows.
    this.buf = Buffer.allocUnsafe(FRAME_HEADROOM + maxFrameBytes + 65_536 + MAX_PREFIX);
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
  append(p: PacketView): void {
    if (this.packets === 0) this.begin();
    const meta = p.meta;
    if (!this.offload) {
      if (meta === 0) this.appendPlain(p.buf, p.off, p.len);
      else if (!toPlainPackets(p, this.appendPlain)) this.sink.counters.drop("malformed");
      return;
    }
    const len = p.len;
    const prefix = 1 + (meta & META_PARTIAL ? 2 : 0) + (meta & META_GSO ? 2 : 0);
    this.makeRoom(prefix + len);
    const b = this.buf;
    let u = this.used;
    b[u++] = meta;
    if (meta & META_PARTIAL) {
      b[u++] = p.csumStart >> 8;
      b[u++] = p.csumStart & 0xff;
    }
    if (meta & META_GSO) {
      b[u++] = p.gsoSize >> 8;
      b[u++] = p.gsoSize & 0xff;
    }
    b.set(p.buf.subarray(p.off, p.off + len), u);
    this.used = u + len;
    this.packets++;
    this.payload += len;
  }

  flush(): void {
    if (this.packets === 0) return;
    this.sink.sendFrame(this.buf, this.used, this.packets, this.payload);
    this.used = FRAME_HEADROOM + FRAME_HEADER;
    this.packets = 0;
    this.payload = 0;
  }

  private begin(): void {
    const sink = this.sink;
    this.offload = sink.peerOffload;
    this.limit = sink.usesRtp ? Math.min(this.maxFrameBytes, sink.maxFrame) : this.maxFrameBytes;
    this.buf[FRAME_HEADROOM] = this.offload ? FRAME_OFFLOAD : FRAME_PACKETS;
    this.buf[FRAME_HEADROOM + 1] = this.hopLimit;
  }

  /** Flushes first when `bytes` more would not fit the frame (a lone packet always fits). */
  private makeRoom(bytes: number): void {
    if (this.packets > 0 && this.used - FRAME_HEADROOM + bytes > this.limit) {
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

/**
 * The frame builders of all links, shared by both directions (vNIC -> link and transit): each
 * entry point appends, then flushes once at its end, so a builder is always empty in between.
 */
export class FrameBuilders<S extends FrameSink = FrameSink> {
  private readonly bySink = new Map<S, FrameBuilder>();
  private readonly touched: FrameBuilder[] = [];

  /** @param maxFrameBytes largest frame carrying several packets (configured) */
  constructor(readonly maxFrameBytes: number) {}

  /** Appends the packet to the sink's frame of `hopLimit`; sent at the next flush at the latest. */
  append(sink: S, hopLimit: number, p: PacketView): void {
    let builder = this.bySink.get(sink);
    if (!builder) {
      builder = new FrameBuilder(sink, this.maxFrameBytes, hopLimit);
      this.bySink.set(sink, builder);
    }
    builder.setHopLimit(hopLimit);
    if (builder.isEmpty) this.touched.push(builder);
    builder.append(p);
  }

  /** Sends every frame begun since the last flush. */
  flush(): void {
    if (this.touched.length === 0) return;
    for (const b of this.touched) b.flush();
    this.touched.length = 0;
  }

  /** A removed link's frame buffer goes with it. */
  forget(sink: S): void {
    this.bySink.delete(sink);
  }
}
