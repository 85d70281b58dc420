// @tincan/tuntap: a Linux TUN device for Node, read in batches on the event loop.
//
// The native part (src/native/tun.cc) owns the file descriptor. On every wake-up of the
// event loop it drains up to `batchSize` packets into one reused buffer and calls JS once;
// writes are synchronous non-blocking write(2) calls. See README.md.

import { EventEmitter } from "node:events";
import { isIPv4, isIPv6 } from "node:net";
import type { FastSocket } from "./fast-socket.js";
import { codedError, invalid, loadNative, nativeObjects, outOfRange } from "./native.js";

export * from "./fast-socket.js";

/** Options of {@link Tun}'s constructor. */
export interface TunOptions {
  /** Interface name (max 15 bytes); may contain one `%d`. Default: the kernel picks `tunN`. */
  name?: string;
  /** Most packets read per event-loop wake-up (1..1024). Default 64. */
  batchSize?: number;
  /**
   * Open the device with a virtio-net header (`IFF_VNET_HDR`) and ask the kernel for checksum
   * and TCP segmentation offload (`TUNSETOFFLOAD`: CSUM, TSO4, TSO6, TSO_ECN): reads may then
   * return TCP super-packets up to 64 KiB with a partial checksum, each preceded by its
   * {@link VNET_HDR_BYTES}-byte header (at `offsets[i] - 10`), and `write` takes one. Default false.
   */
  offload?: boolean;
}

/** Counters kept by the native side since the device was created. */
export interface TunStats {
  /** Packets read from the device (kernel -> JS). */
  rxPackets: number;
  rxBytes: number;
  /** Packets written to the device (JS -> kernel). */
  txPackets: number;
  txBytes: number;
  /** Packets not written because write(2) said EAGAIN (dropped). */
  txDropsEagain: number;
}

/**
 * Called once per wake-up with the packets read. Packet `i` is
 * `batch.subarray(offsets[i], offsets[i] + lengths[i])`, for `i < count`.
 * `batch`, `offsets` and `lengths` are the same objects on every call and are overwritten by
 * the next read: consume (or copy) the packets before returning.
 */
export type PacketBatchHandler = (
  batch: Buffer,
  offsets: Uint32Array,
  lengths: Uint32Array,
  count: number,
) => void;

/** Events of {@link Tun}. */
export interface TunEvents {
  /** One event per packet, with a private copy of it (convenient, slower than onPackets). */
  packet: [packet: Buffer];
  /** Reading failed (e.g. the device vanished); reading has stopped. */
  error: [error: Error];
}

interface NativeTun {
  readonly name: string;
  readonly ifindex: number;
  getMtu(): number;
  setMtu(mtu: number): void;
  getUp(): boolean;
  setUp(up: boolean): void;
  getIpv4(): string | null;
  setIpv4(address: string, prefixLen: number): void;
  getIpv6(): string | null;
  setIpv6(address: string, prefixLen: number): void;
  setReader(
    cb: (count: number, err?: Error) => void,
    buffer: ArrayBuffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
  ): void;
  start(): void;
  stop(): void;
  readonly offload: boolean;
  write(buf: Uint8Array | ArrayBuffer, offset?: number, length?: number, vnetHdr?: Uint8Array): boolean;
  writeBatch(
    buf: Uint8Array | ArrayBuffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    count: number,
  ): number;
  readNow(): number;
  stats(): TunStats;
  setForwarder(socket: object | null): void;
  close(): void;
}

interface NativeModule {
  NativeTun: new (name: string, vnetHdr: boolean) => NativeTun;
  readSlot: number;
  maxBatch: number;
}

/** Bytes reserved per packet in the read buffer (the largest possible TUN packet, rounded). */
export const READ_SLOT = 65536;
/** Size of the virtio_net_hdr in front of each packet of a device opened with `offload`. */
export const VNET_HDR_BYTES = 10;
/** virtio_net_hdr.flags: the L4 checksum is partial (pseudo-header only); csum_start/offset say where. */
export const VNET_F_NEEDS_CSUM = 1;
/** virtio_net_hdr.gso_type values. */
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_ECN = 0x80;
/** Largest accepted `batchSize`. */
export const MAX_BATCH = 1024;
const DEFAULT_BATCH = 64;
const IFNAMSIZ = 16;

