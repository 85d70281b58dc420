// The few STUN (RFC 8489) and TURN (RFC 8656) messages `tincanctl netcheck` sends: Binding, and
// Allocate / Refresh with long-term credentials. Parsing never throws: a malformed reply is null.
import { createHash, createHmac, randomBytes } from "node:crypto";
import type { Socket } from "node:dgram";

export const MAGIC_COOKIE = 0x2112a442;
const HEADER = 20;

export const StunType = {
  BindingRequest: 0x0001,
  BindingSuccess: 0x0101,
  AllocateRequest: 0x0003,
  AllocateSuccess: 0x0103,
  AllocateError: 0x0113,
  RefreshRequest: 0x0004,
} as const;

export const Attr = {
  MappedAddress: 0x0001,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009,
  Lifetime: 0x000d,
  XorRelayedAddress: 0x0016,
  RequestedTransport: 0x0019,
  Realm: 0x0014,
  Nonce: 0x0015,
  XorMappedAddress: 0x0020,
} as const;

export interface StunMessage {
  type: number;
  transactionId: Buffer;
  attrs: Map<number, Buffer>;
}

export interface Endpoint {
  address: string;
  port: number;
}

export function encodeStun(type: number, transactionId: Buffer, attrs: Array<[number, Buffer]>): Buffer {
  const body = Buffer.concat(
    attrs.map(([t, v]) => {
      const a = Buffer.alloc(4 + v.length + ((4 - (v.length % 4)) % 4));
      a.writeUInt16BE(t, 0);
      a.writeUInt16BE(v.length, 2);
      v.copy(a, 4);
      return a;
    }),
  );
  const head = Buffer.alloc(HEADER);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(body.length, 2);
  head.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(head, 8, 0, 12);
  return Buffer.concat([head, body]);
}

/** A STUN message, or null when `buf` is not one (no magic cookie, bad lengths). */
export function decodeStun(buf: Buffer): StunMessage | null {
  if (buf.length < HEADER || (buf[0] ?? 0) & 0xc0) return null;
  const length = buf.readUInt16BE(2);
  if (buf.readUInt32BE(4) !== MAGIC_COOKIE || length % 4 !== 0 || HEADER + length > buf.length) return null;
  const attrs = new Map<number, Buffer>();
  let at = HEADER;
  const end = HEADER + length;
  while (at + 4 <= end) {
    const t = buf.readUInt16BE(at);
    const len = buf.readUInt16BE(at + 2);
    if (at + 4 + len > end) return null;
    if (!attrs.has(t)) attrs.set(t, buf.subarray(at + 4, at + 4 + len));
    at += 4 + len + ((4 - (len % 4)) % 4);
  }
  return { type: buf.readUInt16BE(0), transactionId: buf.subarray(8, 20), attrs };
}

/** An (XOR-)MAPPED-ADDRESS style value, or null when malformed. */
export function readAddress(
  value: Buffer | undefined,
  xored: boolean,
  transactionId: Buffer,
): Endpoint | null {
  if (!value || value.length < 8) return null;
  const family = value[1];
  const cookie = Buffer.alloc(4);
  cookie.writeUInt32BE(MAGIC_COOKIE);
  const port = value.readUInt16BE(2) ^ (xored ? MAGIC_COOKIE >>> 16 : 0);
  if (family === 0x01) {
    const a = Buffer.from(value.subarray(4, 8));
    if (xored) for (let i = 0; i < 4; i++) a[i] = (a[i] ?? 0) ^ (cookie[i] ?? 0);
    return { address: [...a].join("."), port };
  }
  if (family === 0x02 && value.length >= 20) {
    const a = Buffer.from(value.subarray(4, 20));
    const pad = Buffer.concat([cookie, transactionId]);
    if (xored) for (let i = 0; i < 16; i++) a[i] = (a[i] ?? 0) ^ (pad[i] ?? 0);
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(a.readUInt16BE(i).toString(16));
    // The URL parser writes an IPv6 address in its canonical short form.
    return { address: new URL(`http://[${groups.join(":")}]`).hostname.slice(1, -1), port };
  }
  return null;
}

/** The address a Binding or Allocate success reports for us (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS). */
export function mappedAddress(m: StunMessage): Endpoint | null {
  return (
    readAddress(m.attrs.get(Attr.XorMappedAddress), true, m.transactionId) ??
    readAddress(m.attrs.get(Attr.MappedAddress), false, m.transactionId)
  );
}

