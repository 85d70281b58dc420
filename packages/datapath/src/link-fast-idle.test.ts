import type { LinkState } from "@tincan/protocol";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeFastNet } from "./fast/fake-socket.js";
import { FastTransport } from "./fast/transport.js";
import { Link, PC_CLOSE_AFTER_MS } from "./link.js";
import { FAST_SILENCE_MS } from "./liveness.js";
import { FRAME_PROBE_REPLY, RTP_HEADER } from "./wire/index.js";

/**
 * Two Links over real node-datachannel PeerConnections (loopback ICE, DTLS, the media track) whose
 * fast paths share an in-memory network (FakeFastNet). Once the fast path is up, the clock is
 * fake (Date only) and keepAlive is driven by hand, a second at a time.
 */

const A_UID = "a".repeat(32);
const B_UID = "b".repeat(32);

interface End {
  link: Link;
  address: string;
  states: LinkState[];
  frames: string[];
  icc: string[];
  /** Calls of the fastChanged handler (what the native forwarding table follows). */
  fastChanges: number;
}

const ends: End[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const e of ends.splice(0)) e.link.close();
});

const realSleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await realSleep(10);
  }
}

function makeEnd(net: FakeFastNet, uid: string, peerUid: string, address: string, fastRekeyMs: number): End {
  // ICE may pick IPv4 or IPv6 on this host: the fake socket answers at an address of each family.
  const address6 = `fd00:5::${address.split(".")[3]}`;
  const transport = new FastTransport({
    factory: () => {
      const socket = net.socket(address, 5000);
      net.sockets.set(`${address6}:5000`, socket);
      return socket;
    },
    port: 0,
    portRange: () => undefined,
    excludeAddress: () => false,
    warn: () => {},
  });
  // Both families whatever is asked: loopback ICE here may pair an IPv6 end with an IPv4 one.
  transport.localCandidates = () => [
    { address, port: 5000 },
    { address: address6, port: 5000 },
  ];
  const end = { address, states: [], frames: [], icc: [], fastChanges: 0 } as unknown as End;
  let peer: End | undefined;
  const pendingCandidates: [string, string][] = [];
  end.link = new Link(
    {
      peerUid,
      relayOnly: false,
      ice: { stun: [], turn: [] },
      ownUid: uid,
      underlayMtu: 1400,
      queuePackets: 64,
      maxBufferedBytes: 1 << 20,
      rtp: true,
      silenceMs: 10_000,
      rxQueueMs: 0,
      rxIntervalMs: 0,
      fast: transport,
      fastRekeyMs,
    },
    {
      candidate: (_l, candidate, mid) => {
        peer = peer ?? ends.find((e) => e !== end);
        if (!peer) pendingCandidates.push([candidate, mid]);
        else {
          const to = peer.link;
          for (const [c, m] of pendingCandidates.splice(0)) addCandidateSoon(to, c, m);
          addCandidateSoon(to, candidate, mid);
        }
      },
      state: (_l, s) => end.states.push(s),
      frame: (_l, frame) => end.frames.push(frame.subarray(1).toString()),
      icc: (_l, text) => end.icc.push(text),
      fastChanged: () => end.fastChanges++,
      excludeAddress: () => false,
      log: process.env.DEBUG_LINK
        ? (_l, level, message, fields) => console.log(uid.slice(0, 2), level, message, fields)
        : undefined,
    },
  );
  ends.push(end);
  return end;
}

/**
 * Hands a candidate to the peer's link, again 50 ms later while its remote description is not set
 * yet ("Got a remote candidate without ICE transport"). This runs inside node-datachannel's
 * candidate callback, where an uncaught exception ends the process.
 */
function addCandidateSoon(to: Link, candidate: string, mid: string, tries = 20): void {
  try {
    to.addCandidate(candidate, mid);
  } catch {
    if (tries > 0) setTimeout(() => addCandidateSoon(to, candidate, mid, tries - 1), 50).unref();
  }
}

function sendText(end: End, text: string): void {
  const buf = Buffer.alloc(RTP_HEADER + 1 + text.length);
  buf[RTP_HEADER] = 0; // a packet frame; the receiving handler only looks at the text
  buf.write(text, RTP_HEADER + 1);
  end.link.sendFrame(buf, buf.length, 1, text.length);
}

