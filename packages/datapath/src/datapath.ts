import {
  addressBytes,
  DatapathTune,
  type HelloResult,
  type LinkState,
  type LogLevel,
  MAX_ICC_BYTES,
  type NotificationMethod,
  type NotificationParamsOf,
  prefixBytes,
  RpcErrorCode,
  type RpcMethod,
  type RpcParamsOf,
  type RpcResults,
  VERSION,
} from "@tincan/protocol";
import type { Logger } from "winston";
import { conflict, invalidParams, notConfigured, notFound, rpcError, tooManyLinks } from "./errors.js";
import type { ExitKernel, Family } from "./exit-kernel.js";
import { ExitNode } from "./exit-node.js";
import { NativeForward } from "./fast/native-forward.js";
import type { FastSocketFactory } from "./fast/socket.js";
import { FastTransport } from "./fast/transport.js";
import { Fib, type VnicDevice } from "./fib.js";
import { IccQueueFull } from "./icc-channel.js";
import { type FastServers, type IceSettings, resolveFastServers, turnCredentials } from "./ice.js";
import { Inside } from "./inside.js";
import type { KernelRoutes } from "./kernel-routes.js";
import { Link } from "./link.js";
import { KEEPALIVE_PERIOD_MS } from "./liveness.js";
import { Outside } from "./outside.js";
import { pageToFit } from "./query-page.js";
import { type Resolvectl, registerLinkDns } from "./resolved.js";
import { PrefixTable } from "./routes.js";
import { RxWatchdog } from "./rx-watchdog.js";
import { bestTransport, type PeerTransports, transportOf } from "./transports.js";
import { TxQueue } from "./tx-queue.js";
import { UnmappedPackets } from "./unmapped.js";
import { FrameBuilders } from "./wire/index.js";

export { VERSION };

export interface VnicSettings {
  name: string;
  ipv4: string | null;
  ipv6: string | null;
  mtu: number;
  /** Checksum/segmentation offload on the vNIC (TCP super-packets cross links whole). */
  offload: boolean;
}

/** Creates and (re)configures the vNIC; the real one is a TUN device, tests use fakes. */
export interface VnicFactory {
  create(
    settings: VnicSettings,
    onBatch: (buf: Buffer, offsets: ArrayLike<number>, lengths: ArrayLike<number>, count: number) => void,
  ): VnicDevice;
  reconfigure(device: VnicDevice, settings: VnicSettings): void;
}

/** What the datapath needs, and tuning knobs (DatapathTune: its schema holds their defaults). */
export interface DatapathOptions extends Partial<DatapathTune> {
  vnicFactory: VnicFactory;
  logger: Logger;
  notify: <M extends NotificationMethod>(method: M, params: NotificationParamsOf<M>) => void;
  /** Links held at most; link.create / link.accept beyond it get TooManyLinks (default 4096). */
  maxLinks?: number;
  /** Kernel routes to the vNIC (`route.set` with `kernel`); without it such a route.set fails. */
  kernelRoutes?: KernelRoutes;
  /** How `vnic.configure {dns}` reaches systemd-resolved (default: the resolvectl command). */
  resolvectl?: Resolvectl;
  /** Exit nodes (`exit.serve`, `exit.use`); without it those fail. */
  exitKernel?: ExitKernel;
  /** Opens fast-path sockets (@tincan/tuntap's FastSocket); without it links stay on node-datachannel. */
  fastSocket?: FastSocketFactory;
}

type Handlers = { [M in RpcMethod]: (params: RpcParamsOf<M>) => RpcResults[M] | Promise<RpcResults[M]> };

/**
 * The datapath's state and its RPC methods. It holds no policy: controllers decide which
 * links and routes exist; this only carries them out and reports what happens.
 */
