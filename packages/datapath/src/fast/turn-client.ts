// The fast path's own TURN allocation (RFC 8656 over UDP, long-term credentials): Allocate, then
// per peer CreatePermission + ChannelBind for the peer's relayed address, all kept alive by
// Refresh. It only builds and reads control messages; the caller carries them (FastSocket.sendRaw
// and onRaw), and data goes as ChannelData (channel-data.ts) on the channel a peer was bound to.
import {
  Attr,
  decodeStun,
  type Endpoint,
  encodeStun,
  errorCode,
  longTermKey,
  newTransactionId,
  readAddress,
  type StunMessage,
  StunType,
  withIntegrity,
  writeXorAddress,
} from "@tincan/protocol";

export interface TurnCredentials {
  username: string;
  password: string;
}

/** How the client's messages reach the server: one unsealed datagram. */
export type TurnSend = (to: Endpoint, datagram: Buffer) => boolean;

/** First channel number (RFC 8656: 0x4000-0x4FFF). */
export const FIRST_CHANNEL = 0x4000;
const LAST_CHANNEL = 0x4fff;
/** Allocation lifetime we ask for (s); refreshed at half of what the server grants. */
const LIFETIME_SEC = 600;
/** Permissions last 300 s and channel bindings 600 s on the server: both are renewed this often. */
const BINDING_REFRESH_MS = 240_000;
/** Retransmissions of a request (RFC 8489: 500 ms doubling); the last wait is 8 s. */
const RTO_MS = 500;
const MAX_SENDS = 5;
/** Most peers bound at once (a bound, as everywhere on the datapath). */
export const MAX_TURN_PEERS = 256;

export type TurnState = "idle" | "allocating" | "ready" | "failed" | "closed";

interface Pending {
  message: Buffer;
  sends: number;
  timer: NodeJS.Timeout | null;
  done(reply: StunMessage | null): void;
}

interface Binding {
  peer: Endpoint;
  channel: number;
  bound: boolean;
  refreshedAt: number;
}

const key = (e: Endpoint): string => `${e.address}|${e.port}`;

/** One allocation on one TURN server, on the socket `send` writes to. */
export class TurnClient {
  state: TurnState = "idle";
  /** Our relayed address, once allocated: what peers send to. */
  relayed: Endpoint | null = null;
  /** Our address as the server sees it. */
  mapped: Endpoint | null = null;
  /** Why the allocation failed (state `failed`). */
  error: string | null = null;