/** ERROR-CODE as "401 Unauthorized", or null. */
export function errorCode(m: StunMessage): { code: number; text: string } | null {
  const v = m.attrs.get(Attr.ErrorCode);
  if (!v || v.length < 4) return null;
  return { code: ((v[2] ?? 0) & 0x7) * 100 + (v[3] ?? 0), text: v.subarray(4).toString("utf8") };
}

/** Appends MESSAGE-INTEGRITY (long-term credentials) to an encoded message. */
export function withIntegrity(msg: Buffer, key: Buffer): Buffer {
  const out = Buffer.concat([msg, Buffer.alloc(24)]);
  out.writeUInt16BE(msg.length - HEADER + 24, 2);
  const mac = createHmac("sha1", key).update(out.subarray(0, msg.length)).digest();
  out.writeUInt16BE(Attr.MessageIntegrity, msg.length);
  out.writeUInt16BE(20, msg.length + 2);
  mac.copy(out, msg.length + 4);
  return out;
}

export function longTermKey(username: string, realm: string, password: string): Buffer {
  return createHash("md5").update(`${username}:${realm}:${password}`).digest();
}

export const newTransactionId = (): Buffer => randomBytes(12);

/**
 * Sends `msg` to host:port from `socket` (retransmitting every 500 ms) and resolves with the reply of
 * the same transaction, or null after timeoutMs.
 */
export function stunRequest(
  socket: Socket,
  to: Endpoint,
  msg: Buffer,
  timeoutMs: number,
): Promise<StunMessage | null> {
  const id = msg.subarray(8, 20);
  return new Promise((resolve) => {
    const send = () => socket.send(msg, to.port, to.address, () => {});
    const onMessage = (buf: Buffer) => {
      const m = decodeStun(buf);
      if (m?.transactionId.equals(id)) done(m);
    };
    const resend = setInterval(send, 500);
    const timer = setTimeout(() => done(null), timeoutMs);
    const done = (m: StunMessage | null) => {
      clearInterval(resend);
      clearTimeout(timer);
      socket.off("message", onMessage);
      resolve(m);
    };
    socket.on("message", onMessage);
    send();
  });
}

export type AllocateOutcome =
  | { ok: true; relayed: Endpoint | null; mapped: Endpoint | null }
  | { ok: false; error: string };

/**
 * TURN Allocate (UDP) with long-term credentials: the unauthenticated request gets 401 with realm
 * and nonce, the signed one the relayed address. The allocation is released at once (Refresh, lifetime 0).
 */
export async function turnAllocate(
  socket: Socket,
  to: Endpoint,
  creds: { username: string; password: string },
  timeoutMs: number,
): Promise<AllocateOutcome> {
  const transport = Buffer.from([17, 0, 0, 0]); // UDP
  const first = await stunRequest(
    socket,
    to,
    encodeStun(StunType.AllocateRequest, newTransactionId(), [[Attr.RequestedTransport, transport]]),
    timeoutMs,
  );
  if (!first) return { ok: false, error: "no answer" };
  const challenge = errorCode(first);
  const realm = first.attrs.get(Attr.Realm)?.toString("utf8");
  const nonce = first.attrs.get(Attr.Nonce);
  if (first.type === StunType.AllocateSuccess)
    return { ok: true, relayed: relayedAddress(first), mapped: mappedAddress(first) };
  if (challenge?.code !== 401 || realm === undefined || !nonce)
    return { ok: false, error: challenge ? `${challenge.code} ${challenge.text}` : "unexpected reply" };
  const key = longTermKey(creds.username, realm, creds.password);
  const signed = (type: number, attrs: Array<[number, Buffer]>) =>
    withIntegrity(
      encodeStun(type, newTransactionId(), [
        ...attrs,
        [Attr.Username, Buffer.from(creds.username)],
        [Attr.Realm, Buffer.from(realm)],
        [Attr.Nonce, nonce],
      ]),
      key,
    );
  const reply = await stunRequest(
    socket,
    to,
    signed(StunType.AllocateRequest, [[Attr.RequestedTransport, transport]]),
    timeoutMs,
  );
  if (!reply) return { ok: false, error: "no answer to the authenticated request" };
  if (reply.type !== StunType.AllocateSuccess) {
    const e = errorCode(reply);
    return { ok: false, error: e ? `${e.code} ${e.text}` : "unexpected reply" };
  }
  const zero = Buffer.alloc(4);
  await stunRequest(socket, to, signed(StunType.RefreshRequest, [[Attr.Lifetime, zero]]), 1000);
  return { ok: true, relayed: relayedAddress(reply), mapped: mappedAddress(reply) };
}

function relayedAddress(m: StunMessage): Endpoint | null {
  return readAddress(m.attrs.get(Attr.XorRelayedAddress), true, m.transactionId);
}
