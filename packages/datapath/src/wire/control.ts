import {
  FRAME_HEADROOM,
  FRAME_MTU_ACK,
  FRAME_MTU_PROBE,
  FRAME_PROBE,
  FRAME_PROBE_REPLY,
  FRAME_RX_ACK,
  MTU_ACK_BYTES,
  MTU_PROBE_MIN_BYTES,
  PROBE_BYTES,
  RX_ACK_BYTES,
} from "./types.js";

/** A send buffer for a control frame of `bytes` (headroom in front). */
const controlBuffer = (type: number, bytes: number): Buffer => Buffer.alloc(FRAME_HEADROOM + bytes, type);

/**
 * Builds a link's own frames (probes, MTU probes and acks, receive acks) into buffers reused for
 * every send: each returned buffer holds the frame at [FRAME_HEADROOM..length) (the MTU probe:
 * up to the size probed) and is valid until the next call of the same kind.
 */
export class ControlFrames {
  private readonly probeBuf = controlBuffer(FRAME_PROBE, PROBE_BYTES);
  private readonly probeReplyBuf = controlBuffer(FRAME_PROBE_REPLY, PROBE_BYTES);
  private readonly mtuAckBuf = controlBuffer(FRAME_MTU_ACK, MTU_ACK_BYTES);
  private readonly rxAckBuf = controlBuffer(FRAME_RX_ACK, RX_ACK_BYTES);
  private readonly mtuProbeBuf: Buffer;

  /** @param maxFrame the largest MTU probe (frame bytes) */
  constructor(maxFrame: number) {
    this.mtuProbeBuf = Buffer.alloc(FRAME_HEADROOM + maxFrame);
  }

  /** [FRAME_PROBE][clock u32]. */
  probe(clock: number): Buffer {
    this.probeBuf.writeUInt32BE(clock, FRAME_HEADROOM + 1);
    return this.probeBuf;
  }

  /** [FRAME_PROBE_REPLY][the probe's 4 bytes], or null for a probe too short. */
  probeReply(probe: Buffer): Buffer | null {
    if (probe.length < PROBE_BYTES) return null;
    probe.copy(this.probeReplyBuf, FRAME_HEADROOM + 1, 1, PROBE_BYTES);
    return this.probeReplyBuf;
  }

  /** [FRAME_MTU_PROBE][round u16][zeros]: send [0..FRAME_HEADROOM + size probed). */
  mtuProbe(round: number): Buffer {
    const b = this.mtuProbeBuf;
    b[FRAME_HEADROOM] = FRAME_MTU_PROBE;
    b.writeUInt16BE(round, FRAME_HEADROOM + 1);
    return b;
  }

  /** [FRAME_MTU_ACK][the probe's round u16][its size u16], or null for a probe too short. */
  mtuAck(probe: Buffer): Buffer | null {
    if (probe.length < MTU_PROBE_MIN_BYTES) return null;
    probe.copy(this.mtuAckBuf, FRAME_HEADROOM + 1, 1, 3);
    this.mtuAckBuf.writeUInt16BE(probe.length, FRAME_HEADROOM + 3);
    return this.mtuAckBuf;
  }

  /** [FRAME_RX_ACK][RTP sequence number u16]. */
  rxAck(seq: number): Buffer {
    this.rxAckBuf.writeUInt16BE(seq, FRAME_HEADROOM + 1);
    return this.rxAckBuf;
  }
}

/** The clock a FRAME_PROBE_REPLY echoes; -1 when too short. */
export const readProbeReply = (frame: Buffer): number =>
  frame.length < PROBE_BYTES ? -1 : frame.readUInt32BE(1);

/** Whether a FRAME_MTU_ACK holds its round and size (mtuAckRound, mtuAckSize). */
export const isMtuAck = (frame: Buffer): boolean => frame.length >= MTU_ACK_BYTES;
export const mtuAckRound = (frame: Buffer): number => frame.readUInt16BE(1);
export const mtuAckSize = (frame: Buffer): number => frame.readUInt16BE(3);

/** The RTP sequence number a FRAME_RX_ACK acknowledges; -1 when too short. */
export const readRxAck = (frame: Buffer): number =>
  frame.length < RX_ACK_BYTES ? -1 : frame.readUInt16BE(1);

/** The probes' clock: microseconds, wrapping at 2^32 (differences of u32 values stay right). */
export function microseconds(): number {
  return Math.floor(performance.now() * 1000) >>> 0;
}
