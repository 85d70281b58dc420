import { afterEach, describe, expect, it, vi } from "vitest";
import { IccChannel, IccQueueFull, MAX_ICC_QUEUE } from "./icc-channel.js";
import { FRAME_ICC, FRAME_ICC_ACK } from "./wire/index.js";

const HEADROOM = 12;

/** Two channels joined by a transport that loses what `lose` picks and delivers the rest later. */
function pair(lose: (frame: Buffer, n: number) => boolean) {
  const got: { a: string[]; b: string[] } = { a: [], b: [] };
  let sent = 0;
  const ends: IccChannel[] = [];
  const make = (name: "a" | "b", peer: () => IccChannel) =>
    new IccChannel(HEADROOM, {
      sendControl(buf, end) {
        const frame = Buffer.from(buf.subarray(HEADROOM, end));
        if (!lose(frame, sent++)) setTimeout(() => peer().onFrame(frame), 5);
        return true;
      },
      deliver: (text) => got[name].push(text),
      rttMs: () => 10,
    });
  ends.push(
    make("a", () => ends[1] as IccChannel),
    make("b", () => ends[0] as IccChannel),
  );
  return { a: ends[0] as IccChannel, b: ends[1] as IccChannel, got };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("IccChannel", () => {
  it("delivers every message once and in order over a path that loses a third of the frames", async () => {
    vi.useFakeTimers();
    const { a, b, got } = pair((_f, n) => n % 3 === 1);
    const sent = Array.from({ length: 40 }, (_, i) => JSON.stringify({ i, pad: "x".repeat(i * 50) }));
    for (const m of sent) a.send(m);
    b.send("from b");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(got.b).toEqual(sent);
    expect(got.a).toEqual(["from b"]);
    expect(a.waiting).toBe(0);
    expect(a.retransmits).toBeGreaterThan(0);
  });

  it("acknowledges a repeated message again without delivering it twice", () => {
    const acks: number[] = [];
    const delivered: string[] = [];
    const ch = new IccChannel(0, {
      sendControl(buf) {
        if (buf[0] === FRAME_ICC_ACK) acks.push(buf.readUInt32BE(1));
        return true;
      },
      deliver: (t) => delivered.push(t),
      rttMs: () => null,
    });
    const frame = (seq: number, text: string) => {
      const f = Buffer.alloc(5 + text.length);
      f[0] = FRAME_ICC;
      f.writeUInt32BE(seq, 1);
      f.write(text, 5);
      return f;
    };
    expect(ch.onFrame(frame(0, "one"))).toBe(true);
    expect(ch.onFrame(frame(0, "one"))).toBe(true);
    expect(ch.onFrame(frame(5, "ahead"))).toBe(true);
    expect(ch.onFrame(frame(1, "two"))).toBe(true);
    expect(ch.onFrame(Buffer.from([FRAME_ICC, 0]))).toBe(false);
    expect(delivered).toEqual(["one", "two"]);
    expect(acks).toEqual([0, 0, 1]);
    ch.close();
  });

  it("refuses a message when the queue is full, and after close", () => {
    const ch = new IccChannel(0, { sendControl: () => true, deliver: () => {}, rttMs: () => null });
    for (let i = 0; i < MAX_ICC_QUEUE; i++) ch.send(`m${i}`);
    expect(() => ch.send("one too many")).toThrow(IccQueueFull);
    ch.close();
    expect(() => ch.send("late")).toThrow(/closed/);
  });
});
