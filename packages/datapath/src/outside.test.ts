import { describe, expect, it } from "vitest";
import { Counters } from "./counters.js";
import { Fib, type VnicDevice } from "./fib.js";
import type { Link } from "./link.js";
import { DIRECT_LINK_GRACE_MS, Outside } from "./outside.js";
import { udp4 } from "./testing.js";
import { UnmappedPackets } from "./unmapped.js";
import { DEFAULT_MAX_FRAME_BYTES, FrameBuilders } from "./wire/index.js";

const PEER = "a".repeat(32);

function setup(own4: string, own6: string | null, write: VnicDevice["write"]) {
  const fib = new Fib();
  fib.setOwnAddresses(own4, own6);
  fib.setRoute("10.10.0.2/32", PEER, null, null);
  fib.setRoute("fd50::2/128", PEER, null, null);
  fib.vnic = { name: "t", offload: false, write, close() {} } as VnicDevice;
  const link = { peerUid: PEER, counters: new Counters() } as unknown as Link;
  return { fib, link, outside: new Outside(fib, new FrameBuilders<Link>(DEFAULT_MAX_FRAME_BYTES)) };
}

/** A connected link to `peerUid` (no offload, data channel) whose frames go to `onFrame`. */
function nextHopLink(peerUid: string, onFrame: (end: number, packets: number) => void): Link {
  return {
    peerUid,
    isConnected: true,
    peerOffload: false,
    usesRtp: false,
    maxFrame: 1320,
    counters: new Counters(),
    sendFrame: (_buf: Buffer, end: number, packets: number) => onFrame(end, packets),
  } as unknown as Link;
}

/** A type-2 frame with one TCP4 super-packet from 10.10.0.2 to 10.10.0.1 and the given offload fields. */
function superPacketFrame(csumStart: number, gsoSize: number, len = 65535): Buffer {
  const frame = Buffer.alloc(2 + 5 + len);
  frame[0] = 2;
  frame[1] = 4;
  frame[2] = 0x05; // PARTIAL | GSO_TCP4
  frame.writeUInt16BE(csumStart, 3);
  frame.writeUInt16BE(gsoSize, 5);
  const p = 7;
  frame[p] = 0x45;
  frame.writeUInt16BE(len, p + 2);
  frame[p + 8] = 64;
  frame[p + 9] = 6;
  frame.set([10, 10, 0, 2], p + 12);
  frame.set([10, 10, 0, 1], p + 16);
  frame[p + 20 + 12] = 0x50;
  return frame;
}

describe("Outside with hostile frames from a member", () => {
  it("drops offload metadata that does not fit the packet instead of allocating or looping", () => {
    let writes = 0;
    const { link, outside } = setup("10.10.0.1", null, () => {
      writes++;
      return true;
    });
    for (const [csumStart, gsoSize] of [
      [0xffff, 1], // huge checksum start: used to size a 4 GB buffer
      [20, 1], // 1-byte segments: used to cost 65k vNIC writes
      [60, 1400], // checksum start beyond the IPv4 header
    ] as const) {
      expect(() => outside.onFrame(link, superPacketFrame(csumStart, gsoSize))).not.toThrow();
    }
    expect(writes).toBe(0);
    expect(link.counters.snapshot().drops.malformed).toBe(3);
  });

  it("still segments a well-formed super-packet for a vNIC without offload", () => {
    let writes = 0;
    const { link, outside } = setup("10.10.0.1", null, () => {
      writes++;
      return true;
    });
    outside.onFrame(link, superPacketFrame(20, 1400, 20 + 20 + 14_000));
    expect(writes).toBe(10);
  });

  it("survives a vNIC that refuses a packet (an IPv6 packet longer than 65535 bytes)", () => {
    const { fib, link, outside } = setup("10.10.0.1", "fd50::1", (_b, _o, n) => {
      if (n > 65535) throw new RangeError("tuntap: packet longer than 65535 bytes");
      return true;
    });
    const len = 40 + 65535;
    const frame = Buffer.alloc(2 + len);
    frame[0] = 1;
    frame[1] = 4;
    frame[2] = 0x60;
    frame.writeUInt16BE(65535, 2 + 4);
    frame[2 + 6] = 17;
    frame.set([0xfd, 0x50], 2 + 8);
    frame[2 + 23] = 2;
    frame.set([0xfd, 0x50], 2 + 24);
    frame[2 + 39] = 1;
    expect(() => outside.onFrame(link, frame)).not.toThrow();
    expect(fib.vnicCounters.snapshot().drops.vnicRejected).toBe(1);
  });

  it("builds transit frames of the configured size", () => {
    const { fib, link } = setup("10.10.0.1", null, () => true);
    const NEXT = "c".repeat(32);
    const sizes: number[] = [];
    const next = nextHopLink(NEXT, (end) => sizes.push(end - 12));
    fib.links.set(NEXT, next);
    fib.setRoute("10.20.0.0/24", NEXT, null, null);
    const outside = new Outside(fib, new FrameBuilders<Link>(2000));
    const pkt = udp4("10.10.0.2", "10.20.0.5", "x".repeat(472)); // 500 bytes
    outside.onFrame(link, Buffer.concat([Buffer.from([1, 4]), ...Array(10).fill(pkt)]));
    // 2 + 3 x 500 fit 2000 bytes; the hard-coded 16 KiB of before sent one frame of 5002.
    expect(sizes).toEqual([1502, 1502, 1502, 502]);
    expect(next.counters.snapshot().drops).toEqual({});
  });
});

