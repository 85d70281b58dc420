import { describe, expect, it } from "vitest";
import { deriveFastKeys, type FastParty, newFastKeyPair } from "./keys.js";

const FP_A = "sha-256 AA:BB:CC";
const FP_B = "sha-256 11:22:33";

function parties(over: { a?: Partial<FastParty>; b?: Partial<FastParty> } = {}) {
  const ka = newFastKeyPair();
  const kb = newFastKeyPair();
  const a: FastParty = { uid: "aaaa", fingerprint: FP_A, receiverIndex: 7, publicKey: ka.publicKey };
  const b: FastParty = { uid: "bbbb", fingerprint: FP_B, receiverIndex: 9, publicKey: kb.publicKey };
  return { ka, kb, a: { ...a, ...over.a }, b: { ...b, ...over.b }, a0: a, b0: b };
}

describe("fast-path key schedule", () => {
  it("both sides derive the same pair of keys: one's send key is the other's receive key", () => {
    const { ka, kb, a, b } = parties();
    const atA = deriveFastKeys(ka.privateKey, a, b);
    const atB = deriveFastKeys(kb.privateKey, b, a);
    expect(atA.sendKey).toHaveLength(32);
    expect(atA.sendKey.equals(atB.recvKey)).toBe(true);
    expect(atA.recvKey.equals(atB.sendKey)).toBe(true);
    expect(atA.sendKey.equals(atA.recvKey)).toBe(false);
  });

  it("fingerprints compare case-insensitively (both sides read them from SDP text)", () => {
    const { ka, kb, a, b } = parties();
    const atA = deriveFastKeys(ka.privateKey, a, b);
    const atB = deriveFastKeys(kb.privateKey, b, { ...a, fingerprint: FP_A.toLowerCase() });
    expect(atA.sendKey.equals(atB.recvKey)).toBe(true);
  });

  it.each([
    ["the peer's DTLS fingerprint", { a: { fingerprint: "sha-256 AA:BB:CD" } }],
    ["the peer's UID", { a: { uid: "aaab" } }],
    ["the peer's receiver index", { a: { receiverIndex: 8 } }],
  ])("a different view of %s gives different keys", (_what, change) => {
    const { ka, kb, a0, b0, a } = parties(change);
    const atA = deriveFastKeys(ka.privateKey, a0, b0);
    // B sees A differently from what A is.
    const atB = deriveFastKeys(kb.privateKey, b0, a);
    expect(atA.sendKey.equals(atB.recvKey)).toBe(false);
    expect(atA.recvKey.equals(atB.sendKey)).toBe(false);
  });

  it("a fresh key pair gives fresh keys", () => {
    const { ka, kb, a, b } = parties();
    const k2 = newFastKeyPair();
    const first = deriveFastKeys(ka.privateKey, a, b);
    const second = deriveFastKeys(k2.privateKey, { ...a, publicKey: k2.publicKey }, b);
    expect(first.sendKey.equals(second.sendKey)).toBe(false);
    expect(kb).toBeDefined();
  });

  it("refuses a bad peer key and equal UIDs", () => {
    const { ka, a, b } = parties();
    expect(() => deriveFastKeys(ka.privateKey, a, { ...b, publicKey: Buffer.alloc(31) })).toThrow(/32 bytes/);
    // The all-zero point is of low order: no shared secret.
    expect(() => deriveFastKeys(ka.privateKey, a, { ...b, publicKey: Buffer.alloc(32) })).toThrow();
    expect(() => deriveFastKeys(ka.privateKey, a, { ...b, uid: a.uid })).toThrow(/one uid/);
  });
});
