import type { Fib } from "../fib.js";
import type { Link } from "../link.js";
import { FRAME_HEADER } from "../wire/index.js";
import type { FastForwardStats, FastSocketLike } from "./socket.js";

/** What one link's entry in the native table holds. */
interface Wanted {
  localIndex: number;
  hopLimit: number;
  maxPacket: number;
  addresses: string[];
  /** All of the above in one string: an entry is set again only when it changes. */
  key: string;
}

interface Entry {
  localIndex: number;
  key: string;
  /** Host route of each address (its counters take the address's counts). */
  prefixes: Map<string, string>;
  /** The entry's counts already added to the link, vNIC and route counters. */
  seen: FastForwardStats;
}

const LARGEST_IP_PACKET = 65_535;
const SMALLEST_IP_PACKET = 20;

/**
 * Largest packet the native table may send over a link: one frame, within the path MTU (the link
 * tells the table at once when a path MTU step changes it).
 */
export function largestNativePacket(link: Pick<Link, "tooBigAbove" | "maxFrame">): number {
  return Math.min(link.tooBigAbove, link.maxFrame - FRAME_HEADER, LARGEST_IP_PACKET);
}

const noCounts = (): FastForwardStats => ({
  txPackets: 0,
  txBytes: 0,
  rxPackets: 0,
  rxBytes: 0,
  vnicFull: 0,
  addresses: [],
});

/**
 * The JS half of the native forwarding table (tune.nativeForward; the native half is
 * FastSocket.setForward in @tincan/tuntap). A link whose frames go on the fast path gets an
 * entry: the addresses of its peer's direct host routes (a /32 or /128 to the peer, no `via`, no
 * `mapTo`), its sending session, the hop limit and the largest packet the link takes in one
 * datagram. The TUN and the socket then move the common packets without entering JS: a packet
 * for one of those addresses leaves as a one-packet frame, and a one-packet frame from one of
 * them to our own address is written to the TUN, which is what Inside and Outside would do
 * with it. Everything else goes through JS as before.
 *
 * Entries follow the FIB: `refresh` after every change that can matter (routes, link state,
 * the fast path switching or rekeying, our addresses) and once a second. `sync` adds what was
 * forwarded natively to the link's, the vNIC's and the routes' counters (and to the link's
 * liveness), so readers of those counters see natively forwarded traffic as they would any other.
 */
export class NativeForward {
  private readonly entries = new Map<Link, Entry>();
  private attached: { socket: FastSocketLike; vnic: object } | null = null;
  private local: [string | null, string | null] = [null, null];
  private localSent = "";
  private held = false;
  private scheduled = false;
  /** directAddresses() for a routes version and our UID: the table is walked again only when they change. */
  private direct: { version: number; ownUid: string | null; addresses: Map<string, string[]> } | null = null;

  constructor(
    private readonly fib: Fib,
    private readonly socket: () => FastSocketLike | null,
  ) {}

  /** Our own addresses (without prefix length): received packets for them may go to the TUN. */
  setLocalAddresses(ipv4: string | null, ipv6: string | null): void {
    this.local = [ipv4, ipv6];
    this.schedule();
  }

  /** JS's send queue holds packets (true): new ones must queue behind them, not go natively. */
  hold(held: boolean): void {
    if (held === this.held) return;
    this.held = held;
    this.attached?.socket.holdForward(held);
  }

