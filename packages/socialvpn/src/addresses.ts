import { type Ipv4Range, intToIpv4, ipv4Range, ipv4ToInt } from "@tincan/protocol";

/**
 * Device addressing: each user owns a private IPv4 range (`vnic.ipv4`, e.g. 172.31.0.1/16) and gives
 * each device of each buddy (and each of the user's own other devices) a free address of it. The
 * datapath translates on receive, so only this node's numbering matters here; buddies may number us
 * differently.
 *
 * Keys are device keys, `<bare JID>/<resource>`. A key without a resource is an account's address
 * from a state file of before devices: the first device of that account seen takes it over.
 */

/** The book's key of one device: the bare JID lowercased, "/", the resource as it is. */
export function deviceKey(bareJid: string, resource: string): string {
  return `${bareJid.toLowerCase()}/${resource}`;
}

/** The bare JID of a key (device key or account key). */
export function accountOf(key: string): string {
  const slash = key.indexOf("/");
  return (slash < 0 ? key : key.slice(0, slash)).toLowerCase();
}

/** The resource of a device key; undefined for an account key (of before devices). */
export function deviceOf(key: string): string | undefined {
  const slash = key.indexOf("/");
  return slash < 0 ? undefined : key.slice(slash + 1);
}

function normalKey(key: string): string {
  const device = deviceOf(key);
  return device === undefined ? accountOf(key) : deviceKey(accountOf(key), device);
}

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
  /** The address was taken back from this key, which is no longer a buddy (range was full). */
  reclaimedFrom?: string;
  /** The device took over its account's address of before devices (state file migration). */
  migratedFrom?: string;
}

/** A saved entry that was not taken over (address outside the range, own address, duplicate...). */
export interface DroppedEntry {
  jid: string;
  address: string;
  why: string;
}

/**
 * device key -> address of our range. Addresses are handed out lowest-free-first (so with own address
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
    for (const [rawKey, address] of Object.entries(saved)) {
      const jid = normalKey(rawKey);
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

  /** The address of `key`, if it has one. */
  lookup(key: string): string | undefined {
    const n = this.byJid.get(normalKey(key));
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

  /** Device keys of `bareJid`'s devices that have an address, oldest first. */
  devicesOf(bareJid: string): string[] {
    const account = bareJid.toLowerCase();
    return [...this.byJid.keys()].filter((k) => deviceOf(k) !== undefined && accountOf(k) === account);
  }

  /**
   * The address of `key`, handing out the lowest free one if it has none. A device without an
   * address takes over its account's address of before devices, if there is one. When the range is
   * full and `isBuddy` is given, the address of the oldest entry that is not a buddy any more is
   * reused. Throws AddressExhaustedError when nothing is free.
   */
  assign(rawKey: string, isBuddy?: (key: string) => boolean): Assignment {
    const jid = normalKey(rawKey);
    const have = this.byJid.get(jid);
    if (have !== undefined) return { address: intToIpv4(have), created: false };
    const account = accountOf(jid);
    const legacy = deviceOf(jid) === undefined ? undefined : this.byJid.get(account);
    if (legacy !== undefined) {
      this.byJid.delete(account);
      this.put(jid, legacy);
      return { address: intToIpv4(legacy), created: true, migratedFrom: account };
    }
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

  /** The state file's `devices` object (allocation order). */
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
