import { META_GSO, META_KNOWN, META_PARTIAL } from "../offload.js";
import { ipPacketLength } from "../packet.js";
import type { PacketView } from "../packet-view.js";
import { FRAME_HEADER, FRAME_OFFLOAD, FRAME_PACKETS } from "./types.js";

/** Whether `frame` is a packet frame (type 1 or 2) with its header: its packets start at FRAME_HEADER. */
export function isPacketFrame(frame: Buffer): boolean {
  const type = frame[0];
  return frame.length >= FRAME_HEADER && (type === FRAME_PACKETS || type === FRAME_OFFLOAD);
}

/** The hop limit the sender gave the packets of a packet frame. */
export const frameHopLimit = (frame: Buffer): number => frame[1] as number;

/**
 * Points `p` at the packet of a packet frame at frame[at..) (after its offload prefix in a type-2
 * frame) and returns where the next one starts; -1 when the prefix or the IP header is malformed
 * or the packet is longer than what is left (the rest of the frame is lost).
 */
export function readFramePacket(frame: Buffer, at: number, p: PacketView): number {
  const end = frame.length;
  let off = at;
  let meta = 0;
  let csumStart = 0;
  let gsoSize = 0;
  if (frame[0] === FRAME_OFFLOAD) {
    meta = frame[off++] as number;
    if (meta & META_PARTIAL) {
      csumStart = ((frame[off] as number) << 8) | (frame[off + 1] as number);
      off += 2;
    }
    if (meta & META_GSO) {
      gsoSize = ((frame[off] as number) << 8) | (frame[off + 1] as number);
      off += 2;
    }
    if (meta & ~META_KNOWN || off > end) return -1;
  }
  const len = ipPacketLength(frame, off, end - off);
  if (len < 0) return -1;
  p.buf = frame;
  p.off = off;
  p.len = len;
  p.meta = meta;
  p.csumStart = csumStart;
  p.gsoSize = gsoSize;
  return off + len;
}