/** True when this platform can create TUN devices with this package (Linux). */
export function isSupported(): boolean {
  return process.platform === "linux";
}

/** Parses "a.b.c.d/len" (len defaults to 32). */
export function parseIpv4Cidr(text: string): { address: string; prefixLen: number } {
  if (typeof text !== "string") throw invalid("IPv4 address must be a string like 10.10.0.1/16");
  const m = /^([0-9.]+)(?:\/(\d{1,2}))?$/.exec(text);
  if (!m || !isIPv4(m[1] ?? "")) {
    throw invalid(`invalid IPv4 address "${text}" (expected a.b.c.d/len, e.g. 10.10.0.1/16)`);
  }
  const prefixLen = m[2] === undefined ? 32 : Number(m[2]);
  if (prefixLen > 32) throw outOfRange(`IPv4 prefix length in "${text}" must be within 0..32`);
  return { address: m[1] as string, prefixLen };
}

/** Parses "x::y/len" (len defaults to 128). */
export function parseIpv6Cidr(text: string): { address: string; prefixLen: number } {
  if (typeof text !== "string") throw invalid("IPv6 address must be a string like fd00::1/64");
  const m = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(text);
  if (!m || !isIPv6(m[1] ?? "")) {
    throw invalid(`invalid IPv6 address "${text}" (expected addr/len, e.g. fd00::1/64)`);
  }
  const prefixLen = m[2] === undefined ? 128 : Number(m[2]);
  if (prefixLen > 128) throw outOfRange(`IPv6 prefix length in "${text}" must be within 0..128`);
  return { address: m[1] as string, prefixLen };
}

/**
 * A TUN device (layer 3, no packet-info header). Creating one needs root or CAP_NET_ADMIN.
 * The device exists until {@link Tun.release} (or process exit). While reading is active
 * (a batch handler or a 'packet' listener is set and not paused), the device keeps the
 * process alive, like a listening socket.
 */
export class Tun extends EventEmitter<TunEvents> {
  /** Actual kernel interface name. */
  readonly name: string;
  /** Kernel interface index. */
  readonly ifindex: number;
  /** Most packets per read batch. */
  readonly batchSize: number;
  /** Opened with a vnet header (the `offload` option). */
  readonly vnetHdr: boolean;
  /**
   * The kernel accepted the offloads: reads may carry super-packets and partial checksums.
   * False with `offload` on a kernel that refuses them (the header is then always zero).
   */
  readonly offload: boolean;

  #native: NativeTun;
  #released = false;
  #paused = false;
  #polling = false;
  #reading = false;
  #handler: PacketBatchHandler | null = null;
  readonly #rxBuffer: Buffer;
  readonly #rxOffsets: Uint32Array;
  readonly #rxLengths: Uint32Array;
  #lastStats: TunStats | undefined;

  constructor(options: TunOptions = {}) {
    super();
    const mod = loadNative<NativeModule>();
    const name = options.name ?? "";
    if (typeof name !== "string") throw invalid("name must be a string");
    if (Buffer.byteLength(name) >= IFNAMSIZ) {
      throw codedError(
        new RangeError(`tuntap: interface name "${name}" is too long (max ${IFNAMSIZ - 1} bytes)`),
        "ERR_INVALID_ARG_VALUE",
      );
    }
    const batchSize = options.batchSize ?? DEFAULT_BATCH;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH) {
      throw outOfRange(`batchSize must be an integer within 1..${MAX_BATCH}, got ${String(batchSize)}`);
    }
    this.batchSize = batchSize;
    this.vnetHdr = options.offload === true;
    this.#native = new mod.NativeTun(name, this.vnetHdr);
    this.name = this.#native.name;
    this.ifindex = this.#native.ifindex;
    this.offload = this.#native.offload;