  /** A refresh before the event loop handles the next packet (many RPCs in a row cost one). */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.refresh();
    });
  }

  /** Installs, replaces or removes each link's entry to match the FIB and the links now. */
  refresh(now = Date.now()): void {
    const socket = this.attach();
    if (!socket) {
      this.forget();
      return;
    }
    const addresses = this.fib.translate ? null : this.directAddresses();
    const live = new Set<Link>();
    for (const link of this.fib.links.values()) {
      const want = addresses && this.wanted(link, addresses);
      const have = this.entries.get(link);
      if (!want) continue;
      live.add(link);
      if (have?.key === want.key) continue;
      if (have) this.remove(link, have, socket, now);
      try {
        socket.setForward(want.localIndex, want.hopLimit, want.maxPacket, want.addresses);
      } catch {
        live.delete(link);
        continue;
      }
      const prefixes = new Map(want.addresses.map((a) => [a, hostPrefix(a)]));
      this.entries.set(link, { localIndex: want.localIndex, key: want.key, prefixes, seen: noCounts() });
      link.nativeForwarding = true;
    }
    for (const [link, entry] of this.entries) if (!live.has(link)) this.remove(link, entry, socket, now);
  }

  /** Adds what was forwarded natively since the last call to the counters JS keeps. */
  sync(now = Date.now()): void {
    const socket = this.attached?.socket;
    if (!socket) return;
    for (const [link, entry] of this.entries) this.syncEntry(link, entry, socket, now);
  }

  /** Links with an entry now, and its session (tests, status). */
  installed(): Map<Link, number> {
    return new Map([...this.entries].map(([link, e]) => [link, e.localIndex]));
  }

  /** Entries whose socket went away (with their sessions and counts). */
  private forget(): void {
    for (const link of this.entries.keys()) link.nativeForwarding = false;
    this.entries.clear();
  }

  /** The socket entries go to, attached to the vNIC (again when either changed); null: none yet. */
  private attach(): FastSocketLike | null {
    const socket = this.socket();
    const vnic = this.fib.vnic;
    if (!socket || !vnic?.forwardTo) {
      this.attached = null;
      return null;
    }
    if (this.attached?.socket !== socket || this.attached.vnic !== vnic) {
      vnic.forwardTo(socket);
      this.attached = { socket, vnic };
      this.forget();
      this.localSent = "";
      socket.holdForward(this.held);
    }
    const local = this.local.join(" ");
    if (local !== this.localSent) {
      socket.setLocalAddresses(this.local[0], this.local[1]);
      this.localSent = local;
    }
    return socket;
  }

  private remove(link: Link, entry: Entry, socket: FastSocketLike, now: number): void {
    this.syncEntry(link, entry, socket, now);
    socket.clearForward(entry.localIndex);
    this.entries.delete(link);
    link.nativeForwarding = false;
  }

  private wanted(link: Link, addresses: Map<string, string[]>): Wanted | null {
    const fast = link.fast;
    const session = fast?.sending;
    if (!fast || !session || fast.phase !== "up" || link.state !== "connected") return null;
    const list = addresses.get(link.peerUid);
    if (!list) return null;
    const maxPacket = largestNativePacket(link);
    if (maxPacket < SMALLEST_IP_PACKET) return null;
    const { localIndex } = session;
    const hopLimit = this.fib.hopLimit;
    return {
      localIndex,
      hopLimit,
      maxPacket,
      addresses: list,
      key: `${localIndex} ${hopLimit} ${maxPacket} ${list.join(",")}`,
    };
  }

  /** Each peer's direct host-route addresses (the packets whose way and source check are exact). */
  private directAddresses(): Map<string, string[]> {
    const { routesVersion: version, ownUid } = this.fib;
    if (this.direct?.version === version && this.direct.ownUid === ownUid) return this.direct.addresses;
    const out = new Map<string, string[]>();
    for (const { prefix, value } of this.fib.routes.entries()) {
      if (value.via !== null || value.mapTo !== null || value.peerUid === this.fib.ownUid) continue;
      const slash = prefix.indexOf("/");
      const v6 = prefix.includes(":");
      if (prefix.slice(slash + 1) !== (v6 ? "128" : "32")) continue;
      const list = out.get(value.peerUid);
      if (list) list.push(prefix.slice(0, slash));
      else out.set(value.peerUid, [prefix.slice(0, slash)]);
    }
    this.direct = { version, ownUid, addresses: out };
    return out;
  }

  private syncEntry(link: Link, entry: Entry, socket: FastSocketLike, now: number): void {
    const stats = socket.forwardStats(entry.localIndex);
    if (!stats) return;
    const seen = entry.seen;
    const txPackets = stats.txPackets - seen.txPackets;
    const txBytes = stats.txBytes - seen.txBytes;
    const rxPackets = stats.rxPackets - seen.rxPackets;
    const rxBytes = stats.rxBytes - seen.rxBytes;
    const vnicFull = stats.vnicFull - seen.vnicFull;
    if (txPackets > 0 || rxPackets > 0) link.nativeForwarded(txPackets, txBytes, rxPackets, rxBytes, now);
    const vnic = this.fib.vnicCounters;
    if (txPackets > 0) vnic.rx(txPackets, txBytes);
    if (rxPackets > 0) vnic.tx(rxPackets, rxBytes);
    if (vnicFull > 0) vnic.drop("vnicFull", vnicFull);
    for (const a of stats.addresses) {
      const before = seen.addresses.find((b) => b.address === a.address);
      const prefix = entry.prefixes.get(a.address);
      const route = prefix === undefined ? undefined : this.fib.routes.get(prefix);
      if (!route) continue;
      route.txPackets += a.txPackets - (before?.txPackets ?? 0);
      route.txBytes += a.txBytes - (before?.txBytes ?? 0);
      route.rxPackets += a.rxPackets - (before?.rxPackets ?? 0);
    }
    entry.seen = stats;
  }
}

const hostPrefix = (address: string): string => `${address}/${address.includes(":") ? 128 : 32}`;
