import { describe, expect, it } from "vitest";
import { udp4 } from "./testing.js";
import { TooBig } from "./too-big.js";

function sum(b: Buffer, start: number, end: number, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function capture() {
  const out: Buffer[] = [];
  return {
    out,
    write: (b: Uint8Array, o: number, l: number) => out.push(Buffer.from(b.subarray(o, o + l))) > 0,
  };
}

describe("TooBig", () => {
  it("answers an IPv4 packet with fragmentation needed, from its destination, with valid checksums", () => {
    const pkt = udp4("10.0.0.1", "10.0.0.2", Buffer.alloc(1400, 7));
    pkt[6] = 0x40; // DF
    const vnic = capture();
    expect(new TooBig().answer(pkt, 0, pkt.length, 4, 1219, 0, vnic)).toBe(true);
    const icmp = vnic.out[0]!;
    expect(icmp.length).toBe(576);
    expect([...icmp.subarray(12, 16)]).toEqual([10, 0, 0, 2]);
    expect([...icmp.subarray(16, 20)]).toEqual([10, 0, 0, 1]);
    expect(icmp[9]).toBe(1);
    expect([icmp[20], icmp[21]]).toEqual([3, 4]);
    expect(icmp.readUInt16BE(26)).toBe(1219);
    expect(sum(icmp, 0, 20)).toBe(0xffff);
    expect(sum(icmp, 20, icmp.length)).toBe(0xffff);
    expect(icmp.subarray(28, 48).equals(pkt.subarray(0, 20))).toBe(true);
  });

  it("answers an IPv6 packet with packet too big, quoting at most 1232 bytes", () => {
    const pkt = Buffer.alloc(1400);
    pkt[0] = 0x60;
    pkt.writeUInt16BE(1360, 4);
    pkt[6] = 17;
    pkt[7] = 64;
    pkt[23] = 1; // src ::1
    pkt[39] = 2; // dst ::2
    const vnic = capture();
    new TooBig().answer(pkt, 0, pkt.length, 6, 1300, 0, vnic);
    const icmp = vnic.out[0]!;
    expect(icmp.length).toBe(1280);
    expect(icmp[23]).toBe(2);
    expect(icmp[39]).toBe(1);
    expect(icmp[40]).toBe(2);
    expect(icmp.readUInt32BE(44)).toBe(1300);
    // Pseudo-header: addresses, length, next header 58.
    expect(sum(icmp, 40, 1280, sum(icmp, 8, 40, 1240 + 58))).toBe(0xffff);
  });

  it("is rate-limited", () => {
    const pkt = udp4("10.0.0.1", "10.0.0.2", Buffer.alloc(1400));
    const vnic = capture();
    const tb = new TooBig(10, 5);
    let sent = 0;
    for (let i = 0; i < 100; i++) if (tb.answer(pkt, 0, pkt.length, 4, 1200, 1000, vnic)) sent++;
    expect(sent).toBe(5);
    expect(tb.answer(pkt, 0, pkt.length, 4, 1200, 1100, vnic)).toBe(true);
  });
});