describe("Outside: sources of members reached over the overlay", () => {
  it("takes a packet from a source routed via a neighbour on any link, counts it on that route; a direct source only on its own link", () => {
    const written: number[] = [];
    const { fib, link, outside } = setup("10.10.0.1", null, (_b, _o, n) => {
      written.push(n);
      return true;
    });
    const FAR = "f".repeat(32);
    const OTHER = "e".repeat(32);
    fib.setRoute("10.10.0.9/32", FAR, OTHER, null); // reached via another neighbour than PEER
    fib.setRoute("10.10.0.7/32", OTHER, null, null); // a member with its own link
    const frame = (src: string) => Buffer.concat([Buffer.from([1, 4]), udp4(src, "10.10.0.1", "hi")]);
    outside.onFrame(link, frame("10.10.0.9"));
    outside.onFrame(link, frame("10.10.0.7"));
    expect(written).toHaveLength(1);
    expect(link.counters.snapshot().drops).toEqual({ spoofed: 1 });
    const routes = new Map(fib.routeList().map((r) => [r.prefix, r]));
    expect(routes.get("10.10.0.9/32")?.rxPackets).toBe(1);
    expect(routes.get("10.10.0.7/32")?.rxPackets).toBe(0);
    // Counters carry on while only the next hop changes, and start over for another peer.
    fib.setRoute("10.10.0.9/32", FAR, null, null);
    expect(fib.routeList().find((r) => r.prefix === "10.10.0.9/32")?.rxPackets).toBe(1);
    fib.setRoute("10.10.0.9/32", OTHER, null, null);
    expect(fib.routeList().find((r) => r.prefix === "10.10.0.9/32")?.rxPackets).toBe(0);
  });
});

