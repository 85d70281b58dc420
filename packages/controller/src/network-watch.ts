import { EventEmitter } from "node:events";
import { networkInterfaces } from "node:os";

/** Addresses that came and went between two looks. */
export interface AddressChange {
  added: string[];
  removed: string[];
  /** All addresses now. */
  addresses: string[];
}

export type InterfaceSource = () => ReturnType<typeof networkInterfaces>;

export interface NetworkWatchOptions {
  /** How often to look. Default 1000 ms. */
  intervalMs?: number;
  /** Interfaces whose addresses do not count, e.g. our own vNIC. */
  ignoreInterfaces?: string[];
  /** Where addresses come from (tests inject one). Default `os.networkInterfaces`. */
  source?: InterfaceSource;
}

/** This host's addresses other than loopback (and those of ignored interfaces), sorted. */
export function localAddresses(
  ifaces: ReturnType<typeof networkInterfaces>,
  ignore: ReadonlySet<string>,
): string[] {
  const out = new Set<string>();
  for (const [name, list] of Object.entries(ifaces)) {
    if (ignore.has(name)) continue;
    for (const a of list ?? []) if (!a.internal) out.add(a.address);
  }
  return [...out].sort();
}

/**
 * Notices changes of this host's addresses (roaming: a laptop changes networks, a DHCP lease
 * moves), by looking every second: cheap, and needs no netlink binding. Emits `change`
 * (AddressChange). Timers are unref'd.
 */
export class NetworkWatch extends EventEmitter {
  private readonly intervalMs: number;
  private readonly ignore: ReadonlySet<string>;
  private readonly source: InterfaceSource;
  private current: string[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(opts: NetworkWatchOptions = {}) {
    super();
    this.intervalMs = opts.intervalMs ?? 1000;
    this.ignore = new Set(opts.ignoreInterfaces ?? []);
    this.source = opts.source ?? networkInterfaces;
  }

  /** The addresses seen at the last look. */
  addresses(): string[] {
    return [...this.current];
  }

  start(): void {
    if (this.timer) return;
    this.current = this.read() ?? [];
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Looks now; emits and returns the change, if any. */
  check(): AddressChange | null {
    const now = this.read();
    if (now === null) return null;
    const before = new Set(this.current);
    const after = new Set(now);
    const added = now.filter((a) => !before.has(a));
    const removed = this.current.filter((a) => !after.has(a));
    this.current = now;
    if (added.length === 0 && removed.length === 0) return null;
    const change: AddressChange = { added, removed, addresses: [...now] };
    this.emit("change", change);
    return change;
  }

  private read(): string[] | null {
    try {
      return localAddresses(this.source(), this.ignore);
    } catch {
      return null; // a failed look is no change; the next one will tell
    }
  }
}
