import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addressBytes,
  addressFromBytes,
  canonicalAddress,
  canonicalPrefix,
  hostPrefix,
  IpTextError,
  intToIpv4,
  ipv4Range,
  ipv4ToInt,
  ipv6FromGroups,
  parseAddress,
  parsePrefix,
  prefixBytes,
  prefixContains,
} from "./ip.js";

/** Inputs that are no address: each must give IpTextError (or null), never another exception. */
const JUNK = [
  "",
  " 1.2.3.4",
  "1.2.3",
  "1.2.3.256",
  "010.1.1.1",
  "0x0a.0.0.1",
  "10",
  "1::2::3",
  "g::1",
  "1:2:3:4:5:6:7:8:9",
  "12345::",
  "fe80::1%eth0",
  "1:2:3:4:5:6:7::8",
  "a".repeat(10_000),
  undefined as unknown as string,
  42 as unknown as string,
];

describe("addresses", () => {
  it("canonical text: dotted decimal, RFC 5952 for IPv6", () => {
    expect(parseAddress("10.1.2.3")).toEqual({ version: 4, address: "10.1.2.3" });
    expect(parseAddress("FD53:7670:6E00:0000::0001")).toEqual({ version: 6, address: "fd53:7670:6e00::1" });
    expect(canonicalAddress("::ffff:1.2.3.4")).toBe("::ffff:102:304"); // as the datapath names it
    expect(canonicalAddress("0:0:0:0:0:0:0:1")).toBe("::1");
  });

  it("formats eight groups like the WHATWG URL serializer, and parses them back", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
          minLength: 8,
          maxLength: 8,
        }),
        (groups) => {
          const text = ipv6FromGroups(groups);
          const hex = groups.map((g) => g.toString(16)).join(":");
          expect(text).toBe(new URL(`http://[${hex}]/`).hostname.slice(1, -1));
          expect(canonicalAddress(hex)).toBe(text);
        },
      ),
    );
    expect(() => ipv6FromGroups([1, 2, 3])).toThrow(IpTextError);
    expect(() => ipv6FromGroups([0, 0, 0, 0, 0, 0, 0, 0x10000])).toThrow(IpTextError);
  });

  it("bad text: IpTextError naming it (null from canonicalAddress), nothing else", () => {
    for (const bad of JUNK) {
      expect(() => parseAddress(bad), String(bad)).toThrow(IpTextError);
      expect(canonicalAddress(bad), String(bad)).toBeNull();
    }
    expect(() => parseAddress("1.2.3")).toThrow('not an IP address: "1.2.3"');
  });

  it("IPv4 numbers round-trip", () => {
    expect(intToIpv4(ipv4ToInt("255.0.10.1"))).toBe("255.0.10.1");
    expect(ipv4ToInt("0.0.1.2")).toBe(258);
    expect(() => ipv4ToInt("::1")).toThrow(IpTextError);
    expect(() => ipv4ToInt("1.2.3.256")).toThrow(IpTextError);
  });
});

describe("prefixes", () => {
  it("parses an interface address with its prefix: address kept, network cleared", () => {
    expect(parsePrefix("10.10.0.5/16")).toEqual({
      version: 4,
      address: "10.10.0.5",
      length: 16,
      network: "10.10.0.0",
    });
    expect(parsePrefix("FD00::1:2/64")).toEqual({
      version: 6,
      address: "fd00::1:2",
      length: 64,
      network: "fd00::",
    });
    expect(parsePrefix("10.1.2.3/0").network).toBe("0.0.0.0");
    expect(canonicalPrefix("FD00:0::1/128")).toBe("fd00::1/128");
  });

  it("bad text: IpTextError (null from canonicalPrefix)", () => {
    const bad = [...JUNK, "10.0.0.1", "10.0.0.1/", "10.0.0.1/33", "::1/129", "10.0.0.1/-1", "10.0.0.1/1e1"];
    for (const text of [...bad, ...JUNK.map((j) => `${j}/24`)]) {
      expect(() => parsePrefix(text), String(text)).toThrow(IpTextError);
      expect(canonicalPrefix(text), String(text)).toBeNull();
    }
    expect(() => parsePrefix("10.0.0.1/33")).toThrow('not an IP address with prefix length: "10.0.0.1/33"');
  });

  it("contains: same version and network only", () => {
    expect(prefixContains("10.10.0.1/16", "10.10.255.255")).toBe(true);
    expect(prefixContains("10.10.0.1/16", "10.11.0.1")).toBe(false);
    expect(prefixContains(parsePrefix("fd00::/64"), "FD00::abcd")).toBe(true);
    expect(prefixContains("fd00::/64", "fd00:0:0:1::1")).toBe(false);
    expect(prefixContains("0.0.0.0/0", "::1")).toBe(false);
    expect(prefixContains("::/0", "1.2.3.4")).toBe(false);
    expect(prefixContains("10.0.0.0/8", "junk")).toBe(false);
    expect(prefixContains("junk", "10.0.0.1")).toBe(false);
  });

  it("host prefixes", () => {
    expect(hostPrefix("10.0.0.7")).toBe("10.0.0.7/32");
    expect(hostPrefix("fd00::7")).toBe("fd00::7/128");
    expect(() => hostPrefix("10.0.0")).toThrow(IpTextError);
  });

  it("IPv4 ranges: network and broadcast of an interface address", () => {
    const r = ipv4Range("172.31.7.9/16");
    expect(intToIpv4(r.address)).toBe("172.31.7.9");
    expect(intToIpv4(r.network)).toBe("172.31.0.0");
    expect(intToIpv4(r.broadcast)).toBe("172.31.255.255");
    expect(r).toMatchObject({ length: 16, cidr: "172.31.0.0/16" });
    expect(ipv4Range("10.0.0.1/32")).toMatchObject({
      network: ipv4ToInt("10.0.0.1"),
      broadcast: ipv4ToInt("10.0.0.1"),
    });
    expect(() => ipv4Range("1.2.3.4/33")).toThrow(IpTextError);
    expect(() => ipv4Range("fd00::1/64")).toThrow(IpTextError);
  });
});

describe("address bytes (the datapath's tries and packet addresses)", () => {
  it("turns text into bytes and bytes into canonical text, both ways", () => {
    expect([...addressBytes("10.1.2.3")]).toEqual([10, 1, 2, 3]);
    expect(addressFromBytes(addressBytes("FD00:0:0::1"))).toBe("fd00::1");
    expect(addressFromBytes(addressBytes("::ffff:10.0.0.1"))).toBe("::ffff:a00:1");
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        expect(addressBytes(addressFromBytes(bytes))).toEqual(bytes);
      }),
    );
  });

  it("gives a prefix's network bytes, a bare address as its host prefix", () => {
    const p = prefixBytes("10.10.7.9/16");
    expect([p.version, p.length, p.network, [...p.bytes]]).toEqual([4, 16, "10.10.0.0", [10, 10, 0, 0]]);
    expect(prefixBytes("fd00::5").length).toBe(128);
  });

  it("refuses bad text and byte counts with IpTextError", () => {
    for (const bad of ["10.1.2", "010.1.2.3", "fd00::1%eth0", "10.0.0.0/33", ""])
      expect(() => prefixBytes(bad)).toThrow(IpTextError);
    expect(() => addressFromBytes(new Uint8Array(5))).toThrow(IpTextError);
  });
});