  private realm = "";
  private nonce: Buffer | null = null;
  private integrityKey: Buffer | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly bindings = new Map<string, Binding>();
  private readonly byChannel = new Map<number, Binding>();
  private nextChannel = FIRST_CHANNEL;
  private refreshTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly server: Endpoint,
    private readonly credentials: TurnCredentials,
    private readonly send: TurnSend,
  ) {}

  /** Allocates a relayed address; resolves with it, or null (see `error`). */
  async allocate(): Promise<Endpoint | null> {
    if (this.state !== "idle") return this.relayed;
    this.state = "allocating";
    const transport: [number, Buffer] = [Attr.RequestedTransport, Buffer.from([17, 0, 0, 0])];
    const lifetime: [number, Buffer] = [Attr.Lifetime, u32(LIFETIME_SEC)];
    const reply = await this.signedRequest(StunType.AllocateRequest, [transport, lifetime]);
    // close() may have come while we waited.
    if ((this.state as TurnState) === "closed") return null;
    if (reply?.type !== StunType.AllocateSuccess) return this.fail(reply, "Allocate");
    this.relayed = readAddress(reply.attrs.get(Attr.XorRelayedAddress), true, reply.transactionId);
    this.mapped = readAddress(reply.attrs.get(Attr.XorMappedAddress), true, reply.transactionId);
    if (!this.relayed) return this.fail(null, "Allocate: no relayed address");
    this.state = "ready";
    this.scheduleRefresh(grantedSec(reply));
    return this.relayed;
  }

  /**
   * The channel that carries datagrams to and from `peer` (its relayed address): permission and
   * binding are made once and renewed; resolves null when the server refuses or does not answer.
   */
  async bind(peer: Endpoint): Promise<number | null> {
    if (this.state !== "ready") return null;
    let b = this.bindings.get(key(peer));
    if (b?.bound) return b.channel;
    if (!b) {
      const channel = this.freeChannel();
      if (channel === null) return null;
      b = { peer, channel, bound: false, refreshedAt: 0 };
      this.bindings.set(key(peer), b);
      this.byChannel.set(channel, b);
    }
    return (await this.renew(b)) ? b.channel : null;
  }

  /** Forgets a peer (its permission and channel lapse on the server). */
  unbind(peer: Endpoint): void {
    const b = this.bindings.get(key(peer));
    if (!b) return;
    this.bindings.delete(key(peer));
    this.byChannel.delete(b.channel);
  }

  /** The peer a channel is bound to (for ChannelData from the server). */
  peerOf(channel: number): Endpoint | null {
    const b = this.byChannel.get(channel);
    return b?.bound ? b.peer : null;
  }

  /** A STUN message from the server: true when it answered one of our requests. */
  onMessage(datagram: Buffer, from: Endpoint): boolean {
    if (from.address !== this.server.address || from.port !== this.server.port) return false;
    const m = decodeStun(datagram);
    if (!m) return false;
    const id = m.transactionId.toString("hex");
    const p = this.pending.get(id);
    if (!p) return false;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    p.done(m);
    return true;
  }

  /** Renews permissions and channel bindings that are due (call every few seconds). */
  tick(now: number): void {
    if (this.state !== "ready") return;
    for (const b of this.bindings.values())
      if (b.bound && now - b.refreshedAt >= BINDING_REFRESH_MS) void this.renew(b);
  }

  /** Releases the allocation (Refresh with lifetime 0, not waited for) and stops every timer. */
  close(): void {
    if (this.state === "closed") return;
    const wasReady = this.state === "ready";
    this.state = "closed";
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.done(null);
    }
    this.pending.clear();
    if (wasReady && this.integrityKey)
      this.send(this.server, this.sign(StunType.RefreshRequest, [[Attr.Lifetime, u32(0)]]));
    this.bindings.clear();
    this.byChannel.clear();
  }

  private async renew(b: Binding): Promise<boolean> {
    const peer: [number, (id: Buffer) => Buffer] = [Attr.XorPeerAddress, (id) => writeXorAddress(b.peer, id)];
    const permitted = await this.signedRequest(StunType.CreatePermissionRequest, [], [peer]);
    if (permitted?.type !== StunType.CreatePermissionSuccess) return this.unbound(b);
    const bound = await this.signedRequest(
      StunType.ChannelBindRequest,
      [[Attr.ChannelNumber, Buffer.from([b.channel >> 8, b.channel & 0xff, 0, 0])]],
      [peer],
    );
    if (bound?.type !== StunType.ChannelBindSuccess) return this.unbound(b);
    b.bound = true;
    b.refreshedAt = Date.now();
    return true;
  }

  private unbound(b: Binding): false {
    b.bound = false;
    return false;
  }

  private freeChannel(): number | null {
    if (this.bindings.size >= MAX_TURN_PEERS) return null;
    for (let i = 0; i <= LAST_CHANNEL - FIRST_CHANNEL; i++) {
      const c = this.nextChannel;
      this.nextChannel = c === LAST_CHANNEL ? FIRST_CHANNEL : c + 1;
      if (!this.byChannel.has(c)) return c;
    }
    return null;
  }

  /** Refreshes the allocation now; false (state `failed`) when the server no longer has it. */
  async refresh(): Promise<boolean> {
    if (this.state !== "ready") return false;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const reply = await this.signedRequest(StunType.RefreshRequest, [[Attr.Lifetime, u32(LIFETIME_SEC)]]);
    if (this.state !== "ready") return false;
    if (reply?.type !== StunType.RefreshSuccess) {
      this.fail(reply, "Refresh");
      return false;
    }
    if (!this.refreshTimer) this.scheduleRefresh(grantedSec(reply));
    return true;
  }

  private scheduleRefresh(lifetimeSec: number): void {
    this.refreshTimer = setTimeout(() => void this.refresh(), Math.max(30, lifetimeSec / 2) * 1000);
    this.refreshTimer.unref();
  }

  /**
   * A request with long-term credentials: sent unsigned until the server's 401 names realm and
   * nonce, then signed; a 438 (stale nonce) is answered once with the fresh nonce.
   * `xored` attributes depend on the transaction ID, so they are built per message.
   */
  private async signedRequest(
    type: number,
    attrs: Array<[number, Buffer]>,
    xored: Array<[number, (id: Buffer) => Buffer]> = [],
  ): Promise<StunMessage | null> {
    for (let round = 0; round < 3; round++) {
      const message = this.integrityKey
        ? this.sign(type, attrs, xored)
        : encodeStun(type, newTransactionId(), attrs);
      const reply = await this.request(message);
      if (!reply) return null;
      const e = errorCode(reply);
      if (e?.code !== 401 && e?.code !== 438) return reply;
      const realm = reply.attrs.get(Attr.Realm)?.toString("utf8");
      const nonce = reply.attrs.get(Attr.Nonce);
      if (!nonce || (realm === undefined && !this.realm)) return reply;
      // A 401 to a signed request means the credentials are wrong: no use repeating them.
      if (e.code === 401 && this.integrityKey && (realm ?? this.realm) === this.realm) return reply;
      if (realm !== undefined) this.realm = realm;
      this.nonce = Buffer.from(nonce);
      this.integrityKey = longTermKey(this.credentials.username, this.realm, this.credentials.password);
    }
    return null;
  }

  private sign(
    type: number,
    attrs: Array<[number, Buffer]>,
    xored: Array<[number, (id: Buffer) => Buffer]> = [],
  ): Buffer {
    const id = newTransactionId();
    return withIntegrity(
      encodeStun(type, id, [
        ...attrs,
        ...xored.map(([t, value]): [number, Buffer] => [t, value(id)]),
        [Attr.Username, Buffer.from(this.credentials.username)],
        [Attr.Realm, Buffer.from(this.realm)],
        [Attr.Nonce, this.nonce ?? Buffer.alloc(0)],
      ]),
      this.integrityKey as Buffer,
    );
  }

  /** Sends `message`, retransmitting (500 ms doubling, 5 sends); the reply or null. */
  private request(message: Buffer): Promise<StunMessage | null> {
    if (this.state === "closed") return Promise.resolve(null);
    const id = message.subarray(8, 20).toString("hex");
    return new Promise((resolve) => {
      const p: Pending = { message, sends: 0, timer: null, done: resolve };
      const transmit = (): void => {
        if (p.sends === MAX_SENDS) {
          this.pending.delete(id);
          resolve(null);
          return;
        }
        this.send(this.server, message);
        p.timer = setTimeout(transmit, RTO_MS * 2 ** p.sends);
        p.timer.unref();
        p.sends++;
      };
      this.pending.set(id, p);
      transmit();
    });
  }

  private fail(reply: StunMessage | null, what: string): null {
    const e = reply && errorCode(reply);
    this.error = `${what}: ${e ? `${e.code} ${e.text}` : reply ? "unexpected reply" : "no answer"}`;
    this.state = "failed";
    return null;
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** The LIFETIME a success granted (s), else what we asked for. */
function grantedSec(m: StunMessage): number {
  const v = m.attrs.get(Attr.Lifetime);
  return v && v.length >= 4 ? v.readUInt32BE(0) : LIFETIME_SEC;
}
