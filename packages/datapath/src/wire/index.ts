/**
 * The link wire format, datapath to datapath: every frame a link carries is built and read here.
 * A frame is one message on the `pkt` data channel, or the payload of one RTP packet on the
 * `pkt` media track (after the 12-byte RTP header, rtp.ts). The contract, with sizes and timers,
 * is packages/protocol/README.md "Link wire format"; wire.test.ts pins the bytes of each frame.
 *
 * | type | name         | layout (big-endian)                                        | sent by                                  |
 * |------|--------------|------------------------------------------------------------|------------------------------------------|
 * | 0x01 | packets      | [1][hop limit][IP packet]...                               | FrameBuilder: to peers without offload   |
 * | 0x02 | offload      | [2][hop limit] per packet [meta][csumStart]?[gsoSize]?[IP] | FrameBuilder: to peers with caps bit 0   |
 * | 0x03 | fragment     | [3][frame id u16][index u8][count u8][bytes of a frame]    | Fragmenter: track, frame > one datagram  |
 * | 0x10 | icc          | [0x10][seq u32][UTF-8 JSON]                                | IccChannel: track links                  |
 * | 0x11 | icc ack      | [0x11][seq u32]                                            | IccChannel, for each icc received        |
 * | 0x12 | probe        | [0x12][sender's clock µs u32]                              | Link: silent peer, busy link every 5 s   |
 * | 0x13 | probe reply  | [0x13][the probe's 4 bytes]                                | Link, at once for each probe             |
 * | 0x14 | MTU probe    | [0x14][round u16][padding to the size probed]              | Link (PathMtu): track, peer caps bit 2   |
 * | 0x15 | MTU ack      | [0x15][round u16][frame bytes received u16]                | Link, for each MTU probe                 |
 * | 0x16 | rx ack       | [0x16][RTP sequence number u16]                            | Link: track, peer caps bit 3, every 32   |
 * | 0x17 | fast offer   | [0x17][1][index u32][0 u32][port u16][key 32][candidates]  | FastPath: track, peer caps bit 4         |
 * | 0x18 | fast accept  | [0x18][1][index u32][offer index u32][port][key][cands]    | FastPath, for each offer it takes        |
 *
 * Types 1 and 2 carry tunnelled packets (frame-builder.ts, frame-reader.ts); from 0x10 up
 * (FRAME_CONTROL) they are the link's own (control.ts, icc-channel.ts) and never reach the
 * packet path. The caps bits are announced in the SDP (session-description.ts).
 */
export * from "./control.js";
export * from "./fragment.js";
export * from "./frame-builder.js";
export * from "./frame-reader.js";
export * from "./rtp.js";
export * from "./types.js";
