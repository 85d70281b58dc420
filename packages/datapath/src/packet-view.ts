import type { PacketOffload } from "./offload.js";

const EMPTY = new Uint8Array(0);

/**
 * One packet on the hot path: buf[off..off+len) with its offload state (offload.ts). Each stage
 * that walks packets (a vNIC batch, a received frame, the send queue) owns one view and points it
 * at packet after packet, so handing a packet on costs no allocation and one parameter.
 * A view is only valid until its owner moves it: a stage that keeps a packet copies the bytes.
 */
export class PacketView implements PacketOffload {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  meta = 0;
  csumStart = 0;
  gsoSize = 0;

  /** Points the view at a plain packet (complete checksums, no super-packet). */
  plain(buf: Uint8Array, off: number, len: number): this {
    this.buf = buf;
    this.off = off;
    this.len = len;
    this.meta = 0;
    this.csumStart = 0;
    this.gsoSize = 0;
    return this;
  }
}
