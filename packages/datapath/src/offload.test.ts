import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  completeChecksum,
  META_GSO_TCP4,
  META_GSO_TCP6,
  META_PARTIAL,
  META_UDP,
  type PacketOffload,
  readVnetHdr,
  segmentTcp,
  toPlainPackets,
  writeVnetHdr,
} from "./offload.js";
import { packetView } from "./testing.js";
import { translateIpv4 } from "./translate.js";

// Independent reference: plain RFC 1071 sums over byte arrays, built the slow, obvious way.
function onesSum(bytes: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function pseudoHeader(pkt: Uint8Array, l4Len: number, proto: number): number[] {
  const v6 = pkt[0]! >> 4 === 6;
  const addrs = v6 ? [...pkt.subarray(8, 40)] : [...pkt.subarray(12, 20)];
  return [...addrs, 0, 0, l4Len >> 8, l4Len & 0xff, 0, 0, 0, proto];
}

/** TCP or UDP over IPv4/IPv6 whose L4 checksum field holds the pseudo-header sum only (as with TUN_F_CSUM). */
function partialPacket(
  v6: boolean,
  proto: number,
  payload: Uint8Array,
  seed: number,
  tcpOptions = 0,
): Buffer {
  const ipLen = v6 ? 40 : 20;
  const l4hdr = proto === 6 ? 20 + tcpOptions : 8;
  const pkt = Buffer.alloc(ipLen + l4hdr + payload.length);
  const total = pkt.length;
  if (v6) {
    pkt[0] = 0x60;
    pkt.writeUInt16BE(total - 40, 4);
    pkt[6] = proto;
    pkt[7] = 64;
    for (let i = 8; i < 40; i++) pkt[i] = (seed * 7 + i * 13) & 0xff;
  } else {
    pkt[0] = 0x45;
    pkt.writeUInt16BE(total, 2);
    pkt.writeUInt16BE(seed & 0xffff, 4);
    pkt[6] = 0x40;
    pkt[8] = 64;
    pkt[9] = proto;
    for (let i = 12; i < 20; i++) pkt[i] = (seed * 7 + i * 13) & 0xff;
    pkt.writeUInt16BE(~onesSum(pkt.subarray(0, 20)) & 0xffff, 10);
  }
  const l4 = ipLen;
  pkt.writeUInt16BE(40000 + (seed % 1000), l4);
  pkt.writeUInt16BE(5201, l4 + 2);
  if (proto === 6) {
    pkt.writeUInt32BE((seed * 2654435761) >>> 0, l4 + 4);
    pkt.writeUInt32BE(12345, l4 + 8);
    pkt[l4 + 12] = ((20 + tcpOptions) / 4) << 4;
    pkt[l4 + 13] = 0x18 | 0x80 | 0x01; // PSH ACK CWR FIN
    pkt.writeUInt16BE(501, l4 + 14);
    for (let i = 0; i < tcpOptions; i++) pkt[l4 + 20 + i] = 1; // NOPs
  } else {
    pkt.writeUInt16BE(8 + payload.length, l4 + 4);
  }
  pkt.set(payload, l4 + l4hdr);
  const field = l4 + (proto === 6 ? 16 : 6);
  pkt.writeUInt16BE(onesSum(pseudoHeader(pkt, total - l4, proto)), field);
  return pkt;
}

function l4ChecksumValid(pkt: Uint8Array): boolean {
  const v6 = pkt[0]! >> 4 === 6;
  const l4 = v6 ? 40 : (pkt[0]! & 0x0f) * 4;
  const proto = v6 ? pkt[6]! : pkt[9]!;
  const body = pkt.subarray(l4);
  return onesSum([...pseudoHeader(pkt, body.length, proto), ...body]) === 0xffff;
}

const payloadArb = fc.uint8Array({ minLength: 0, maxLength: 9000 });

describe("completeChecksum", () => {
  it("turns a partial TCP/UDP checksum into the full one, for IPv4 and IPv6", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.constantFrom(6, 17), payloadArb, fc.nat(), (v6, proto, payload, seed) => {
        const pkt = partialPacket(v6, proto, payload, seed);
        const meta = META_PARTIAL | (proto === 17 ? META_UDP : 0);
        expect(completeChecksum(pkt, 0, pkt.length, meta, v6 ? 40 : 20)).toBe(true);
        expect(l4ChecksumValid(pkt)).toBe(true);
      }),
    );
  });

  it("refuses a checksum field beyond the packet", () => {
    const pkt = partialPacket(false, 6, new Uint8Array(0), 1);
    expect(completeChecksum(pkt, 0, 30, META_PARTIAL, 20)).toBe(false);
  });
});

