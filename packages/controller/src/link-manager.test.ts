import type { LinkInfo, NotificationMethod, RpcMethod, Signal } from "@tincan/protocol";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LinkManager, type PeerRef, PHASE_TIMERS } from "./link-manager.js";
import { type Log, nullLog } from "./logger.js";
import { linkInfo } from "./testing.js";

const SMALL = `${"0".repeat(31)}1`;
const LARGE = "f".repeat(32);
const MID = "8".repeat(32);

class FakeDatapath {
  calls: Array<{ method: RpcMethod; params: Record<string, unknown> }> = [];
  handlers = new Map<string, Set<(p: unknown) => void>>();
  links: LinkInfo[] = [];
  async call(method: RpcMethod, params: unknown): Promise<never> {
    this.calls.push({ method, params: params as Record<string, unknown> });
    const p = params as { peerUid?: string };
    let result: unknown = {};
    if (method === "link.create") result = { description: { type: "offer", sdp: `offer-${p.peerUid}` } };
    if (method === "link.accept") result = { description: { type: "answer", sdp: `answer-${p.peerUid}` } };
    if (method === "link.query") result = this.links;
    return result as never;
  }
  on(name: NotificationMethod, handler: (p: never) => void): () => void {
    let set = this.handlers.get(name);
    if (!set) {
      set = new Set();
      this.handlers.set(name, set);
    }
    set.add(handler as (p: unknown) => void);
    return () => set.delete(handler as (p: unknown) => void);
  }
  notify(name: NotificationMethod, params: unknown): void {
    for (const h of this.handlers.get(name) ?? []) h(params);
  }
  methods(): string[] {
    return this.calls.map((c) => c.method);
  }
  callsOf(method: RpcMethod) {
    return this.calls.filter((c) => c.method === method);
  }
}

class FakeSignals {
  sent: Array<{ to: string; signal: Signal }> = [];
  async sendSignal(to: string, signal: Signal): Promise<void> {
    this.sent.push({ to, signal });
  }
  ofType<T extends Signal["type"]>(type: T) {
    return this.sent
      .filter((s) => s.signal.type === type)
      .map((s) => s.signal as Extract<Signal, { type: T }>);
  }
}

const flush = async () => {
  for (let i = 0; i < 50; i++) await Promise.resolve();
};

function peer(uid: string, name = "bob"): PeerRef {
  return { uid, bareJid: `${name}@lab.local`, fullJid: `${name}@lab.local/tincan-1` };
}

function info(peerUid: string, packets: number): LinkInfo {
  return linkInfo(peerUid, {
    txBytes: packets * 100,
    rxBytes: packets * 100,
    txPackets: packets,
    rxPackets: packets,
  });
}

function setup(
  selfUid: string,
  over: Partial<{ hasTurn: boolean; admit: (p: PeerRef) => boolean; maxLinks: number; log: Log }> = {},
) {
  const dp = new FakeDatapath();
  const sig = new FakeSignals();
  const lm = new LinkManager({
    selfUid,
    datapath: dp,
    signals: sig,
    log: over.log ?? nullLog,
    links: { maxLinks: over.maxLinks ?? 64, idleTimeoutSec: 60, relayFallbackSec: 2, setupTimeoutSec: 10 },
    hasTurn: over.hasTurn ?? false,
    admit: over.admit ?? (() => true),
  });
  return { dp, sig, lm };
}

const offerFrom = (from: string, to: string, setupId: string, relayOnly = false): Signal => ({
  type: "offer",
  from,
  to,
  setup: setupId,
  relayOnly,
  description: { type: "offer", sdp: "remote-offer" },
});

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("glare", () => {
  it("the smaller UID keeps its own offer and ignores the peer's", async () => {
    const { dp, sig, lm } = setup(SMALL);
    await lm.ensureLink(peer(LARGE));
    expect(sig.ofType("offer")).toHaveLength(1);
    await lm.handleSignal(peer(LARGE), offerFrom(LARGE, SMALL, "theirs"));
    expect(dp.methods()).toEqual(["link.create"]);
    expect(sig.ofType("answer")).toHaveLength(0);
    expect(lm.linkState(LARGE)).toBe("offering");
  });

  it("the larger UID drops its pending attempt and accepts the smaller's offer", async () => {
    const { dp, sig, lm } = setup(LARGE);
    await lm.ensureLink(peer(SMALL));
    await lm.handleSignal(peer(SMALL), offerFrom(SMALL, LARGE, "theirs"));
    expect(dp.methods()).toEqual(["link.create", "link.remove", "link.accept"]);
    const answers = sig.ofType("answer");
    expect(answers).toHaveLength(1);
    expect(answers[0]?.setup).toBe("theirs");
    expect(lm.linkState(SMALL)).toBe("connecting");
  });
});

