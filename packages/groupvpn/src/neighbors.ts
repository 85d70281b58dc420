import { Uid } from "@tincan/protocol";
import { z } from "zod";

/** Inter-controller message: "these are the members I have a connected link to". */
export const LinksAnnouncement = z.strictObject({
  type: z.literal("groupvpn.links"),
  uids: z.array(Uid).max(4096),
});
export type LinksAnnouncement = z.infer<typeof LinksAnnouncement>;

/**
 * Which members each of our direct neighbours has links to, as they announced over `icc`.
 * Used to route a destination via a neighbour while our own link to it is being set up.
 */
export class NeighborLinks {
  private readonly byNeighbor = new Map<string, Set<string>>();

  /** Records an announcement; returns false (and records nothing) when it is malformed. */
  update(neighbor: string, data: unknown): boolean {
    const parsed = LinksAnnouncement.safeParse(data);
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
