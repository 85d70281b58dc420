import { randomBytes } from "node:crypto";
import { networkInterfaces } from "node:os";
import type { Endpoint } from "@tincan/protocol";
import type { Counters } from "../counters.js";
import type { FastHost, FastPath } from "./fast-path.js";
import { MappedAddresses } from "./mapped.js";
import { type FastCandidate, type FastEndpoint, MAX_FAST_CANDIDATES } from "./offer.js";
import { FastRelay, type RelayBinding, type TurnTarget } from "./relay.js";
import type { FastBatchHandler, FastRawHandler, FastSocketFactory, FastSocketLike } from "./socket.js";
import { TurnClient } from "./turn-client.js";

/** Where a fast path's received frames go: its link (frame, and the session it came on). */
export interface FastReceiver {
  readonly fast: FastPath;
  deliverFast(frame: Buffer, localIndex: number): void;
}

export interface FastTransportOptions {
  factory: FastSocketFactory;
  /** tune.fastPathPort (0: any, or one of ice.portRange when that is set). */
  port: number;
  /** ice.portRange as configured when the socket opens (undefined: none). */
  portRange: () => readonly [number, number] | undefined;
  /** Addresses never announced (our overlay addresses). */
  excludeAddress: (address: string) => boolean;
  warn: (message: string, fields: Record<string, unknown>) => void;
  /** Called after each received batch was delivered (the datapath reads the vNIC's replies). */
  afterBatch?: () => void;
  /** The STUN servers that tell the socket its mapped address (ICE's; none: no mapped candidate). */
  stunServers?: () => readonly Endpoint[];
  /** The TURN server relayed fast paths allocate on (ICE's; null: relayed links stay on node-datachannel). */
  turn?: () => TurnTarget | null;
  info?: (message: string, fields: Record<string, unknown>) => void;
}

/**
 * The datapath's fast-path socket (opened at first use on "::", which takes IPv4 too, so one fixed
 * port serves both families; "0.0.0.0" where IPv6 is off), and the receiver index of every session: received frames go to the link
 * whose session they name; unknown indexes are the socket's counted drops. With ice.portRange set
 * (and no fastPathPort), the socket takes the highest free port of the range: firewalls that open
 * only the range let it through, and libjuice, which takes ports from the bottom, keeps its own.
 */
export class FastTransport implements FastHost {
  /** One socket for both families (undefined: not opened yet; null: could not be). */
  private socket: FastSocketLike | null | undefined = undefined;
  private ipv4Only = false;
  private readonly receivers = new Map<number, FastReceiver>();
  private readonly byPath = new Map<FastPath, FastReceiver>();
  private readonly dirty = new Set<FastSocketLike>();
  private flushQueued = false;
  private dropsSeen = { short: 0, unknownIndex: 0, badTag: 0, replay: 0 };
  private readonly sendRaw = (to: Endpoint, datagram: Buffer): boolean =>
    this.socket?.sendRaw(to, datagram) ?? false;
  private readonly mapped = new MappedAddresses(this.sendRaw);
  private readonly relay: FastRelay;

  constructor(private readonly options: FastTransportOptions) {
    this.relay = new FastRelay(
      () => options.turn?.() ?? null,
      (t) => new TurnClient(t.server, t.credentials, this.sendRaw),
      (message, fields) => (options.info ?? options.warn)(message, fields),
    );
  }

  /** The socket when it is open (null: not yet, or it could not be). */
  get openSocket(): FastSocketLike | null {
    return this.socket ?? null;
  }

  /** A link takes part: its fast path's indexes deliver to it. */
  attach(receiver: FastReceiver): void {
    this.byPath.set(receiver.fast, receiver);
  }

  detach(receiver: FastReceiver): void {
    receiver.fast.close();
    this.byPath.delete(receiver.fast);
  }

  socketFor(family: 4 | 6): FastSocketLike | null {
    if (this.socket === undefined) {
      const ports = this.ports();
      let opened = this.open("::", ports);
      if (opened instanceof Error && !inUse(opened)) {
        this.options.warn("fast path socket not opened on ::, trying 0.0.0.0", { error: opened.message });
        opened = this.open("0.0.0.0", ports);
        this.ipv4Only = true;
      }
      if (opened instanceof Error) {
        this.options.warn("fast path socket not opened: links stay on node-datachannel", {
          ports: ports.length === 1 ? ports[0] : `${ports.at(-1)}-${ports[0]}`,
          error: opened.message,
        });
        this.socket = null;
      } else this.socket = opened;
    }
    return family === 6 && this.ipv4Only ? null : this.socket;
  }

  /** The ports to try, in order: fastPathPort, else ice.portRange from the top, else any (0). */
  private ports(): number[] {
    const range = this.options.port === 0 ? this.options.portRange() : undefined;
    if (!range) return [this.options.port];
    const out: number[] = [];
    for (let p = range[1]; p >= range[0]; p--) out.push(p);
    return out;
  }

  /**
   * A socket on the wildcard address (on "::" it takes IPv4 too, v4-mapped) and the first of
   * `ports` free, or why not (the last port's error).
   */
  private open(address: string, ports: number[]): FastSocketLike | Error {
    let error = new Error("no port to try");
    for (const port of ports) {
      try {
        const socket = this.options.factory({ address, port });
        socket.onBatch(this.onBatch);
        socket.onRaw(this.onRaw);
        return socket;
      } catch (err) {
        error = err as Error;
        if (!inUse(error)) break;
      }
    }
    return error;
  }