describe("setup ids", () => {
  it("ignores an answer for a stale setup and applies the current one", async () => {
    const { dp, sig, lm } = setup(SMALL);
    const bob = peer(LARGE);
    await lm.ensureLink(bob);
    const offer = sig.ofType("offer")[0];
    expect(offer).toBeDefined();
    const answer = (setupId: string): Signal => ({
      type: "answer",
      from: LARGE,
      to: SMALL,
      setup: setupId,
      description: { type: "answer", sdp: "a" },
    });
    await lm.handleSignal(bob, answer("old-setup"));
    expect(dp.callsOf("link.complete")).toHaveLength(0);
    await lm.handleSignal(bob, answer(offer?.setup ?? ""));
    expect(dp.callsOf("link.complete")).toHaveLength(1);
    expect(lm.linkState(LARGE)).toBe("connecting");
  });

  it("asks the datapath before giving up a setup: a connected link whose notification is late stays", async () => {
    const { dp, sig, lm } = setup(SMALL);
    const bob = peer(LARGE);
    const ups: unknown[] = [];
    lm.on("link-up", (e) => ups.push(e));
    await lm.ensureLink(bob);
    const offer = sig.ofType("offer")[0];
    await lm.handleSignal(bob, {
      type: "answer",
      from: LARGE,
      to: SMALL,
      setup: offer?.setup ?? "",
      description: { type: "answer", sdp: "a" },
    });
    // The datapath has the link connected; its link.state notification has not been handled yet.
    dp.links = [info(LARGE, 0)];
    await vi.advanceTimersByTimeAsync(10_500);
    expect(sig.ofType("bye")).toHaveLength(0);
    expect(dp.callsOf("link.remove")).toHaveLength(0);
    expect(lm.linkState(LARGE)).toBe("connected");
    expect(ups).toHaveLength(1);
  });

  it("buffers candidates that arrive before their offer and applies them after link.accept", async () => {
    const { dp, lm } = setup(LARGE);
    const alice = peer(SMALL, "alice");
    const cand: Signal = {
      type: "candidate",
      from: SMALL,
      to: LARGE,
      setup: "s1",
      candidate: "a=candidate:1",
      mid: "0",
    };
    await lm.handleSignal(alice, cand);
    expect(dp.callsOf("link.addCandidate")).toHaveLength(0);
    await lm.handleSignal(alice, offerFrom(SMALL, LARGE, "s1"));
    expect(dp.methods()).toEqual(["link.accept", "link.addCandidate"]);
    expect(dp.callsOf("link.addCandidate")[0]?.params.candidate).toBe("a=candidate:1");
  });

  it("answers a direct-only offer (a relayed link's direct re-attempt) with a direct-only transport", async () => {
    const direct = setup(LARGE);
    await direct.lm.handleSignal(peer(SMALL), { ...offerFrom(SMALL, LARGE, "s1"), directOnly: true });
    expect(direct.dp.callsOf("link.accept").map((c) => c.params.directOnly)).toEqual([true]);
    const plain = setup(LARGE);
    await plain.lm.handleSignal(peer(SMALL), offerFrom(SMALL, LARGE, "s1"));
    expect(plain.dp.callsOf("link.accept").map((c) => c.params.directOnly)).toEqual([undefined]);
  });

  it("refuses offers that fail admission", async () => {
    const { dp, sig, lm } = setup(LARGE, { admit: () => false });
    await lm.handleSignal(peer(SMALL), offerFrom(SMALL, LARGE, "s1"));
    expect(dp.calls).toHaveLength(0);
    expect(sig.sent).toHaveLength(0);
  });

  it("forwards local candidates with the current setup id", async () => {
    const { dp, sig, lm } = setup(SMALL);
    await lm.ensureLink(peer(LARGE));
    dp.notify("link.candidate", { peerUid: LARGE, candidate: "c1", mid: "0" });
    await flush();
    const c = sig.ofType("candidate");
    expect(c).toHaveLength(1);
    expect(c[0]?.setup).toBe(sig.ofType("offer")[0]?.setup);
  });
});

