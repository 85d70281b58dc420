/** How often the datapath calls keepAlive on each link. */
export const KEEPALIVE_PERIOD_MS = 1000;
/** A link that sends traffic is probed this often, for its round-trip time. */
export const RTT_PROBE_MS = 5000;
/**
 * On node-datachannel, a peer not heard from for this long is probed, once a second while it stays
 * silent. For short silence limits it is at most 60% of the limit, and leaves a whole keepAlive
 * period plus room for the reply before it: otherwise a healthy link could reach the limit between
 * a check too early to probe and the next one.
 */
export const PROBE_AFTER_MS = 6000;
const PROBE_REPLY_ROOM_MS = 500;
/** On the fast path, the leading side probes a peer not heard from for this long (then once a second). */
export const LEAD_PROBE_MS = 10_000;
/**
 * On the fast path, the following side probes only when not probed for this long: the leader's
 * probes (LEAD_PROBE_MS apart, plus a keepAlive period of jitter) keep it quiet while it answers them.
 */
export const FOLLOW_PROBE_MS = 12_000;
/** On the fast path a peer is silent after max(silenceMs, this): room for the 10 s keepalive and re-probes. */
export const FAST_SILENCE_MS = 15_000;

/**
 * Who probes an idle link: "shared" on node-datachannel (either side, after probeAfterMs);
 * on the fast path only the "lead" (the side that opens the fast path) does, and the "follow"
 * side answers, probing itself only when the leader has gone quiet. One probe and its reply every
 * 10 s is what an idle fast link costs: 65 bytes each way (UDP/IPv4 28, fast header 16, frame 5, tag 16).
 */
export type LivenessRole = "shared" | "lead" | "follow";

/**
 * A link's liveness timers: when to probe the peer and when to call it silent. Fed with what was
 * heard and what was probed; asked once a keepAlive period.
 */
export class Liveness {
  /** When anything (a frame, a probe or its reply) last came from the peer. */
  heardAt = 0;
  lastProbeAt = 0;
  private readonly probeAfterMs: number;

  constructor(private readonly silenceMs: number) {
    this.probeAfterMs = Math.max(
      0,
      Math.min(PROBE_AFTER_MS, silenceMs * 0.6, silenceMs - KEEPALIVE_PERIOD_MS - PROBE_REPLY_ROOM_MS),
    );
  }

  heard(now: number): void {
    this.heardAt = now;
  }

  probed(now: number): void {
    this.lastProbeAt = now;
  }

  /** Whether to probe now: a peer silent for the role's wait, or an RTT sample due on a busy link. */
  probeDue(now: number, role: LivenessRole, busy: boolean): boolean {
    if (busy && now - this.lastProbeAt >= RTT_PROBE_MS) return true;
    return now - this.heardAt >= this.probeAfter(role);
  }

  /** The peer has been silent too long: the link is `disconnected`. */
  silent(now: number, role: LivenessRole): boolean {
    return now - this.heardAt >= this.silenceLimit(role);
  }

  probeAfter(role: LivenessRole): number {
    return role === "shared" ? this.probeAfterMs : role === "lead" ? LEAD_PROBE_MS : FOLLOW_PROBE_MS;
  }

  silenceLimit(role: LivenessRole): number {
    return role === "shared" ? this.silenceMs : Math.max(this.silenceMs, FAST_SILENCE_MS);
  }
}
