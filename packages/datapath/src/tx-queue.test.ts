import { describe, expect, it } from "vitest";
import { PacketView } from "./packet-view.js";
import { packetView, udp4 } from "./testing.js";
import { flowHash, TxQueue } from "./tx-queue.js";

const MS = 10; // rtpClock units per millisecond

function queue(opts: Partial<ConstructorParameters<typeof TxQueue>[0]> = {}) {
  const drops = { txQueue: 0, txQueueFull: 0 };
  const q = new TxQueue(
    // A fixed seed: with a random one, two of the test flows share a bucket once in ~1000 runs.
    { flows: 1024, quantum: 1500, target: 5 * MS, interval: 100 * MS, maxBytes: 1 << 20, seed: 1, ...opts },
    (reason, n) => {
      drops[reason] += n;
    },
  );
  return { q, drops };
}

function put(q: TxQueue, pkt: Buffer, now: number): void {
  q.enqueue(packetView(pkt), now);
}

/** Dequeues up to `budget` bytes and returns the payloads (after the 28-byte headers) as text. */
function take(q: TxQueue, budget: number, now: number): string[] {
  const out: string[] = [];
  q.dequeue(budget, now, (p) => out.push(Buffer.from(p.buf).subarray(28).toString()));
  return out;
}

const bulk = (i: number) => udp4("10.0.0.1", "10.0.0.2", `bulk${i}`.padEnd(1000, "."));
const ping = () => udp4("10.0.0.1", "10.0.0.3", "ping");