describe("relay fallback and retry", () => {
  it("races a relay-only attempt with a new setup id after relayFallbackSec, keeping the direct one", async () => {
    const { dp, sig, lm } = setup(SMALL, { hasTurn: true });
    await lm.ensureLink(peer(LARGE));
    const first = sig.ofType("offer")[0];
    expect(first?.relayOnly).toBe(false);
    await vi.advanceTimersByTimeAsync(1900);
    expect(sig.ofType("offer")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(200);
    const offers = sig.ofType("offer");
    expect(offers).toHaveLength(2);
    expect(offers[1]?.relayOnly).toBe(true);
    expect(offers[1]?.setup).not.toBe(first?.setup);
    expect(dp.methods()).toEqual(["link.create", "link.create"]);
    expect(dp.callsOf("link.create")[1]?.params.relayOnly).toBe(true);
  });

  it("does not fall back without TURN servers, and does not when the link connected", async () => {
    const a = setup(SMALL, { hasTurn: false });
    await a.lm.ensureLink(peer(LARGE));
    await vi.advanceTimersByTimeAsync(3000);
    expect(a.sig.ofType("offer")).toHaveLength(1);

    const b = setup(SMALL, { hasTurn: true });
    await b.lm.ensureLink(peer(LARGE));
    b.dp.notify("link.state", { peerUid: LARGE, state: "connected", path: "host" });
    await flush();
    expect(b.lm.linkState(LARGE)).toBe("connected");
    await vi.advanceTimersByTimeAsync(3000);
    expect(b.sig.ofType("offer")).toHaveLength(1);
  });

  it("offers again at once, direct, when ICE connected but the DTLS handshake failed (twice at most)", async () => {
    const { dp, sig, lm } = setup(SMALL, { hasTurn: true });
    await lm.ensureLink(peer(LARGE));
    for (let i = 0; i < 2; i++) {
      dp.notify("link.state", { peerUid: LARGE, state: "failed", reason: "handshake" });
      await flush();
    }
    const offers = sig.ofType("offer");
    expect(offers).toHaveLength(3);
    expect(offers.map((o) => o.relayOnly)).toEqual([false, false, false]);
    expect(new Set(offers.map((o) => o.setup)).size).toBe(3);
    // A third handshake failure in a row is treated like any failure: relay fallback.
    dp.notify("link.state", { peerUid: LARGE, state: "failed", reason: "handshake" });
    await flush();
    expect(sig.ofType("offer").at(-1)?.relayOnly).toBe(true);
    // An ICE failure goes to the relay straight away.
    const b = setup(SMALL, { hasTurn: true });
    await b.lm.ensureLink(peer(LARGE));
    b.dp.notify("link.state", { peerUid: LARGE, state: "failed", reason: "ice" });
    await flush();
    expect(b.sig.ofType("offer").map((o) => o.relayOnly)).toEqual([false, true]);
  });

  it("as answerer, takes the offerer's new offer after a failed handshake: old link removed, new answer", async () => {
    const { dp, sig, lm } = setup(LARGE);
    const small = peer(SMALL, "alice");
    await lm.handleSignal(small, offerFrom(SMALL, LARGE, "first"));
    dp.notify("link.state", { peerUid: SMALL, state: "failed", reason: "handshake" });
    await flush();
    expect(sig.ofType("offer")).toHaveLength(0); // the offerer decides
    await lm.handleSignal(small, offerFrom(SMALL, LARGE, "second"));
    expect(dp.methods()).toEqual(["link.accept", "link.remove", "link.accept"]);
    expect(sig.ofType("answer").map((a) => a.setup)).toEqual(["first", "second"]);
    dp.notify("link.state", { peerUid: SMALL, state: "connected", path: "host" });
    await flush();
    expect(lm.linkState(SMALL)).toBe("connected");
  });

  it("retries a timed-out setup with exponential backoff", async () => {
    const { sig, lm } = setup(SMALL);
    await lm.ensureLink(peer(LARGE));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(lm.linkState(LARGE)).toBe("backoff");
    expect(sig.ofType("bye")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1200); // ~1 s backoff
    expect(sig.ofType("offer")).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(10_000); // second timeout -> ~2 s backoff
    await vi.advanceTimersByTimeAsync(1200);
    expect(sig.ofType("offer")).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1200);
    expect(sig.ofType("offer")).toHaveLength(3);
  });
});