export class Datapath {
  readonly startedAt = Date.now();
  readonly fib = new Fib();
  readonly inside: Inside;
  readonly outside: Outside;
  private readonly unmapped: UnmappedPackets;
  /** Packets in transit waiting for a route or a link (see Outside.park); held and expired like ours. */
  private readonly transitHeld: UnmappedPackets;
  /** Each link's frame being built, for packets from the vNIC and in transit alike. */
  private readonly frames: FrameBuilders<Link>;
  /** The send queue between the vNIC and the links (null: tune.txQueueMs 0). */
  private readonly txQueue: TxQueue | null;
  private uid: string | null = null;
  private vnicSettings: VnicSettings | null = null;
  private ice: IceSettings = { stun: [], turn: [] };
  /** ICE's servers resolved for the fast path's own STUN queries and TURN allocation. */
  private fastServers: FastServers = { stun: [], turn: null };
  /** Overlay prefixes of our own vNIC: ICE must never run a link through the overlay itself. */
  private readonly overlay = new PrefixTable<true>();
  /** Each peer's transports; fib.links holds the one carrying its traffic (see bestTransport). */
  private readonly transports = new Map<string, PeerTransports>();
  /** Prefixes (canonical) with a kernel route to the vNIC, removed with their route and on close. */
  private readonly kernelPrefixes = new Set<string>();
  private readonly exit: ExitNode | null;
  /** The fast-path sockets (null: tune.fastPath off or no socket factory). */
  private readonly fast: FastTransport | null;
  /** The native forwarding table's JS half (null: tune.nativeForward off or no fast path). */
  private readonly nativeForward: NativeForward | null;
  private readonly timer: NodeJS.Timeout;
  /** Closes a link whose node-datachannel receive queue outgrows tune.rxRssLimitMb (null: 0, off). */
  private readonly rxWatchdog: RxWatchdog<Link> | null;
  private readonly log: Logger;
  private readonly tune: DatapathTune;

  constructor(private readonly options: DatapathOptions) {
    this.log = options.logger;
    const tune = DatapathTune.parse(tuneOf(options));
    this.tune = tune;
    this.unmapped = new UnmappedPackets({
      notifyIntervalMs: 1000,
      holdMs: 10_000,
      maxDestinations: 256,
      packetsPerDestination: 16,
    });
    this.transitHeld = new UnmappedPackets({
      notifyIntervalMs: 1000,
      holdMs: 10_000,
      maxDestinations: 256,
      packetsPerDestination: 16,
    });
    this.fib.hopLimit = tune.hopLimit;
    this.frames = new FrameBuilders(tune.maxFrameBytes);
    const { turnBytes, txQueueMs } = tune;
    this.txQueue =
      txQueueMs > 0
        ? new TxQueue(
            {
              flows: 1024,
              quantum: 16_384,
              target: Math.round(txQueueMs * 10),
              interval: Math.round(tune.txIntervalMs * 10),
              maxBytes: tune.txQueueBytes,
            },
            (reason, packets) => this.fib.vnicCounters.drop(reason, packets),
          )
        : null;
    this.inside = new Inside(
      this.fib,
      this.unmapped,
      { hopLimit: this.fib.hopLimit, turnBytes },
      this.frames,
      (report) => options.notify("packet.unmapped", report),
      this.txQueue,
    );
    this.outside = new Outside(this.fib, this.frames, {
      held: this.transitHeld,
      report: (report) => options.notify("packet.unmapped", report),
    });
    this.exit = options.exitKernel ? new ExitNode(options.exitKernel, this.exitView(), this.log) : null;
    this.fast =
      tune.fastPath && options.fastSocket
        ? new FastTransport({
            factory: options.fastSocket,
            port: tune.fastPathPort,
            portRange: () => this.ice.portRange,
            excludeAddress: (address) => this.isOverlayAddress(address),
            warn: (message, fields) => this.log.warn(message, fields),
            afterBatch: () => this.outside.readReplies(),
            stunServers: () => this.fastServers.stun,
            turn: () => {
              const t = this.fastServers.turn;
              return t ? { server: t.server, credentials: turnCredentials(t.config, this.uid ?? "") } : null;
            },
            info: (message, fields) => this.log.info(message, fields),
          })
        : null;
    const fast = this.fast;
    this.nativeForward =
      fast && tune.nativeForward ? new NativeForward(this.fib, () => fast.openSocket) : null;
    if (this.nativeForward) {
      const table = this.nativeForward;
      this.inside.onQueueBusy = (busy) => table.hold(busy);
    }
    this.rxWatchdog =
      tune.rxRssLimitMb > 0
        ? new RxWatchdog({ rssLimitBytes: tune.rxRssLimitMb << 20, periodMs: KEEPALIVE_PERIOD_MS })
        : null;
    this.timer = setInterval(() => {
      const now = Date.now();
      this.checkRxOverload();
      const expired = this.unmapped.expire(now) + this.transitHeld.expire(now);
      if (expired) this.fib.vnicCounters.drop("unmappedExpired", expired);
      this.fast?.countDrops(this.fib.vnicCounters);
      this.nativeForward?.sync(now);
      this.nativeForward?.refresh(now);
      this.fast?.tick(now);
      for (const link of this.allLinks()) {
        if (link.isConnected) link.fitRxQueue();
        // A path that changed after connecting (e.g. found to be relayed) is announced like a new
        // connection: the best transport is chosen again and the controller learns the path.
        if (link.refreshPath()) this.onLinkState(link, "connected");
        link.keepAlive(now);
      }
      this.exit?.sync();
    }, KEEPALIVE_PERIOD_MS);
    this.timer.unref();
  }

