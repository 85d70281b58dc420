import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Counters } from "./counters.js";
import { Fib, type VnicDevice } from "./fib.js";
import type { Link } from "./link.js";
import { Outside } from "./outside.js";
import { DEFAULT_MAX_FRAME_BYTES, FRAME_FRAGMENT, FrameBuilders, Reassembler } from "./wire/index.js";

const PEER = "b".repeat(32);

/** A vNIC that enforces what the native binding enforces. */
const strictVnic: VnicDevice = {
  name: "t",
  offload: false,
  write(_buf: Uint8Array, _off: number, len: number) {
    if (len > 65535) throw new RangeError("tuntap: packet longer than 65535 bytes");
    return true;
  },
  close() {},
} as VnicDevice;

function outsideWithRoutes(translate: boolean): { outside: Outside; link: Link } {
  const fib = new Fib();
  fib.setOwnAddresses("10.10.0.1", "fd50::1");
  fib.translate = translate;
  fib.setRoute("10.10.0.2/32", PEER, null, null);
  fib.setRoute("fd50::2/128", PEER, null, null);
  fib.vnic = strictVnic;
  return {
    outside: new Outside(fib, new FrameBuilders<Link>(DEFAULT_MAX_FRAME_BYTES)),
    link: { peerUid: PEER, counters: new Counters() } as unknown as Link,
  };
}

/** Frames that look real enough to get past the first checks: a known type, then packet-ish bytes. */
const frameArb = fc
  .tuple(
    fc.constantFrom(1, 2, 3, 0, 200),
    fc.nat(255),
    fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: 80 }),
        // An IPv4/IPv6 header from or to our peer with arbitrary fields after it.
        fc
          .tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60), fc.uint8Array({ minLength: 60, maxLength: 200 }))
          .map(([first, rest]) => {
            const b = Uint8Array.from([first, ...rest]);
            if (first >> 4 === 4) b.set([10, 10, 0, 2, 10, 10, 0, 1], 12);
            else {
              b.set([0xfd, 0x50], 8);
              b[23] = 2;
              b.set([0xfd, 0x50], 24);
              b[39] = 1;
            }
            return b;
          }),
      ),
      { maxLength: 4 },
    ),
  )
  .map(([type, hops, parts]) =>
    Buffer.concat([Buffer.from([type, hops]), ...parts.map((p) => Buffer.from(p))]),
  );

/** Type-2 frames with random offload fields in front of a TCP packet from our peer. */
const offloadFrameArb = fc
  .tuple(
    fc.nat(255),
    fc.nat(0xffff),
    fc.nat(0xffff),
    fc.integer({ min: 40, max: 3000 }),
    fc.constantFrom(4, 6),
  )
  .map(([meta, csumStart, gsoSize, len, version]) => {
    const pkt = Buffer.alloc(len);
    if (version === 4) {
      pkt[0] = 0x45;
      pkt.writeUInt16BE(len, 2);
      pkt[9] = 6;
      pkt.set([10, 10, 0, 2, 10, 10, 0, 1], 12);
      pkt[32] = 0x50;
    } else {
      pkt[0] = 0x60;
      pkt.writeUInt16BE(len - 40, 4);
      pkt[6] = 6;
      pkt.set([0xfd, 0x50], 8);
      pkt[23] = 2;
      pkt.set([0xfd, 0x50], 24);
      pkt[39] = 1;
      if (len >= 53) pkt[52] = 0x50;
    }
    const head = [2, 4, meta];
    if (meta & 1) head.push(csumStart >> 8, csumStart & 0xff);
    if (meta & 0x0c) head.push(gsoSize >> 8, gsoSize & 0xff);
    return Buffer.concat([Buffer.from(head), pkt]);
  });

describe("hostile input never throws out of the packet path", () => {
  it("Outside.onFrame on type-2 frames with random offload fields", () => {
    const { outside, link } = outsideWithRoutes(false);
    fc.assert(
      fc.property(offloadFrameArb, (frame) => {
        outside.onFrame(link, frame);
      }),
      { numRuns: 10_000 },
    );
  });

  it("Outside.onFrame on random frames (with and without translation)", () => {
    for (const translate of [false, true]) {
      const { outside, link } = outsideWithRoutes(translate);
      fc.assert(
        fc.property(frameArb, (frame) => {
          outside.onFrame(link, frame);
        }),
        { numRuns: 10_000 },
      );
    }
  });

  it("Reassembler on random fragments keeps its buffer bounded", () => {
    const r = new Reassembler();
    fc.assert(
      fc.property(
        fc.tuple(fc.nat(0xffff), fc.nat(255), fc.nat(255), fc.integer({ min: 0, max: 20_000 })),
        ([id, index, count, size]) => {
          const packet = Buffer.alloc(5 + size);
          packet[0] = FRAME_FRAGMENT;
          packet.writeUInt16BE(id, 1);
          packet[3] = index;
          packet[4] = count;
          r.push(packet, 0);
          expect((r as unknown as { buf: Buffer }).buf.length).toBeLessThanOrEqual(255 * 9000);
        },
      ),
      { numRuns: 10_000 },
    );
  });
});
