import { Uid } from "@tincan/protocol";
import { z } from "zod";

/** Inter-controller message of type `type`: "these are the peers I have a connected link to". */
export function linksAnnouncement<T extends string>(type: T) {
  return z.strictObject({ type: z.literal(type), uids: z.array(Uid).max(4096) });
}

/**
 * Which peers each of our direct neighbours has links to, as they announced over `icc` (messages of
 * one type, see linksAnnouncement). Used to route a destination via a neighbour while our own link
 * to it is being set up (GroupVPN: every member; SocialVPN: devices that opted in to relaying).
 */
export class NeighborLinks {
  private readonly byNeighbor = new Map<string, Set<string>>();
  private readonly schema: ReturnType<typeof linksAnnouncement>;

  constructor(type: string) {
    this.schema = linksAnnouncement(type);
  }

  /** Records an announcement; returns false (and records nothing) when it is malformed. */
  update(neighbor: string, data: unknown): boolean {
    const parsed = this.schema.safeParse(data);
    if (!parsed.success) return false;
    this.byNeighbor.set(neighbor, new Set(parsed.data.uids));
    return true;
  }

  /** Every neighbour's last announcement, by neighbour UID. */
  all(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.byNeighbor;
  }

  forget(neighbor: string): void {
    this.byNeighbor.delete(neighbor);
  }

  /** A neighbour (among `connected`) that has a link to `target`, if any. */
  relayFor(target: string, connected: Iterable<string>): string | undefined {
    for (const n of connected) {
      if (n !== target && this.byNeighbor.get(n)?.has(target)) return n;
    }
    return undefined;
  }
}