  readonly methods: Handlers = {
    hello: () => this.helloResult(),

    "vnic.configure": (p) => {
      if (this.uid && this.uid !== p.uid && this.fib.links.size > 0) {
        throw conflict(`uid is ${this.uid} and links exist; remove them before changing the uid`);
      }
      const current = this.vnicSettings;
      if (current && p.name && p.name !== current.name) {
        throw conflict(`vNIC ${current.name} exists; its name cannot change to ${p.name}`);
      }
      const settings: VnicSettings = {
        name: p.name ?? current?.name ?? "tincan0",
        ipv4: p.ipv4 ?? current?.ipv4 ?? null,
        ipv6: p.ipv6 ?? current?.ipv6 ?? null,
        mtu: p.mtu ?? current?.mtu ?? 1280,
        offload: current?.offload ?? this.tune.offload,
      };
      const factory = this.options.vnicFactory;
      if (this.fib.vnic) factory.reconfigure(this.fib.vnic, settings);
      else this.fib.vnic = factory.create(settings, (b, o, l, c) => this.inside.onBatch(b, o, l, c));
      this.uid = p.uid;
      this.fib.ownUid = p.uid;
      this.vnicSettings = { ...settings, name: this.fib.vnic.name };
      this.fib.translate = p.translate ?? this.fib.translate;
      this.fib.setOwnAddresses(stripLength(settings.ipv4), stripLength(settings.ipv6));
      this.nativeForward?.setLocalAddresses(stripLength(settings.ipv4), stripLength(settings.ipv6));
      this.refreshOverlay();
      this.log.info("vnic configured", {
        ...this.vnicSettings,
        offload: this.fib.vnic.offload === true,
        translate: this.fib.translate,
      });
      const result = { name: this.fib.vnic.name, mtu: settings.mtu };
      if (p.dns === undefined) return result;
      return registerLinkDns(result.name, p.dns, this.options.resolvectl).then((dns) => {
        if (dns.error) this.log.warn("vnic dns not registered with systemd-resolved", { error: dns.error });
        else this.log.info(dns.registered ? "vnic dns registered" : "vnic dns withdrawn", { ...p.dns });
        return { ...result, dns };
      });
    },

    "log.level": (p) => {
      if (p.level && p.level !== this.log.level) {
        this.log.level = p.level;
        this.log.warn("log level set", { level: p.level, by: "rpc" });
      }
      return { level: this.log.level as LogLevel };
    },

    "vnic.query": () => {
      this.fast?.countDrops(this.fib.vnicCounters);
      this.nativeForward?.sync();
      return {
        name: this.vnicSettings?.name ?? null,
        uid: this.uid,
        ipv4: this.vnicSettings?.ipv4 ?? null,
        ipv6: this.vnicSettings?.ipv6 ?? null,
        mtu: this.vnicSettings?.mtu ?? null,
        translate: this.fib.translate,
        queued: this.unmapped.heldPackets + this.transitHeld.heldPackets,
        txQueue: this.txQueue && {
          packets: this.txQueue.queuedPackets,
          bytes: this.txQueue.queuedBytes,
          delay: this.txQueue.delay.snapshot(),
        },
        ...this.fib.vnicCounters.snapshot(),
      };
    },

    "ice.configure": (p) => {
      this.ice = p;
      void resolveFastServers(p).then((servers) => {
        if (this.ice === p) this.fastServers = servers;
      });
      this.log.info("ice configured", {
        stun: p.stun,
        turn: p.turn.map((t) => t.urls),
        portRange: p.portRange,
        udpMux: p.udpMux ?? false,
        bindAddress: p.bindAddress,
      });
      return {};
    },

    "link.create": async (p) => {
      const link = this.newLink(p.peerUid, p.relayOnly ?? false, p.directOnly ?? false);
      try {
        return { description: await link.createOffer() };
      } catch (err) {
        this.dropLink(link);
        throw err;
      }
    },

    "link.accept": async (p) => {
      const link = this.newLink(p.peerUid, p.relayOnly ?? false, p.directOnly ?? false);
      try {
        return { description: await link.acceptOffer(p.description) };
      } catch (err) {
        this.dropLink(link);
        throw invalidParams(`description: ${(err as Error).message}`);
      }
    },

    "link.complete": (p) => {
      const link = this.linkOf(p.peerUid, p.relayOnly);
      try {
        link.complete(p.description);
      } catch (err) {
        throw invalidParams(`description: ${(err as Error).message}`);
      }
      return {};
    },

    "link.addCandidate": (p) => {
      const link = this.linkOf(p.peerUid, p.relayOnly);
      try {
        link.addCandidate(p.candidate, p.mid);
      } catch (err) {
        throw invalidParams(`candidate: ${(err as Error).message}`);
      }
      return {};
    },

    "link.remove": (p) => {
      const t = this.transports.get(p.peerUid);
      const links = p.relayOnly === undefined ? [t?.full, t?.relay] : [transportOf(t, p.relayOnly)];
      for (const link of links) {
        if (!link) continue;
        const waiting = link.pending.drain();
        this.dropLink(link);
        const { txPackets, rxPackets, drops } = link.info();
        this.log.info("link removed", {
          peer: p.peerUid,
          relayOnly: link.relayOnly,
          txPackets,
          rxPackets,
          drops,
        });
        // Packets that waited for a setup that failed wait for the other transport or the next
        // setup (held as unmapped).
        this.inside.resubmit(waiting);
      }
      return {};
    },

    "link.query": (p) => {
      this.nativeForward?.sync();
      const peers = p.peerUid ? [p.peerUid] : [...this.transports.keys()];
      return pageToFit(
        peers.flatMap((uid) => this.linksOf(uid)).map((l) => l.info()),
        p,
        "links",
      );
    },

    "route.set": async (p) => {
      if (p.mapTo && prefixBytes(p.prefix).version !== 4)
        throw invalidParams("mapTo: only IPv4 routes are translated");
      if (p.via && p.via === p.peerUid) throw invalidParams("via: must differ from peerUid");
      if (p.peerUid === this.uid && (p.via || p.mapTo || p.kernel))
        throw invalidParams(
          "peerUid: a route to our own uid (a prefix behind this node) takes no via, mapTo or kernel",
        );
      if (p.transit && (p.peerUid === this.uid || p.mapTo || p.kernel || prefixBytes(p.prefix).length === 0))
        throw invalidParams(
          "transit: a transit-only route goes to another member and takes no mapTo or kernel, and is no default route",
        );
      if (p.kernel && prefixBytes(p.prefix).length === 0)
        throw invalidParams("kernel: a default route takes the kernel through exit.use, not the main table");
      await this.setKernelRoute(p.prefix, p.kernel === true);
      const prefix = this.fib.setRoute(
        p.prefix,
        p.peerUid,
        p.via ?? null,
        p.mapTo ?? null,
        p.transit === true,
      );
      this.nativeForward?.schedule();
      this.exit?.sync();
      this.log.debug("route set", {
        prefix,
        peer: p.peerUid,
        via: p.via,
        mapTo: p.mapTo,
        transit: p.transit,
      });
      this.resubmitHeld();
      // Packets waiting for the direct link to connect take the new way via another node.
      const direct = this.fib.links.get(p.peerUid);
      if (p.via && direct && !direct.isConnected && direct.pending.length > 0)
        this.inside.resubmit(direct.pending.drain());
      return {};
    },

    "route.remove": async (p) => {
      if (!this.fib.routes.get(p.prefix)) throw notFound(`prefix: no route for ${p.prefix}`);
      await this.setKernelRoute(p.prefix, false);
      this.nativeForward?.sync();
      this.fib.removeRoute(p.prefix);
      this.nativeForward?.schedule();
      this.exit?.sync();
      return {};
    },

    "exit.serve": async (p) => {
      if (!this.exit) throw notConfigured("exit: this datapath has no exit-node support");
      if (p.on && !this.fib.vnic) throw notConfigured("call vnic.configure first");
      try {
        await this.exit.setServe(p.on);
      } catch (err) {
        throw rpcError(RpcErrorCode.Internal, `exit.serve: ${(err as Error).message}`);
      }
      return {};
    },

    "exit.use": async (p) => {
      if (!this.exit) throw notConfigured("exit: this datapath has no exit-node support");
      if (p.peerUid !== null && p.peerUid === this.uid) throw invalidParams("peerUid: is our own uid");
      try {
        await this.exit.setUse(p.peerUid === null ? null : { peerUid: p.peerUid, bypass: p.bypass });
      } catch (err) {
        throw rpcError(RpcErrorCode.Internal, `exit.use: ${(err as Error).message}`);
      }
      return {};
    },

    "route.query": (p) => {
      this.nativeForward?.sync();
      return pageToFit(
        this.fib.routeList().map((r) => ({ ...r, kernel: this.kernelPrefixes.has(r.prefix) })),
        p,
        "routes",
      );
    },

    "icc.send": (p) => {
      const link = this.fib.links.get(p.peerUid);
      if (!link) throw notFound(`peerUid: no link to ${p.peerUid}`);
      const text = JSON.stringify(p.data);
      if (Buffer.byteLength(text) > MAX_ICC_BYTES)
        throw invalidParams(`data: larger than ${MAX_ICC_BYTES} bytes`);
      if (!link.isConnected) throw conflict(`link to ${p.peerUid} is ${link.state}, not connected`);
      try {
        link.sendIcc(text);
      } catch (e) {
        if (e instanceof IccQueueFull) throw conflict(`icc to ${p.peerUid}: ${e.message}`);
        throw e;
      }
      return {};
    },

    "link.ping": async (p) => {
      const link = this.fib.links.get(p.peerUid);
      if (!link) throw notFound(`peerUid: no link to ${p.peerUid}`);
      if (!link.isConnected) throw conflict(`link to ${p.peerUid} is ${link.state}, not connected`);
      try {
        return await link.ping(p.timeoutMs ?? 1000);
      } catch (e) {
        throw conflict(`ping ${p.peerUid}: ${(e as Error).message}`);
      }
    },
  };

