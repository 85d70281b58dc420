import { describe, expect, it } from "vitest";
import { PacketQueue } from "./queue.js";

describe("PacketQueue", () => {
  it("keeps at most maxPackets, dropping the oldest", () => {
    const q = new PacketQueue(3);
    for (let i = 0; i < 5; i++) q.push(Buffer.from([i, i]), 0, 2);
    expect(q.length).toBe(3);
    expect(q.dropped).toBe(2);
    expect(q.drain().map((b) => b[0])).toEqual([2, 3, 4]);
    expect(q.length).toBe(0);
  });

  it("bounds bytes as well as packets and copies the data", () => {
    const q = new PacketQueue(100, 10);
    const src = Buffer.from([1, 2, 3, 4, 5, 6]);
    q.push(src, 1, 4);
    src[1] = 99;
    q.push(src, 0, 6);
    q.push(src, 0, 6);
    expect(q.length).toBe(1);
    q.push(Buffer.alloc(11), 0, 11);
    expect(q.dropped).toBe(3);
    const [only] = q.drain();
    expect(only?.length).toBe(6);
  });
});
