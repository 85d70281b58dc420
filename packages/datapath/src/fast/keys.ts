import { createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from "node:crypto";

/**
 * The fast path's key schedule (packages/protocol/README.md "Fast path"): each side makes a fresh
 * X25519 key pair per agreement and sends its public key over the link's DTLS-protected control
 * channel; both derive one 32-byte key per direction with HKDF-SHA256 over the shared secret,
 * salted with a transcript that binds both UIDs, both DTLS fingerprints (the ones signalling
 * authenticated), both receiver indexes and both public keys.
 */

export const FAST_KEY_BYTES = 32;
export const X25519_PUBLIC_BYTES = 32;
const LABEL = "tincan-fast-v1";
/** DER prefix of an X25519 SubjectPublicKeyInfo (RFC 8410): the raw key follows. */
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");

export interface FastKeyPair {
  publicKey: Buffer;
  privateKey: KeyObject;
}

export function newFastKeyPair(): FastKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  const der = publicKey.export({ format: "der", type: "spki" });
  return { publicKey: Buffer.from(der.subarray(der.length - X25519_PUBLIC_BYTES)), privateKey };
}

/** One side of an agreement, as both sides name it. */
export interface FastParty {
  uid: string;
  /** DTLS fingerprint from the side's SDP ("sha-256 AB:CD:..."), compared case-insensitively. */
  fingerprint: string;
  receiverIndex: number;
  publicKey: Uint8Array;
}

export interface FastKeys {
  sendKey: Buffer;
  recvKey: Buffer;
}

/**
 * Both direction keys of an agreement between `us` (holding `privateKey`) and `peer`. Which
 * direction is which follows the UIDs (the lower UID's sending key is "low->high"), so both sides
 * get the same pair whoever offered. Throws for a peer key that gives no secret (a low-order point).
 */
export function deriveFastKeys(privateKey: KeyObject, us: FastParty, peer: FastParty): FastKeys {
  if (us.uid === peer.uid) throw new Error("fast keys: both sides have one uid");
  const secret = diffieHellman({ privateKey, publicKey: publicKeyObject(peer.publicKey) });
  try {
    if (secret.every((b) => b === 0)) throw new Error("fast keys: the peer's public key gives no secret");
    const weLow = us.uid < peer.uid;
    const [low, high] = weLow ? [us, peer] : [peer, us];
    const salt = transcript(low, high);
    const lowToHigh = Buffer.from(hkdfSync("sha256", secret, salt, `${LABEL} low->high`, FAST_KEY_BYTES));
    const highToLow = Buffer.from(hkdfSync("sha256", secret, salt, `${LABEL} high->low`, FAST_KEY_BYTES));
    salt.fill(0);
    return weLow ? { sendKey: lowToHigh, recvKey: highToLow } : { sendKey: highToLow, recvKey: lowToHigh };
  } finally {
    secret.fill(0);
  }
}

/** Wipes derived keys once the socket holds its copy. */
export function wipeKeys(keys: FastKeys): void {
  keys.sendKey.fill(0);
  keys.recvKey.fill(0);
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== X25519_PUBLIC_BYTES) throw new Error("fast keys: an X25519 public key is 32 bytes");
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: "der", type: "spki" });
}

/** LABEL, then per side (low UID first): uid, fingerprint (lowercase), receiver index, public key. */
function transcript(low: FastParty, high: FastParty): Buffer {
  const parts: Buffer[] = [Buffer.from(LABEL)];
  for (const p of [low, high]) {
    for (const text of [p.uid, p.fingerprint.trim().toLowerCase()]) {
      const b = Buffer.from(text, "utf8");
      const len = Buffer.alloc(2);
      len.writeUInt16BE(b.length);
      parts.push(len, b);
    }
    const index = Buffer.alloc(4);
    index.writeUInt32BE(p.receiverIndex >>> 0);
    parts.push(index, Buffer.from(p.publicKey));
  }
  return Buffer.concat(parts);
}
