// FastSocket: the fast path's UDP socket. Native code (src/native/fast_socket.cc) owns it,
// seals each link frame with an AEAD under keys JS installs per session, batches sends with
// sendmmsg and reads with recvmmsg, checks tags and a replay window, and calls JS once per
// received batch with the plaintext frames. Wire format: packages/protocol/README.md
// ("Fast path"); API: this package's README.md.

import { isIP } from "node:net";
import { codedError, invalid, loadNative, nativeObjects, outOfRange } from "./native.js";

export type FastCipher = "aes-256-gcm" | "chacha20-poly1305";

export interface FastSocketOptions {
  /** IPv4 or IPv6 literal to bind; "0.0.0.0" / "::" (which takes IPv4 too) are fine. */
  address: string;
  /** 0 (default) = any free port. */
  port?: number;
  /** Datagrams per recvmmsg/sendmmsg (1..1024), default 64. */
  batchSize?: number;
  /** Both ends of a session must use the same cipher. Default {@link DEFAULT_FAST_CIPHER}. */
  cipher?: FastCipher;
  /** SO_RCVBUF/SO_SNDBUF (the *FORCE variants are tried first, for root). Default 4 MiB. */
  socketBufferBytes?: number;
  /**
   * UDP GSO on send (runs of same-size datagrams to one endpoint leave as one super-datagram
   * the kernel cuts) and UDP GRO on receive. Same datagrams on the wire. Default true.
   */
  udpOffload?: boolean;
}

export interface FastEndpoint {
  address: string;
  port: number;
}

export interface FastSessionStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /** Where frames go; follows the newest authenticated datagram (roaming). */
  endpoint: FastEndpoint | null;
  /** Milliseconds since the last authenticated datagram; -1 when none yet. */
  lastRxMs: number;
  /** Counter of the next frame sent (= frames sealed so far). */
  sendCounter: number;
}

/** What a session forwarded natively since its {@link FastSocket.setForward} (see there). */
export interface FastForwardStats {
  /** Packets read from the TUN and sent on the session, and their IP bytes. */
  txPackets: number;
  txBytes: number;
  /** Packets received on the session and written to the TUN, and their IP bytes. */
  rxPackets: number;
  rxBytes: number;
  /** Received packets not written because the TUN said EAGAIN (dropped). */
  vnicFull: number;
  /** The same per address of the entry (rxPackets: packets from it). */
  addresses: { address: string; txPackets: number; txBytes: number; rxPackets: number }[];
}

/** Why datagrams were dropped (counts since the socket was made). */
export interface FastDrops {
  /** Received: shorter than the 32-byte header + tag (or empty). */
  short: number;
  /** Received: the receiver index names no session. */
  unknownIndex: number;
  /** Received: the tag did not verify (tampered, wrong key). */
  badTag: number;
  /** Received: counter already seen. */
  replay: number;
  /** Received: counter older than the replay window (or at/after the 2^60 limit). */
  tooOld: number;
  /** Sent: the kernel refused the datagram (sendmmsg/sendto error, EAGAIN). */
  sendFailed: number;
  /** Sent: the session has no endpoint yet. */
  noEndpoint: number;
  /** Received: STUN-looking datagrams beyond the per-wake-up limit for onRaw. */
  batchFull: number;
  /** Received: neither a data datagram nor STUN-looking. */
  badType: number;
  /** Sent: no session with that local index. */
  noSession: number;
  /** Sent: the session's send counter reached 2^60 (rekey). */
  keyExhausted: number;
}

export interface FastSocketStats {
  rxDatagrams: number;
  txDatagrams: number;
  /** Datagrams as the kernel handed them (one GRO super-datagram counts once). */
  rxMessages: number;
  /** Messages given to sendmmsg/sendto (one GSO run counts once). */
  txMessages: number;
  /** UDP GSO in use for sending (off when `udpOffload: false` or the kernel refused it). */
  udpGso: boolean;
  /** UDP GRO enabled on the socket. */
  udpGro: boolean;
  drops: FastDrops;
}

