import type { FastEndpoint } from "./offer.js";

/**
 * What the datapath uses of @tincan/tuntap's FastSocket (the native UDP + AEAD engine): its
 * datagram is [0x01, 0, 0, 0][receiver index u32 LE][counter u64 LE][ciphertext][16-byte tag], and
 * it roams a session's endpoint to the source of any authenticated newer datagram. Tests use a fake.
 */
export interface FastSessionStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  endpoint: FastEndpoint | null;
  lastRxMs: number;
  sendCounter: number;
}

export interface FastSocketStats {
  rxDatagrams: number;
  txDatagrams: number;
  drops: {
    short: number;
    unknownIndex: number;
    badTag: number;
    replay: number;
    tooOld: number;
    sendFailed: number;
    noEndpoint: number;
    batchFull: number;
  };
}

/** Frames received in one batch; buffers are reused: consume before returning. */
export type FastBatchHandler = (
  indexes: Uint32Array,
  buf: Buffer,
  offsets: Uint32Array,
  lengths: Uint32Array,
  count: number,
) => void;

export interface FastSocketLike {
  readonly port: number;
  setSession(
    localIndex: number,
    remoteIndex: number,
    sendKey: Uint8Array,
    recvKey: Uint8Array,
    endpoint: FastEndpoint | null,
  ): void;
  removeSession(localIndex: number): void;
  setEndpoint(localIndex: number, endpoint: FastEndpoint): void;
  send(localIndex: number, buf: Uint8Array, start: number, end: number): boolean;
  flush(): void;
  sendRaw(endpoint: FastEndpoint, buf: Uint8Array): boolean;
  onBatch(handler: FastBatchHandler): void;
  onRaw(handler: (buf: Buffer, from: FastEndpoint) => void): void;
  sessionStats(localIndex: number): FastSessionStats | null;
  stats(): FastSocketStats;
  close(): void;
}

export type FastSocketFactory = (options: { address: string; port?: number }) => FastSocketLike;

/** Datagram bytes around a frame: the 16-byte header and the 16-byte tag. */
export const FAST_OVERHEAD = 32;
