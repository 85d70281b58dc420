import type { FastSocket } from "@tincan/tuntap";

export type {
  FastBatchHandler,
  FastForwardStats,
  FastRawHandler,
  FastSessionStats,
  FastSocketStats,
} from "@tincan/tuntap";

/**
 * What the datapath uses of @tincan/tuntap's FastSocket (the native UDP + AEAD engine; wire format
 * in packages/protocol/README.md "Fast path"): the real one in the daemon, an in-memory fake in tests.
 */
export type FastSocketLike = Pick<
  FastSocket,
  | "port"
  | "setSession"
  | "removeSession"
  | "setEndpoint"
  | "setChannel"
  | "send"
  | "flush"
  | "sendRaw"
  | "onBatch"
  | "onRaw"
  | "sessionStats"
  | "setForward"
  | "clearForward"
  | "setLocalAddresses"
  | "holdForward"
  | "forwardStats"
  | "stats"
  | "close"
>;

export type FastSocketFactory = (options: { address: string; port?: number }) => FastSocketLike;
