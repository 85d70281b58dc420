import { DatapathTune } from "@tincan/protocol";

/**
 * Frame type bytes of the link wire format: every frame starts with one. The table with the
 * layouts and who sends each is in index.ts (and packages/protocol/README.md, the contract).
 * Multi-byte fields are big-endian.
 */

/** [1][hop limit][IP packet]...: plain packets (frame-builder.ts). */
export const FRAME_PACKETS = 0x01;
/** [2][hop limit] then per packet [meta][csumStart u16]?[gsoSize u16]?[IP packet] (offload.ts). */
export const FRAME_OFFLOAD = 0x02;
/** [3][frame id u16][index u8][count u8][bytes]: a piece of a frame too big for one RTP packet. */
export const FRAME_FRAGMENT = 0x03;
/** Frame types from here up are the link's own (icc, probes), never handed to the packet path. */
export const FRAME_CONTROL = 0x10;
/** [0x10][seq u32][UTF-8 text]: an inter-controller message over the track (icc-channel.ts). */
export const FRAME_ICC = 0x10;
/** [0x11][seq u32]: acknowledges FRAME_ICC `seq`. */
export const FRAME_ICC_ACK = 0x11;
/** [0x12][sender's clock, µs u32]: liveness and round-trip time probe. */
export const FRAME_PROBE = 0x12;
/** [0x13][the probe's 4 bytes]: answers FRAME_PROBE at once. */
export const FRAME_PROBE_REPLY = 0x13;
/** [0x14][round u16][padding to the size probed]: path MTU probe (path-mtu.ts), never fragmented. */
export const FRAME_MTU_PROBE = 0x14;
/** [0x15][round u16][frame bytes received u16]: answers FRAME_MTU_PROBE. */
export const FRAME_MTU_ACK = 0x15;
/** [0x16][RTP sequence number u16]: the last RTP packet the receiver's event loop took. */
export const FRAME_RX_ACK = 0x16;
/** [0x17][version][index u32][0 u32][port u16][X25519 key 32][candidates]: fast-path key offer (fast/offer.ts). */
export const FRAME_FAST_OFFER = 0x17;
/** [0x18][version][index u32][offer's index u32][port u16][X25519 key 32][candidates]: answers FAST_OFFER. */
export const FRAME_FAST_ACCEPT = 0x18;

/** Type byte and hop limit in front of the packets of a type 1 or 2 frame. */
export const FRAME_HEADER = 2;
export const FRAGMENT_HEADER = 5;
export const ICC_HEADER = 5;
export const PROBE_BYTES = 5;
/** An MTU probe is at least its type byte and round. */
export const MTU_PROBE_MIN_BYTES = 3;
export const MTU_ACK_BYTES = 5;
export const RX_ACK_BYTES = 3;

/**
 * Bytes free in front of a frame in every send buffer: the transport writes its header there
 * (RTP's 12 bytes on the track; a data channel message starts after them).
 */
export const FRAME_HEADROOM = 12;

/** Largest frame carrying several packets, unless configured (`maxFrameBytes`). */
export const DEFAULT_MAX_FRAME_BYTES: number = DatapathTune.shape.maxFrameBytes.parse(undefined);