describe("idle trimming and peers going away", () => {
  async function connect(lm: LinkManager, dp: FakeDatapath, p: PeerRef, pinned: boolean) {
    await lm.ensureLink(p, { pinned });
    dp.notify("link.state", { peerUid: p.uid, state: "connected", path: "host" });
    await flush();
    expect(lm.linkState(p.uid)).toBe("connected");
  }

  it("removes only idle, unpinned links", async () => {
    const { dp, sig, lm } = setup(SMALL);
    const idle = peer(LARGE, "idle");
    const busy = peer(MID, "busy");
    const pinned = peer("9".repeat(32), "pinned");
    await connect(lm, dp, idle, false);
    await connect(lm, dp, busy, false);
    await connect(lm, dp, pinned, true);
    const down: string[] = [];
    lm.on("link-down", (e) => down.push(e.peer.uid));
    for (let t = 0; t < 14; t++) {
      dp.links = [info(idle.uid, 5), info(busy.uid, 5 + t), info(pinned.uid, 5)];
      await lm.poll();
      await flush();
      await vi.advanceTimersByTimeAsync(5000);
    }
    expect(down).toEqual([idle.uid]);
    expect(lm.linkState(idle.uid)).toBeUndefined();
    expect(lm.linkState(busy.uid)).toBe("connected");
    expect(lm.linkState(pinned.uid)).toBe("connected");
    expect(dp.callsOf("link.remove").map((c) => c.params.peerUid)).toEqual([idle.uid]);
    expect(sig.ofType("bye").map((b) => b.to)).toEqual([idle.uid]);
  });

  it("removes the link of a peer that went offline, without signalling it", async () => {
    const { dp, sig, lm } = setup(SMALL);
    const bob = peer(LARGE);
    await connect(lm, dp, bob, true);
    const down: string[] = [];
    lm.on("link-down", (e) => down.push(e.reason ?? ""));
    await lm.peerGone(LARGE);
    expect(lm.linkState(LARGE)).toBeUndefined();
    expect(dp.callsOf("link.remove")).toHaveLength(1);
    expect(sig.ofType("bye")).toHaveLength(0);
    expect(down).toEqual(["peer offline"]);
  });

  it("sets a failed connected link up again when it is wanted", async () => {
    const { dp, sig, lm } = setup(SMALL);
    await connect(lm, dp, peer(LARGE), true);
    dp.notify("link.state", { peerUid: LARGE, state: "failed" });
    await flush();
    expect(lm.linkState(LARGE)).toBe("backoff");
    await vi.advanceTimersByTimeAsync(1200);
    expect(sig.ofType("offer")).toHaveLength(2);
  });

  it("queues links beyond maxLinks and starts them when a slot frees", async () => {
    const { sig, lm } = setup(SMALL, { maxLinks: 1 });
    await lm.ensureLink(peer(LARGE, "a"));
    await lm.ensureLink(peer(MID, "b"));
    expect(lm.linkState(MID)).toBe("queued");
    expect(sig.ofType("offer")).toHaveLength(1);
    await lm.removeLink(LARGE, "test");
    await flush();
    expect(sig.ofType("offer").map((o) => o.to)).toEqual([LARGE, MID]);
  });
});