    // One buffer for a whole batch: each read gets READ_SLOT bytes of room (plus the vnet
    // header), packets are packed (8-byte aligned), so only the touched pages are ever backed
    // by memory.
    const ab = new ArrayBuffer(batchSize * (READ_SLOT + (this.vnetHdr ? 16 : 0)));
    this.#rxBuffer = Buffer.from(ab);
    this.#rxOffsets = new Uint32Array(batchSize);
    this.#rxLengths = new Uint32Array(batchSize);
    this.#native.setReader(this.#onRead, ab, this.#rxOffsets, this.#rxLengths);

    // Start/stop reading as 'packet' listeners come and go ('newListener' fires before the
    // listener is added, hence the microtask).
    const untyped = this as EventEmitter;
    untyped.on("newListener", (event: string | symbol) => {
      if (event === "packet") queueMicrotask(() => this.#updatePolling());
    });
    untyped.on("removeListener", (event: string | symbol) => {
      if (event === "packet") this.#updatePolling();
    });
  }

  /** True after {@link Tun.release}. */
  get released(): boolean {
    return this.#released;
  }

  /** MTU in bytes (68..65535). Below 1280 the kernel disables IPv6 on the interface. */
  get mtu(): number {
    return this.#open().getMtu();
  }
  set mtu(value: number) {
    const n = this.#open();
    if (!Number.isInteger(value) || value < 68 || value > 65535) {
      throw outOfRange(`mtu must be an integer within 68..65535, got ${String(value)}`);
    }
    n.setMtu(value);
  }

  /** IPv4 address and prefix, "10.10.0.1/16"; null when none. Setting replaces it. */
  get ipv4(): string | null {
    return this.#open().getIpv4();
  }
  set ipv4(value: string) {
    const n = this.#open();
    const { address, prefixLen } = parseIpv4Cidr(value);
    n.setIpv4(address, prefixLen);
  }

  /**
   * IPv6 address and prefix, "fd00::1/64"; null when none (link-local addresses are not
   * reported). Setting replaces the address set before through this property.
   */
  get ipv6(): string | null {
    return this.#open().getIpv6();
  }
  set ipv6(value: string) {
    const n = this.#open();
    const { address, prefixLen } = parseIpv6Cidr(value);
    n.setIpv6(address, prefixLen);
  }

  /** Administrative state (IFF_UP). */
  get isUp(): boolean {
    return this.#open().getUp();
  }
  set isUp(value: boolean) {
    this.#open().setUp(Boolean(value));
  }