  helloResult(): HelloResult {
    const v = this.vnicSettings;
    return {
      version: VERSION,
      uid: this.uid,
      vnic: v ? { name: v.name, ipv4: v.ipv4, ipv6: v.ipv6, mtu: v.mtu } : null,
      startedAt: this.startedAt,
      pid: process.pid,
    };
  }

  close(): void {
    clearInterval(this.timer);
    this.exit?.close();
    const vnic = this.fib.vnic;
    if (vnic && this.kernelPrefixes.size > 0)
      this.options.kernelRoutes?.removeAllSync(vnic.name, this.kernelPrefixes);
    this.kernelPrefixes.clear();
    for (const link of [...this.allLinks()]) this.dropLink(link);
    this.fast?.close();
    this.inside.close();
    this.fib.vnic?.close();
    this.fib.vnic = null;
  }

  /** Adds or removes the kernel route of `prefix` to the vNIC, if that changes anything. */
  private async setKernelRoute(text: string, wanted: boolean): Promise<void> {
    const p = prefixBytes(text);
    const prefix = `${p.network}/${p.length}`;
    if (this.kernelPrefixes.has(prefix) === wanted) return;
    const vnic = this.fib.vnic;
    const kernel = this.options.kernelRoutes;
    if (!vnic || !kernel) {
      if (!wanted) return;
      throw notConfigured(vnic ? "kernel: this datapath has no kernel routes" : "call vnic.configure first");
    }
    try {
      if (wanted) await kernel.add(vnic.name, prefix);
      else await kernel.remove(vnic.name, prefix);
    } catch (err) {
      throw rpcError(RpcErrorCode.Internal, `kernel: ${(err as Error).message}`);
    }
    if (wanted) this.kernelPrefixes.add(prefix);
    else this.kernelPrefixes.delete(prefix);
    this.log.info(wanted ? "kernel route added" : "kernel route removed", { prefix, dev: vnic.name });
  }

