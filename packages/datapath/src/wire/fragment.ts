import { FRAGMENT_HEADER, FRAME_FRAGMENT } from "./types.js";

/**
 * Frames too large for one RTP packet (a TCP super-packet with offload) cross the media track
 * as fragments: [FRAME_FRAGMENT][frame id u16][index u8][count u8][bytes], sent in order, back
 * to back. The receiver keeps one frame in reassembly: a missing or out-of-order fragment loses
 * that frame (like an unordered, unreliable SCTP message that loses a chunk).
 */

/** Largest fragment payload accepted (a jumbo-frame datagram), so reassembly stays <= 255 x 9 KB. */
const MAX_FRAGMENT_BYTES = 9000;
const MAX_FRAGMENTS = 255;

/** Sends buf[start..end) as one RTP packet; the first `headroom` bytes are free for its header. */
export type RtpSend = (buf: Buffer, start: number, end: number) => boolean;

export class Fragmenter {
  private id = 0;
  private readonly saved: Buffer;
  private readonly first: Buffer;

  /**
   * @param headroom bytes an RTP header needs in front of each fragment
   * @param maxPayload most bytes after the RTP header (fragment header included) of any send
   */
  constructor(
    private readonly headroom: number,
    private readonly maxPayload: number,
  ) {
    this.saved = Buffer.alloc(headroom + FRAGMENT_HEADER);
    this.first = Buffer.alloc(headroom + maxPayload);
  }

  /**
   * Sends the frame at buf[frameStart..end) (frameStart >= headroom) as fragments. Each
   * fragment's headers are written over the tail of the previous fragment, already sent
   * (saved and restored: the frame is not copied, except its first chunk). False when a send
   * failed or the frame needs too many fragments. `payload` (at most maxPayload) sizes this
   * frame's fragments (the link's current path MTU).
   */
  send(buf: Buffer, frameStart: number, end: number, sendRtp: RtpSend, payload = this.maxPayload): boolean {
    const chunk = Math.min(payload, this.maxPayload) - FRAGMENT_HEADER;
    const count = Math.ceil((end - frameStart) / chunk);
    if (count > MAX_FRAGMENTS || chunk <= 0) return false;
    const id = this.id;
    this.id = (id + 1) & 0xffff;
    const h = this.headroom + FRAGMENT_HEADER;
    for (let i = 0; i < count; i++) {
      const dataStart = frameStart + i * chunk;
      const dataEnd = Math.min(dataStart + chunk, end);
      const start = dataStart - h;
      let ok: boolean;
      if (start < 0 || i === 0) {
        const f = this.first;
        writeFragmentHeader(f, this.headroom, id, i, count);
        buf.copy(f, h, dataStart, dataEnd);
        ok = sendRtp(f, 0, h + dataEnd - dataStart);
      } else {
        buf.copy(this.saved, 0, start, dataStart);
        writeFragmentHeader(buf, dataStart - FRAGMENT_HEADER, id, i, count);
        ok = sendRtp(buf, start, dataEnd);
        this.saved.copy(buf, start, 0, h);
      }
      if (!ok) return false;
    }
    return true;
  }
}

function writeFragmentHeader(buf: Buffer, at: number, id: number, index: number, count: number): void {
  buf[at] = FRAME_FRAGMENT;
  buf[at + 1] = id >> 8;
  buf[at + 2] = id & 0xff;
  buf[at + 3] = index;
  buf[at + 4] = count;
}

export class Reassembler {
  /** Frames lost to a missing fragment, and malformed fragments. */
  lost = 0;
  malformed = 0;
  private id = 0;
  private count = 0;
  private expect = 0;
  private used = 0;
  private chunk = 0;
  private buf = Buffer.alloc(0);

  /**
   * @param reuse return each frame as a view of the reassembly buffer, valid until the next push
   *   (for receivers that consume or copy a frame before they take the next, as links do with
   *   every frame; a fresh 64 KiB buffer per TCP super-packet cost the receiver 4-5 MB of dead
   *   ArrayBuffers under TCP, bench/RESULTS.md, session 13)
   */
  constructor(private readonly reuse = false) {}

  /**
   * Takes the fragment at packet[start..) and returns the frame when it is complete (a fresh
   * buffer, or with `reuse` a view valid until the next push), else null.
   */
  push(packet: Buffer, start: number): Buffer | null {
    const data = start + FRAGMENT_HEADER;
    const n = packet.length - data;
    // A fragment is one datagram's payload: a bigger one is not ours (and would size the buffer).
    if (n <= 0 || n > MAX_FRAGMENT_BYTES || packet[start] !== FRAME_FRAGMENT) {
      this.malformed++;
      return null;
    }
    const id = ((packet[start + 1] as number) << 8) | (packet[start + 2] as number);
    const index = packet[start + 3] as number;
    const count = packet[start + 4] as number;
    if (index === 0) {
      if (this.expect > 0) this.lost++;
      if (count === 0) {
        this.malformed++;
        this.expect = 0;
        return null;
      }
      this.id = id;
      this.count = count;
      this.expect = 0;
      this.used = 0;
      this.chunk = n;
      if (this.buf.length < count * n) this.buf = Buffer.allocUnsafe(count * n);
    } else if (index !== this.expect || id !== this.id || count !== this.count) {
      if (this.expect > 0) this.lost++;
      this.expect = 0;
      return null;
    }
    // Every fragment but the last carries a full chunk.
    if (n > this.chunk || (index < count - 1 && n !== this.chunk)) {
      this.malformed++;
      this.expect = 0;
      return null;
    }
    packet.copy(this.buf, this.used, data);
    this.used += n;
    this.expect = index + 1;
    if (this.expect < count) return null;
    this.expect = 0;
    const frame = this.buf.subarray(0, this.used);
    return this.reuse ? frame : Buffer.from(frame);
  }
}