/** Two links connected over node-datachannel, their fast paths up; the clock then fake (Date only). */
async function fastPair(fastRekeyMs = 120_000): Promise<{ net: FakeFastNet; a: End; b: End; t0: number }> {
  const net = new FakeFastNet();
  const a = makeEnd(net, A_UID, B_UID, "198.51.100.1", fastRekeyMs);
  const b = makeEnd(net, B_UID, A_UID, "198.51.100.2", fastRekeyMs);
  const offer = await a.link.createOffer();
  const answer = await b.link.acceptOffer(offer);
  a.link.complete(answer);
  await until("both links connected", () => a.link.isConnected && b.link.isConnected);
  // keepAlive starts the fast path (the link's own timer in the datapath).
  await until("both ends on the fast path", () => {
    const now = Date.now();
    a.link.keepAlive(now);
    b.link.keepAlive(now);
    return a.link.info().transport === "fast" && b.link.info().transport === "fast";
  }).catch((err) => {
    throw new Error(`${err.message}: ${JSON.stringify([a.link.info(), b.link.info()])}`);
  });
  const t0 = Date.now();
  vi.useFakeTimers({ toFake: ["Date"], now: t0 });
  return { net, a, b, t0 };
}

/** keepAlive on both ends once a (fake) second, from `from` to `to`; real time passes for delivery. */
async function tick(ends: End[], from: number, to: number): Promise<void> {
  for (let t = from; t <= to; t += 1000) {
    vi.setSystemTime(t);
    for (const e of ends) e.link.keepAlive(t);
    await realSleep(5);
  }
}

const sentBy = (net: FakeFastNet, address: string, since: number) =>
  net.sent.slice(since).filter((d) => d.from.address === address);

