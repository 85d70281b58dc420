import { describe, expect, it } from "vitest";
import { BufferPool } from "./buffer-pool.js";

describe("BufferPool (the send queue's super-packet copies)", () => {
  it("hands out power-of-two buffers from 8 KiB to 64 KiB, and exact ones below 4 KiB", () => {
    const pool = new BufferPool(1 << 20);
    expect(pool.take(100).length).toBe(100);
    expect(pool.take(4095).length).toBe(4095);
    expect(pool.take(4096).length).toBe(8192);
    expect(pool.take(8192).length).toBe(8192);
    expect(pool.take(8193).length).toBe(16384);
    expect(pool.take(65535).length).toBe(65536);
    expect(pool.take(65536).length).toBe(65536);
  });

  it("gives a buffer handed back to the next take of its class", () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.take(60_000);
    const small = pool.take(9000);
    pool.give(a);
    pool.give(small);
    expect(pool.idleBytes).toBe(65536 + 16384);
    expect(pool.take(40_000)).toBe(a);
    expect(pool.take(33_000)).not.toBe(a); // emptied: a fresh one
    expect(pool.take(10_000)).toBe(small);
    expect(pool.idleBytes).toBe(0);
  });

  it("lends a larger idle buffer when the packet's own class has none", () => {
    const pool = new BufferPool(1 << 20);
    const big = pool.take(65_000);
    pool.give(big);
    expect(pool.take(5000)).toBe(big);
    pool.give(big);
    expect(pool.idleBytes).toBe(65536);
    const small = pool.take(5000);
    pool.give(small);
    expect(pool.take(6000)).toBe(small); // its own class first
    expect(pool.take(70_000).length).toBe(70_000); // above every class: not pooled
  });

  it("keeps at most maxFreeBytes idle and ignores buffers it did not make", () => {
    const pool = new BufferPool(3 * 65536);
    const bufs = Array.from({ length: 5 }, () => pool.take(65_000));
    for (const b of bufs) pool.give(b);
    expect(pool.idleBytes).toBe(3 * 65536);
    pool.give(Buffer.alloc(1000));
    pool.give(Buffer.alloc(10_000)); // not a class size
    expect(pool.idleBytes).toBe(3 * 65536);
    pool.drain();
    expect(pool.idleBytes).toBe(0);
  });
});