  /** Held packets (ours, and those in transit) are routed again after a route or link change. */
  private resubmitHeld(): void {
    this.inside.resubmitHeld(this.unmapped.takeAll());
    this.outside.resubmitHeld(this.transitHeld.takeAll());
  }

  private newLink(peerUid: string, relayOnly: boolean, directOnly = false): Link {
    if (!this.uid) throw notConfigured("call vnic.configure before creating links");
    if (peerUid === this.uid) throw invalidParams("peerUid: is our own uid");
    const transports = this.transports.get(peerUid) ?? {};
    const existing = transportOf(transports, relayOnly);
    if (existing) {
      const kind = relayOnly ? "relay-only link" : "link";
      throw conflict(`${kind} to ${peerUid} exists (${existing.state}); link.remove it first`);
    }
    // Each transport is a PeerConnection (sockets, a TURN allocation): the cap counts them all.
    const maxLinks = this.options.maxLinks ?? 4096;
    if (this.linkCount() >= maxLinks)
      throw tooManyLinks(`maxLinks (${maxLinks}) reached: link.remove a link first`);
    const link = new Link(
      {
        peerUid,
        relayOnly,
        directOnly,
        ice: this.ice,
        ownUid: this.uid,
        underlayMtu: this.tune.underlayMtu,
        queuePackets: this.tune.linkQueuePackets,
        maxBufferedBytes: this.tune.maxBufferedBytes,
        rtp: this.tune.rtp,
        silenceMs: this.tune.silenceMs,
        rxQueueMs: this.tune.rxQueueMs,
        rxIntervalMs: this.tune.rxIntervalMs,
        fast: this.fast,
        fastRekeyMs: this.tune.fastRekeyMs,
        fastPcCloseMs: this.tune.fastPcCloseMs,
      },
      {
        candidate: (l, candidate, mid) => {
          if (this.isCurrent(l))
            this.options.notify("link.candidate", {
              peerUid: l.peerUid,
              candidate,
              mid,
              relayOnly: l.relayOnly,
            });
        },
        state: (l, state) => this.onLinkState(l, state),
        frame: (l, frame) => this.outside.onFrame(l, frame),
        icc: (l, text) => this.onIcc(l, text),
        excludeAddress: (address) => this.isOverlayAddress(address),
        fastChanged: () => this.nativeForward?.schedule(),
        log: (_l, level, message, fields) => this.log.log(level, message, fields),
      },
    );
    if (relayOnly) transports.relay = link;
    else transports.full = link;
    this.transports.set(peerUid, transports);
    this.log.info("link created", { peer: peerUid, relayOnly, ...(directOnly ? { directOnly } : {}) });
    if (!this.fib.links.has(peerUid)) {
      this.fib.links.set(peerUid, link);
      // Packets held for this peer while it had no link now wait in the link's queue.
      this.resubmitHeld();
    }
    return link;
  }