describe("relay as a bridge: race and upgrade", () => {
  /** A link set up by SMALL whose relay-only transport connected first, the direct one still checking. */
  async function relayedLink() {
    const t = setup(SMALL, { hasTurn: true });
    const events: string[] = [];
    t.lm.on("link-up", (e) => events.push(`up ${e.path} ${e.relayOnly}`));
    t.lm.on("link-down", (e) => events.push(`down ${e.reason}`));
    await t.lm.ensureLink(peer(LARGE));
    await vi.advanceTimersByTimeAsync(2000);
    const [direct, relay] = t.sig.ofType("offer");
    for (const o of [direct, relay]) {
      await t.lm.handleSignal(peer(LARGE), {
        type: "answer",
        from: LARGE,
        to: SMALL,
        setup: o!.setup,
        description: { type: "answer", sdp: "a" },
      });
    }
    t.dp.notify("link.state", { peerUid: LARGE, relayOnly: true, state: "connected", path: "relay" });
    await flush();
    return { ...t, events, direct: direct!, relay: relay! };
  }

  it("reports link-up on the relay, then moves to the direct transport and closes the relay after an overlap", async () => {
    const { dp, sig, lm, events } = await relayedLink();
    expect(events).toEqual(["up relay true"]);
    expect(lm.linkState(LARGE)).toBe("connected");
    // tincanctl status: why the link is relayed, since when, and when the next direct attempt comes.
    expect(lm.status()[LARGE]).toMatchObject({ phase: "connected", relayedSince: expect.any(Number) });
    expect(lm.status()[LARGE]?.why).toMatch(
      /^direct attempt found no path after 2 s; relay since \d\d:\d\d:\d\d$/,
    );
    expect(lm.status()[LARGE]?.setupMs).toEqual(expect.any(Number));
    expect(dp.callsOf("link.complete").map((c) => c.params.relayOnly)).toEqual([false, true]);
    dp.notify("link.state", { peerUid: LARGE, relayOnly: false, state: "connected", path: "srflx" });
    await flush();
    expect(lm.links()[0]?.path).toBe("srflx");
    await vi.advanceTimersByTimeAsync(1900);
    expect(dp.callsOf("link.remove")).toHaveLength(0); // both open while frames in flight arrive
    await vi.advanceTimersByTimeAsync(200);
    expect(dp.callsOf("link.remove").map((c) => c.params)).toEqual([{ peerUid: LARGE, relayOnly: true }]);
    expect(events).toEqual(["up relay true"]); // no link-down, no second link-up
    expect(sig.ofType("bye")).toHaveLength(0);
    expect(lm.status()[LARGE]).toMatchObject({ why: null, relayedSince: null });
    // The relayed transport going away later changes nothing.
    dp.notify("link.state", { peerUid: LARGE, relayOnly: true, state: "closed" });
    await flush();
    expect(lm.linkState(LARGE)).toBe("connected");
  });

  it("re-attempts a direct path with backoff while relayed, never touching the relayed transport", async () => {
    const { dp, sig, lm, events } = await relayedLink();
    await vi.advanceTimersByTimeAsync(8000); // the first direct attempt times out (10 s after its offer)
    expect(dp.callsOf("link.remove").map((c) => c.params.relayOnly)).toEqual([false]);
    expect(sig.ofType("bye").map((b) => b.setup)).toEqual([sig.ofType("offer")[0]?.setup]);
    const directOffers = () => sig.ofType("offer").filter((o) => !o.relayOnly).length;
    await vi.advanceTimersByTimeAsync(4900);
    expect(directOffers()).toBe(1);
    await vi.advanceTimersByTimeAsync(200); // 5 s later: a second direct attempt
    expect(directOffers()).toBe(2);
    dp.notify("link.state", { peerUid: LARGE, relayOnly: false, state: "failed", reason: "ice" });
    await flush();
    await vi.advanceTimersByTimeAsync(9900); // then 10 s
    expect(directOffers()).toBe(2);
    await vi.advanceTimersByTimeAsync(200);
    expect(directOffers()).toBe(3);
    // The re-attempts take no TURN allocation on either side: direct-only transports, and the offer says so.
    expect(dp.callsOf("link.create").map((c) => c.params.directOnly ?? false)).toEqual([
      false,
      false,
      true,
      true,
    ]);
    expect(sig.ofType("offer").map((o) => o.directOnly ?? false)).toEqual([false, false, true, true]);
    expect(sig.ofType("offer").filter((o) => o.relayOnly)).toHaveLength(1);
    expect(dp.callsOf("link.remove").some((c) => c.params.relayOnly !== false)).toBe(false);
    expect(events).toEqual(["up relay true"]);
    expect(lm.linkState(LARGE)).toBe("connected");
  });

  it("a pair that connects directly first never keeps a relay: the racing relay attempt is removed", async () => {
    const { dp, sig, lm } = setup(SMALL, { hasTurn: true });
    await lm.ensureLink(peer(LARGE));
    await vi.advanceTimersByTimeAsync(2100);
    expect(sig.ofType("offer").map((o) => o.relayOnly)).toEqual([false, true]);
    dp.notify("link.state", { peerUid: LARGE, relayOnly: false, state: "connected", path: "host" });
    await flush();
    expect(dp.callsOf("link.remove").map((c) => c.params.relayOnly)).toEqual([true]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sig.ofType("offer")).toHaveLength(2);
    expect(lm.linkState(LARGE)).toBe("connected");
  });

  it("starts the relay at once after a direct ICE failure, and at once next time once it was needed", async () => {
    const { dp, sig, lm } = setup(SMALL, { hasTurn: true });
    await lm.ensureLink(peer(LARGE));
    dp.notify("link.state", { peerUid: LARGE, relayOnly: false, state: "failed", reason: "ice" });
    await flush();
    expect(sig.ofType("offer").map((o) => o.relayOnly)).toEqual([false, true]);
    dp.notify("link.state", { peerUid: LARGE, relayOnly: true, state: "connected", path: "relay" });
    await flush();
    dp.notify("link.state", { peerUid: LARGE, relayOnly: true, state: "failed" });
    await flush();
    expect(lm.linkState(LARGE)).toBe("backoff");
    expect(lm.status()[LARGE]).toMatchObject({
      phase: "backoff",
      failures: 1,
      nextAttemptAt: expect.any(Number),
    });
    expect(lm.status()[LARGE]?.why).toMatch(/; retry 1 in 1 s$/);
    await vi.advanceTimersByTimeAsync(1200);
    expect(sig.ofType("offer").map((o) => o.relayOnly)).toEqual([false, true, false, true]);
  });

  it("as answerer, accepts the relay-only offer beside the direct one and keeps the link when one goes", async () => {
    const { dp, lm } = setup(LARGE);
    const small = peer(SMALL, "alice");
    const down: string[] = [];
    lm.on("link-down", (e) => down.push(e.reason ?? ""));
    await lm.handleSignal(small, offerFrom(SMALL, LARGE, "direct"));
    await lm.handleSignal(small, offerFrom(SMALL, LARGE, "relay", true));
    expect(dp.callsOf("link.accept").map((c) => c.params.relayOnly)).toEqual([false, true]);
    expect(dp.callsOf("link.remove")).toHaveLength(0);
    dp.notify("link.state", { peerUid: SMALL, relayOnly: true, state: "connected", path: "relay" });
    dp.notify("link.state", { peerUid: SMALL, relayOnly: false, state: "connected", path: "prflx" });
    await flush();
    dp.notify("link.state", { peerUid: SMALL, relayOnly: true, state: "disconnected" });
    await flush();
    expect(dp.callsOf("link.remove").map((c) => c.params.relayOnly)).toEqual([true]);
    expect(lm.linkState(SMALL)).toBe("connected");
    expect(down).toEqual([]);
  });
});