/**
 * Called once per received batch with the frames that authenticated (up to batchSize * 64 of
 * them with UDP GRO: use `count`, not the arrays' length). Frame i is
 * `buf.subarray(offsets[i], offsets[i] + lengths[i])` of session `indexes[i]` (its local
 * index), for i < count. All four objects are reused and overwritten by the next batch:
 * consume or copy the frames before returning. Frames may be modified in place.
 */
export type FastBatchHandler = (
  indexes: Uint32Array,
  buf: Buffer,
  offsets: Uint32Array,
  lengths: Uint32Array,
  count: number,
) => void;

export type FastRawHandler = (buf: Buffer, from: FastEndpoint) => void;

/** Bytes a sealed datagram adds to a frame: 16-byte header + 16-byte tag. */
export const FAST_OVERHEAD = 32;
/** Largest frame `send` takes (the largest IPv4 UDP payload less the overhead). */
export const FAST_MAX_FRAME = 65507 - FAST_OVERHEAD;
/** Counters accepted behind the newest one seen (replay window). */
export const FAST_REPLAY_WINDOW = 8128;
/** A session's send counter stops here: `send` returns false (keyExhausted). */
export const FAST_COUNTER_LIMIT = 2 ** 60;
/** Most datagrams in one GRO super-datagram: a batch holds up to batchSize times this many frames. */
export const FAST_MAX_SEGMENTS = 64;
/** STUN-looking datagrams handed to onRaw per wake-up; more are dropped (batchFull). */
export const FAST_MAX_RAW_PER_WAKE = 4;
/** AES-256-GCM: the faster of the two on this project's machines (AES-NI); see README.md. */
export const DEFAULT_FAST_CIPHER: FastCipher = "aes-256-gcm";
/** 16 x 64 KiB receive slots (and as many send slots): 64 measured no faster, 6 MiB more RSS. */
const DEFAULT_BATCH = 16;
const MAX_BATCH = 1024;
const RX_SLOT = 65536;
const DEFAULT_SOCKET_BUFFER = 4 * 1024 * 1024;

/** The addon's object: FastSocket's own methods, plus the reader set up once. */
type NativeFastSocket = Pick<
  FastSocket,
  | "port"
  | "address"
  | "setSession"
  | "removeSession"
  | "setEndpoint"
  | "setChannel"
  | "send"
  | "flush"
  | "sendRaw"
  | "sessionStats"
  | "setForward"
  | "clearForward"
  | "setLocalAddresses"
  | "holdForward"
  | "forwardStats"
  | "stats"
  | "close"
> & {
  setReader(
    cb: (count: number, raw: Array<Buffer | string | number> | undefined, err?: Error) => void,
    rx: ArrayBuffer,
    indexes: Uint32Array,
    offsets: Uint32Array,
    lengths: Uint32Array,
  ): void;
};

interface NativeModule {
  NativeFastSocket: new (
    address: string,
    port: number,
    batchSize: number,
    cipher: FastCipher,
    socketBufferBytes: number,
    udpOffload: boolean,
  ) => NativeFastSocket;
}