  private dropLink(link: Link): void {
    const t = this.transports.get(link.peerUid);
    if (t?.full === link) t.full = undefined;
    if (t?.relay === link) t.relay = undefined;
    if (t && !t.full && !t.relay) this.transports.delete(link.peerUid);
    if (this.fib.links.get(link.peerUid) === link) {
      this.fib.links.delete(link.peerUid);
      this.selectTransport(link.peerUid, link);
    }
    this.frames.forget(link);
    link.close();
    this.nativeForward?.schedule();
  }

  /**
   * Points the peer's forwarding entry at its best transport. Packets waiting in the previous one
   * move with it (sent at once when the new one is connected), so a switch drops nothing; frames
   * still in flight on the previous one are received as long as it stays open.
   */
  private selectTransport(peerUid: string, previous = this.fib.links.get(peerUid)): void {
    const current = this.fib.links.get(peerUid);
    const best = bestTransport(current, this.transports.get(peerUid) ?? {});
    if (best === current) return;
    if (best) this.fib.links.set(peerUid, best);
    else this.fib.links.delete(peerUid);
    if (previous && best) {
      this.log.info("link traffic moved", {
        peer: peerUid,
        relayOnly: best.relayOnly,
        path: best.path,
        state: best.state,
      });
      this.inside.resubmit(previous.pending.drain());
    }
  }

