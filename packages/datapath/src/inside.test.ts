import { describe, expect, it } from "vitest";
import { Counters } from "./counters.js";
import { Fib } from "./fib.js";
import { Inside } from "./inside.js";
import type { Link } from "./link.js";
import { PacketQueue } from "./queue.js";
import { FakeVnic, udp4 } from "./testing.js";
import { TxQueue } from "./tx-queue.js";
import { UnmappedPackets } from "./unmapped.js";
import { FrameBuilders } from "./wire/index.js";

/** A connected link that records the destination and first payload byte of every packet it sends. */
function fakeLink(): Link & { sentTo: string[]; sentIds: number[] } {
  const sentTo: string[] = [];
  const sentIds: number[] = [];
  return {
    peerUid: "peer",
    state: "connected",
    isConnected: true,
    peerOffload: false,
    usesRtp: false,
    maxFrame: 1300,
    tooBigAbove: Number.POSITIVE_INFINITY,
    counters: new Counters(),
    pending: new PacketQueue(8),
    sentTo,
    sentIds,
    // Frames start after 12 bytes of RTP headroom: [type][hops] then IPv4 packets.
    sendFrame(buf: Buffer, end: number) {
      let off = 12 + 2;
      while (off < end) {
        sentTo.push(`${buf[off + 16]}.${buf[off + 17]}.${buf[off + 18]}.${buf[off + 19]}`);
        sentIds.push(buf[off + 28] as number);
        off += buf.readUInt16BE(off + 2);
      }
    },
  } as unknown as Link & { sentTo: string[]; sentIds: number[] };
}

function setup(turnBytes: number, withQueue = true) {
  const fib = new Fib();
  const link = fakeLink();
  fib.links.set("peer", link);
  fib.setRoute("10.0.0.0/24", "peer", null, null);
  const drops: string[] = [];
  const queue = withQueue
    ? new TxQueue(
        { flows: 1024, quantum: 1500, target: 50, interval: 1000, maxBytes: 1 << 20, seed: 1 },
        (reason) => drops.push(reason),
      )
    : null;
  const unmapped = new UnmappedPackets({
    notifyIntervalMs: 1000,
    holdMs: 1000,
    maxDestinations: 8,
    packetsPerDestination: 8,
  });
  const inside = new Inside(
    fib,
    unmapped,
    { hopLimit: 4, turnBytes },
    new FrameBuilders<Link>(16_384),
    () => {},
    queue,
  );
  const read = (...packets: Buffer[]) => {
    const buf = Buffer.concat(packets);
    const offsets: number[] = [];
    let off = 0;
    for (const p of packets) {
      offsets.push(off);
      off += p.length;
    }
    inside.onBatch(
      buf,
      offsets,
      packets.map((p) => p.length),
      packets.length,
    );
  };
  return { fib, link, queue, inside, read, drops };
}

const nextTurn = () => new Promise((r) => setImmediate(r));
const bulk = (_: unknown, i: number) => udp4("10.1.0.1", "10.0.0.2", Buffer.alloc(1000, i));

describe("Inside with a send queue", () => {
  it("sends a turn's share at once and the rest on the next turns, in order", async () => {
    const { link, queue, read } = setup(4000);
    read(...Array.from({ length: 10 }, bulk));
    expect(link.sentTo).toHaveLength(4); // 4 x 1028 bytes reach the 4000-byte share
    expect(queue?.queuedPackets).toBe(6);
    await nextTurn();
    expect(link.sentTo).toHaveLength(8);
    await nextTurn();
    expect(link.sentTo).toHaveLength(10);
    expect(link.sentIds).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(queue?.isEmpty).toBe(true);
  });

  it("lets a packet of a quiet flow overtake the queued bulk", async () => {
    const { link, read } = setup(4000);
    read(...Array.from({ length: 20 }, bulk));
    await nextTurn(); // the bulk flow has had its turn: it is an old flow now
    link.sentTo.length = 0;
    read(udp4("10.1.0.1", "10.0.0.3", "ping"));
    expect(link.sentTo).toEqual([]); // bulk waits, so the new packet queues too
    await nextTurn();
    expect(link.sentTo[0]).toBe("10.0.0.3");
  });

  it("sends everything at once without a send queue", () => {
    const { link, read } = setup(4000, false);
    read(...Array.from({ length: 10 }, bulk));
    expect(link.sentTo).toHaveLength(10);
  });
});

describe("Inside with a link whose path MTU is known", () => {
  it("answers a DF packet above it with ICMP and sends the others (to be fragmented)", () => {
    const { link, read, inside } = setup(1 << 20, false);
    (link as { tooBigAbove: number }).tooBigAbove = 1200;
    const vnic = new FakeVnic("t0", {} as never, () => {});
    (inside as unknown as { fib: Fib }).fib.vnic = vnic;
    const df = udp4("10.1.0.1", "10.0.0.2", Buffer.alloc(1250));
    df[6] = 0x40;
    const plain = udp4("10.1.0.1", "10.0.0.3", Buffer.alloc(1250));
    const fits = udp4("10.1.0.1", "10.0.0.4", Buffer.alloc(1000));
    fits[6] = 0x40;
    read(df, plain, fits);
    expect(link.sentTo).toEqual(["10.0.0.3", "10.0.0.4"]);
    expect(vnic.written).toHaveLength(1);
    const icmp = vnic.written[0] as Buffer;
    expect([icmp[20], icmp[21], icmp.readUInt16BE(26)]).toEqual([3, 4, 1200]);
  });
});

describe("Inside route counters", () => {
  it("does not send our own packets by a transit-only route: the route it shadows takes them, else they are held", () => {
    const { fib, link, read } = setup(1 << 20, false);
    fib.links.set("other", { ...fakeLink(), peerUid: "other" } as Link);
    fib.setRoute("10.0.0.0/25", "other", null, null, true);
    fib.setRoute("10.9.0.0/24", "other", null, null, true);
    read(udp4("10.1.0.1", "10.0.0.2", "a"), udp4("10.1.0.1", "10.9.0.2", "b"));
    expect(link.sentTo).toEqual(["10.0.0.2"]);
    expect((fib.links.get("other") as Link & { sentTo: string[] }).sentTo).toEqual([]);
    expect(fib.routeList().find((r) => r.prefix === "10.0.0.0/25")).toMatchObject({
      transit: true,
      txPackets: 0,
    });
  });

  it("counts the packets and bytes each route took (route.query), for the structured overlay's shortcuts", () => {
    const { fib, read } = setup(1 << 20, false);
    read(...Array.from({ length: 3 }, bulk));
    const route = fib.routeList().find((r) => r.prefix === "10.0.0.0/24");
    expect(route?.txPackets).toBe(3);
    expect(route?.txBytes).toBe(3 * 1028);
  });
});
