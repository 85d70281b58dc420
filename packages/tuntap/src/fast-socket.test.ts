// Tests of FastSocket over 127.0.0.1 (no root needed; root only lifts the socket buffer cap).
// Datagrams from "outside" are built here with node:crypto from the documented wire format,
// so these tests also check the format itself (packages/protocol/README.md, "Fast path").

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { createSocket, type Socket as DgramSocket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { FAST_MAX_FRAME, FAST_REPLAY_WINDOW, type FastCipher, FastSocket } from "./fast-socket.js";

const HOST = "127.0.0.1";
const A_INDEX = 0x11111111;
const B_INDEX = 0x2222;

const open: Array<FastSocket | DgramSocket> = [];
afterEach(() => {
  for (const s of open.splice(0)) {
    if (s instanceof FastSocket) s.close();
    else s.close();
  }
});

function fast(cipher?: FastCipher, udpOffload?: boolean): FastSocket {
  const s = new FastSocket({
    address: HOST,
    ...(cipher ? { cipher } : {}),
    ...(udpOffload === undefined ? {} : { udpOffload }),
  });
  open.push(s);
  return s;
}

async function plain(): Promise<DgramSocket> {
  const s = createSocket("udp4");
  open.push(s);
  await new Promise<void>((resolve) => s.bind(0, HOST, resolve));
  return s;
}

interface Frame {
  index: number;
  data: Buffer;
}

function collect(s: FastSocket): Frame[] {
  const frames: Frame[] = [];
  s.onBatch((indexes, buf, offsets, lengths, count) => {
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number;
      frames.push({
        index: indexes[i] as number,
        data: Buffer.from(buf.subarray(off, off + (lengths[i] as number))),
      });
    }
  });
  return frames;
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Lets queued datagrams arrive and be processed (for checks that nothing happened). */
const settle = () => new Promise((r) => setTimeout(r, 100));

function header(receiverIndex: number, counter: bigint): Buffer {
  const h = Buffer.alloc(16);
  h[0] = 0x01;
  h.writeUInt32LE(receiverIndex, 4);
  h.writeBigUInt64LE(counter, 8);
  return h;
}

function nonce(counter: bigint): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64LE(counter, 4);
  return n;
}

/** A datagram sealed by the documented format, independently of the addon. */
function seal(
  cipher: FastCipher,
  key: Buffer,
  receiverIndex: number,
  counter: bigint,
  frame: Buffer,
): Buffer {
  const h = header(receiverIndex, counter);
  const c = createCipheriv(cipher, key, nonce(counter), { authTagLength: 16 } as never) as ReturnType<
    typeof createCipheriv
  > & { setAAD(b: Buffer, o?: object): void; getAuthTag(): Buffer };
  c.setAAD(h, { plaintextLength: frame.length });
  const ct = Buffer.concat([c.update(frame), c.final()]);
  return Buffer.concat([h, ct, c.getAuthTag()]);
}

/** Opens a datagram by the documented format; throws when it does not authenticate. */
function unseal(
  cipher: FastCipher,
  key: Buffer,
  dgram: Buffer,
): { index: number; counter: bigint; frame: Buffer } {
  const h = dgram.subarray(0, 16);
  const counter = h.readBigUInt64LE(8);
  const d = createDecipheriv(cipher, key, nonce(counter), { authTagLength: 16 } as never) as ReturnType<
    typeof createDecipheriv
  > & { setAAD(b: Buffer, o?: object): void; setAuthTag(b: Buffer): void };
  const ct = dgram.subarray(16, dgram.length - 16);
  d.setAAD(h, { plaintextLength: ct.length });
  d.setAuthTag(dgram.subarray(dgram.length - 16));
  const frame = Buffer.concat([d.update(ct), d.final()]);
  expect(h[0]).toBe(1);
  expect(h.subarray(1, 4)).toEqual(Buffer.alloc(3));
  return { index: h.readUInt32LE(4), counter, frame };
}

