import type { FastEndpoint } from "./offer.js";
import type {
  FastBatchHandler,
  FastForwardStats,
  FastSessionStats,
  FastSocketLike,
  FastSocketStats,
} from "./socket.js";

/**
 * An in-memory stand-in for FastSocket (tests): sockets on one FakeFastNet exchange datagrams that
 * "authenticate" when the receiver's key equals the sender's, with a counter replay check and
 * endpoint roaming like the engine's. Delivery is on setImmediate.
 */
export class FakeFastNet {
  readonly sockets = new Map<string, FakeFastSocket>();
  /** Endpoints ("address:port") whose datagrams are lost, both ways. */
  readonly blocked = new Set<string>();
  /** Every datagram sent, for replay tests. */
  readonly sent: FakeDatagram[] = [];
  /** Datagrams whose payload (the sealed frame) is larger are lost, as on a path with a smaller MTU. */
  maxPayload = Number.POSITIVE_INFINITY;

  socket(address: string, port: number): FakeFastSocket {
    const s = new FakeFastSocket(this, address, port);
    this.sockets.set(`${address}:${port}`, s);
    return s;
  }

  deliver(d: FakeDatagram): void {
    if (this.blocked.has(key(d.to)) || this.blocked.has(key(d.from))) return;
    if (d.payload.length > this.maxPayload) return;
    setImmediate(() => this.sockets.get(key(d.to))?.receive(d));
  }
}

export interface FakeDatagram {
  from: FastEndpoint;
  to: FastEndpoint;
  index: number;
  counter: number;
  key: string;
  payload: Buffer;
}

/** A forwarding entry as the fake keeps it (tests set its counts to play the native side). */
export interface FakeForward {
  hopLimit: number;
  maxPacket: number;
  addresses: string[];
  stats: FastForwardStats;
}

interface FakeSession {
  remoteIndex: number;
  forward?: FakeForward;
  sendKey: string;
  recvKey: string;
  endpoint: FastEndpoint | null;
  counter: number;
  seen: Set<number>;
  stats: FastSessionStats;
}

const key = (e: FastEndpoint): string => `${e.address}:${e.port}`;

export class FakeFastSocket implements FastSocketLike {
  readonly sessions = new Map<number, FakeSession>();
  private handler: FastBatchHandler = () => {};
  private readonly pending: FakeDatagram[] = [];
  readonly drops: FastSocketStats["drops"] = {
    short: 0,
    unknownIndex: 0,
    badTag: 0,
    replay: 0,
    tooOld: 0,
    sendFailed: 0,
    noEndpoint: 0,
    batchFull: 0,
    badType: 0,
    noSession: 0,
    keyExhausted: 0,
  };
  closed = false;
  localAddresses: [string | null, string | null] = [null, null];
  held = false;

  constructor(
    private readonly net: FakeFastNet,
    readonly address: string,
    readonly port: number,
  ) {}

  setSession(
    localIndex: number,
    remoteIndex: number,
    sendKey: Uint8Array,
    recvKey: Uint8Array,
    endpoint: FastEndpoint | null,
  ): void {
    this.sessions.set(localIndex, {
      remoteIndex,
      sendKey: Buffer.from(sendKey).toString("hex"),
      recvKey: Buffer.from(recvKey).toString("hex"),
      endpoint,
      counter: 0,
      seen: new Set(),
      stats: { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, endpoint, lastRxMs: 0, sendCounter: 0 },
    });
  }

  removeSession(localIndex: number): void {
    this.sessions.delete(localIndex);
  }

  setForward(localIndex: number, hopLimit: number, maxPacket: number, addresses: readonly string[]): void {
    const s = this.sessions.get(localIndex);
    if (!s) throw new RangeError(`no fast-path session with local index ${localIndex}`);
    for (const other of this.sessions.values()) {
      if (other.forward)
        other.forward.addresses = other.forward.addresses.filter((a) => !addresses.includes(a));
    }
    const perAddress = addresses.map((address) => ({ address, txPackets: 0, txBytes: 0, rxPackets: 0 }));
    s.forward = {
      hopLimit,
      maxPacket,
      addresses: [...addresses],
      stats: { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, vnicFull: 0, addresses: perAddress },
    };
  }

  clearForward(localIndex: number): void {
    const s = this.sessions.get(localIndex);
    if (s) s.forward = undefined;
  }

  setLocalAddresses(ipv4: string | null, ipv6: string | null): void {
    this.localAddresses = [ipv4, ipv6];
  }

  holdForward(hold: boolean): void {
    this.held = hold;
  }

  forwardStats(localIndex: number): FastForwardStats | null {
    const f = this.sessions.get(localIndex)?.forward;
    return f ? structuredClone(f.stats) : null;
  }

  /** The forwarding entry of a session (tests). */
  forwardOf(localIndex: number): FakeForward | undefined {
    return this.sessions.get(localIndex)?.forward;
  }

  /** Every session's forwarding entry, by local index (tests). */
  forwards(): Map<number, FakeForward> {
    const out = new Map<number, FakeForward>();
    for (const [i, s] of this.sessions) if (s.forward) out.set(i, s.forward);
    return out;
  }

  setEndpoint(localIndex: number, endpoint: FastEndpoint): void {
    const s = this.sessions.get(localIndex);
    if (s) s.endpoint = endpoint;
  }

  /** TURN channels set per session (the fake relays nothing: tests check what was set). */
  readonly channels = new Map<number, number>();

  setChannel(localIndex: number, channel: number): void {
    this.channels.set(localIndex, channel);
  }

  send(localIndex: number, buf: Uint8Array, start: number, end: number): boolean {
    const s = this.sessions.get(localIndex);
    if (!s) return false;
    if (!s.endpoint) {
      this.drops.noEndpoint++;
      return false;
    }
    s.stats.txPackets++;
    s.stats.txBytes += end - start;
    this.pending.push({
      from: { address: this.address, port: this.port },
      to: s.endpoint,
      index: s.remoteIndex,
      counter: s.counter++,
      key: s.sendKey,
      payload: Buffer.from(buf.subarray(start, end)),
    });
    return true;
  }

  flush(): void {
    for (const d of this.pending.splice(0)) {
      this.net.sent.push(d);
      this.net.deliver(d);
    }
  }

  sendRaw(): boolean {
    return false;
  }

  onBatch(handler: FastBatchHandler): void {
    this.handler = handler;
  }

  onRaw(): void {}

  sessionStats(localIndex: number): FastSessionStats | null {
    const s = this.sessions.get(localIndex);
    return s ? { ...s.stats, endpoint: s.endpoint, sendCounter: s.counter } : null;
  }

  stats(): FastSocketStats {
    const zero = { rxDatagrams: 0, txDatagrams: 0, rxMessages: 0, txMessages: 0 };
    return { ...zero, udpGso: false, udpGro: false, drops: { ...this.drops } };
  }

  close(): void {
    this.closed = true;
  }

  /** A datagram arriving (also for tests that inject or replay). */
  receive(d: FakeDatagram): void {
    if (this.closed) return;
    const s = this.sessions.get(d.index);
    if (!s) {
      this.drops.unknownIndex++;
      return;
    }
    if (s.recvKey !== d.key) {
      this.drops.badTag++;
      return;
    }
    if (s.seen.has(d.counter)) {
      this.drops.replay++;
      return;
    }
    s.seen.add(d.counter);
    s.endpoint = d.from;
    s.stats.rxPackets++;
    s.stats.lastRxMs = Date.now();
    this.handler(Uint32Array.of(d.index), d.payload, Uint32Array.of(0), Uint32Array.of(d.payload.length), 1);
  }
}
