import { describe, expect, it } from "vitest";
import { FAST_SILENCE_MS, KEEPALIVE_PERIOD_MS, Liveness, type LivenessRole } from "./liveness.js";

/** UDP/IPv4 28 + fast header 16 + probe frame 5 + tag 16: a probe or its reply on the fast path. */
const PROBE_DATAGRAM = 65;
const ONE_WAY_MS = 2;

interface Side {
  name: string;
  role: LivenessRole;
  live: Liveness;
  /** Ticks at offset + k * KEEPALIVE_PERIOD_MS (the two datapaths' timers are not in step). */
  offset: number;
  deadFrom: number;
  probesSent: number;
  silentAt: number | null;
}

/**
 * Two link ends on a fake clock: each ticks once a keepAlive period, probes when its Liveness says
 * so; a live peer answers after ONE_WAY_MS, the answer arriving ONE_WAY_MS later. Nothing else is
 * sent (an idle link).
 */
function run(lead: Side, follow: Side, untilMs: number): void {
  const events: { at: number; run: () => void }[] = [];
  const at = (t: number, f: () => void) => events.push({ at: t, run: f });
  for (const s of [lead, follow])
    for (let t = s.offset; t <= untilMs; t += KEEPALIVE_PERIOD_MS)
      at(t, () => {
        if (t >= s.deadFrom || s.silentAt !== null) return;
        const peer = s === lead ? follow : lead;
        if (s.live.probeDue(t, s.role, false)) {
          s.live.probed(t);
          s.probesSent++;
          at(t + ONE_WAY_MS, () => {
            if (t + ONE_WAY_MS >= peer.deadFrom) return;
            peer.live.heard(t + ONE_WAY_MS);
            at(t + 2 * ONE_WAY_MS, () => s.live.heard(t + 2 * ONE_WAY_MS));
          });
        }
        if (s.live.silent(t, s.role)) s.silentAt = t;
      });
  while (events.length > 0) {
    events.sort((a, b) => a.at - b.at);
    (events.shift() as { run: () => void }).run();
  }
}

function side(name: string, role: LivenessRole, offset: number, silenceMs = 10_000): Side {
  const live = new Liveness(silenceMs);
  live.heard(0);
  return { name, role, live, offset, deadFrom: Number.POSITIVE_INFINITY, probesSent: 0, silentAt: null };
}

describe("Liveness: who probes an idle link and when a peer is silent", () => {
  it("on the fast path only the leading side probes an idle link, every ~10 s: <= 10 B/s each way", () => {
    for (const offset of [0, 300, 999]) {
      const lead = side("lead", "lead", 0);
      const follow = side("follow", "follow", offset);
      run(lead, follow, 120_000);
      expect(follow.probesSent).toBe(0);
      // One probe per 10-11 s (a tick's jitter).
      expect(lead.probesSent).toBeGreaterThanOrEqual(10);
      expect(lead.probesSent).toBeLessThanOrEqual(12);
      // Each way: the lead's probes one way, the follower's replies the other.
      expect((lead.probesSent * PROBE_DATAGRAM) / 120).toBeLessThanOrEqual(10);
      expect([lead.silentAt, follow.silentAt]).toEqual([null, null]);
    }
  });

  it("the leading side re-probes once a second after an unanswered probe and calls a dead peer silent within 15 s", () => {
    const lead = side("lead", "lead", 0);
    const follow = side("follow", "follow", 500);
    follow.deadFrom = 30_500;
    run(lead, follow, 80_000);
    const lastHeard = lead.live.heardAt;
    expect(lastHeard).toBeLessThanOrEqual(30_500);
    expect(lead.silentAt).not.toBeNull();
    expect((lead.silentAt as number) - follow.deadFrom).toBeLessThanOrEqual(FAST_SILENCE_MS);
    // Probes from the first unanswered one until silence, one a second.
    expect(lead.live.lastProbeAt - lastHeard).toBeGreaterThanOrEqual(
      FAST_SILENCE_MS - 2 * KEEPALIVE_PERIOD_MS,
    );
  });

  it("the following side probes on its own once the leader is quiet for 12 s, and calls it silent within 15 s", () => {
    const lead = side("lead", "lead", 0);
    const follow = side("follow", "follow", 500);
    lead.deadFrom = 25_000;
    run(lead, follow, 80_000);
    expect(follow.probesSent).toBeGreaterThanOrEqual(2);
    expect(follow.silentAt).not.toBeNull();
    expect((follow.silentAt as number) - lead.deadFrom).toBeLessThanOrEqual(FAST_SILENCE_MS);
  });

  it("on node-datachannel both sides probe after 6 s and silence is silenceMs, as before", () => {
    const a = side("a", "shared", 0);
    const b = side("b", "shared", 500);
    run(a, b, 60_000);
    expect(a.probesSent + b.probesSent).toBeGreaterThanOrEqual(8);
    const l = new Liveness(10_000);
    expect(l.probeAfter("shared")).toBe(6000);
    expect(l.silenceLimit("shared")).toBe(10_000);
    expect(new Liveness(3000).probeAfter("shared")).toBe(1500);
  });

  it("a longer silenceMs holds on the fast path too; a shorter one gives way to the 10 s keepalive", () => {
    expect(new Liveness(30_000).silenceLimit("lead")).toBe(30_000);
    expect(new Liveness(3000).silenceLimit("follow")).toBe(FAST_SILENCE_MS);
  });

  it("a busy link still samples its round trip every 5 s whatever the role", () => {
    const l = new Liveness(10_000);
    l.heard(100_000);
    l.probed(95_000);
    expect(l.probeDue(100_000, "follow", true)).toBe(true);
    expect(l.probeDue(100_000, "follow", false)).toBe(false);
  });
});
