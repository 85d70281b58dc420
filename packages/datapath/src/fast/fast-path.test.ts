import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ControlFrames, FRAME_HEADROOM, FRAME_PROBE, FRAME_PROBE_REPLY } from "../wire/index.js";
import { FakeFastNet, type FakeFastSocket } from "./fake-socket.js";
import { FAST_RETRY_MS, type FastLinkView, FastPath } from "./fast-path.js";
import { decodeFastHello, type FastHello } from "./offer.js";
import { FastTransport } from "./transport.js";

/**
 * Two fast paths over an in-memory network (FakeFastNet: a datagram authenticates when the keys
 * match), their hellos handed over as the links' DTLS channel would, probes answered as Link does.
 */

interface Side {
  fast: FastPath;
  transport: FastTransport;
  socket: () => FakeFastSocket;
  delivered: string[];
  /** delivered.length at each end of a received batch (FastTransport's afterBatch). */
  batchEnds: number[];
  offers: number[];
  switches: boolean[];
  /** Sends a data frame the way Link.sendFrame does while the fast path is up. */
  sendData(text: string): boolean;
}

const A_UID = "a".repeat(40);
const B_UID = "b".repeat(40);

function makePair(opts: { rekeyMs?: number; wrongFingerprintAtB?: boolean } = {}): {
  net: FakeFastNet;
  a: Side;
  b: Side;
} {
  const net = new FakeFastNet();
  const sides: Side[] = [];
  const make = (uid: string, peerUid: string, address: string, peerAddress: string, peerFp: string): Side => {
    let socket: FakeFastSocket | null = null;
    const transport = new FastTransport({
      factory: () => {
        socket = net.socket(address, 5000);
        return socket;
      },
      port: 0,
      portRange: () => undefined,
      excludeAddress: () => false,
      warn: () => {},
      afterBatch: () => side.batchEnds.push(side.delivered.length),
    });
    transport.localCandidates = () => [{ address: "203.0.113.99", port: 5000 }];
    const side = {
      delivered: [] as string[],
      batchEnds: [] as number[],
      offers: [] as number[],
      switches: [] as boolean[],
    } as Side;
    const view: FastLinkView = {
      ownUid: uid,
      peerUid,
      localFingerprint: `sha-256 ${uid.slice(0, 2)}`,
      remoteFingerprint: peerFp,
      peerAddress,
      relayed: false,
      sendHello: (buf) => {
        const hello = decodeFastHello(buf.subarray(FRAME_HEADROOM)) as FastHello;
        if (hello.type === "offer") side.offers.push(Date.now());
        const other = sides.find((s) => s !== side) as Side;
        // node-datachannel's path is the slower one: fast datagrams can overtake a hello.
        setTimeout(() => other.fast.onHello(hello, Date.now()), 5);
        return true;
      },
      switched: (fast) => side.switches.push(fast),
      log: () => {},
    };
    side.fast = new FastPath(view, transport, opts.rekeyMs ?? 120_000);
    side.transport = transport;
    side.socket = () => socket as unknown as FakeFastSocket;
    const control = new ControlFrames(16);
    transport.attach({
      fast: side.fast,
      deliverFast: (frame, index) => {
        if (frame[0] === FRAME_PROBE) {
          const reply = control.probeReply(frame) as Buffer;
          side.fast.sendOn(index, reply, FRAME_HEADROOM, reply.length);
        } else if (frame[0] === FRAME_PROBE_REPLY) side.fast.probeAnswered(index, Date.now());
        else side.delivered.push(frame.toString());
      },
    });
    side.sendData = (text) => {
      if (!side.fast.sending) return false;
      const b = Buffer.from(`${" ".repeat(FRAME_HEADROOM)}${text}`);
      return side.fast.send(b, FRAME_HEADROOM, b.length, Date.now());
    };
    sides.push(side);
    return side;
  };
  const a = make(A_UID, B_UID, "198.18.1.1", "198.18.1.2", "sha-256 bb");
  const b = make(
    B_UID,
    A_UID,
    "198.18.1.2",
    "198.18.1.1",
    opts.wrongFingerprintAtB ? "sha-256 xx" : "sha-256 aa",
  );
  return { net, a, b };
}

