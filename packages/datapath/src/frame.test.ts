import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Counters } from "./counters.js";
import { Fib } from "./fib.js";
import type { Link } from "./link.js";
import { META_GSO_TCP4, META_PARTIAL, META_UDP, type PacketOffload, readVnetHdr } from "./offload.js";
import { Outside } from "./outside.js";
import { packetView } from "./testing.js";
import {
  DEFAULT_MAX_FRAME_BYTES,
  Fragmenter,
  FrameBuilder,
  FrameBuilders,
  Reassembler,
} from "./wire/index.js";

const PEER = "b".repeat(32);

function onesSum(bytes: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** 10.0.0.2 -> 10.0.0.1 TCP (or UDP) packet whose checksum is partial (pseudo-header sum). */
function packet(proto: number, payloadLen: number, seed: number): Buffer {
  const l4hdr = proto === 6 ? 20 : 8;
  const pkt = Buffer.alloc(20 + l4hdr + payloadLen);
  pkt[0] = 0x45;
  pkt.writeUInt16BE(pkt.length, 2);
  pkt.writeUInt16BE(seed & 0xffff, 4);
  pkt[8] = 64;
  pkt[9] = proto;
  pkt.set([10, 0, 0, 2, 10, 0, 0, 1], 12);
  pkt.writeUInt16BE(~onesSum(pkt.subarray(0, 20)) & 0xffff, 10);
  if (proto === 6) {
    pkt.writeUInt32BE((seed * 7919) >>> 0, 24);
    pkt[32] = 0x50;
    pkt[33] = 0x10;
  } else pkt.writeUInt16BE(8 + payloadLen, 24);
  for (let i = 20 + l4hdr; i < pkt.length; i++) pkt[i] = (i * 31 + seed) & 0xff;
  const l4Len = pkt.length - 20;
  pkt.writeUInt16BE(
    onesSum([10, 0, 0, 2, 10, 0, 0, 1, 0, proto, l4Len >> 8, l4Len & 0xff]),
    20 + (proto === 6 ? 16 : 6),
  );
  return pkt;
}

function l4Valid(p: Buffer): boolean {
  const l4Len = p.length - 20;
  return onesSum([...p.subarray(12, 20), 0, p[9]!, l4Len >> 8, l4Len & 0xff, ...p.subarray(20)]) === 0xffff;
}

interface Item {
  kind: "plain" | "udp" | "gso";
  size: number;
}

/** Runs packets through FrameBuilder -> (fragments) -> Outside into a fake vNIC; returns what was written. */
function roundTrip(items: Item[], peerOffload: boolean, rtp: boolean, vnicOffload: boolean) {
  const fib = new Fib();
  const written: { pkt: Buffer; hdr: PacketOffload | null }[] = [];
  fib.vnic = {
    name: "fake0",
    offload: vnicOffload,
    write(buf, off, len, vnetHdr) {
      let hdr: PacketOffload | null = null;
      if (vnetHdr) {
        hdr = { meta: 0, csumStart: 0, gsoSize: 0 };
        expect(readVnetHdr(vnetHdr, 0, hdr)).toBe(true);
      }
      written.push({ pkt: Buffer.from(buf.subarray(off, off + len)), hdr });
      return true;
    },
    close() {},
  };
  fib.setOwnAddresses("10.0.0.1", null);
  fib.setRoute("10.0.0.2/32", PEER, null, null);
  const outside = new Outside(fib, new FrameBuilders<Link>(DEFAULT_MAX_FRAME_BYTES));
  const frag = new Fragmenter(12, 1320);
  const reasm = new Reassembler();
  const frames: number[] = [];
  const link = {
    peerUid: PEER,
    peerOffload,
    usesRtp: rtp,
    maxFrame: 1320,
    counters: new Counters(),
    isConnected: true,
    sendFrame(buf: Buffer, end: number) {
      frames.push(end - 12);
      const deliver = (b: Buffer, s: number, e: number) => {
        const rtpPacket = Buffer.from(b.subarray(s, e)); // what the peer's track hands over
        if (rtpPacket[12] === 3) {
          const f = reasm.push(rtpPacket, 12);
          if (f) outside.onFrame(link as unknown as Link, f);
        } else outside.onFrame(link as unknown as Link, rtpPacket.subarray(12));
        return true;
      };
      if (!rtp) outside.onFrame(link as unknown as Link, Buffer.from(buf.subarray(12, end)));
      else if (end - 12 <= 1320) deliver(buf, 0, end);
      else expect(frag.send(buf, 12, end, deliver)).toBe(true);
    },
  };
  fib.links.set(PEER, link as unknown as Link);
  const builder = new FrameBuilder(link as unknown as Link, 16_384, 4);
  const sent: { pkt: Buffer; meta: number; gso: number }[] = [];
  items.forEach((it, i) => {
    const p = packet(it.kind === "udp" ? 17 : 6, it.size, i);
    const meta =
      it.kind === "udp"
        ? META_PARTIAL | META_UDP
        : it.kind === "gso"
          ? META_PARTIAL | META_GSO_TCP4
          : META_PARTIAL;
    const gso = it.kind === "gso" ? 1200 : 0;
    sent.push({ pkt: Buffer.from(p), meta, gso });
    builder.append(packetView(p, meta, 20, gso));
  });
  builder.flush();
  return {
    written,
    sent,
    frames,
    drops: link.counters.snapshot().drops,
    vnicDrops: fib.vnicCounters.snapshot().drops,
  };
}

const itemsArb = fc.array(
  fc.oneof(
    fc.record({ kind: fc.constant<"plain">("plain"), size: fc.integer({ min: 0, max: 1200 }) }),
    fc.record({ kind: fc.constant<"udp">("udp"), size: fc.integer({ min: 0, max: 1200 }) }),
    fc.record({ kind: fc.constant<"gso">("gso"), size: fc.integer({ min: 1201, max: 65_000 }) }),
  ),
  { minLength: 1, maxLength: 12 },
);

describe("frames between two datapaths", () => {
  it("carry super-packets and partial checksums whole to a peer and vNIC with offload (data channel or RTP)", () => {
    fc.assert(
      fc.property(itemsArb, fc.boolean(), (items, rtp) => {
        const r = roundTrip(items, true, rtp, true);
        expect(r.drops).toEqual({});
        expect(r.written.length).toBe(r.sent.length);
        r.written.forEach((w, i) => {
          if (!w.pkt.equals(r.sent[i]!.pkt)) throw new Error(`packet ${i} differs`);
        });
        r.written.forEach((w, i) => {
          expect(w.hdr?.meta).toBe(r.sent[i]!.meta);
          expect(w.hdr?.csumStart).toBe(20);
          expect(w.hdr?.gsoSize).toBe(r.sent[i]!.gso);
        });
        // Over RTP, only frames holding one super-packet exceed one datagram.
        if (rtp)
          expect(r.frames.filter((f) => f > 1320).length).toBeLessThanOrEqual(
            items.filter((i) => i.kind === "gso").length,
          );
      }),
      { numRuns: 40 },
    );
  });

  it("are plain, complete packets for a peer without offload frames, and for a vNIC without offload", () => {
    fc.assert(
      fc.property(itemsArb, fc.boolean(), (items, peerOffload) => {
        const r = roundTrip(items, peerOffload, false, false);
        const expected = items.reduce((n, it) => n + (it.kind === "gso" ? Math.ceil(it.size / 1200) : 1), 0);
        expect(r.written.length).toBe(expected);
        for (const w of r.written) {
          expect(w.hdr).toBe(null);
          expect(l4Valid(w.pkt)).toBe(true);
          expect(onesSum(w.pkt.subarray(0, 20))).toBe(0xffff);
        }
        const bytes = (list: Buffer[]) => list.reduce((n, p) => n + p.length - 40, 0);
        expect(bytes(r.written.filter((w) => w.pkt[9] === 6).map((w) => w.pkt))).toBe(
          bytes(r.sent.filter((s) => s.pkt[9] === 6).map((s) => s.pkt)),
        );
      }),
      { numRuns: 30 },
    );
  });
});

describe("RTP fragments", () => {
  it("with reuse, hands each frame as a view of one buffer (valid until the next push), intact", () => {
    const frag = new Fragmenter(12, 1320);
    const reasm = new Reassembler(true);
    const got: { frame: Buffer; copy: Buffer }[] = [];
    const frames = [64_000, 2000, 60_000, 30_000].map((size, k) => {
      const buf = Buffer.alloc(12 + size);
      for (let i = 12; i < buf.length; i++) buf[i] = (i * 13 + k) & 0xff;
      return buf;
    });
    for (const buf of frames) {
      frag.send(buf, 12, buf.length, (b, s, e) => {
        const f = reasm.push(Buffer.from(b.subarray(s, e)), 12);
        if (f) got.push({ frame: f, copy: Buffer.from(f) });
        return true;
      });
    }
    expect(got).toHaveLength(frames.length);
    expect(got.map((g, k) => g.copy.equals(frames[k]?.subarray(12) as Buffer))).toEqual(
      frames.map(() => true),
    );
    // No buffer per frame: the frames share the reassembly buffer (sized by the first, largest).
    expect(new Set(got.map((g) => g.frame.buffer)).size).toBe(1);
  });

  it("reassemble to the frame; a lost fragment loses only its frame", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 80_000 }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 64, max: 1400 }),
        fc.option(fc.nat(), { nil: undefined }),
        (sizes, maxPayload, dropAt) => {
          const frag = new Fragmenter(12, maxPayload);
          const reasm = new Reassembler();
          const got: Buffer[] = [];
          let n = 0;
          const frames = sizes.map((size, k) => {
            const buf = Buffer.alloc(12 + size);
            for (let i = 12; i < buf.length; i++) buf[i] = (i * 7 + k) & 0xff;
            return buf;
          });
          const copies = frames.map((f) => Buffer.from(f));
          let dropped = -1;
          frames.forEach((buf, k) => {
            frag.send(buf, 12, buf.length, (b, s, e) => {
              if (e - s > 12 + maxPayload) throw new Error("fragment too large");
              if (n++ === dropAt) {
                dropped = k;
                return true;
              }
              const f = reasm.push(Buffer.from(b.subarray(s, e)), 12);
              if (f) got.push(f);
              return true;
            });
            // the frame is left as it was
            expect(buf.subarray(12).equals(copies[k]!.subarray(12))).toBe(true);
          });
          const sendable = frames.filter((f) => Math.ceil((f.length - 12) / (maxPayload - 5)) <= 255);
          const expected = frames
            .filter((f, k) => k !== dropped && sendable.includes(f))
            .map((f) => f.subarray(12));
          const single = dropped >= 0 && Math.ceil((frames[dropped]!.length - 12) / (maxPayload - 5)) === 1;
          if (!single) {
            expect(got.length).toBe(expected.length);
            got.forEach((g, i) => {
              if (!g.equals(expected[i]!)) throw new Error(`frame ${i} differs`);
            });
          }
          expect(reasm.malformed).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });
});