describe("segmentTcp (software TSO)", () => {
  it("cuts a super-packet into valid segments that carry the same bytes and sequence numbers", () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.uint8Array({ minLength: 1, maxLength: 20000 }),
        fc.integer({ min: 500, max: 1448 }),
        fc.nat(),
        fc.constantFrom(0, 12),
        (v6, payload, mss, seed, options) => {
          const sup = partialPacket(v6, 6, payload, seed, options);
          const ipLen = v6 ? 40 : 20;
          const hdrLen = ipLen + 20 + options;
          const segs: Buffer[] = [];
          const out = new Uint8Array(sup.length + 64 * hdrLen);
          const n = segmentTcp(sup, 0, sup.length, ipLen, mss, out, (b, o, l) =>
            segs.push(Buffer.from(b.subarray(o, o + l))),
          );
          expect(n).toBe(Math.ceil(payload.length / mss));
          expect(segs.length).toBe(n);
          const seq0 = sup.readUInt32BE(ipLen + 4);
          const data: Buffer[] = [];
          segs.forEach((s, i) => {
            expect(l4ChecksumValid(s)).toBe(true);
            if (v6) expect(s.readUInt16BE(4)).toBe(s.length - 40);
            else {
              expect(s.readUInt16BE(2)).toBe(s.length);
              expect(onesSum(s.subarray(0, 20))).toBe(0xffff);
              expect(s.readUInt16BE(4)).toBe((sup.readUInt16BE(4) + i) & 0xffff);
            }
            expect(s.readUInt32BE(ipLen + 4)).toBe((seq0 + i * mss) % 2 ** 32);
            const flags = s[ipLen + 13]!;
            expect((flags & 0x09) !== 0).toBe(i === n - 1); // FIN, PSH only on the last
            expect((flags & 0x80) !== 0).toBe(i === 0); // CWR only on the first
            expect(s.subarray(ipLen + 20, hdrLen)).toEqual(sup.subarray(ipLen + 20, hdrLen)); // options kept
            expect(s.length - hdrLen).toBe(i < n - 1 ? mss : payload.length - (n - 1) * mss);
            data.push(s.subarray(hdrLen));
          });
          expect(Buffer.concat(data)).toEqual(Buffer.from(payload));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("rejects malformed headers instead of reading past them", () => {
    const sup = partialPacket(false, 6, new Uint8Array(100), 3);
    sup[20 + 12] = 0xf0; // data offset 60 > what is there
    const out = new Uint8Array(1000);
    expect(segmentTcp(sup, 0, 70, 20, 50, out, () => {})).toBe(-1);
    expect(segmentTcp(sup, 0, sup.length, 20, 0, out, () => {})).toBe(-1);
  });
});

describe("virtio-net header", () => {
  it("round-trips through the compact form", () => {
    const cases: [number, number, number][] = [
      [0, 0, 0],
      [META_PARTIAL, 20, 0],
      [META_PARTIAL | META_UDP, 40, 0],
      [META_PARTIAL | META_GSO_TCP4, 20, 1240],
      [META_PARTIAL | META_GSO_TCP6 | 0x80, 40, 1220],
    ];
    for (const [meta, csumStart, gsoSize] of cases) {
      const pkt = partialPacket(csumStart === 40, meta & META_UDP ? 17 : 6, new Uint8Array(3000), 5);
      const hdr = new Uint8Array(10);
      expect(writeVnetHdr(hdr, packetView(pkt, meta, csumStart, gsoSize))).toBe(true);
      const back: PacketOffload = { meta: -1, csumStart: -1, gsoSize: -1 };
      expect(readVnetHdr(hdr, 0, back)).toBe(true);
      expect(back).toEqual({ meta, csumStart: meta ? csumStart : 0, gsoSize });
      if (meta & META_GSO_TCP4) expect(hdr[2]! | (hdr[3]! << 8)).toBe(40); // hdr_len: IPv4 + TCP
    }
  });

  it("refuses what it cannot carry: UFO, odd checksum offsets, GSO without a partial checksum", () => {
    const out: PacketOffload = { meta: 0, csumStart: 0, gsoSize: 0 };
    expect(readVnetHdr(Uint8Array.from([1, 3, 28, 0, 0xb0, 4, 20, 0, 6, 0]), 0, out)).toBe(false);
    expect(readVnetHdr(Uint8Array.from([1, 0, 0, 0, 0, 0, 20, 0, 10, 0]), 0, out)).toBe(false);
    expect(readVnetHdr(Uint8Array.from([0, 1, 40, 0, 0xb0, 4, 0, 0, 0, 0]), 0, out)).toBe(false);
  });
});

describe("translateIpv4 with a partial checksum", () => {
  it("keeps the partial sum right: completing after translating gives a valid packet", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(6, 17),
        payloadArb,
        fc.nat(),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        (proto, payload, seed, src, dst) => {
          const pkt = partialPacket(false, proto, payload, seed);
          const meta = META_PARTIAL | (proto === 17 ? META_UDP : 0);
          translateIpv4(pkt, 0, pkt.length, src, dst, true);
          expect(pkt.readUInt32BE(12)).toBe(src);
          expect(pkt.readUInt32BE(16)).toBe(dst);
          expect(onesSum(pkt.subarray(0, 20))).toBe(0xffff);
          completeChecksum(pkt, 0, pkt.length, meta, 20);
          expect(l4ChecksumValid(pkt)).toBe(true);
        },
      ),
    );
  });
});

describe("toPlainPackets", () => {
  it("segments super-packets and completes partial checksums", () => {
    const sup = partialPacket(false, 6, new Uint8Array(5000).fill(7), 9);
    const got: Buffer[] = [];
    expect(
      toPlainPackets(packetView(sup, META_PARTIAL | META_GSO_TCP4, 20, 1400), (b, o, l) =>
        got.push(Buffer.from(b.subarray(o, o + l))),
      ),
    ).toBe(true);
    expect(got.map((p) => p.length)).toEqual([1440, 1440, 1440, 840]);
    for (const p of got) expect(l4ChecksumValid(p)).toBe(true);
    const udp = partialPacket(true, 17, new Uint8Array(33).fill(1), 2);
    got.length = 0;
    expect(
      toPlainPackets(packetView(udp, META_PARTIAL | META_UDP, 40, 0), (b, o, l) =>
        got.push(Buffer.from(b.subarray(o, o + l))),
      ),
    ).toBe(true);
    expect(got.length).toBe(1);
    expect(l4ChecksumValid(got[0]!)).toBe(true);
  });
});