  private readonly onBatch: FastBatchHandler = (indexes, buf, offsets, lengths, count) => {
    for (let i = 0; i < count; i++) {
      const index = indexes[i] as number;
      const r = this.receivers.get(index);
      if (!r) continue;
      const off = offsets[i] as number;
      r.fast.heard(index);
      r.deliverFast(buf.subarray(off, off + (lengths[i] as number)), index);
    }
    this.options.afterBatch?.();
  };

  /** STUN answers (mapped address) and TURN responses on the socket; anything else is ignored. */
  private readonly onRaw: FastRawHandler = (datagram, from) => {
    if (!this.mapped.onMessage(datagram, from)) this.relay.onMessage(datagram, from);
  };

  newIndex(path: FastPath): number {
    const receiver = this.byPath.get(path);
    if (!receiver) throw new Error("fast path of a link that is not attached");
    for (;;) {
      const index = randomBytes(4).readUInt32LE(0);
      if (index === 0 || this.receivers.has(index)) continue;
      this.receivers.set(index, receiver);
      return index;
    }
  }

  releaseIndex(index: number): void {
    this.receivers.delete(index);
  }

  localCandidates(family: 4 | 6, relayed = false): FastCandidate[] {
    const port = this.socket?.port;
    if (!port) return [];
    if (relayed) {
      const r = this.relay.relayed;
      return r && r.address.includes(":") === (family === 6) ? [{ ...r, relayed: true }] : [];
    }
    const out: FastCandidate[] = [];
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.internal || a.family !== (family === 4 ? "IPv4" : "IPv6")) continue;
        // Link-local IPv6 needs a scope the peer cannot know.
        if (family === 6 && /^fe[89ab]/i.test(a.address)) continue;
        if (this.options.excludeAddress(a.address)) continue;
        if (out.length < MAX_FAST_CANDIDATES) out.push({ address: a.address, port });
      }
    }
    // STUN-mapped last: behind an endpoint-independent NAT the peer reaches us there.
    for (const m of this.mapped.of(family))
      if (out.length < MAX_FAST_CANDIDATES && !out.some((e) => e.address === m.address && e.port === m.port))
        out.push(m);
    return out;
  }

  prepare(path: FastPath, family: 4 | 6, relayed: boolean): Promise<boolean> | null {
    if (relayed) return this.relay.allocate(path).then((r) => r !== null);
    return this.mapped.refresh(this.stunServers(), family, Date.now())?.then(() => true) ?? null;
  }

  /** ICE's STUN servers, else its TURN server (which answers Binding requests too). */
  private stunServers(): readonly Endpoint[] {
    const stun = this.options.stunServers?.() ?? [];
    const turn = this.options.turn?.();
    return stun.length > 0 || !turn ? stun : [turn.server];
  }

  canRelay(family: 4 | 6): boolean {
    const turn = this.options.turn?.();
    return turn !== null && turn !== undefined && turn.server.address.includes(":") === (family === 6);
  }

  bindRelay(peer: FastEndpoint): Promise<RelayBinding | null> {
    return this.relay.bind(peer);
  }

  unbindRelay(peer: FastEndpoint): void {
    this.relay.unbind(peer);
  }

  relayFailed(): void {
    this.relay.failed();
  }

  releaseRelay(path: FastPath): void {
    this.relay.release(path);
  }

  /** Once a second: TURN permissions and channel bindings due are renewed. */
  tick(now: number): void {
    this.relay.tick(now);
  }

  scheduleFlush(socket: FastSocketLike): void {
    this.dirty.add(socket);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // After the current batch (vNIC read, received datagrams, timer): one sendmmsg per turn.
    queueMicrotask(this.flush);
  }

  /**
   * Adds what the sockets dropped since the last call to `counters` (the vNIC's: a datagram no
   * link could be named for). Replayed and too-old datagrams are both `fastReplay`.
   */
  countDrops(counters: Pick<Counters, "drop">): void {
    let short = 0;
    let unknownIndex = 0;
    let badTag = 0;
    let replay = 0;
    if (this.socket) {
      const d = this.socket.stats().drops;
      short += d.short;
      unknownIndex += d.unknownIndex;
      badTag += d.badTag;
      replay += d.replay + d.tooOld;
    }
    const seen = this.dropsSeen;
    if (short > seen.short) counters.drop("fastShort", short - seen.short);
    if (unknownIndex > seen.unknownIndex) counters.drop("fastUnknownIndex", unknownIndex - seen.unknownIndex);
    if (badTag > seen.badTag) counters.drop("fastBadTag", badTag - seen.badTag);
    if (replay > seen.replay) counters.drop("fastReplay", replay - seen.replay);
    this.dropsSeen = { short, unknownIndex, badTag, replay };
  }

  close(): void {
    for (const r of [...this.byPath.values()]) this.detach(r);
    this.relay.close();
    this.socket?.close();
    this.socket = null;
    this.receivers.clear();
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    for (const socket of this.dirty) socket.flush();
    this.dirty.clear();
  };
}

const inUse = (err: Error): boolean => (err as NodeJS.ErrnoException).code === "EADDRINUSE";