  /** The peer's transports, the one carrying its traffic first. */
  private linksOf(peerUid: string): Link[] {
    const t = this.transports.get(peerUid);
    const first = this.fib.links.get(peerUid);
    return [first, t?.full, t?.relay].filter(
      (l, i, all): l is Link => l !== undefined && all.indexOf(l) === i,
    );
  }

  private linkCount(): number {
    let n = 0;
    for (const t of this.transports.values()) n += (t.full ? 1 : 0) + (t.relay ? 1 : 0);
    return n;
  }

  private *allLinks(): Iterable<Link> {
    for (const t of this.transports.values()) {
      if (t.full) yield t.full;
      if (t.relay) yield t.relay;
    }
  }

  private isCurrent(link: Link): boolean {
    return transportOf(this.transports.get(link.peerUid), link.relayOnly) === link;
  }

  private linkOf(peerUid: string, relayOnly?: boolean): Link {
    const link = transportOf(this.transports.get(peerUid), relayOnly);
    if (!link) throw notFound(`peerUid: no ${relayOnly ? "relay-only " : ""}link to ${peerUid}`);
    return link;
  }

  private onLinkState(link: Link, state: LinkState): void {
    if (!this.isCurrent(link)) return;
    if (state === "connected") {
      this.log.info("link connected", {
        peer: link.peerUid,
        relayOnly: link.relayOnly,
        path: link.path,
        remote: link.remote,
      });
      this.selectTransport(link.peerUid);
      if (this.fib.links.get(link.peerUid) === link) {
        this.inside.resubmit(link.pending.drain());
        this.outside.resubmitHeld(this.transitHeld.takeAll());
      }
    } else if (state === "failed") {
      const why =
        link.failure === "handshake" ? "DTLS handshake failed after ICE connected" : "ICE found no path";
      this.log.info("link failed", { peer: link.peerUid, why });
    } else {
      this.log.info(`link ${state}`, { peer: link.peerUid, relayOnly: link.relayOnly });
    }
    if (state !== "connected") this.selectTransport(link.peerUid);
    this.nativeForward?.schedule();
    this.exit?.sync();
    if (state === "new") return;
    this.options.notify("link.state", {
      peerUid: link.peerUid,
      relayOnly: link.relayOnly,
      state,
      ...(state === "connected" && link.path ? { path: link.path } : {}),
      ...(state === "failed" && link.failure ? { reason: link.failure } : {}),
    });
  }

