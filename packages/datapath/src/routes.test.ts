import { addressBytes as parseAddress, prefixBytes as parsePrefix } from "@tincan/protocol";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PrefixTable } from "./routes.js";

function matches(addr: Uint8Array, prefix: Uint8Array, len: number): boolean {
  for (let bit = 0; bit < len; bit++) {
    const m = 0x80 >> (bit & 7);
    if (((addr[bit >> 3] as number) & m) !== ((prefix[bit >> 3] as number) & m)) return false;
  }
  return true;
}

// Naive reference: scan every prefix, keep the longest that matches.
function naiveLookup(list: Map<string, number>, addr: Uint8Array): number | undefined {
  let best: { len: number; value: number } | undefined;
  for (const [prefix, value] of list) {
    const p = parsePrefix(prefix);
    if (p.bytes.length !== addr.length) continue;
    if (matches(addr, p.bytes, p.length) && (!best || p.length > best.len)) best = { len: p.length, value };
  }
  return best?.value;
}

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join("."));
const v6 = fc
  .array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
  .map((w) => w.map((x) => x.toString(16)).join(":"));

describe("PrefixTable", () => {
  it("agrees with a naive longest-prefix scan (IPv4 and IPv6, with deletes)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.tuple(v4, fc.integer({ min: 0, max: 32 })).map(([a, l]) => `${a}/${l}`),
            fc.tuple(v6, fc.integer({ min: 0, max: 128 })).map(([a, l]) => `${a}/${l}`),
            // Nested prefixes of one address make longest-match actually matter.
            fc.integer({ min: 8, max: 32 }).map((l) => `10.1.2.3/${l}`),
          ),
          { maxLength: 40 },
        ),
        fc.array(fc.oneof(v4, v6, fc.constant("10.1.2.3"), fc.constant("10.1.9.9")), { maxLength: 30 }),
        fc.array(fc.nat(39), { maxLength: 10 }),
        (prefixes, probes, deletions) => {
          const table = new PrefixTable<number>();
          const reference = new Map<string, number>();
          prefixes.forEach((p, i) => {
            const canonical = table.set(p, i);
            reference.set(canonical, i);
          });
          for (const d of deletions) {
            const p = prefixes[d];
            if (p === undefined) continue;
            const canonical = table.set(p, -1);
            table.delete(p);
            reference.delete(canonical);
          }
          expect(table.size).toBe(reference.size);
          for (const probe of probes) {
            const addr = parseAddress(probe);
            const got = table.lookup(addr, 0, addr.length === 4 ? 4 : 6)?.value;
            expect(got).toBe(naiveLookup(reference, addr));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("reads the address from inside a packet buffer", () => {
    const table = new PrefixTable<string>();
    table.set("10.10.0.0/16", "group");
    table.set("10.10.0.7/32", "seven");
    const pkt = Buffer.alloc(20);
    pkt.set([10, 10, 0, 7], 16);
    expect(table.lookup(pkt, 16, 4)?.value).toBe("seven");
    pkt[19] = 8;
    expect(table.lookup(pkt, 16, 4)?.value).toBe("group");
    expect(table.lookupText("fd00::1")).toBeNull();
  });

  it("canonicalises prefixes and lists entries", () => {
    const table = new PrefixTable<number>();
    expect(table.set("10.10.3.4/16", 1)).toBe("10.10.0.0/16");
    expect(table.set("fd00:0:0:0::1/64", 2)).toBe("fd00::/64");
    expect([...table.entries()].map((e) => e.prefix).sort()).toEqual(["10.10.0.0/16", "fd00::/64"]);
    expect(table.get("10.10.0.0/16")).toBe(1);
    expect(table.delete("10.10.0.0/16")).toBe(true);
    expect(table.delete("10.10.0.0/16")).toBe(false);
  });
});
