import { addressBytes, addressFromBytes } from "@tincan/protocol";
import type { FastEndpoint } from "@tincan/tuntap";
import { FRAME_FAST_ACCEPT, FRAME_FAST_OFFER, FRAME_HEADROOM } from "../wire/index.js";
import { X25519_PUBLIC_BYTES } from "./keys.js";

/**
 * FAST_OFFER (0x17) and FAST_ACCEPT (0x18), sent on the link's DTLS-protected transport (rekeys on
 * the fast path itself, sealed by the current session, when both sides keep links on it alone):
 *   [type][version 1][sender's receiver index u32][echo u32][fast port u16][X25519 public key 32]
 *   [candidate count u8] count x [kind][address 4|16][port u16]
 * `kind` 4|6: an address of the sender (host or STUN-mapped), 0x14|0x16: the sender's relayed address
 * on its TURN server (the peer reaches it through its own allocation). `echo` is 0 in an offer and the
 * offer's receiver index in its accept. Big-endian.
 */

export const FAST_VERSION = 1;
/** Candidates a side announces at most (host addresses, STUN-mapped ones, a relayed one). */
export const MAX_FAST_CANDIDATES = 8;
const FIXED_BYTES = 1 + 1 + 4 + 4 + 2 + X25519_PUBLIC_BYTES + 1;

/** Kind bit of a candidate that is the sender's TURN-relayed address. */
const RELAYED_KIND = 0x10;

export type { FastEndpoint };

/** An endpoint the peer may probe; `relayed`: the sender's relayed address on its TURN server. */
export interface FastCandidate extends FastEndpoint {
  relayed?: boolean;
}

export interface FastHello {
  type: "offer" | "accept";
  /** Where the sender takes fast-path datagrams for this agreement (never 0). */
  index: number;
  /** The offer's index in an accept; 0 in an offer. */
  echo: number;
  /** The sender's fast-path port (the peer also tries it at the address ICE found). */
  port: number;
  publicKey: Buffer;
  candidates: FastCandidate[];
}

/** The frame at [FRAME_HEADROOM..length) of the returned buffer (headroom for the transport). */
export function encodeFastHello(h: FastHello): Buffer {
  const candidates = h.candidates
    .slice(0, MAX_FAST_CANDIDATES)
    .map((c) => ({ ...c, bytes: addressBytes(c.address) }));
  const size = FIXED_BYTES + candidates.reduce((n, c) => n + 3 + c.bytes.length, 0);
  const b = Buffer.alloc(FRAME_HEADROOM + size);
  let at = FRAME_HEADROOM;
  b[at++] = h.type === "offer" ? FRAME_FAST_OFFER : FRAME_FAST_ACCEPT;
  b[at++] = FAST_VERSION;
  b.writeUInt32BE(h.index >>> 0, at);
  b.writeUInt32BE(h.echo >>> 0, at + 4);
  b.writeUInt16BE(h.port, at + 8);
  at += 10;
  b.set(h.publicKey.subarray(0, X25519_PUBLIC_BYTES), at);
  at += X25519_PUBLIC_BYTES;
  b[at++] = candidates.length;
  for (const c of candidates) {
    b[at++] = (c.bytes.length === 4 ? 4 : 6) | (c.relayed ? RELAYED_KIND : 0);
    b.set(c.bytes, at);
    at += c.bytes.length;
    b.writeUInt16BE(c.port, at);
    at += 2;
  }
  return b;
}

/** Reads a FAST_OFFER / FAST_ACCEPT frame; a string says what is wrong with it. */
export function decodeFastHello(frame: Uint8Array): FastHello | string {
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (b.length < FIXED_BYTES) return `fast hello: ${b.length} bytes, at least ${FIXED_BYTES} needed`;
  const type = b[0] === FRAME_FAST_OFFER ? "offer" : b[0] === FRAME_FAST_ACCEPT ? "accept" : null;
  if (!type) return `fast hello: type 0x${(b[0] as number).toString(16)}`;
  if (b[1] !== FAST_VERSION) return `fast hello: version ${b[1]}, not ${FAST_VERSION}`;
  const index = b.readUInt32BE(2);
  const echo = b.readUInt32BE(6);
  const port = b.readUInt16BE(10);
  if (index === 0) return "fast hello: receiver index 0";
  if (port === 0) return "fast hello: port 0";
  if ((type === "offer") !== (echo === 0)) return `fast hello: echo ${echo} in an ${type}`;
  const publicKey = Buffer.from(b.subarray(12, 12 + X25519_PUBLIC_BYTES));
  let at = 12 + X25519_PUBLIC_BYTES;
  const count = b[at++] as number;
  if (count > MAX_FAST_CANDIDATES) return `fast hello: ${count} candidates, at most ${MAX_FAST_CANDIDATES}`;
  const candidates: FastCandidate[] = [];
  for (let i = 0; i < count; i++) {
    const kind = b[at] as number;
    const family = kind & ~RELAYED_KIND;
    const len = family === 4 ? 4 : family === 6 ? 16 : 0;
    if (len === 0) return `fast hello: candidate ${i} family ${kind}`;
    if (at + 1 + len + 2 > b.length) return `fast hello: candidate ${i} cut short`;
    const address = addressFromBytes(b.subarray(at + 1, at + 1 + len));
    const candidatePort = b.readUInt16BE(at + 1 + len);
    if (candidatePort === 0) return `fast hello: candidate ${i} port 0`;
    candidates.push(
      kind & RELAYED_KIND
        ? { address, port: candidatePort, relayed: true }
        : { address, port: candidatePort },
    );
    at += 1 + len + 2;
  }
  if (at !== b.length) return `fast hello: ${b.length - at} bytes after the candidates`;
  return { type, index, echo, port, publicKey, candidates };
}
