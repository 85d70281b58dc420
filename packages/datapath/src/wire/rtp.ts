import { FRAME_HEADROOM } from "./types.js";

/** The fixed RTP header in front of every frame on the media track (it fills FRAME_HEADROOM). */
export const RTP_HEADER = FRAME_HEADROOM;
export const RTP_PAYLOAD_TYPE = 96;

/**
 * Writes the RTP header at buf[start..start+12): version 2, no padding, extension or CSRCs,
 * payload type 96, `seq`, the sender's clock as timestamp (delay-gate.ts) and `ssrc`.
 */
export function writeRtpHeader(buf: Buffer, start: number, seq: number, time: number, ssrc: number): void {
  buf[start] = 0x80;
  buf[start + 1] = RTP_PAYLOAD_TYPE;
  buf[start + 2] = seq >> 8;
  buf[start + 3] = seq & 0xff;
  buf.writeUInt32BE(time, start + 4);
  buf.writeUInt32BE(ssrc, start + 8);
}

/**
 * Where the frame starts in a received RTP packet (past CSRCs and an extension); it may be the
 * packet's end (an empty payload). -1: not one of ours (another version or payload type, padding).
 */
export function rtpPayloadStart(packet: Buffer): number {
  const first = packet[0] as number;
  if (packet.length < RTP_HEADER || first >> 6 !== 2 || ((packet[1] as number) & 0x7f) !== RTP_PAYLOAD_TYPE)
    return -1;
  let start = RTP_HEADER + (first & 0x0f) * 4;
  if (first & 0x10 && start + 4 <= packet.length) start += 4 + packet.readUInt16BE(start + 2) * 4;
  return first & 0x20 ? -1 : start;
}

export const rtpSeq = (packet: Buffer): number => packet.readUInt16BE(2);
export const rtpTimestamp = (packet: Buffer): number => packet.readUInt32BE(4);
