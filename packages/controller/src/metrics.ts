import { createServer, type Server } from "node:http";
import {
  DROP_REASONS,
  type DropCounts,
  type LinkInfo,
  LinkPhase,
  RPC_METHODS,
  type RpcMethod,
  splitHostPort,
  type VnicInfo,
} from "@tincan/protocol";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { type DatapathApi, queryAll } from "./datapath-client.js";
import type { LinkEvent, LinkSnapshot } from "./link-manager.js";
import type { Log } from "./logger.js";
import { SampledHistogram } from "./sampled-histogram.js";

/** What the metrics read at scrape time. */
export interface MetricsSources {
  datapath: Pick<DatapathApi, "call">;
  /** The link manager's links (phases). */
  links(): LinkSnapshot[];
  xmppOnline(): boolean;
  /** A peer's bare JID, if known (label `peer`; the UID otherwise). */
  jidOf(uid: string): string | undefined;
}

/** The datapath's part of a scrape: everything link.query and vnic.query report. */
export interface DatapathSample {
  vnic: VnicInfo;
  links: LinkInfo[];
}

/**
 * The controller's Prometheus metrics (prom-client, own registry). Events (setups, fallbacks,
 * reconnects, RPCs) are counted as they happen; per-peer traffic, drops and link states are read
 * from the datapath (link.query, vnic.query) when scraped, never per packet.
 */
