// The STUN (RFC 8489) and TURN (RFC 8656) message codec shared by `tincanctl netcheck` and the
// datapath's TURN client. Parsing never throws: a malformed message is null.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { addressBytes, addressFromBytes } from "./ip.js";

export const MAGIC_COOKIE = 0x2112a442;
const HEADER = 20;

export const StunType = {
  BindingRequest: 0x0001,
  BindingSuccess: 0x0101,
  AllocateRequest: 0x0003,
  AllocateSuccess: 0x0103,
  AllocateError: 0x0113,
  RefreshRequest: 0x0004,
  RefreshSuccess: 0x0104,
  CreatePermissionRequest: 0x0008,
  CreatePermissionSuccess: 0x0108,
  ChannelBindRequest: 0x0009,
  ChannelBindSuccess: 0x0109,
  DataIndication: 0x0017,
} as const;

export const Attr = {
  MappedAddress: 0x0001,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009,
  Lifetime: 0x000d,
  ChannelNumber: 0x000c,
  XorPeerAddress: 0x0012,
  Data: 0x0013,
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
    return { address: addressFromBytes(a), port };
  }
  if (family === 0x02 && value.length >= 20) {
    const a = Buffer.from(value.subarray(4, 20));
    const pad = Buffer.concat([cookie, transactionId]);
    if (xored) for (let i = 0; i < 16; i++) a[i] = (a[i] ?? 0) ^ (pad[i] ?? 0);
    return { address: addressFromBytes(a), port };
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

/** An XOR-PEER-ADDRESS style value (RFC 8489 section 14.2) for `endpoint`. */
export function writeXorAddress(endpoint: Endpoint, transactionId: Buffer): Buffer {
  const bytes = addressBytes(endpoint.address);
  const out = Buffer.alloc(4 + bytes.length);
  out[1] = bytes.length === 4 ? 0x01 : 0x02;
  out.writeUInt16BE(endpoint.port ^ (MAGIC_COOKIE >>> 16), 2);
  const pad = Buffer.alloc(16);
  pad.writeUInt32BE(MAGIC_COOKIE);
  transactionId.copy(pad, 4, 0, 12);
  for (let i = 0; i < bytes.length; i++) out[4 + i] = (bytes[i] ?? 0) ^ (pad[i] ?? 0);
  return out;
}