/** Two sockets with crossed keys: A (local index A_INDEX) <-> B (local index B_INDEX). */
function pair(cipher?: FastCipher, udpOffload?: boolean) {
  const a = fast(cipher, udpOffload);
  const b = fast(cipher, udpOffload);
  const kAB = randomBytes(32);
  const kBA = randomBytes(32);
  a.setSession(A_INDEX, B_INDEX, kAB, kBA, { address: HOST, port: b.port });
  b.setSession(B_INDEX, A_INDEX, kBA, kAB, { address: HOST, port: a.port });
  return { a, b, kAB, kBA, cipher: cipher ?? a.cipher };
}

function sendTo(sock: DgramSocket, port: number, ...dgrams: Buffer[]): void {
  for (const d of dgrams) sock.send(d, port, HOST);
}

describe("FastSocket", () => {
  for (const cipher of ["aes-256-gcm", "chacha20-poly1305"] as const) {
    it(`exchanges frames both ways (${cipher})`, async () => {
      const { a, b } = pair(cipher);
      const atA = collect(a);
      const atB = collect(b);
      const fromA = [Buffer.from("hello B"), randomBytes(1400), Buffer.alloc(0)];
      const fromB = [Buffer.from("hello A"), randomBytes(777)];
      const big = Buffer.concat([Buffer.alloc(10, 0xee), fromA[1] as Buffer, Buffer.alloc(5, 0xee)]);
      expect(a.send(A_INDEX, fromA[0] as Buffer, 0, 7)).toBe(true);
      expect(a.send(A_INDEX, big, 10, 1410)).toBe(true);
      expect(a.send(A_INDEX, fromA[2] as Buffer, 0, 0)).toBe(true);
      for (const f of fromB) expect(b.send(B_INDEX, f, 0, f.length)).toBe(true);
      await until("all frames", () => atB.length === 3 && atA.length === 2);
      expect(atB.map((f) => f.data)).toEqual(fromA);
      expect(atB.every((f) => f.index === B_INDEX)).toBe(true);
      expect(atA.map((f) => f.data)).toEqual(fromB);
      expect(atA.every((f) => f.index === A_INDEX)).toBe(true);
      const sa = a.sessionStats(A_INDEX);
      expect(sa).toMatchObject({ txPackets: 3, txBytes: 1407, rxPackets: 2, rxBytes: 784, sendCounter: 3 });
      expect(sa?.endpoint).toEqual({ address: HOST, port: b.port });
      expect(sa?.lastRxMs).toBeGreaterThanOrEqual(0);
      expect(b.stats()).toMatchObject({ rxDatagrams: 3, txDatagrams: 2 });
      expect(Object.values(b.stats().drops).every((n) => n === 0)).toBe(true);
    });

    it(`seals exactly as documented: node:crypto opens a captured datagram and its seal is accepted (${cipher})`, async () => {
      const { a, b, kAB, kBA } = pair(cipher);
      const sniff = await plain();
      const got: Buffer[] = [];
      sniff.on("message", (m) => got.push(m));
      a.setEndpoint(A_INDEX, { address: HOST, port: sniff.address().port });
      a.send(A_INDEX, Buffer.from("frame 0"), 0, 7);
      a.send(A_INDEX, Buffer.from("frame 1"), 0, 7);
      await until("captured datagrams", () => got.length === 2);
      const opened = got.map((d) => unseal(cipher, kAB, d));
      expect(opened).toEqual([
        { index: B_INDEX, counter: 0n, frame: Buffer.from("frame 0") },
        { index: B_INDEX, counter: 1n, frame: Buffer.from("frame 1") },
      ]);
      expect(got[0]?.length).toBe(7 + 32);
      const atA = collect(a);
      sendTo(sniff, a.port, seal(cipher, kBA, A_INDEX, 0n, Buffer.from("from outside")));
      await until("frame at A", () => atA.length === 1);
      expect(atA[0]).toEqual({ index: A_INDEX, data: Buffer.from("from outside") });
      expect(b.stats().rxDatagrams).toBe(0);
    });
  }

  it("delivers a batch of 500 frames of mixed sizes sent in one go", async () => {
    const { a, b } = pair();
    const atB = collect(b);
    const sent: Buffer[] = [];
    for (let i = 0; i < 500; i++) {
      const size = i === 0 ? 1 : i === 1 ? 1472 : 1 + ((i * 7919) % 1440);
      const f = randomBytes(size);
      sent.push(f);
      expect(a.send(A_INDEX, f, 0, f.length)).toBe(true);
    }
    a.flush();
    await until("500 frames", () => atB.length === 500);
    expect(atB.map((f) => f.data)).toEqual(sent);
    expect(a.stats().txDatagrams).toBe(500);
    expect(a.stats().drops.sendFailed).toBe(0);
  });

  for (const udpOffload of [true, false]) {
    it(`carries runs of same-size frames, with udpOffload ${udpOffload} (GSO/GRO: fewer kernel messages)`, async () => {
      const { a, b } = pair(undefined, udpOffload);
      const atB = collect(b);
      const sent: Buffer[] = [];
      for (let i = 0; i < 300; i++) {
        // runs of 1400-byte frames with a shorter one now and then (it ends a GSO run)
        const f = randomBytes(i % 50 === 49 ? 333 : 1400);
        sent.push(f);
        a.send(A_INDEX, f, 0, f.length);
      }
      a.flush();
      await until("300 frames", () => atB.length === 300);
      expect(atB.map((f) => f.data)).toEqual(sent);
      const sa = a.stats();
      const sb = b.stats();
      expect(sa).toMatchObject({ txDatagrams: 300, udpGso: udpOffload });
      expect(sb).toMatchObject({ rxDatagrams: 300, udpGro: udpOffload });
      if (udpOffload) {
        expect(sa.txMessages).toBeLessThanOrEqual(300 / 10);
        expect(sb.rxMessages).toBeLessThan(300);
      } else {
        expect(sa.txMessages).toBe(300);
        expect(sb.rxMessages).toBe(300);
      }
      expect(Object.values(sb.drops).every((n) => n === 0)).toBe(true);
    });
  }

  it("drops tampered ciphertext, tag and header (badTag) and changes nothing", async () => {
    const { a, b, kAB, cipher } = pair();
    const atA = collect(a);
    const atB = collect(b);
    const x = await plain();
    const good = seal(cipher, kAB, B_INDEX, 0n, randomBytes(100));
    const tampered = [20, good.length - 1, 8, 13].map((at) => {
      const t = Buffer.from(good);
      t[at] = (t[at] as number) ^ 0x40;
      return t;
    });
    sendTo(x, b.port, ...tampered);
    await until("four drops", () => b.stats().drops.badTag === 4);
    await settle();
    expect(atB).toHaveLength(0);
    const s = b.sessionStats(B_INDEX);
    expect(s).toMatchObject({ rxPackets: 0, lastRxMs: -1, endpoint: { address: HOST, port: a.port } });
    // The genuine datagram (same counter) still goes through: nothing was consumed.
    sendTo(x, b.port, good);
    await until("the genuine frame", () => atB.length === 1);
    expect(b.stats().drops).toMatchObject({ badTag: 4, replay: 0, tooOld: 0 });
    expect(atA).toHaveLength(0);
  });

  it("drops a replayed captured datagram (replay)", async () => {
    const { a, b } = pair();
    const atB = collect(b);
    const relay = await plain();
    const captured: Buffer[] = [];
    relay.on("message", (m) => captured.push(m));
    a.setEndpoint(A_INDEX, { address: HOST, port: relay.address().port });
    a.send(A_INDEX, Buffer.from("once"), 0, 4);
    await until("capture", () => captured.length === 1);
    const d = captured[0] as Buffer;
    sendTo(relay, b.port, d, d, d);
    await until("replays counted", () => b.stats().drops.replay === 2);
    await settle();
    expect(atB.map((f) => f.data.toString())).toEqual(["once"]);
  });

  it("delivers reordered datagrams inside the window once each; older ones are tooOld", async () => {
    const { b, kAB, cipher } = pair();
    const atB = collect(b);
    const x = await plain();
    const dg = (c: number) => seal(cipher, kAB, B_INDEX, BigInt(c), Buffer.from(`c${c}`));
    const newest = 20_000;
    const oldestInside = newest - (FAST_REPLAY_WINDOW - 1);
    sendTo(x, b.port, dg(10), dg(5), dg(7), dg(6), dg(5));
    await until("4 frames", () => atB.length === 4);
    sendTo(x, b.port, dg(newest), dg(oldestInside));
    await until("6 frames", () => atB.length === 6);
    sendTo(x, b.port, dg(oldestInside - 1), dg(12), dg(newest), dg(newest - 1));
    await until("last frame", () => atB.length === 7);
    await until("drops", () => b.stats().drops.tooOld === 2 && b.stats().drops.replay === 2);
    await settle();
    expect(atB.map((f) => f.data.toString())).toEqual([
      "c10",
      "c5",
      "c7",
      "c6",
      `c${newest}`,
      `c${oldestInside}`,
      `c${newest - 1}`,
    ]);
    expect(b.stats().drops).toMatchObject({ replay: 2, tooOld: 2, badTag: 0 });
  });

  it("drops unknown indexes, short datagrams and junk, counted by reason", async () => {
    const { b, kAB, cipher } = pair();
    const atB = collect(b);
    const x = await plain();
    const junk = Buffer.from("GET / HTTP/1.1\r\n\r\n");
    sendTo(
      x,
      b.port,
      seal(cipher, kAB, B_INDEX + 1, 0n, Buffer.from("wrong index")),
      Buffer.from([1, 0, 0, 0, 0x22]),
      seal(cipher, kAB, B_INDEX, 0n, Buffer.alloc(0)).subarray(0, 31),
      Buffer.alloc(0),
      junk,
      seal(cipher, kAB, B_INDEX, 2n ** 60n, Buffer.from("past the limit")),
    );
    await until("6 datagrams", () => b.stats().rxDatagrams === 6);
    await settle();
    expect(b.stats().drops).toMatchObject({ unknownIndex: 1, short: 3, badType: 1, tooOld: 1 });
    expect(atB).toHaveLength(0);
  });

  it("ignores a third party guessing headers: the session and its window are untouched", async () => {
    const { a, b } = pair();
    const atB = collect(b);
    const attacker = await plain();
    const guesses: Buffer[] = [];
    for (let c = 0; c < 200; c++) {
      guesses.push(Buffer.concat([header(B_INDEX, BigInt(c)), randomBytes(64 + (c % 50))]));
    }
    for (let c = 0; c < 20; c++) guesses.push(Buffer.concat([header(c, 0n), randomBytes(48)]));
    sendTo(attacker, b.port, ...guesses);
    await until("all guesses seen", () => b.stats().rxDatagrams === 220);
    expect(b.stats().drops).toMatchObject({ badTag: 200, unknownIndex: 20 });
    expect(b.sessionStats(B_INDEX)).toMatchObject({
      rxPackets: 0,
      lastRxMs: -1,
      endpoint: { address: HOST, port: a.port },
    });
    // Counters 0..199 were "used" by the guesses: the real sender's must still be accepted.
    for (let i = 0; i < 5; i++) a.send(A_INDEX, Buffer.from(`real ${i}`), 0, 6);
    await until("real frames", () => atB.length === 5);
    expect(atB.map((f) => f.data.toString())).toEqual(["real 0", "real 1", "real 2", "real 3", "real 4"]);
  });

  it("moves the endpoint to the source of the newest authenticated datagram (roaming)", async () => {
    const { a, b, kAB, kBA, cipher } = pair();
    collect(b);
    const roamed = await plain();
    const atRoamed: Buffer[] = [];
    roamed.on("message", (m) => atRoamed.push(m));
    const roamedPort = roamed.address().port;
    a.send(A_INDEX, Buffer.from("from a"), 0, 6); // counter 0 from a.port
    await until("first frame", () => b.sessionStats(B_INDEX)?.rxPackets === 1);
    // A forged datagram from the new port does not move the endpoint...
    sendTo(roamed, b.port, seal(cipher, randomBytes(32), B_INDEX, 5n, Buffer.from("forged")));
    await until("badTag", () => b.stats().drops.badTag === 1);
    expect(b.sessionStats(B_INDEX)?.endpoint).toEqual({ address: HOST, port: a.port });
    // ...an authenticated one with the newest counter does.
    sendTo(roamed, b.port, seal(cipher, kAB, B_INDEX, 5n, Buffer.from("roamed")));
    await until("roamed", () => b.sessionStats(B_INDEX)?.endpoint?.port === roamedPort);
    // An authenticated but older one (counter 3 < 5) from a.port does not move it back.
    sendTo(await plain(), b.port, seal(cipher, kAB, B_INDEX, 3n, Buffer.from("late")));
    await until("late frame", () => b.sessionStats(B_INDEX)?.rxPackets === 3);
    expect(b.sessionStats(B_INDEX)?.endpoint).toEqual({ address: HOST, port: roamedPort });
    b.send(B_INDEX, Buffer.from("to the new place"), 0, 16);
    await until("reply at the new port", () => atRoamed.length === 1);
    expect(unseal(cipher, kBA, atRoamed[0] as Buffer).frame.toString()).toBe("to the new place");
  });

  it("after removeSession, datagrams for it are unknownIndex and sends are refused", async () => {
    const { a, b } = pair();
    const atB = collect(b);
    b.removeSession(B_INDEX);
    b.removeSession(B_INDEX);
    expect(b.sessionStats(B_INDEX)).toBeNull();
    a.send(A_INDEX, Buffer.from("gone"), 0, 4);
    await until("unknownIndex", () => b.stats().drops.unknownIndex === 1);
    expect(atB).toHaveLength(0);
    expect(b.send(B_INDEX, Buffer.from("x"), 0, 1)).toBe(false);
    expect(b.stats().drops.noSession).toBe(1);
  });

  it("refuses to send without an endpoint (noEndpoint)", () => {
    const a = fast();
    a.setSession(1, 2, randomBytes(32), randomBytes(32), null);
    expect(a.sessionStats(1)?.endpoint).toBeNull();
    expect(a.send(1, Buffer.from("x"), 0, 1)).toBe(false);
    expect(a.stats().drops.noEndpoint).toBe(1);
    expect(a.sessionStats(1)?.sendCounter).toBe(0);
  });

  it("replacing a session resets its counters and keys", async () => {
    const { a, b, kAB, kBA } = pair();
    const atB = collect(b);
    a.send(A_INDEX, Buffer.from("old"), 0, 3);
    await until("old frame", () => atB.length === 1);
    const k2 = randomBytes(32);
    a.setSession(A_INDEX, B_INDEX, k2, kBA, { address: HOST, port: b.port });
    expect(a.sessionStats(A_INDEX)).toMatchObject({ sendCounter: 0, txPackets: 0 });
    a.send(A_INDEX, Buffer.from("new key"), 0, 7);
    // B still has the old key and has seen counter 0: dropped before any decryption.
    await until("dropped at B", () => b.stats().drops.replay === 1);
    a.send(A_INDEX, Buffer.from("new key"), 0, 7);
    await until("badTag at B (old key there)", () => b.stats().drops.badTag === 1);
    b.setSession(B_INDEX, A_INDEX, kBA, k2, { address: HOST, port: a.port });
    a.send(A_INDEX, Buffer.from("new key"), 0, 7);
    await until("new frame", () => atB.length === 2);
    expect(b.sessionStats(B_INDEX)?.rxPackets).toBe(1);
    expect(atB[1]?.data.toString()).toBe("new key");
    expect(kAB.equals(k2)).toBe(false);
  });

  it("rekeys under load without loss: new indexes and keys, the old session kept for a grace time", async () => {
    const { a, b } = pair();
    const atB = collect(b);
    const A2 = A_INDEX + 1;
    const B2 = B_INDEX + 1;
    const k2AB = randomBytes(32);
    const k2BA = randomBytes(32);
    let sent = 0;
    const burst = (index: number) => {
      for (let i = 0; i < 50; i++) {
        const f = Buffer.alloc(200);
        f.writeUInt32BE(sent++, 0);
        expect(a.send(index, f, 0, f.length)).toBe(true);
      }
    };
    burst(A_INDEX);
    // The receiver installs the new session first; the sender switches while old frames are in flight.
    b.setSession(B2, A2, k2BA, k2AB, { address: HOST, port: a.port });
    burst(A_INDEX);
    a.setSession(A2, B2, k2AB, k2BA, { address: HOST, port: b.port });
    burst(A2);
    a.flush();
    burst(A2);
    await until("all frames", () => atB.length === sent);
    b.removeSession(B_INDEX);
    a.removeSession(A_INDEX);
    burst(A2);
    await until("frames after the old session is gone", () => atB.length === sent);
    expect(atB.map((f) => f.data.readUInt32BE(0))).toEqual([...Array(sent).keys()]);
    expect(atB.slice(0, 100).every((f) => f.index === B_INDEX)).toBe(true);
    expect(atB.slice(100).every((f) => f.index === B2)).toBe(true);
    expect(Object.values(b.stats().drops).every((n) => n === 0)).toBe(true);
  });

  it("survives random datagrams: every one is counted, none delivered, the session still works", async () => {
    const { a, b } = pair();
    const atB = collect(b);
    const x = await plain();
    const junk: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      const d = randomBytes(i % 3 === 0 ? i % 40 : 1 + ((i * 131) % 1500));
      if (i % 2 === 0 && d.length >= 8) {
        d[0] = 1; // looks like data: sometimes our index, sometimes a STUN cookie
        d.fill(0, 1, 4);
        if (i % 4 === 0) d.writeUInt32LE(B_INDEX, 4);
      }
      if (i % 10 === 5 && d.length >= 20) d.writeUInt32BE(0x2112a442, 4);
      junk.push(d);
    }
    let raws = 0;
    b.onRaw(() => raws++);
    sendTo(x, b.port, ...junk);
    await until("all received", () => b.stats().rxDatagrams === 400);
    const st = b.stats();
    const dropped = Object.values(st.drops).reduce((n, v) => n + v, 0);
    // Whatever is not dropped went to onRaw (STUN-looking), never to onBatch.
    expect(dropped + raws).toBe(400);
    expect(dropped).toBeGreaterThan(300);
    expect(st.drops.badTag).toBeGreaterThan(0);
    await settle();
    expect(atB).toHaveLength(0);
    a.send(A_INDEX, Buffer.from("after the storm"), 0, 15);
    await until("real frame", () => atB.length === 1);
  });

  it("hands STUN-looking datagrams to onRaw (at most 4 per wake-up) and sends raw ones", async () => {
    const { b } = pair();
    const x = await plain();
    const raws: Array<{ buf: Buffer; from: { address: string; port: number } }> = [];
    b.onRaw((buf, from) => raws.push({ buf, from }));
    const stun = (type: number) => {
      const m = Buffer.alloc(20);
      m.writeUInt16BE(type, 0);
      m.writeUInt32BE(0x2112a442, 4);
      randomBytes(12).copy(m, 8);
      return m;
    };
    const request = stun(0x0001);
    const success = stun(0x0101); // starts with 0x01 like data, but is STUN
    sendTo(x, b.port, request, success);
    await until("two raw", () => raws.length === 2);
    expect(raws[0]).toEqual({ buf: request, from: { address: HOST, port: x.address().port } });
    expect(raws[1]?.buf).toEqual(success);
    const back: Buffer[] = [];
    x.on("message", (m) => back.push(m));
    expect(b.sendRaw({ address: HOST, port: x.address().port }, request)).toBe(true);
    await until("raw datagram back", () => back.length === 1);
    expect(back[0]).toEqual(request);
    expect(() => b.sendRaw({ address: HOST, port: 1 }, Buffer.from([1, 0, 0, 0]))).toThrow(RangeError);
  });

  it("rejects bad arguments with clear errors and changes nothing", async () => {
    const { a, b, kBA } = pair();
    const atB = collect(b);
    const key = randomBytes(32);
    const ep = { address: HOST, port: b.port };
    expect(() => a.setSession(A_INDEX, B_INDEX, randomBytes(31), kBA, ep)).toThrow(/32 bytes/);
    expect(() => a.setSession(A_INDEX, B_INDEX, key, new Uint16Array(16), ep)).toThrow(TypeError);
    for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) {
      expect(() => a.setSession(bad, B_INDEX, key, kBA, ep)).toThrow(RangeError);
      expect(() => a.send(bad, Buffer.alloc(4), 0, 4)).toThrow(RangeError);
    }
    expect(() => a.setSession("1" as never, B_INDEX, key, kBA, ep)).toThrow(TypeError);
    expect(() => a.setSession(A_INDEX, B_INDEX, key, kBA, { address: "banana", port: 1 })).toThrow(TypeError);
    expect(() => a.setSession(A_INDEX, B_INDEX, key, kBA, { address: HOST, port: 0 })).toThrow(RangeError);
    expect(() => a.setSession(A_INDEX, B_INDEX, key, kBA, { address: "::1", port: 9 })).toThrow(/IPv6/);
    expect(() => a.setEndpoint(A_INDEX + 1, ep)).toThrow(/no fast-path session/);
    expect(() => a.send(A_INDEX, Buffer.alloc(4), 0, 5)).toThrow(RangeError);
    expect(() => a.send(A_INDEX, Buffer.alloc(4), 3, 2)).toThrow(RangeError);
    expect(() => a.send(A_INDEX, Buffer.alloc(4), -1, 2)).toThrow(RangeError);
    expect(() => a.send(A_INDEX, Buffer.alloc(70_000), 0, 70_000)).toThrow(/longer than/);
    expect(() => a.send(A_INDEX, "abc" as never, 0, 2)).toThrow(TypeError);
    expect(() => new FastSocket({ address: "1.2.3" })).toThrow(TypeError);
    expect(() => new FastSocket({ address: HOST, batchSize: 0 })).toThrow(RangeError);
    expect(() => new FastSocket({ address: HOST, cipher: "des" as never })).toThrow(TypeError);
    expect(a.sessionStats(A_INDEX)).toMatchObject({ sendCounter: 0, endpoint: ep });
    // The session still works with its original keys.
    a.send(A_INDEX, Buffer.from("still fine"), 0, 10);
    await until("frame", () => atB.length === 1);
    expect(atB[0]?.data.toString()).toBe("still fine");
  });

  it("close is idempotent; afterwards sends throw and stats stay readable", () => {
    const { a } = pair();
    a.send(A_INDEX, Buffer.from("x"), 0, 1);
    a.close();
    a.close();
    expect(a.closed).toBe(true);
    expect(a.sessionStats(A_INDEX)).toBeNull();
    expect(a.stats().txDatagrams).toBe(1);
    expect(() => a.send(A_INDEX, Buffer.from("x"), 0, 1)).toThrow(
      expect.objectContaining({ code: "ERR_FAST_SOCKET_CLOSED" }),
    );
    a.flush();
  });

  it("sets DF: a datagram above the device MTU is refused and counted, not fragmented; the batch goes on", async () => {
    // Over ::1 (MTU 65536) the largest frame makes a 65555-byte IPv6 packet: without DF the
    // kernel would fragment it and B would get it.
    const a = new FastSocket({ address: "::1" });
    const b = new FastSocket({ address: "::1" });
    open.push(a, b);
    const kAB = randomBytes(32);
    const kBA = randomBytes(32);
    a.setSession(A_INDEX, B_INDEX, kAB, kBA, { address: "::1", port: b.port });
    b.setSession(B_INDEX, A_INDEX, kBA, kAB, { address: "::1", port: a.port });
    const atB = collect(b);
    const big = randomBytes(FAST_MAX_FRAME);
    expect(a.send(A_INDEX, Buffer.from("before"), 0, 6)).toBe(true);
    expect(a.send(A_INDEX, big, 0, big.length)).toBe(true);
    expect(a.send(A_INDEX, Buffer.from("after"), 0, 5)).toBe(true);
    a.flush();
    await until("the small frames at B", () => atB.length >= 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(atB.map((f) => f.data.toString())).toEqual(["before", "after"]);
    expect(a.stats().drops.sendFailed).toBe(1);
  });

  it("binds IPv6 '::' and carries IPv4 endpoints (v4-mapped) too", async () => {
    const a = new FastSocket({ address: "::" });
    open.push(a);
    const { b, kAB, kBA } = pair();
    const atB = collect(b);
    const atA = collect(a);
    a.setSession(A_INDEX, B_INDEX, kAB, kBA, { address: HOST, port: b.port });
    b.setEndpoint(B_INDEX, { address: HOST, port: a.port });
    a.send(A_INDEX, Buffer.from("v6 socket"), 0, 9);
    await until("frame at B", () => atB.length === 1);
    b.send(B_INDEX, Buffer.from("reply"), 0, 5);
    await until("reply at A", () => atA.length === 1);
    expect(a.sessionStats(A_INDEX)?.endpoint).toEqual({ address: HOST, port: b.port });
  });

  it("sends and takes TURN ChannelData on a session's channel (through a relay that rewrites channels)", async () => {
    const { a, b } = pair();
    const atA = collect(a);
    const atB = collect(b);
    // A TURN server as both sides see it: A's channel 0x4001 and B's 0x4002 name each other.
    const turn = await plain();
    const seen: Buffer[] = [];
    turn.on("message", (m, from) => {
      seen.push(Buffer.from(m));
      const out = Buffer.from(m);
      out.writeUInt16BE(from.port === a.port ? 0x4002 : 0x4001, 0);
      turn.send(out, from.port === a.port ? b.port : a.port, HOST);
    });
    const server = { address: HOST, port: turn.address().port };
    a.setChannel(A_INDEX, 0x4001);
    a.setEndpoint(A_INDEX, server);
    b.setChannel(B_INDEX, 0x4002);
    b.setEndpoint(B_INDEX, server);
    const frames = Array.from({ length: 5 }, (_, i) => Buffer.alloc(1000, i));
    for (const f of frames) expect(a.send(A_INDEX, f, 0, f.length)).toBe(true);
    a.flush();
    b.send(B_INDEX, Buffer.from("reply"), 0, 5);
    await until("frames both ways", () => atB.length === 5 && atA.length === 1);
    expect(atB.map((f) => f.data)).toEqual(frames);
    expect(atA[0]?.data.toString()).toBe("reply");
    // Each datagram (GSO or not) is one ChannelData message: [channel][length][sealed datagram].
    expect(seen).toHaveLength(6);
    for (const d of seen) {
      expect(d.readUInt16BE(2)).toBe(d.length - 4);
      expect(d[4]).toBe(0x01);
    }
    expect(seen.filter((d) => d.readUInt16BE(0) === 0x4001)).toHaveLength(5);
    // Replies keep going to the server, where they came from.
    expect(a.sessionStats(A_INDEX)?.endpoint).toEqual(server);
    // A ChannelData header that claims more than the datagram holds is not ours (badType).
    const x = await plain();
    sendTo(x, b.port, Buffer.from([0x40, 0x02, 0x01, 0x00, 0x01]));
    await until("badType drop", () => b.stats().drops.badType === 1);
    expect(() => a.setChannel(A_INDEX, 0x3fff)).toThrow(/0x4000\.\.0x4FFF/);
    // Channel 0: straight to the endpoint again.
    a.setChannel(A_INDEX, 0);
    a.setEndpoint(A_INDEX, { address: HOST, port: b.port });
    a.send(A_INDEX, Buffer.from("direct"), 0, 6);
    await until("direct frame", () => atB.length === 6);
    expect(seen).toHaveLength(6);
  });
});