describe("Outside: a direct link replacing an overlay path (make-before-break)", () => {
  const S = "5".repeat(32);
  const OWN = "0".repeat(32);

  /** S (10.10.0.3) is routed over its own link in `state`, connected `connectedAgoMs` ago (null: never). */
  function graceSetup(state: Link["state"] | null, connectedAgoMs: number | null) {
    const written: number[] = [];
    const { fib, link, outside } = setup("10.10.0.1", null, (_b, _o, n) => {
      written.push(n);
      return true;
    });
    fib.ownUid = OWN;
    fib.setRoute("10.10.0.3/32", S, null, null);
    const own = {
      peerUid: S,
      state,
      connectedAt: connectedAgoMs === null ? null : performance.now() - connectedAgoMs,
      counters: new Counters(),
    } as unknown as Link;
    if (state !== null) fib.links.set(S, own);
    const fromS = (src = "10.10.0.3") => Buffer.concat([Buffer.from([1, 4]), udp4(src, "10.10.0.1", "hi")]);
    return { fib, link, own, outside, written, fromS };
  }

  it("takes S's packets over a neighbour's link while S's own link is being set up", () => {
    for (const state of ["new", "connecting"] as const) {
      const { fib, link, outside, written, fromS } = graceSetup(state, null);
      outside.onFrame(link, fromS());
      expect(written).toHaveLength(1);
      expect(link.counters.snapshot().drops).toEqual({});
      expect(fib.routeList().find((r) => r.prefix === "10.10.0.3/32")?.rxPackets).toBe(1);
    }
  });

  it("takes them for DIRECT_LINK_GRACE_MS after S's link connected, then only on S's own link", () => {
    const young = graceSetup("connected", DIRECT_LINK_GRACE_MS - 1500);
    young.outside.onFrame(young.link, young.fromS());
    expect(young.written).toHaveLength(1);
    expect(young.link.counters.snapshot().drops).toEqual({});

    const old = graceSetup("connected", DIRECT_LINK_GRACE_MS + 500);
    old.outside.onFrame(old.link, old.fromS());
    expect(old.written).toEqual([]);
    expect(old.link.counters.snapshot().drops).toEqual({ spoofed: 1 });
    old.outside.onFrame(old.own, old.fromS());
    expect(old.written).toHaveLength(1);
  });

  it("keeps the strict rule when S's link failed, is down since long, or S has none", () => {
    for (const [state, ago] of [
      ["failed", null],
      ["disconnected", DIRECT_LINK_GRACE_MS + 500],
      [null, null],
    ] as const) {
      const { link, outside, written, fromS } = graceSetup(state, ago);
      outside.onFrame(link, fromS());
      expect(written).toEqual([]);
      expect(link.counters.snapshot().drops).toEqual({ spoofed: 1 });
    }
  });

  it("still drops a source that is not routed, or is our own address, while S's link is young", () => {
    const { fib, link, outside, written, fromS } = graceSetup("connected", 0);
    fib.setRoute("10.10.0.1/32", OWN, null, null);
    outside.onFrame(link, fromS("10.10.0.66"));
    outside.onFrame(link, fromS("10.10.0.1"));
    expect(written).toEqual([]);
    expect(link.counters.snapshot().drops).toEqual({ spoofed: 2 });
  });
});

describe("Outside reading the kernel's replies", () => {
  it("reads the vNIC at the end of a batch that wrote to it, once, and not after one that did not", () => {
    const order: string[] = [];
    const { fib, link, outside } = setup("10.10.0.1", null, () => {
      order.push("write");
      return true;
    });
    (fib.vnic as { readNow?: () => number }).readNow = () => {
      order.push("readNow");
      return 1;
    };
    const frame = (src: string, dst: string) => Buffer.concat([Buffer.from([1, 4]), udp4(src, dst, "hi")]);
    outside.onFrame(link, frame("10.10.0.2", "10.10.0.1"));
    outside.onFrame(link, frame("10.10.0.2", "10.10.0.1"));
    expect(order).toEqual(["write", "write"]);
    outside.readReplies();
    outside.readReplies();
    expect(order).toEqual(["write", "write", "readNow"]);
    // Nothing for us (spoofed source): nothing written, nothing to read.
    outside.onFrame(link, frame("10.10.0.66", "10.10.0.1"));
    outside.readReplies();
    expect(order).toEqual(["write", "write", "readNow"]);
  });
});