describe("a path found relayed after connecting", () => {
  it("a direct-looking link the datapath later reports relayed gets a relay-only transport, to try direct again", async () => {
    const { dp, sig, lm } = setup(SMALL, { hasTurn: true });
    await lm.ensureLink(peer(LARGE));
    dp.notify("link.state", { peerUid: LARGE, relayOnly: false, state: "connected", path: "prflx" });
    await flush();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(sig.ofType("offer").map((o) => o.relayOnly)).toEqual([false]); // direct: nothing to do
    dp.notify("link.state", { peerUid: LARGE, relayOnly: false, state: "connected", path: "relay" });
    await flush();
    expect(lm.links()[0]?.path).toBe("relay");
    await vi.advanceTimersByTimeAsync(5100);
    expect(sig.ofType("offer").map((o) => o.relayOnly)).toEqual([false, true]);
    expect(lm.linkState(LARGE)).toBe("connected");
  });
});

describe("relay race and link lifetime together", () => {
  it("keeps a relayed link of a peer gone offline, stops its direct attempts, and resumes them when it is back", async () => {
    const { dp, sig, lm } = setup(SMALL, { hasTurn: true });
    await lm.ensureLink(peer(LARGE));
    await vi.advanceTimersByTimeAsync(2000);
    const relay = sig.ofType("offer").find((o) => o.relayOnly);
    await lm.handleSignal(peer(LARGE), {
      type: "answer",
      from: LARGE,
      to: SMALL,
      setup: relay!.setup,
      description: { type: "answer", sdp: "a" },
    });
    dp.notify("link.state", { peerUid: LARGE, relayOnly: true, state: "connected", path: "relay" });
    await flush();
    expect(await lm.peerOffline(LARGE)).toBe(true);
    expect(dp.callsOf("link.remove").map((c) => c.params.relayOnly)).toEqual([false]); // the direct attempt
    expect(lm.isConnected(LARGE)).toBe(true);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sig.ofType("offer")).toHaveLength(2); // nobody to signal
    await lm.updatePeer(peer(LARGE));
    await vi.advanceTimersByTimeAsync(5100);
    expect(sig.ofType("offer").map((o) => o.relayOnly)).toEqual([false, true, false]);
    expect(lm.linkState(LARGE)).toBe("connected");
  });

  it("takes a peer's direct and relay-only offers of one setup, but drops a flood of either kind", async () => {
    const { dp, lm } = setup(LARGE, { hasTurn: true });
    const small = peer(SMALL, "alice");
    for (let i = 0; i < 50; i++) {
      await lm.handleSignal(small, offerFrom(SMALL, LARGE, `d${i}`));
      await lm.handleSignal(small, offerFrom(SMALL, LARGE, `r${i}`, true));
    }
    expect(dp.callsOf("link.accept").map((c) => c.params.relayOnly)).toEqual([false, true]);
    expect(lm.offersDropped).toBe(98);
  });
});

