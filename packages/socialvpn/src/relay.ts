import { Uid } from "@tincan/protocol";
import { z } from "zod";

/** Inter-controller message of a device that opted in to relaying (`links.relayForBuddies`). */
export const RelayOffer = z.strictObject({
  type: z.literal("socialvpn.relay"),
  /** The devices it has a connected link to, and relays to. */
  uids: z.array(Uid).max(4096),
});
export type RelayOffer = z.infer<typeof RelayOffer>;

/**
 * Relay offers of our neighbours: a buddy's device (or our own) that opted in says, over icc, which
 * devices it has links to. While our own link to one of those is set up, its IPv6 traffic may go
 * through that neighbour (IPv4 cannot: each hop translates it to its own numbering).
 */
export class RelayOffers {
  private readonly offered = new Map<string, ReadonlySet<string>>();

  /** Records `from`'s offer (replacing its last); false when `data` is no relay offer. */
  record(from: string, data: unknown): boolean {
    const parsed = RelayOffer.safeParse(data);
    if (!parsed.success) return false;
    this.offered.set(from, new Set(parsed.data.uids));
    return true;
  }

  forget(from: string): void {
    this.offered.delete(from);
  }

  /** A neighbour among `connected` that offered to relay to `target`. */
  via(target: string, connected: Iterable<string>): string | undefined {
    for (const n of connected) if (n !== target && this.offered.get(n)?.has(target)) return n;
    return undefined;
  }
}