describe("TxQueue (FQ-CoDel between the vNIC and the links)", () => {
  it("keeps a flow's order and copies what it queues", () => {
    const { q } = queue();
    const src = Buffer.concat([bulk(0), bulk(1)]);
    q.enqueue(new PacketView().plain(src, 0, 1028), 0);
    q.enqueue(new PacketView().plain(src, 1028, 1028), 0);
    src.fill(0);
    expect(take(q, 1 << 20, 0).map((s) => s.replace(/\.+$/, ""))).toEqual(["bulk0", "bulk1"]);
    expect(q.isEmpty).toBe(true);
  });

  it("counts how long each packet handed on waited, in seconds buckets", () => {
    const { q } = queue({ target: 0 }); // no CoDel drops: every packet is handed on
    put(q, bulk(0), 0);
    put(q, bulk(1), 0);
    put(q, bulk(2), 0);
    take(q, 1, 3); // 0.3 ms
    take(q, 1, 30 * MS);
    take(q, 1, 2000 * MS); // above every bound
    q.delay.recordImmediate(2);
    const d = q.delay.snapshot();
    expect(d.counts).toHaveLength(d.bounds.length + 1);
    expect(d.counts[0]).toBe(3); // 0.3 ms and the two sent at once
    expect(d.counts[d.bounds.indexOf(0.05)]).toBe(1); // 30 ms: in (0.025, 0.05]
    expect(d.counts.at(-1)).toBe(1);
    expect(d.sumSeconds).toBeCloseTo(0.0003 + 0.03 + 2, 6);
  });

  it("serves a flow that just became active before a backlogged bulk flow", () => {
    const { q } = queue();
    for (let i = 0; i < 100; i++) put(q, bulk(i), 0);
    expect(take(q, 3000, 0)).toHaveLength(3);
    put(q, ping(), 0);
    expect(take(q, 1, 0)).toEqual(["ping"]);
  });

  it("shares the budget between bulk flows round-robin by bytes", () => {
    const { q } = queue();
    for (let i = 0; i < 50; i++) {
      put(q, udp4("10.0.0.1", "10.0.0.2", "a".repeat(1000)), 0);
      put(q, udp4("10.0.0.1", "10.0.0.9", "b".repeat(1000)), 0);
    }
    const sent = take(q, 20 * 1028, 0);
    const a = sent.filter((s) => s.startsWith("a")).length;
    expect(Math.abs(a - (sent.length - a))).toBeLessThanOrEqual(2);
  });

  it("drops once packets waited longer than the target for a whole interval, and never a lone packet", () => {
    const { q, drops } = queue();
    // 10 packets per ms arrive, 9 per ms leave: the queue and its delay grow.
    let delivered = 0;
    for (let t = 0; t < 1000; t++) {
      for (let i = 0; i < 10; i++) put(q, bulk(i), t * MS);
      delivered += take(q, 9 * 1028, t * MS).length;
      if (t === 100) expect(drops.txQueue).toBe(0); // the delay only passed 5 ms at ~t=50
    }
    expect(drops.txQueue).toBeGreaterThan(5);
    expect(drops.txQueueFull).toBe(0);
    expect(delivered + drops.txQueue + q.queuedPackets).toBe(10_000);

    const lone = queue();
    put(lone.q, ping(), 0);
    expect(take(lone.q, 1 << 20, 500 * MS)).toEqual(["ping"]);
    expect(lone.drops.txQueue).toBe(0);
  });

  it("when full, drops from the flow with the most bytes queued", () => {
    const { q, drops } = queue({ maxBytes: 20 * 1028 });
    put(q, ping(), 0);
    for (let i = 0; i < 40; i++) put(q, bulk(i), 0);
    expect(drops.txQueueFull).toBeGreaterThan(0);
    expect(q.queuedBytes).toBeLessThanOrEqual(20 * 1028);
    expect(take(q, 1 << 20, 0)).toContain("ping");
  });

  it("keeps a flow's order across a long backlog that never empties", () => {
    const { q } = queue({ maxBytes: 64 << 20 });
    const seq = (i: number) => udp4("10.0.0.1", "10.0.0.2", String(i).padStart(6, "0"));
    let next = 0;
    for (; next < 3000; next++) put(q, seq(next), 0);
    const out = take(q, 1500 * 40, 0); // 1500 of them
    for (; next < 6000; next++) put(q, seq(next), 0);
    out.push(...take(q, 1 << 30, 0));
    expect(out.map(Number)).toEqual(Array.from({ length: 6000 }, (_, i) => i));
  });

  it("drops at most 64 packets per overflow", () => {
    const { q, drops } = queue({ maxBytes: 200 * 1028 });
    for (let i = 0; i < 200; i++) put(q, bulk(i), 0);
    put(q, bulk(200), 0);
    expect(drops.txQueueFull).toBeGreaterThan(0);
    expect(drops.txQueueFull).toBeLessThanOrEqual(64);
  });

  it("reuses the copy of a super-packet once handed on, and hands each packet on intact", () => {
    const { q } = queue({ target: 0, quantum: 1 << 16 });
    const big = (i: number) => udp4("10.0.0.1", "10.0.0.2", `big${i}`.padEnd(30_000 + i * 1000, String(i)));
    const seen: { buf: Uint8Array; text: string }[] = [];
    const takeOne = () =>
      q.dequeue(1, 0, (p) => {
        seen.push({ buf: p.buf, text: Buffer.from(p.buf.subarray(p.off, p.off + p.len)).toString("latin1") });
      });
    put(q, big(0), 0);
    put(q, big(1), 0);
    expect(q.queuedBytes).toBe(big(0).length + big(1).length); // the packets' bytes, not the buffers'
    takeOne();
    put(q, big(2), 0); // into the buffer big(0) was copied to
    takeOne();
    takeOne();
    expect(seen.map((s) => s.text)).toEqual([0, 1, 2].map((i) => big(i).toString("latin1")));
    expect(seen[2]?.buf).toBe(seen[0]?.buf);
    expect(seen[1]?.buf).not.toBe(seen[0]?.buf);
    expect(q.isEmpty).toBe(true);
  });

  it("frees everything on clear(), counted as drops", () => {
    const { q, drops } = queue();
    for (let i = 0; i < 10; i++) put(q, bulk(i), 0);
    q.clear();
    expect(drops.txQueue).toBe(10);
    expect(q.isEmpty).toBe(true);
    expect(q.queuedBytes).toBe(0);
    expect(take(q, 1 << 20, 0)).toEqual([]);
    put(q, ping(), 0);
    expect(take(q, 1 << 20, 0)).toEqual(["ping"]);
  });
});

describe("flowHash", () => {
  it("separates flows by address and port, and is stable within a flow", () => {
    const a = udp4("10.0.0.1", "10.0.0.2", "x");
    const b = udp4("10.0.0.1", "10.0.0.2", "different payload");
    const c = udp4("10.0.0.1", "10.0.0.2", "x");
    c.writeUInt16BE(40001, 20);
    const d = udp4("10.0.0.1", "10.0.0.3", "x");
    const h = (p: Buffer) => flowHash(p, 0, p.length, 7);
    expect(h(a)).toBe(h(b));
    expect(h(a)).not.toBe(h(c));
    expect(h(a)).not.toBe(h(d));
  });

  it("reads nothing beyond the packet for truncated or odd input", () => {
    const p = udp4("10.0.0.1", "10.0.0.2", "x");
    for (let len = 0; len <= p.length; len++) {
      const view = Buffer.alloc(len + 8, 0xff);
      p.copy(view, 4, 0, len);
      expect(Number.isInteger(flowHash(view, 4, len, 1))).toBe(true);
      // bytes after the packet must not change the hash
      view.fill(0, 4 + len);
      const again = flowHash(view, 4, len, 1);
      view.fill(0xee, 4 + len);
      expect(flowHash(view, 4, len, 1)).toBe(again);
    }
  });
});
