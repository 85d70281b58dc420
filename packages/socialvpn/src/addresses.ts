import { type Ipv4Range, intToIpv4, ipv4Range, ipv4ToInt } from "@tincan/protocol";

/**
 * Buddy addressing: each user owns a private IPv4 range (`vnic.ipv4`, e.g. 172.31.0.1/16) and gives
 * each buddy a free address of it. The datapath translates on receive, so only this node's numbering
 * matters here; buddies may number us differently.
 */

export class AddressExhaustedError extends Error {
  constructor(
    readonly jid: string,
    readonly range: string,
    readonly held: number,
  ) {
    super(
      `no free address left in ${range} for ${jid} (${held} buddies hold addresses): ` +
        "use a larger vnic.ipv4 range (a shorter prefix)",
    );
    this.name = "AddressExhaustedError";
  }
}

export interface Assignment {
  address: string;
  /** The address was handed out just now (the state should be saved). */
  created: boolean;
  /** The address was taken back from this JID, which is no longer a buddy (range was full). */
  reclaimedFrom?: string;
}

/** A saved entry that was not taken over (address outside the range, own address, duplicate...). */
export interface DroppedEntry {
  jid: string;
  address: string;
  why: string;
}

/**
 * bare JID -> address of our range. Addresses are handed out lowest-free-first (so with own address
 * .1, buddies get .2, .3, ... in the order they appear), never the own, network or broadcast
 * address. Kept forever (a buddy removed and added again gets its old address back) unless the range
 * is full, when the address of the longest-held JID that is no longer a buddy is reused.
 */
export class AddressBook {
  readonly range: Ipv4Range;
  /** Insertion order = allocation order (oldest first). */
  private readonly byJid = new Map<string, number>();
  private readonly byAddr = new Map<number, string>();
  readonly dropped: DroppedEntry[] = [];

  constructor(cidr: string, saved: Record<string, string> = {}) {
    this.range = ipv4Range(cidr);
    for (const [rawJid, address] of Object.entries(saved)) {
      const jid = rawJid.toLowerCase();
      let n: number;
      try {
        n = ipv4ToInt(address);
      } catch {
        this.dropped.push({ jid, address, why: "not an IPv4 address" });
        continue;
      }
      const why = this.unusable(n) ?? (this.byJid.has(jid) ? "duplicate JID" : undefined);
      const taken = this.byAddr.get(n);
      if (why || taken !== undefined) {
        this.dropped.push({ jid, address, why: why ?? `address already held by ${taken}` });
        continue;
      }
      this.byJid.set(jid, n);
      this.byAddr.set(n, jid);
    }
  }

  get ownAddress(): string {
    return intToIpv4(this.range.address);
  }

  /** The address of `jid`, if it has one. */
  lookup(jid: string): string | undefined {
    const n = this.byJid.get(jid.toLowerCase());
    return n === undefined ? undefined : intToIpv4(n);
  }

  /** Who holds `address`. */
  owner(address: string): string | undefined {
    try {
      return this.byAddr.get(ipv4ToInt(address));
    } catch {
      return undefined;
    }
  }

  get size(): number {
    return this.byJid.size;
  }

  /**
   * The address of `jid`, handing out the lowest free one if it has none. When the range is full and
   * `isBuddy` is given, the address of the oldest entry that is not a buddy any more is reused.
   * Throws AddressExhaustedError when nothing is free.
   */
  assign(rawJid: string, isBuddy?: (jid: string) => boolean): Assignment {
    const jid = rawJid.toLowerCase();
    const have = this.byJid.get(jid);
    if (have !== undefined) return { address: intToIpv4(have), created: false };
    const free = this.lowestFree();
    if (free !== undefined) {
      this.put(jid, free);
      return { address: intToIpv4(free), created: true };
    }
    if (isBuddy) {
      for (const [old, n] of this.byJid) {
        if (isBuddy(old)) continue;
        this.byJid.delete(old);
        this.put(jid, n);
        return { address: intToIpv4(n), created: true, reclaimedFrom: old };
      }
    }
    throw new AddressExhaustedError(jid, this.range.cidr, this.byJid.size);
  }

  /** The state file's `buddies` object (allocation order). */
  toRecord(): Record<string, string> {
    return Object.fromEntries([...this.byJid].map(([jid, n]) => [jid, intToIpv4(n)]));
  }

  private put(jid: string, n: number): void {
    this.byJid.set(jid, n);
    this.byAddr.set(n, jid);
  }

  private unusable(n: number): string | undefined {
    const r = this.range;
    if (n < r.network || n > r.broadcast) return `outside ${r.cidr}`;
    if (n === r.address) return "our own address";
    if (n === r.network || n === r.broadcast) return "network or broadcast address";
    return undefined;
  }

  private lowestFree(): number | undefined {
    const r = this.range;
    // Linear scan: fine for the few hundred buddies a person has; the map makes each step O(1).
    for (let n = r.network + 1; n < r.broadcast; n++) {
      if (n !== r.address && !this.byAddr.has(n)) return n;
    }
    return undefined;
  }
}