describe("link lifetime is decided by the data plane", () => {
  async function connectedAnswerer(lm: LinkManager, dp: FakeDatapath, p: PeerRef, setupId: string) {
    await lm.handleSignal(p, offerFrom(p.uid, SMALL, setupId));
    dp.notify("link.state", { peerUid: p.uid, state: "connected", path: "host" });
    await flush();
    expect(lm.linkState(p.uid)).toBe("connected");
  }

  it("keeps a connected link of a peer that went offline, and forgets it when the datapath says it died", async () => {
    const { dp, sig, lm } = setup(SMALL);
    await lm.ensureLink(peer(LARGE), { pinned: true });
    dp.notify("link.state", { peerUid: LARGE, state: "connected", path: "host" });
    await flush();
    const removed: string[] = [];
    lm.on("link-removed", (uid) => removed.push(uid));
    expect(await lm.peerOffline(LARGE)).toBe(true);
    expect(lm.linkState(LARGE)).toBe("connected");
    expect(dp.callsOf("link.remove")).toHaveLength(0);
    dp.notify("link.state", { peerUid: LARGE, state: "disconnected" });
    await vi.advanceTimersByTimeAsync(6000);
    expect(lm.linkState(LARGE)).toBeUndefined(); // nobody to signal: no retry
    expect(removed).toEqual([LARGE]);
    expect(sig.ofType("offer")).toHaveLength(1);
  });

  it("drops a link of an offline peer that is not connected yet, without signalling", async () => {
    const { dp, sig, lm } = setup(SMALL);
    await lm.ensureLink(peer(LARGE));
    expect(await lm.peerOffline(LARGE)).toBe(false);
    expect(lm.linkState(LARGE)).toBeUndefined();
    expect(dp.callsOf("link.remove")).toHaveLength(1);
    expect(sig.ofType("bye")).toHaveLength(0);
  });

  it("a kept link learns the peer's new full JID", async () => {
    const { dp, lm } = setup(SMALL);
    await connectedAnswerer(lm, dp, peer(LARGE), "s1");
    await lm.peerOffline(LARGE);
    await lm.updatePeer({ ...peer(LARGE), fullJid: "bob@lab.local/tincan-2" });
    expect(lm.links()[0]?.peer.fullJid).toBe("bob@lab.local/tincan-2");
    expect(lm.linkState(LARGE)).toBe("connected");
  });

  it("after a datapath restart, offers every link again at once, also to a smaller UID and links it did not want", async () => {
    const { dp, sig, lm } = setup(LARGE);
    await lm.ensureLink(peer(SMALL, "alice"), { pinned: true }); // the larger UID waits for the offer...
    expect(sig.ofType("offer")).toHaveLength(0);
    await lm.handleSignal(peer(SMALL, "alice"), offerFrom(SMALL, LARGE, "s1"));
    await lm.handleSignal(peer(MID, "mid"), offerFrom(MID, LARGE, "s2")); // only the peer wanted this one
    dp.notify("link.state", { peerUid: SMALL, state: "connected", path: "host" });
    dp.notify("link.state", { peerUid: MID, state: "connected", path: "host" });
    await flush();
    await vi.advanceTimersByTimeAsync(2000);
    await lm.resync();
    expect(
      sig
        .ofType("offer")
        .map((o) => o.to)
        .sort(),
    ).toEqual([SMALL, MID].sort()); // ...but not now
  });

  it("after this host's addresses changed, replaces every link it can signal at once, whatever the UID order", async () => {
    const { dp, sig, lm } = setup(LARGE);
    for (const [uid, name, id] of [
      [SMALL, "alice", "s1"],
      [MID, "mid", "s2"],
    ] as const) {
      await lm.handleSignal(peer(uid, name), offerFrom(uid, LARGE, id));
      dp.notify("link.state", { peerUid: uid, state: "connected", path: "host" });
    }
    await flush();
    await lm.peerOffline(MID); // kept while connected, but cannot be signalled: left to liveness
    const down: string[] = [];
    lm.on("link-down", (e) => down.push(`${e.peer.uid}: ${e.reason}`));
    await lm.relinkAll("local addresses changed");
    expect(sig.ofType("offer").map((o) => o.to)).toEqual([SMALL]);
    expect(dp.callsOf("link.remove").map((c) => c.params.peerUid)).toEqual([SMALL]);
    expect(dp.callsOf("link.create").map((c) => c.params.peerUid)).toEqual([SMALL]);
    expect(down).toEqual([`${SMALL}: local addresses changed`]);
    expect(lm.linkState(MID)).toBe("connected");
  });

  it("takes a fresh offer from a peer whose connected link it holds (the peer's datapath restarted)", async () => {
    const { dp, sig, lm } = setup(SMALL);
    await connectedAnswerer(lm, dp, peer(LARGE), "s1");
    await vi.advanceTimersByTimeAsync(30_000);
    const down: string[] = [];
    lm.on("link-down", (e) => down.push(e.reason ?? ""));
    await lm.handleSignal(peer(LARGE), offerFrom(LARGE, SMALL, "s2"));
    expect(dp.methods()).toEqual(["link.accept", "link.remove", "link.accept"]);
    expect(sig.ofType("answer").map((a) => a.setup)).toEqual(["s1", "s2"]);
    expect(down).toEqual(["peer set the link up again"]);
  });

  it("runs one setup per peer: offers while its setup is young are dropped and counted", async () => {
    const { dp, sig, lm } = setup(SMALL);
    for (let i = 0; i < 200; i++) await lm.handleSignal(peer(LARGE), offerFrom(LARGE, SMALL, `flood${i}`));
    expect(dp.callsOf("link.accept")).toHaveLength(1);
    expect(lm.offersDropped).toBe(199);
    await vi.advanceTimersByTimeAsync(1000);
    await lm.handleSignal(peer(LARGE), offerFrom(LARGE, SMALL, "later"));
    expect(dp.callsOf("link.accept")).toHaveLength(2);
    expect(sig.ofType("answer").map((a) => a.setup)).toEqual(["flood0", "later"]);
  });
});

describe("a connected link replaced soon after it came up", () => {
  it("takes the peer's fresh offer at once (its datapath restarted right after the link came up)", async () => {
    const { dp, sig, lm } = setup(SMALL);
    await lm.handleSignal(peer(LARGE), offerFrom(LARGE, SMALL, "s1"));
    dp.notify("link.state", { peerUid: LARGE, state: "connected", path: "host" });
    await flush();
    await vi.advanceTimersByTimeAsync(300);
    await lm.handleSignal(peer(LARGE), offerFrom(LARGE, SMALL, "s2"));
    expect(sig.ofType("answer").map((a) => a.setup)).toEqual(["s1", "s2"]);
  });
});