export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly setupStarted = new Map<string, number>();

  private readonly datapathUp = this.gauge("tincan_datapath_up", "1 when the datapath answered this scrape");
  private readonly linksByState = this.gauge(
    "tincan_links",
    "datapath transports by state and path (path: none before ICE selected one)",
    ["state", "path"],
  );
  private readonly linkPhases = this.gauge(
    "tincan_link_phases",
    "links of the link manager by phase (README: link manager state machine)",
    ["phase"],
  );
  private readonly setups = this.counter("tincan_link_setups_total", "link setups that ended, by outcome", [
    "outcome",
  ]);
  private readonly setupSeconds = new Histogram({
    name: "tincan_link_setup_duration_seconds",
    help: "time from a link setup's start to its first connected transport",
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly relayFallbacks = this.counter(
    "tincan_relay_fallbacks_total",
    "relay-only transports offered (raced against a direct setup, or after one failed)",
  );
  private readonly peerBytes = this.counter(
    "tincan_peer_bytes_total",
    "bytes over the peer's links (dir: in = received from the peer, out = sent to it)",
    ["peer", "uid", "dir"],
  );
  private readonly peerPackets = this.counter("tincan_peer_packets_total", "packets over the peer's links", [
    "peer",
    "uid",
    "dir",
  ]);
  private readonly drops = this.counter(
    "tincan_drops_total",
    "packets the datapath dropped, by reason (DropReason) and where (vnic, or the sum of all links)",
    ["reason", "where"],
  );
  private readonly heldPackets = this.gauge(
    "tincan_unmapped_held_packets",
    "packets the datapath holds for destinations without a link yet (vnic.query queued)",
  );
  private readonly xmppOnline = this.gauge("tincan_xmpp_online", "1 while the XMPP session is online");
  private readonly xmppReconnects = this.counter(
    "tincan_xmpp_reconnects_total",
    "times the XMPP session came online again after the first login",
  );
  private readonly rpcCalls = this.counter("tincan_rpc_calls_total", "RPC requests to the datapath", [
    "method",
  ]);
  private readonly rpcErrors = this.counter(
    "tincan_rpc_errors_total",
    "RPC requests that failed (code -32099: no answer in time)",
    ["method", "code"],
  );
  private readonly rpcSeconds = new Histogram({
    name: "tincan_rpc_duration_seconds",
    help: "time from an RPC request to its answer (or its timeout)",
    labelNames: ["method"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3, 10],
    registers: [this.registry],
  });
  private readonly sendQueueDelay = new SampledHistogram(
    "tincan_send_queue_delay_seconds",
    "time packets from the vNIC waited in the datapath's send queue before a link took them (0 when sent at once)",
    this.registry,
  );
  private readonly sendQueueBytes = this.gauge(
    "tincan_send_queue_bytes",
    "bytes waiting in the datapath's send queue (vnic.query txQueue)",
  );
  private onlineBefore = false;

  constructor(private readonly sources: MetricsSources) {}

  // ---- events ----------------------------------------------------------------------------------

  onLinkSetup(e: LinkEvent, now = performance.now()): void {
    if (!this.setupStarted.has(e.peer.uid)) this.setupStarted.set(e.peer.uid, now);
  }

  onLinkUp(e: LinkEvent, now = performance.now()): void {
    const started = this.setupStarted.get(e.peer.uid);
    if (started === undefined) return; // adopted, or announced late: no setup of ours
    this.setupStarted.delete(e.peer.uid);
    this.setups.inc({ outcome: "connected" });
    this.setupSeconds.observe((now - started) / 1000);
  }

  onLinkSetupFailed(e: LinkEvent): void {
    this.setupStarted.delete(e.peer.uid);
    this.setups.inc({ outcome: "failed" });
  }

  onRelayAttempt(): void {
    this.relayFallbacks.inc();
  }

  onXmppOnline(): void {
    if (this.onlineBefore) this.xmppReconnects.inc();
    this.onlineBefore = true;
  }

  /** DatapathClient's `onCall`. */
  onRpc(method: RpcMethod, seconds: number, errorCode: number | null): void {
    if (!RPC_METHODS.includes(method)) return;
    this.rpcCalls.inc({ method });
    this.rpcSeconds.observe({ method }, seconds);
    if (errorCode !== null) this.rpcErrors.inc({ method, code: String(errorCode) });
  }

  // ---- scrape ----------------------------------------------------------------------------------

  /** The Prometheus text exposition, after reading the datapath. */
  async render(): Promise<string> {
    this.xmppOnline.set(this.sources.xmppOnline() ? 1 : 0);
    this.linkPhases.reset();
    for (const phase of LinkPhase.options) this.linkPhases.set({ phase }, 0);
    for (const l of this.sources.links()) this.linkPhases.inc({ phase: l.phase });
    let sample: DatapathSample | null = null;
    try {
      const vnic = await this.sources.datapath.call("vnic.query", {});
      const links = await queryAll(this.sources.datapath, "link.query");
      sample = { vnic, links };
    } catch {
      // a datapath that does not answer: its series go, tincan_datapath_up says why
    }
    this.setDatapath(sample);
    return this.registry.metrics();
  }

  /** Sets the datapath's series from one sample (null: the datapath did not answer). */
  setDatapath(sample: DatapathSample | null): void {
    for (const m of [this.linksByState, this.heldPackets, this.sendQueueBytes, this.sendQueueDelay])
      m.reset();
    for (const m of [this.peerBytes, this.peerPackets, this.drops]) m.reset();
    this.datapathUp.set(sample ? 1 : 0);
    if (!sample) return;
    for (const l of sample.links) this.linksByState.inc({ state: l.state, path: l.path ?? "none" });
    const perPeer = new Map<string, LinkInfo[]>();
    for (const l of sample.links) perPeer.set(l.peerUid, [...(perPeer.get(l.peerUid) ?? []), l]);
    for (const [uid, links] of perPeer) {
      const peer = this.sources.jidOf(uid) ?? uid;
      const sum = (k: "rxBytes" | "txBytes" | "rxPackets" | "txPackets") =>
        links.reduce((n, l) => n + l[k], 0);
      this.peerBytes.inc({ peer, uid, dir: "in" }, sum("rxBytes"));
      this.peerBytes.inc({ peer, uid, dir: "out" }, sum("txBytes"));
      this.peerPackets.inc({ peer, uid, dir: "in" }, sum("rxPackets"));
      this.peerPackets.inc({ peer, uid, dir: "out" }, sum("txPackets"));
    }
    this.countDrops("vnic", [sample.vnic.drops]);
    this.countDrops(
      "link",
      sample.links.map((l) => l.drops),
    );
    this.heldPackets.set(sample.vnic.queued);
    const txQueue = sample.vnic.txQueue;
    if (txQueue) {
      this.sendQueueBytes.set(txQueue.bytes);
      this.sendQueueDelay.set(txQueue.delay);
    }
  }

  /** Only reasons of the DropReason union become label values; anything else a datapath sends is ignored. */
  private countDrops(where: "vnic" | "link", counts: DropCounts[]): void {
    for (const reason of DROP_REASONS) {
      const n = counts.reduce((sum, c) => sum + (c[reason] ?? 0), 0);
      if (n > 0) this.drops.inc({ reason, where }, n);
    }
  }

  private gauge<L extends string>(name: string, help: string, labelNames: L[] = []): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  private counter<L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }
}

/** Serves `GET /metrics` on a loopback address ("127.0.0.1:9480"); resolves once listening. */
export async function serveMetrics(metrics: ControllerMetrics, listen: string, log: Log): Promise<Server> {
  const { host, port } = splitHostPort(listen);
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics\n");
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (err: Error) => {
        log.warn("metrics scrape failed", { error: err.message });
        res.writeHead(500, { "content-type": "text/plain" }).end(`${err.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => log.warn("metrics server error", { error: err.message }));
  log.info("serving metrics", { url: `http://${listen}/metrics` });
  return server;
}