function integerIn(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== "number") throw invalid(`${name} must be a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(`${name} must be an integer within ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

function checkHandler(handler: unknown): void {
  if (handler !== null && typeof handler !== "function") throw invalid("handler must be a function or null");
}

/**
 * A UDP socket carrying sealed link frames (see the file comment). It reads from creation and
 * keeps the process alive, like a bound dgram socket, until {@link FastSocket.close}.
 */
export class FastSocket {
  /** Bound port (the kernel's pick when `port` was 0). */
  readonly port: number;
  /** Bound address. */
  readonly address: string;
  readonly batchSize: number;
  readonly cipher: FastCipher;

  readonly #native: NativeFastSocket;
  readonly #rxBuffer: Buffer;
  readonly #rxIndexes: Uint32Array;
  readonly #rxOffsets: Uint32Array;
  readonly #rxLengths: Uint32Array;
  #batchHandler: FastBatchHandler | null = null;
  #rawHandler: FastRawHandler | null = null;
  #errorHandler: ((err: Error) => void) | null = null;
  #closed = false;

  constructor(options: FastSocketOptions) {
    if (typeof options !== "object" || options === null) throw invalid("options must be an object");
    const { address } = options;
    if (typeof address !== "string" || isIP(address) === 0) {
      throw invalid(`address must be an IPv4 or IPv6 literal, got ${JSON.stringify(address)}`);
    }
    const port = integerIn(options.port ?? 0, "port", 0, 65535);
    const batchSize = integerIn(options.batchSize ?? DEFAULT_BATCH, "batchSize", 1, MAX_BATCH);
    const cipher = options.cipher ?? DEFAULT_FAST_CIPHER;
    if (cipher !== "aes-256-gcm" && cipher !== "chacha20-poly1305") {
      throw invalid(`cipher must be "aes-256-gcm" or "chacha20-poly1305", got ${JSON.stringify(cipher)}`);
    }
    const sockBuf = integerIn(
      options.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER,
      "socketBufferBytes",
      0,
      0x7fffffff,
    );
    const udpOffload = options.udpOffload ?? true;
    if (typeof udpOffload !== "boolean") throw invalid("udpOffload must be a boolean");
    const mod = loadNative<NativeModule>();
    this.#native = new mod.NativeFastSocket(address, port, batchSize, cipher, sockBuf, udpOffload);
    nativeObjects.set(this, this.#native);
    this.port = this.#native.port;
    this.address = this.#native.address;
    this.batchSize = batchSize;
    this.cipher = cipher;
    // One 64 KiB slot per datagram of a batch; only the touched pages are ever backed.
    const ab = new ArrayBuffer(batchSize * RX_SLOT);
    this.#rxBuffer = Buffer.from(ab);
    // With GRO one datagram read may hold up to FAST_MAX_SEGMENTS frames.
    const frames = batchSize * FAST_MAX_SEGMENTS;
    this.#rxIndexes = new Uint32Array(frames);
    this.#rxOffsets = new Uint32Array(frames);
    this.#rxLengths = new Uint32Array(frames);
    this.#native.setReader(this.#onRead, ab, this.#rxIndexes, this.#rxOffsets, this.#rxLengths);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Installs the session `localIndex` (the index peers put in datagrams to us), or replaces
   * it: new keys, send counter and replay window reset. `remoteIndex` is the peer's local
   * index, put in every datagram we send. Keys are 32 bytes; the caller should wipe its
   * copies (the native side keeps only OpenSSL's key schedule).
   */
  setSession(
    localIndex: number,
    remoteIndex: number,
    sendKey: Uint8Array,
    recvKey: Uint8Array,
    endpoint: FastEndpoint | null,
  ): void {
    this.#native.setSession(localIndex, remoteIndex, sendKey, recvKey, endpoint);
  }

  /** Removes the session and wipes its keys; no-op for an unknown index. */
  removeSession(localIndex: number): void {
    this.#native.removeSession(localIndex);
  }

  /** Where the session's frames go (until a newer authenticated datagram comes from elsewhere). */
  setEndpoint(localIndex: number, endpoint: FastEndpoint): void {
    this.#native.setEndpoint(localIndex, endpoint);
  }

  /**
   * Sends the session's datagrams as TURN ChannelData on `channel` (0x4000..0x4FFF; 0: plainly):
   * its endpoint is then our TURN server, bound to relay that channel to the peer. ChannelData
   * received from any sender is unwrapped before it is checked like any datagram.
   */
  setChannel(localIndex: number, channel: number): void {
    this.#native.setChannel(localIndex, channel);
  }

  /**
   * Seals `buf[start, end)` into the pending batch (sent when full, on {@link flush}, or
   * before the event loop next waits). False, and counted, when it cannot (no session, no
   * endpoint, key exhausted).
   */
  send(localIndex: number, buf: Uint8Array, start: number, end: number): boolean {
    return this.#native.send(localIndex, buf, start, end);
  }

  /** Sends everything pending now (one sendmmsg). */
  flush(): void {
    if (!this.#closed) this.#native.flush();
  }

  /** Sends one unsealed datagram (e.g. a STUN Binding request) right away. */
  sendRaw(endpoint: FastEndpoint, buf: Uint8Array): boolean {
    return this.#native.sendRaw(endpoint, buf);
  }

  /** Sets (null: removes) the handler of authenticated frames. */
  onBatch(handler: FastBatchHandler | null): void {
    checkHandler(handler);
    this.#batchHandler = handler;
  }

  /** Sets (null: removes) the handler of STUN-looking datagrams (a private copy each). */
  onRaw(handler: FastRawHandler | null): void {
    checkHandler(handler);
    this.#rawHandler = handler;
  }

  /**
   * Sets the handler of a fatal receive error (reading has stopped). Without one the error
   * becomes a process warning.
   */
  onError(handler: ((err: Error) => void) | null): void {
    checkHandler(handler);
    this.#errorHandler = handler;
  }

  sessionStats(localIndex: number): FastSessionStats | null {
    return this.#native.sessionStats(localIndex);
  }

  stats(): FastSocketStats {
    return this.#native.stats();
  }

  /**
   * Native forwarding (with a Tun attached by {@link Tun.forwardTo}): packets the TUN hands us
   * for one of `addresses` leave on session `localIndex` as one-packet frames
   * `[1][hopLimit][IP packet]` without entering JS (up to `maxPacket` bytes; larger ones, and
   * while held, go to the Tun's reader as before); one-packet frames received on the session
   * from one of `addresses` to one of our {@link setLocalAddresses} are written to the TUN.
   * Everything else reaches the handlers as before. Replaces the session's entry and starts its
   * {@link forwardStats} at zero; an address another session had moves here. The entry goes with
   * the session (removeSession, setSession of its index). Throws for an unknown session.
   */
  setForward(localIndex: number, hopLimit: number, maxPacket: number, addresses: readonly string[]): void {
    this.#native.setForward(localIndex, hopLimit, maxPacket, addresses);
  }

  /** Takes the session out of the forwarding table (no-op without an entry). */
  clearForward(localIndex: number): void {
    this.#native.clearForward(localIndex);
  }

  /** Our own addresses: the destinations received packets are written to the TUN for natively. */
  setLocalAddresses(ipv4: string | null, ipv6: string | null): void {
    this.#native.setLocalAddresses(ipv4, ipv6);
  }

  /** While held, nothing read from the TUN is forwarded natively (e.g. JS's send queue is not empty). */
  holdForward(hold: boolean): void {
    this.#native.holdForward(hold);
  }

  /** Counts of the session's forwarding entry since its setForward; null without one. */
  forwardStats(localIndex: number): FastForwardStats | null {
    return this.#native.forwardStats(localIndex);
  }

  /** Sends what is pending, wipes all keys, closes the socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#batchHandler = null;
    this.#rawHandler = null;
    this.#native.close();
  }

  #onRead = (count: number, raw: Array<Buffer | string | number> | undefined, err?: Error): void => {
    if (count > 0)
      this.#batchHandler?.(this.#rxIndexes, this.#rxBuffer, this.#rxOffsets, this.#rxLengths, count);
    if (raw !== undefined) {
      for (let i = 0; i + 2 < raw.length; i += 3) {
        this.#rawHandler?.(raw[i] as Buffer, { address: raw[i + 1] as string, port: raw[i + 2] as number });
      }
    }
    if (err) {
      const e = codedError(err, (err as { code?: string }).code ?? "ERR_FAST_SOCKET_READ");
      if (this.#errorHandler) this.#errorHandler(e);
      else process.emitWarning(e);
    }
  };
}
