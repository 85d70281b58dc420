import { canonicalAddress, uidForJid } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { ulaForUid } from "./ula.js";

describe("overlay IPv6 (ULA) from the UID", () => {
  it("is fd53:7670:6e00:0 + the first 64 bits of the UID", () => {
    expect(ulaForUid("0123456789abcdef0123456789abcdef")).toBe("fd53:7670:6e00:0:123:4567:89ab:cdef");
    expect(ulaForUid("00000000000000000000000000000000")).toBe("fd53:7670:6e00::");
    expect(ulaForUid("0000000000000001ffffffffffffffff")).toBe("fd53:7670:6e00::1");
    const uid = uidForJid("alice@lab.local");
    expect(ulaForUid(uid).startsWith("fd53:7670:6e00:")).toBe(true);
    expect(canonicalAddress(ulaForUid(uid))).toBe(ulaForUid(uid));
    expect(() => ulaForUid("xyz")).toThrow();
  });

  it("differs between JIDs", () => {
    expect(ulaForUid(uidForJid("alice@lab.local"))).not.toBe(ulaForUid(uidForJid("bob@lab.local")));
  });
});
