import { uidForJid } from "@tincan/protocol";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalIpv6, formatIpv6, parseIpv6, ulaForUid } from "./ula.js";

describe("overlay IPv6 (ULA) from the UID", () => {
  it("is fd53:7670:6e00:0 + the first 64 bits of the UID", () => {
    expect(ulaForUid("0123456789abcdef0123456789abcdef")).toBe("fd53:7670:6e00:0:123:4567:89ab:cdef");
    expect(ulaForUid("00000000000000000000000000000000")).toBe("fd53:7670:6e00::");
    expect(ulaForUid("0000000000000001ffffffffffffffff")).toBe("fd53:7670:6e00::1");
    const uid = uidForJid("alice@lab.local");
    expect(ulaForUid(uid).startsWith("fd53:7670:6e00:")).toBe(true);
    expect(canonicalIpv6(ulaForUid(uid))).toBe(ulaForUid(uid));
    expect(() => ulaForUid("xyz")).toThrow();
  });

  it("differs between JIDs", () => {
    expect(ulaForUid(uidForJid("alice@lab.local"))).not.toBe(ulaForUid(uidForJid("bob@lab.local")));
  });

  it("parses and formats like RFC 5952 (checked against the WHATWG URL serializer)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
          minLength: 8,
          maxLength: 8,
        }),
        (groups) => {
          const text = formatIpv6(groups);
          expect(text).toBe(
            new URL(`http://[${groups.map((g) => g.toString(16)).join(":")}]/`).hostname.slice(1, -1),
          );
          expect(parseIpv6(text)).toEqual(groups);
        },
      ),
    );
    expect(canonicalIpv6("FD53:7670:6E00:0000::0001")).toBe("fd53:7670:6e00::1");
    for (const bad of [
      "",
      "1:2:3",
      "1::2::3",
      "g::1",
      "1:2:3:4:5:6:7:8:9",
      "12345::",
      "::1.2.3.4",
      "1:2:3:4:5:6:7::8",
    ])
      expect(parseIpv6(bad), bad).toBeNull();
  });
});