describe("Outside: packets in transit", () => {
  const S = "5".repeat(32);
  const D = "d".repeat(32);
  const OWN = "0".repeat(32);

  /** PEER (10.10.0.2) forwards; S (10.10.0.3) is linked here too; D (10.10.0.4) is the next hop. */
  function transitSetup() {
    const written: number[] = [];
    const { fib, link, outside } = setup("10.10.0.1", null, (_b, _o, n) => {
      written.push(n);
      return true;
    });
    fib.ownUid = OWN;
    const sent: number[] = [];
    fib.links.set(
      D,
      nextHopLink(D, (_end, packets) => sent.push(packets)),
    );
    fib.setRoute("10.10.0.3/32", S, null, null);
    fib.setRoute("10.10.0.4/32", D, null, null);
    fib.setRoute("192.168.50.0/24", OWN, null, null); // a LAN behind this node (router mode)
    const frame = (src: string, dst: string) => Buffer.concat([Buffer.from([1, 4]), udp4(src, dst, "hi")]);
    return { fib, link, outside, written, sent, frame };
  }

  it("forwards a member's packet that came over another link than the member's own", () => {
    const { fib, link, outside, sent, frame } = transitSetup();
    outside.onFrame(link, frame("10.10.0.3", "10.10.0.4"));
    expect(sent).toEqual([1]);
    expect(link.counters.snapshot().drops).toEqual({});
    expect(fib.routeList().find((r) => r.prefix === "10.10.0.3/32")?.rxPackets).toBe(1);
  });

  it("drops a transit packet from no member, or from this node's own address or LAN", () => {
    const { link, outside, sent, frame } = transitSetup();
    outside.onFrame(link, frame("10.99.0.3", "10.10.0.4"));
    outside.onFrame(link, frame("10.10.0.1", "10.10.0.4"));
    outside.onFrame(link, frame("192.168.50.7", "10.10.0.4"));
    expect(sent).toEqual([]);
    expect(link.counters.snapshot().drops).toEqual({ spoofed: 3 });
  });

  it("still checks strictly what it writes to the vNIC: for us or for the LAN behind us", () => {
    const { link, outside, written, frame } = transitSetup();
    outside.onFrame(link, frame("10.10.0.3", "10.10.0.1"));
    outside.onFrame(link, frame("10.10.0.3", "192.168.50.7"));
    expect(written).toEqual([]);
    expect(link.counters.snapshot().drops).toEqual({ spoofed: 2 });
    outside.onFrame(link, frame("10.10.0.2", "192.168.50.7"));
    expect(written).toHaveLength(1);
  });

  it("forwards both ways over a transit-only route (a router's LAN carried, not accepted), and takes nothing from it", () => {
    const { fib, link, outside, written, sent, frame } = transitSetup();
    fib.setRoute("192.168.60.0/24", D, null, null, true);
    outside.onFrame(link, frame("10.10.0.3", "192.168.60.7")); // towards the LAN
    outside.onFrame(link, frame("192.168.60.7", "10.10.0.3")); // and back (sent on to S: no link here)
    expect(sent).toEqual([1]);
    expect(link.counters.snapshot().drops).toEqual({ noRoute: 1 });
    // For us, or for the LAN behind us, a source routed only for transit is no member.
    outside.onFrame(link, frame("192.168.60.7", "10.10.0.1"));
    outside.onFrame(link, frame("192.168.60.7", "192.168.50.7"));
    expect(written).toEqual([]);
    expect(link.counters.snapshot().drops).toEqual({ noRoute: 1, spoofed: 2 });
  });

  it("holds a transit packet whose destination or source has no route yet, reports it, and sends it on once routed", () => {
    const { fib, link, sent, frame } = transitSetup();
    const held = new UnmappedPackets({
      notifyIntervalMs: 1000,
      holdMs: 10_000,
      maxDestinations: 8,
      packetsPerDestination: 4,
    });
    const reports: { src: string; dst: string }[] = [];
    const outside = new Outside(fib, new FrameBuilders<Link>(DEFAULT_MAX_FRAME_BYTES), {
      held,
      report: ({ src, dst }) => void reports.push({ src, dst }),
    });
    outside.onFrame(link, frame("10.10.0.3", "10.10.0.9")); // no route to the destination yet
    outside.onFrame(link, frame("10.10.0.3", "10.10.0.9"));
    outside.onFrame(link, frame("10.10.0.8", "10.10.0.4")); // the source not routed here yet
    outside.onFrame(link, frame("10.10.0.8", "10.10.0.1")); // but for us: checked strictly
    expect(sent).toEqual([]);
    expect(held.heldPackets).toBe(3);
    expect(reports).toEqual([
      { src: "10.10.0.3", dst: "10.10.0.9" },
      { src: "10.10.0.8", dst: "10.10.0.4" },
    ]);
    expect(link.counters.snapshot().drops).toEqual({ spoofed: 1 });

    // The controller routes both (greedily, via D): the held packets go on, none is left.
    fib.setRoute("10.10.0.9/32", "9".repeat(32), D, null);
    outside.resubmitHeld(held.takeAll());
    expect(sent).toEqual([2]); // one frame of the two packets to 10.10.0.9; the other still waits for its source
    expect(held.heldPackets).toBe(1);
    fib.setRoute("10.10.0.8/32", "8".repeat(32), D, null);
    outside.resubmitHeld(held.takeAll());
    expect(sent).toEqual([2, 1]);
    expect(held.heldPackets).toBe(0);
  });

  it("stops a transit packet at the hop limit", () => {
    const { link, outside, sent } = transitSetup();
    outside.onFrame(link, Buffer.concat([Buffer.from([1, 1]), udp4("10.10.0.3", "10.10.0.4", "hi")]));
    expect(sent).toEqual([]);
    expect(link.counters.snapshot().drops).toEqual({ hopLimit: 1 });
  });
});