  /** Counters; still readable after release (last values). */
  get stats(): TunStats {
    if (this.#released) return { ...(this.#lastStats as TunStats) };
    return this.#native.stats();
  }

  /** True while the device is being polled for packets. */
  get reading(): boolean {
    return this.#polling;
  }

  /**
   * Sets (or with null, removes) the batch handler and starts reading when one is set. One
   * handler at a time. Packets are valid only until the handler returns.
   */
  onPackets(handler: PacketBatchHandler | null): this {
    if (handler !== null && typeof handler !== "function")
      throw invalid("handler must be a function or null");
    if (this.#released) {
      if (handler === null) return this;
      this.#open();
    }
    this.#handler = handler;
    this.#updatePolling();
    return this;
  }

  /** Stops reading (packets queue in the kernel, up to its queue length, then drop). */
  pause(): this {
    this.#paused = true;
    this.#updatePolling();
    return this;
  }

  /** Resumes reading after {@link Tun.pause}. */
  resume(): this {
    this.#paused = false;
    this.#updatePolling();
    return this;
  }

  /**
   * Reads what the device holds now and hands it to the readers before returning, instead of
   * on the event loop's next wake-up: e.g. right after writing packets the kernel answers at
   * once (a ping's echo reply, TCP ACKs), so the answer leaves in the same turn. Returns the
   * number of packets handed on: 0 when none were queued, while not reading (paused, no
   * reader, released), or when called from a reader. A read error is left to the next wake-up.
   */
  readNow(): number {
    if (!this.#polling || this.#reading || this.#released) return 0;
    const count = this.#native.readNow();
    if (count <= 0) return 0;
    this.#onRead(count);
    return count;
  }

  /**
   * Writes one IP packet (`buf[offset, offset+length)`, default all of `buf`) with a
   * non-blocking write(2). Returns true when written, false when the kernel said EAGAIN (the
   * packet is dropped and counted in `stats.txDropsEagain`). Throws on other errors (e.g. EIO
   * while the interface is down) and RangeError on bad offset/length.
   * On a device opened with `offload`, `vnetHdr` (10 bytes, little-endian fields) is written
   * in front of the packet; without it an all-zero header (a plain packet) is.
   */
  write(buf: Uint8Array | ArrayBuffer, offset?: number, length?: number, vnetHdr?: Uint8Array): boolean {
    return this.#open().write(buf, offset, length, vnetHdr);
  }

  /**
   * Writes `count` packets, packet i at `buf[offsets[i], offsets[i]+lengths[i])`, with one
   * call into the addon. All ranges are checked first (RangeError, nothing written). Returns
   * the number written; on EAGAIN the rest of the batch is dropped and counted in
   * `stats.txDropsEagain`. The rx arrays of {@link PacketBatchHandler} fit here directly.
   */
  writeBatch(
    buf: Uint8Array | ArrayBuffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    count?: number,
  ): number {
    const n = this.#open();
    return n.writeBatch(buf, offsets, lengths, count ?? Math.min(offsets?.length ?? 0, lengths?.length ?? 0));
  }

  /**
   * Native forwarding through `socket` (null: none): packets read go to its forwarding table
   * first (see {@link FastSocket.setForward}); those it takes never reach the reader. The socket
   * writes the packets its table accepts to this device. One socket at a time; closing either
   * side ends it.
   */
  forwardTo(socket: FastSocket | null): void {
    const n = this.#open();
    const target = socket === null ? null : nativeObjects.get(socket);
    if (target === undefined) throw invalid("socket must be a FastSocket or null");
    n.setForwarder(target);
  }

  /**
   * Stops reading, closes the file descriptor (the kernel deletes the interface) and lets the
   * process exit. Idempotent. Afterwards every method but `release`, `stats`, `pause`,
   * `resume` and `onPackets(null)` throws an Error with code ERR_TUNTAP_RELEASED.
   */
  release(): void {
    if (this.#released) return;
    this.#lastStats = this.#native.stats();
    this.#released = true;
    this.#polling = false;
    this.#handler = null;
    this.#native.close();
  }

  #open(): NativeTun {
    if (this.#released) {
      throw codedError(new Error(`tuntap: device ${this.name} was released`), "ERR_TUNTAP_RELEASED");
    }
    return this.#native;
  }

  #updatePolling(): void {
    if (this.#released) return;
    const want = !this.#paused && (this.#handler !== null || this.listenerCount("packet") > 0);
    if (want === this.#polling) return;
    if (want) this.#native.start();
    else this.#native.stop();
    this.#polling = want;
  }

  #deliver(count: number): void {
    const handler = this.#handler;
    if (handler) handler(this.#rxBuffer, this.#rxOffsets, this.#rxLengths, count);
    if (this.listenerCount("packet") > 0) {
      for (let i = 0; i < count; i++) {
        const off = this.#rxOffsets[i] as number;
        // Buffer.from(buffer) copies: listeners may keep the packet.
        this.emit("packet", Buffer.from(this.#rxBuffer.subarray(off, off + (this.#rxLengths[i] as number))));
      }
    }
  }

  #onRead = (count: number, err?: Error): void => {
    if (count > 0) {
      // The rx arrays are in use until the readers return: readNow() must not refill them.
      this.#reading = true;
      try {
        this.#deliver(count);
      } finally {
        this.#reading = false;
      }
    }
    if (err) {
      if (!this.#released) {
        this.#native.stop();
        this.#polling = false;
      }
      this.emit("error", err);
    }
  };
}
