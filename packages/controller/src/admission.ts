import type { Log } from "./logger.js";

export type Subscription = "none" | "to" | "from" | "both" | "remove";

/** One roster entry (jabber:iq:roster item). */
export interface RosterItem {
  /** Bare JID, lowercase. */
  jid: string;
  subscription: Subscription;
  name?: string;
  groups: string[];
}

/**
 * Who may link with us: our own account's other devices (resources), and roster items with mutual
 * subscription (`both`) that the policy's rule does not refuse (GroupVPN: not in its roster group). Everything else is refused, and each refused JID is
 * logged once (until it is admitted again), not once per stanza.
 */
export class Admission {
  private roster = new Map<string, RosterItem>();
  private readonly refusedLogged = new Set<string>();

  constructor(
    private readonly opts: {
      /** Our own bare JID: its other resources are our own devices, always admitted. */
      ownJid?: string | undefined;
      /** Why an item with mutual subscription is still refused, or null (default: never). */
      refuse?: ((item: RosterItem) => string | null) | undefined;
      log: Log;
    },
  ) {}

  /** Replaces the roster (after a roster fetch or push). */
  setRoster(items: Iterable<RosterItem>): void {
    this.roster = new Map([...items].map((i) => [i.jid.toLowerCase(), i]));
    for (const jid of this.refusedLogged) if (this.isMember(jid)) this.refusedLogged.delete(jid);
  }

  /** True when `bareJid` passes the rules. No logging: use it for policy decisions. */
  isMember(bareJid: string): boolean {
    return this.reason(bareJid) === null;
  }

  /** Admission check for something that arrived from `bareJid`: refusals are logged once per JID. */
  allows(bareJid: string, what = "link"): boolean {
    const jid = bareJid.toLowerCase();
    const reason = this.reason(jid);
    if (reason === null) return true;
    if (!this.refusedLogged.has(jid)) {
      this.refusedLogged.add(jid);
      this.opts.log.warn("refused a peer that fails admission (logged once per JID)", { jid, what, reason });
    }
    return false;
  }

  /** Bare JIDs that pass admission. */
  members(): string[] {
    return [...this.roster.keys()].filter((j) => this.isMember(j));
  }

  /** Roster items that fail admission, and JIDs off the roster that were refused, with the reason. */
  refusals(): Array<{ jid: string; name?: string; reason: string }> {
    const out: Array<{ jid: string; name?: string; reason: string }> = [];
    for (const jid of new Set([...this.roster.keys(), ...this.refusedLogged])) {
      const reason = this.reason(jid);
      const name = this.roster.get(jid)?.name;
      if (reason !== null) out.push({ jid, ...(name ? { name } : {}), reason });
    }
    return out;
  }

  item(bareJid: string): RosterItem | undefined {
    return this.roster.get(bareJid.toLowerCase());
  }

  private reason(bareJid: string): string | null {
    if (this.opts.ownJid !== undefined && bareJid.toLowerCase() === this.opts.ownJid.toLowerCase())
      return null;
    const item = this.roster.get(bareJid.toLowerCase());
    if (!item) return "not on the roster";
    if (item.subscription !== "both") return `subscription is "${item.subscription}", not "both"`;
    return this.opts.refuse?.(item) ?? null;
  }
}