  private checkRxOverload(): void {
    const overload = this.rxWatchdog?.check(this.allLinks());
    if (!overload) return;
    const { link } = overload;
    this.log.warn("link closed: node-datachannel queued more than tune.rxRssLimitMb", {
      peer: link.peerUid,
      relayOnly: link.relayOnly,
      rssMb: Math.round(overload.rssBytes / 2 ** 20),
      grewMb: Math.round(overload.growthBytes / 2 ** 20),
      loopLagMs: Math.round(overload.loopLagMs),
      messagesPerCheck: overload.messages,
    });
    link.closeForRxOverload();
  }

  private onIcc(link: Link, text: string): void {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      link.counters.drop("badIcc");
      return;
    }
    this.options.notify("icc.message", { peerUid: link.peerUid, data: data as never });
  }

  private exitView() {
    return {
      device: () => this.fib.vnic?.name ?? null,
      overlayPrefixes: () =>
        [this.vnicSettings?.ipv4, this.vnicSettings?.ipv6]
          .filter((c): c is string => !!c)
          .map((c) => {
            const p = prefixBytes(c);
            return `${p.network}/${p.length}`;
          }),
      defaultFamilies: (peerUid: string) => {
        const out = new Set<Family>();
        // Only families the vNIC has an address of (the kernel needs a source for them).
        if (this.vnicSettings?.ipv4 && this.fib.routes.get("0.0.0.0/0")?.nextHop === peerUid) out.add(4);
        if (this.vnicSettings?.ipv6 && this.fib.routes.get("::/0")?.nextHop === peerUid) out.add(6);
        return out;
      },
      isConnected: (peerUid: string) => this.fib.links.get(peerUid)?.isConnected === true,
      linkRemotes: () => {
        const out: string[] = [];
        for (const link of this.allLinks()) {
          const remote = link.isConnected ? link.remoteAddress : null;
          if (remote) out.push(remote);
        }
        return out;
      },
    };
  }

  private refreshOverlay(): void {
    for (const e of [...this.overlay.entries()]) this.overlay.delete(e.prefix);
    if (this.vnicSettings?.ipv4) this.overlay.set(this.vnicSettings.ipv4, true);
    if (this.vnicSettings?.ipv6) this.overlay.set(this.vnicSettings.ipv6, true);
  }

  private isOverlayAddress(address: string): boolean {
    let bytes: Uint8Array;
    try {
      bytes = addressBytes(address);
    } catch {
      return false;
    }
    return this.overlay.lookup(bytes, 0, bytes.length === 4 ? 4 : 6) !== null;
  }
}

function stripLength(cidr: string | null): string | null {
  return cidr ? (cidr.split("/")[0] ?? null) : null;
}

/** The tuning knobs among the options (the rest are callbacks and objects the schema does not take). */
function tuneOf(options: DatapathOptions): Partial<DatapathTune> {
  const tune: Record<string, unknown> = {};
  for (const key of Object.keys(DatapathTune.shape) as (keyof DatapathTune)[]) tune[key] = options[key];
  return tune;
}