describe("the state machine table", () => {
  type Step =
    | { kind: "ensure"; pinned: boolean }
    | { kind: "offer"; relayOnly: boolean }
    | { kind: "answer"; relayOnly: boolean }
    | { kind: "bye"; relayOnly: boolean }
    | { kind: "state"; relayOnly: boolean; state: "connected" | "failed" | "disconnected" | "closed" }
    | { kind: "path"; relayOnly: boolean; path: "host" | "relay" }
    | { kind: "wait"; ms: number }
    | { kind: "offline" | "online" | "gone" | "poll" | "vanish" | "resync" | "relink" };

  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ kind: fc.constant("ensure" as const), pinned: fc.boolean() }),
    fc.record({ kind: fc.constant("offer" as const), relayOnly: fc.boolean() }),
    fc.record({ kind: fc.constant("answer" as const), relayOnly: fc.boolean() }),
    fc.record({ kind: fc.constant("bye" as const), relayOnly: fc.boolean() }),
    fc.record({
      kind: fc.constant("state" as const),
      relayOnly: fc.boolean(),
      state: fc.constantFrom(
        "connected" as const,
        "failed" as const,
        "disconnected" as const,
        "closed" as const,
      ),
    }),
    fc.record({
      kind: fc.constant("path" as const),
      relayOnly: fc.boolean(),
      path: fc.constantFrom("host" as const, "relay" as const),
    }),
    fc.record({ kind: fc.constant("wait" as const), ms: fc.integer({ min: 0, max: 15_000 }) }),
    fc.record({
      kind: fc.constantFrom(
        "offline" as const,
        "online" as const,
        "gone" as const,
        "poll" as const,
        "vanish" as const,
        "resync" as const,
        "relink" as const,
      ),
    }),
  );

  it("whatever happens, a link holds only the timers its phase owns, and no handler throws", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(step, { minLength: 1, maxLength: 30 }),
        async (smaller, steps) => {
          const errors: string[] = [];
          const log: Log = { ...nullLog, error: (m, meta) => errors.push(`${m} ${JSON.stringify(meta)}`) };
          const self = smaller ? SMALL : MID;
          const other = smaller ? LARGE : SMALL;
          const { dp, sig, lm } = setup(self, { hasTurn: true, log });
          const recs = (lm as unknown as { recs: Map<string, { phase: string; timers: object }> }).recs;
          let n = 0;
          const lastSetup = (relayOnly: boolean) =>
            sig.sent.filter((s) => s.signal.type === "offer" && s.signal.relayOnly === relayOnly).at(-1)
              ?.signal.setup ?? "none";
          for (const s of steps) {
            switch (s.kind) {
              case "ensure":
                await lm.ensureLink(peer(other), { pinned: s.pinned });
                break;
              case "offer":
                await lm.handleSignal(peer(other), offerFrom(other, self, `p${n++}`, s.relayOnly));
                break;
              case "answer":
              case "bye": {
                const base = { from: other, to: self, setup: lastSetup(s.relayOnly) };
                const description = { type: "answer" as const, sdp: "a" };
                await lm.handleSignal(
                  peer(other),
                  s.kind === "bye" ? { ...base, type: "bye" } : { ...base, type: "answer", description },
                );
                break;
              }
              case "state":
                dp.notify("link.state", {
                  peerUid: other,
                  relayOnly: s.relayOnly,
                  state: s.state,
                  path: "host",
                });
                break;
              case "path":
                dp.notify("link.state", {
                  peerUid: other,
                  relayOnly: s.relayOnly,
                  state: "connected",
                  path: s.path,
                });
                break;
              case "wait":
                await vi.advanceTimersByTimeAsync(s.ms);
                break;
              case "offline":
                await lm.peerOffline(other);
                break;
              case "online":
                await lm.updatePeer(peer(other));
                break;
              case "gone":
                await lm.peerGone(other);
                break;
              case "poll":
                dp.links = [info(other, n++)];
                await lm.poll();
                break;
              case "vanish":
                dp.links = [];
                await lm.poll();
                break;
              case "resync":
                await lm.resync();
                break;
              case "relink":
                await lm.relinkAll("local addresses changed");
                break;
            }
            await flush();
            for (const rec of recs.values()) {
              const armed = Object.entries(rec.timers)
                .filter(([, t]) => t !== undefined)
                .map(([name]) => name);
              for (const t of armed)
                expect(PHASE_TIMERS[rec.phase as keyof typeof PHASE_TIMERS]).toContain(t);
            }
          }
          lm.stop();
          expect(errors).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });
});