describe("Link on the fast path alone (PeerConnection closed)", () => {
  it("closes its PeerConnection after 20 s on the fast path, keeps carrying frames, icc and rekeys on it", async () => {
    const { net, a, b, t0 } = await fastPair();
    const paths = [a.link.info().path, b.link.info().path];
    await tick([a, b], t0 + 1000, t0 + PC_CLOSE_AFTER_MS - 2000);
    expect([a.link.pcClosed, b.link.pcClosed]).toEqual([false, false]);
    await tick([a, b], t0 + PC_CLOSE_AFTER_MS - 1000, t0 + PC_CLOSE_AFTER_MS + 2000);
    expect([a.link.pcClosed, b.link.pcClosed]).toEqual([true, true]);
    for (const [i, e] of [a, b].entries()) {
      const info = e.link.info();
      expect(info.state).toBe("connected");
      expect(info.transport).toBe("fast");
      expect(info.fast?.peerConnection).toBe("closed");
      // The path ICE selected stays the link's path.
      expect(info.path).toBe(paths[i]);
      expect(info.path).not.toBeNull();
    }
    sendText(a, "to b");
    sendText(b, "to a");
    a.link.sendIcc("icc to b");
    await until(
      "frames and icc delivered",
      () => b.frames.length > 0 && a.frames.length > 0 && b.icc.length > 0,
    );
    expect([b.frames, a.frames, b.icc]).toEqual([["to b"], ["to a"], ["icc to b"]]);
    // The frames just sent are followed by RTT probes for a few seconds (a busy link's).
    await tick([a, b], t0 + PC_CLOSE_AFTER_MS + 3000, t0 + PC_CLOSE_AFTER_MS + 10_000);
    // 60 s idle: one side probes every ~10 s, the other answers.
    const mark = net.sent.length;
    const from = t0 + PC_CLOSE_AFTER_MS + 11_000;
    await tick([a, b], from, from + 60_000);
    const [fromA, fromB] = [sentBy(net, a.address, mark), sentBy(net, b.address, mark)];
    // On the wire: UDP/IPv4 28 + fast header 16 + frame + tag 16.
    const perSec = (list: typeof fromA) => list.reduce((n, d) => n + 28 + 16 + d.payload.length + 16, 0) / 60;
    console.log(
      `idle 60 s on the fast path alone: A sent ${fromA.length} datagrams (${perSec(fromA).toFixed(1)} B/s), B ${fromB.length} (${perSec(fromB).toFixed(1)} B/s)`,
    );
    expect(perSec(fromA)).toBeLessThanOrEqual(10);
    expect(perSec(fromB)).toBeLessThanOrEqual(10);
    expect(
      fromB.map((d) => d.payload[0]).filter((t) => t !== FRAME_PROBE_REPLY),
      "B sent only replies",
    ).toEqual([]);
    // Rekeying (every 120 s) goes on the fast path too.
    const rekeys = a.link.info().fast?.rekeys ?? 0;
    await tick([a, b], from + 61_000, from + 200_000);
    expect(a.link.info().fast?.rekeys ?? 0).toBeGreaterThan(rekeys);
    expect([a.link.state, b.link.state]).toEqual(["connected", "connected"]);
    sendText(a, "still to b");
    await until("a frame after the rekeys", () => b.frames.includes("still to b"));
  }, 30_000);

  it("reports a peer gone silent `disconnected` within 15 s, on both sides, and for good", async () => {
    const { net, a, b, t0 } = await fastPair();
    await tick([a, b], t0 + 1000, t0 + PC_CLOSE_AFTER_MS + 2000);
    expect([a.link.pcClosed, b.link.pcClosed]).toEqual([true, true]);
    const cut = t0 + PC_CLOSE_AFTER_MS + 2500;
    net.blocked.add(`${a.address}:5000`).add(`fd00:5::1:5000`);
    const downAt = new Map<End, number>();
    for (let t = cut + 500; t <= cut + 20_000; t += 1000) {
      await tick([a, b], t, t);
      for (const e of [a, b]) if (!downAt.has(e) && e.link.state === "disconnected") downAt.set(e, t);
    }
    const seconds = [a, b].map((e) => ((downAt.get(e) ?? Number.POSITIVE_INFINITY) - cut) / 1000);
    console.log(`peer silent: A (leads) down after ${seconds[0]} s, B after ${seconds[1]} s`);
    for (const s of seconds) expect(s).toBeLessThanOrEqual(FAST_SILENCE_MS / 1000 + 1);
    net.blocked.clear();
    await tick([a, b], cut + 21_000, cut + 30_000);
    expect([a.link.state, b.link.state]).toEqual(["disconnected", "disconnected"]);
    expect(a.states.filter((s) => s === "disconnected")).toHaveLength(1);
  }, 30_000);
});

describe("Link: path MTU changes and native forwarding", () => {
  it("tells the native table in the same step when the path MTU changes, not a second later", async () => {
    const { net, a, b, t0 } = await fastPair();
    await until("A's path MTU measured", () => a.link.pathMtu !== null);
    const measured = a.link.pathMtu as number;
    a.link.nativeForwarding = true; // as NativeForward marks a link with an entry
    a.fastChanges = 0;
    net.maxPayload = 1000; // the path shrank
    // A busy link confirms its path MTU every 30 s: the confirmation is lost and the search starts
    // over from the base, then finds the smaller size.
    const steps: string[] = [];
    let last = a.link.pathMtu;
    for (let t = t0 + 1000; t <= t0 + 60_000; t += 1000) {
      sendText(a, "busy");
      const changes = a.fastChanges;
      await tick([a, b], t, t);
      await realSleep(50); // probes and their acknowledgements cross
      if (a.link.pathMtu !== last) {
        steps.push(`${last}->${a.link.pathMtu}`);
        // Told with the change itself: the table's size never lags behind the link's.
        expect(a.fastChanges, `told of ${last} -> ${a.link.pathMtu}`).toBeGreaterThan(changes);
        last = a.link.pathMtu;
      }
      if (last !== null && last < measured) break;
    }
    console.log(`path MTU ${steps.join(", ")}; fastChanged ${a.fastChanges} times`);
    expect(last).not.toBeNull();
    expect(last).toBeLessThan(measured);
    expect(a.link.info().transport).toBe("fast");
  }, 30_000);
});
