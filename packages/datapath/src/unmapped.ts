import { PacketQueue } from "./queue.js";

/** Packets held for one destination since a time (ms). */
export interface HeldPackets {
  since: number;
  packets: Buffer[];
}

/**
 * Packets whose destination has no usable route: held briefly (so the first packet of an
 * on-demand link is not lost) and reported to the controller at most once per destination
 * per interval.
 */
export class UnmappedPackets {
  private readonly held = new Map<string, { queue: PacketQueue; since: number }>();
  /** When each destination was last reported, and whether it had a route then. */
  private readonly lastNotified = new Map<string, { at: number; routed: boolean }>();

  constructor(
    private readonly options: {
      notifyIntervalMs: number;
      holdMs: number;
      maxDestinations: number;
      packetsPerDestination: number;
    },
  ) {}

  /**
   * Holds a copy of the packet; returns true when the controller should be told now.
   * `since`: when the packet was first held (packets held again after a route change keep
   * their first time, so none is held longer than holdMs in all). `routed`: a route leads to the
   * destination (its link is missing). A destination reported without a route is reported again
   * at once when it has one: a controller that could not place it before (its member's presence
   * had not come) can set its link up now, not after the packet expired.
   */
  hold(
    dst: string,
    buf: Uint8Array,
    off: number,
    len: number,
    now: number,
    since = now,
    routed = true,
  ): boolean {
    let entry = this.held.get(dst);
    if (!entry) {
      if (this.held.size >= this.options.maxDestinations) this.evictOldest();
      entry = { queue: new PacketQueue(this.options.packetsPerDestination), since };
      this.held.set(dst, entry);
    } else if (since < entry.since) {
      entry.since = since;
    }
    entry.queue.push(buf, off, len);
    const last = this.lastNotified.get(dst);
    if (last && now - last.at < this.options.notifyIntervalMs && (last.routed || !routed)) return false;
    if (this.lastNotified.size >= this.options.maxDestinations * 4) this.lastNotified.clear();
    this.lastNotified.set(dst, { at: now, routed });
    return true;
  }

  /** Removes and returns every held packet (to be routed again after a route or link change). */
  takeAll(): HeldPackets[] {
    const out: HeldPackets[] = [];
    for (const entry of this.held.values()) out.push({ since: entry.since, packets: entry.queue.drain() });
    this.held.clear();
    return out;
  }

  /** Drops packets held longer than holdMs; returns how many were dropped. */
  expire(now: number): number {
    let dropped = 0;
    for (const [dst, entry] of this.held) {
      if (now - entry.since > this.options.holdMs) {
        dropped += entry.queue.clear();
        this.held.delete(dst);
      }
    }
    return dropped;
  }

  get heldPackets(): number {
    let n = 0;
    for (const entry of this.held.values()) n += entry.queue.length;
    return n;
  }

  private evictOldest(): void {
    const first = this.held.keys().next();
    if (!first.done) this.held.delete(first.value);
  }
}