/** Ticks both sides once a second, as Link.keepAlive does. */
function ticking(...sides: Side[]): void {
  setInterval(() => {
    for (const s of sides) s.fast.tick(Date.now());
  }, 1000);
}

const start = (...sides: Side[]) => {
  for (const s of sides) s.fast.start(Date.now());
};

beforeEach(() => {
  vi.useFakeTimers({
    toFake: [
      "setTimeout",
      "setInterval",
      "setImmediate",
      "clearTimeout",
      "clearInterval",
      "clearImmediate",
      "Date",
    ],
  });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("fast path state machine", () => {
  it("agrees keys over the hellos, finds the path by probing, and carries frames both ways", async () => {
    const { a, b } = makePair();
    start(a, b);
    await vi.advanceTimersByTimeAsync(500);
    expect([a.fast.phase, b.fast.phase]).toEqual(["up", "up"]);
    expect(a.switches).toEqual([true]);
    expect(a.fast.info()).toMatchObject({ endpoint: "198.18.1.2:5000", relayed: false });
    // Only the lower UID offered.
    expect([a.offers.length, b.offers.length]).toEqual([1, 0]);
    expect(a.sendData("to b")).toBe(true);
    expect(b.sendData("to a")).toBe(true);
    await vi.advanceTimersByTimeAsync(10);
    expect(b.delivered).toEqual(["to b"]);
    expect(a.delivered).toEqual(["to a"]);
  });

  it("ends every received batch with afterBatch, after its frames were delivered", async () => {
    const { a, b } = makePair();
    start(a, b);
    await vi.advanceTimersByTimeAsync(500);
    const before = b.batchEnds.length;
    expect(a.sendData("to b")).toBe(true);
    await vi.advanceTimersByTimeAsync(10);
    expect(b.delivered).toEqual(["to b"]);
    expect(b.batchEnds.slice(before)).toEqual([1]);
  });

  it("a key mismatch never switches a link: it stays on node-datachannel and retries after 10 s", async () => {
    const { a, b } = makePair({ wrongFingerprintAtB: true });
    ticking(a, b);
    start(a, b);
    await vi.advanceTimersByTimeAsync(3500);
    expect([a.fast.phase, b.fast.phase]).toEqual(["down", "down"]);
    expect(a.fast.sending).toBeNull();
    expect([...a.switches, ...b.switches]).toEqual([]);
    // Each side's probes fail the other's authentication.
    expect(a.socket().drops.badTag).toBeGreaterThan(5);
    expect(b.socket().drops.badTag).toBeGreaterThan(5);
    await vi.advanceTimersByTimeAsync((FAST_RETRY_MS[0] as number) + 1000);
    // Offered again (both sides may retry at once: the lower UID's offer stands); both probe it.
    expect(a.offers.length).toBe(2);
    expect([a.fast.phase, b.fast.phase]).toEqual(["probing", "probing"]);
  });

  it("falls back within ~3 s when the fast path goes silent, then retries after 10 s, 30 s, 60 s", async () => {
    const { net, a, b } = makePair();
    ticking(a, b);
    start(a, b);
    await vi.advanceTimersByTimeAsync(500);
    expect(a.fast.phase).toBe("up");
    net.blocked.add("198.18.1.2:5000");
    const blockedAt = Date.now();
    const sender = setInterval(() => a.sendData("x"), 100);
    while (a.fast.phase === "up" && Date.now() - blockedAt < 10_000) await vi.advanceTimersByTimeAsync(100);
    clearInterval(sender);
    const fellBackIn = Date.now() - blockedAt;
    expect(a.fast.phase).toBe("down");
    expect(fellBackIn).toBeGreaterThanOrEqual(3000);
    expect(fellBackIn).toBeLessThanOrEqual(4500);
    expect(a.fast.fallbacks).toBe(1);
    expect(a.switches).toEqual([true, false]);
    const offers = a.offers.length;
    await vi.advanceTimersByTimeAsync(120_000);
    const retries = a.offers.slice(offers).map((t) => t - blockedAt - fellBackIn);
    // Each retry probes for 3 s before it counts as failed; then the next wait begins.
    expect(retries[0]).toBeGreaterThanOrEqual(10_000);
    expect(retries[0]).toBeLessThan(11_000);
    expect((retries[1] as number) - (retries[0] as number)).toBeGreaterThanOrEqual(30_000);
    expect((retries[1] as number) - (retries[0] as number)).toBeLessThan(35_000);
    expect((retries[2] as number) - (retries[1] as number)).toBeGreaterThanOrEqual(60_000);
    // Unblocked, the next retry brings it back.
    net.blocked.clear();
    await vi.advanceTimersByTimeAsync(70_000);
    expect(a.fast.phase).toBe("up");
    expect(b.fast.phase).toBe("up");
  });

  it("rekeys on time with new receiver indexes, loses no frame under load, and removes old sessions", async () => {
    const { a, b } = makePair({ rekeyMs: 2000 });
    ticking(a, b);
    start(a, b);
    await vi.advanceTimersByTimeAsync(500);
    const firstIndex = a.fast.sending?.localIndex;
    // The acceptor's first probes may come before the offerer has the accept: not part of a rekey.
    const unknownBefore = a.socket().drops.unknownIndex + b.socket().drops.unknownIndex;
    let sent = 0;
    const load = setInterval(() => {
      for (let i = 0; i < 5; i++) {
        if (a.sendData(`a${sent}`) && b.sendData(`b${sent}`)) sent++;
      }
    }, 20);
    await vi.advanceTimersByTimeAsync(9000);
    clearInterval(load);
    await vi.advanceTimersByTimeAsync(50);
    expect(a.fast.rekeys).toBeGreaterThanOrEqual(3);
    expect(b.fast.rekeys).toBeGreaterThanOrEqual(3);
    expect(a.fast.sending?.localIndex).not.toBe(firstIndex);
    expect(a.fast.phase).toBe("up");
    expect(sent).toBeGreaterThan(1000);
    expect(b.delivered.length).toBe(sent);
    expect(a.delivered.length).toBe(sent);
    // The current session and those still in their 5 s grace period (a rekey every 2 s).
    expect(a.socket().sessions.size).toBeLessThanOrEqual(4);
    expect(a.socket().drops.unknownIndex + b.socket().drops.unknownIndex).toBe(unknownBefore);
  });

  it("crossed offers: the lower UID's stands, the other is withdrawn", async () => {
    const { a, b } = makePair();
    ticking(a, b);
    start(a, b);
    await vi.advanceTimersByTimeAsync(500);
    // Both fall back at once (e.g. the path broke both ways) and retry at the same moment.
    for (const s of [a, b]) (s.fast as unknown as { fallBack(now: number): void }).fallBack(Date.now());
    await vi.advanceTimersByTimeAsync(FAST_RETRY_MS[0] as number);
    await vi.advanceTimersByTimeAsync(1000);
    expect(b.offers.length).toBe(1);
    expect([a.fast.phase, b.fast.phase]).toEqual(["up", "up"]);
    expect(a.sendData("after")).toBe(true);
    await vi.advanceTimersByTimeAsync(10);
    expect(b.delivered).toEqual(["after"]);
  });

  it("close removes every session and index", async () => {
    const { a, b } = makePair();
    start(a, b);
    await vi.advanceTimersByTimeAsync(500);
    a.transport.close();
    expect(a.socket().sessions.size).toBe(0);
    expect(a.socket().closed).toBe(true);
    expect(a.fast.phase).toBe("off");
  });
});
