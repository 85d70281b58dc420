import { describe, expect, it } from "vitest";
import { FRAME_HEADROOM } from "../wire/index.js";
import { decodeFastHello, encodeFastHello, type FastHello } from "./offer.js";

const hello: FastHello = {
  type: "offer",
  index: 0x01020304,
  echo: 0,
  port: 51820,
  publicKey: Buffer.alloc(32, 0xab),
  candidates: [
    { address: "198.18.1.1", port: 51820 },
    { address: "fd00::1", port: 51821 },
  ],
};

const frameOf = (h: FastHello): Buffer => encodeFastHello(h).subarray(FRAME_HEADROOM);

describe("FAST_OFFER / FAST_ACCEPT codec", () => {
  it("bytes pinned: [17][01][index][echo][port][key][count][family addr port]...", () => {
    expect(frameOf(hello).toString("hex")).toBe(
      `1701010203040000000 0ca6c${"ab".repeat(32)}02 04c6120101ca6c 06fd000000000000000000000000000001ca6d`.replace(
        / /g,
        "",
      ),
    );
  });

  it("reads back what it wrote (offer and accept)", () => {
    expect(decodeFastHello(frameOf(hello))).toEqual(hello);
    const accept: FastHello = { ...hello, type: "accept", echo: 42, candidates: [] };
    expect(decodeFastHello(frameOf(accept))).toEqual(accept);
  });

  it("a relayed candidate has kind 0x14 / 0x16 and reads back as relayed", () => {
    const relayed: FastHello = {
      ...hello,
      candidates: [{ address: "100.64.0.1", port: 50000, relayed: true }],
    };
    const frame = frameOf(relayed);
    expect(frame.subarray(45).toString("hex")).toBe("1464400001c350");
    expect(decodeFastHello(frame)).toEqual(relayed);
    expect(
      decodeFastHello(frameOf({ ...relayed, candidates: [{ address: "fd00::1", port: 1, relayed: true }] })),
    ).toMatchObject({ candidates: [{ address: "fd00::1", port: 1, relayed: true }] });
  });

  it.each([
    ["too short", (b: Buffer) => b.subarray(0, 20), /at least/],
    ["another type", (b: Buffer) => Buffer.concat([Buffer.of(0x12), b.subarray(1)]), /type 0x12/],
    ["another version", (b: Buffer) => Buffer.concat([Buffer.of(0x17, 2), b.subarray(2)]), /version 2/],
    ["index 0", (b: Buffer) => Buffer.from(b).fill(0, 2, 6), /index 0/],
    ["an offer that echoes", (b: Buffer) => Buffer.from(b).fill(1, 6, 7), /echo/],
    ["too many candidates", (b: Buffer) => Buffer.from(b).fill(9, 44, 45), /9 candidates/],
    ["a bad family", (b: Buffer) => Buffer.from(b).fill(5, 45, 46), /family 5/],
    ["cut short", (b: Buffer) => b.subarray(0, b.length - 1), /cut short/],
    ["trailing bytes", (b: Buffer) => Buffer.concat([b, Buffer.of(0)]), /after the candidates/],
  ])("refuses %s with a clear error", (_what, mangle, error) => {
    const result = decodeFastHello(mangle(frameOf(hello)));
    expect(typeof result).toBe("string");
    expect(result).toMatch(error);
  });
});
