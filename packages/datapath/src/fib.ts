import { addressBytes, type RouteInfo } from "@tincan/protocol";
import { Counters } from "./counters.js";
import type { FastSocketLike } from "./fast/socket.js";
import type { Link } from "./link.js";
import { PrefixTable } from "./routes.js";

export interface RouteEntry {
  peerUid: string;
  via: string | null;
  /** UID of the link packets for this prefix leave on (via, or the peer itself). */
  nextHop: string;
  mapTo: string | null;
  /** Only for packets in transit: packets from or to our vNIC do not take it (see ownTraffic). */
  transit: boolean;
  /** Packets from the vNIC routed by this prefix (sent, queued or held), and their bytes. */
  txPackets: number;
  txBytes: number;
  /** Packets received from a link whose source this prefix routes (accepted, for us or in transit). */
  rxPackets: number;
}

/** The routes packets from or to our own vNIC may take (all but transit-only ones), for PrefixTable.lookup. */
export const ownTraffic = (r: RouteEntry): boolean => !r.transit;

/** A device that moves IP packets in and out of the kernel (the TUN, or a fake in tests). */
export interface VnicDevice {
  readonly name: string;
  /** Packets read carry a virtio-net header in the 10 bytes before them (offsets[i] - 10). */
  readonly vnetHdr?: boolean;
  /** The device takes super-packets and partial checksums (a virtio-net header on write). */
  readonly offload?: boolean;
  /** Writes one packet; `vnetHdr` (10 bytes) only on a device with `offload`. */
  write(buf: Uint8Array, off: number, len: number, vnetHdr?: Uint8Array): boolean;
  /** Reads what the device holds now and hands it to the reader before returning (see Outside.readReplies). */
  readNow?(): number;
  /** Lets the fast-path socket's native forwarding table take packets first (fast/native-forward.ts). */
  forwardTo?(socket: FastSocketLike): void;
  close(): void;
}

/**
 * The forwarding state both packet directions read: routes, links, our own addresses.
 * Mutated only by RPC handlers.
 */
export class Fib {
  readonly routes = new PrefixTable<RouteEntry>();
  /** Goes up with every route set or removed: readers cache what they derive from the table by it. */
  routesVersion = 0;
  readonly links = new Map<string, Link>();
  readonly vnicCounters = new Counters();
  vnic: VnicDevice | null = null;
  translate = false;
  /** Hop limit of frames we send; received frames are clamped to it. */
  hopLimit = 4;
  /** Our UID: a route to it is a prefix behind this node (router mode), delivered to the vNIC. */
  ownUid: string | null = null;
  /** Own IPv4 address as a 32-bit number, for translation. */
  ownIpv4: number | null = null;
  private ownV4Bytes: Uint8Array | null = null;
  private ownV6Bytes: Uint8Array | null = null;
  /** Translation: local IPv4 address of each peer (as a number), from its routes. */
  private readonly peerLocalIpv4 = new Map<string, number>();

  setOwnAddresses(ipv4: string | null, ipv6: string | null): void {
    this.ownV4Bytes = ipv4 ? addressBytes(ipv4) : null;
    this.ownV6Bytes = ipv6 ? addressBytes(ipv6) : null;
    this.ownIpv4 = this.ownV4Bytes ? Buffer.from(this.ownV4Bytes).readUInt32BE(0) : null;
  }

  /** Whether the address at buf[off..] is one of ours. */
  isOwnAddress(buf: Uint8Array, off: number, version: number): boolean {
    const own = version === 4 ? this.ownV4Bytes : this.ownV6Bytes;
    if (!own) return false;
    for (let i = 0; i < own.length; i++) if (buf[off + i] !== own[i]) return false;
    return true;
  }

  /** Sets a route; its counters carry on when only its next hop changes (the same prefix and peer). */
  setRoute(
    prefix: string,
    peerUid: string,
    via: string | null,
    mapTo: string | null,
    transit = false,
  ): string {
    const old = this.routes.get(prefix);
    const counters =
      old?.peerUid === peerUid
        ? { txPackets: old.txPackets, txBytes: old.txBytes, rxPackets: old.rxPackets }
        : { txPackets: 0, txBytes: 0, rxPackets: 0 };
    this.routesVersion++;
    const canonical = this.routes.set(prefix, {
      peerUid,
      via,
      nextHop: via ?? peerUid,
      mapTo,
      transit,
      ...counters,
    });
    this.refreshPeerLocal(peerUid);
    return canonical;
  }

  removeRoute(prefix: string): boolean {
    const existing = this.routes.get(prefix);
    const removed = this.routes.delete(prefix);
    if (removed) this.routesVersion++;
    if (existing) this.refreshPeerLocal(existing.peerUid);
    return removed;
  }

  localIpv4Of(peerUid: string): number | undefined {
    return this.peerLocalIpv4.get(peerUid);
  }

  routeList(): RouteInfo[] {
    return [...this.routes.entries()].map((r) => ({
      prefix: r.prefix,
      peerUid: r.value.peerUid,
      via: r.value.via,
      mapTo: r.value.mapTo,
      ...(r.value.transit ? { transit: true } : {}),
      txPackets: r.value.txPackets,
      txBytes: r.value.txBytes,
      rxPackets: r.value.rxPackets,
    }));
  }

  /** A peer's local address: its direct IPv4 /32 route's address, or that route's mapTo. */
  private refreshPeerLocal(peerUid: string): void {
    this.peerLocalIpv4.delete(peerUid);
    for (const r of this.routes.entries()) {
      if (r.value.peerUid !== peerUid || r.value.via) continue;
      const text =
        r.value.mapTo ?? (r.prefix.endsWith("/32") && !r.prefix.includes(":") ? r.prefix.slice(0, -3) : null);
      if (text) {
        this.peerLocalIpv4.set(peerUid, Buffer.from(addressBytes(text)).readUInt32BE(0));
        return;
      }
    }
  }
}
