import { unlink } from "node:fs/promises";
import type { Server } from "node:http";
import { dirname, join } from "node:path";
import type { RunningDatapath } from "@tincan/datapath";
import {
  type ControllerConfig,
  type ControllerStatus,
  defaultDeviceName,
  type HelloResult,
  handleLogLevelSignals,
  type MemberStatus,
  type OverlayMap,
  type RpcParamsOf,
  type Signal,
  VERSION,
  writeFileAtomic,
} from "@tincan/protocol";
import { Admission, type RosterItem } from "./admission.js";
import type { Loaded } from "./config.js";
import { DatapathClient, queryAll } from "./datapath-client.js";
import type { InProcessDatapath } from "./in-process-datapath.js";
import { type LinkEvent, LinkManager, type PeerRef } from "./link-manager.js";
import type { Log, RootLogger } from "./logger.js";
import { ControllerMetrics, serveMetrics } from "./metrics.js";
import { type AddressChange, NetworkWatch } from "./network-watch.js";
import {
  type Member,
  type PeerAddresses,
  type Policy,
  type PolicyContext,
  PolicyLinks,
  PresenceBatch,
  peerRefOf,
  presenceAddresses,
} from "./policy.js";
import { RouteTable } from "./route-table.js";
import { SignalLimiter, signalLimitsFrom } from "./signal-limiter.js";
import { MapServer } from "./web/map-server.js";
import { buildOverlay } from "./web/overlay-model.js";
import { type SignalEvent, sameRoutes, XmppSession } from "./xmpp.js";

/**
 * The config keys the core uses: the core schema every controller extends. A controller may add link
 * policies of its own (GroupVPN: `structured`): the core then sets no member links up itself.
 */
export type CoreConfig = Loaded<
  Pick<ControllerConfig, "datapath" | "xmpp" | "vnic" | "ice" | "log"> &
    Partial<Pick<ControllerConfig, "web">>
> &
  Partial<Pick<ControllerConfig, "metrics">> & {
    links: Omit<ControllerConfig["links"], "policy"> & { policy: string };
  };

export interface ControllerOptions {
  /** "groupvpn" / "socialvpn": used in logs and the status file. */
  name: string;
  config: CoreConfig;
  logger: RootLogger;
  policy: Policy;
  /** Status file for tincanctl; default `<tokenFile dir>/controller-status.json`; null = none. */
  statusFile?: string | null;
}

/** Written for `tincanctl status`: the ControllerStatus schema in @tincan/protocol (status.ts). */
export type { ControllerStatus };

/** The status file is rewritten this often besides on changes, so ages and "retry in" stay fresh. */
const STATUS_REFRESH_MS = 5000;

/** After the first roster: time for presence to settle before adopted state is checked. */
const ADOPTED_CHECK_MS = 8000;

export function defaultStatusFile(tokenFile: string): string {
  return join(dirname(tokenFile), "controller-status.json");
}

/**
 * Wires config, logger, datapath client, XMPP session, admission and link manager, and runs the startup
 * sequence: hello -> vnic.configure -> ice.configure -> sync links/routes -> XMPP login -> presence.
 * Links are wanted per `links.policy` (PolicyLinks); the policy sets the routes (`setRoute`) and is
 * handed this controller as its PolicyContext in every hook.
 */
export class Controller implements PolicyContext {
  readonly datapath: DatapathClient;
  readonly xmpp: XmppSession;
  readonly admission: Admission;
  readonly links: LinkManager;
  /** Changes of this host's addresses (roaming); `change` events (AddressChange). */
  readonly network: NetworkWatch;
  readonly log: Log;
  readonly metrics: ControllerMetrics;
  private metricsServer: Server | null = null;
  /** The overlay map page (`web.listen`), if configured. */
  readonly map: MapServer | null;
  private readonly members = new Map<string, Member>();
  /** Members (devices) seen online, by UID: the map shows them offline while they stay in the roster. */
  private readonly seenMembers = new Map<string, Member>();
  /** Members that went offline while their link stays connected (routes kept; see refreshMembers). */
  private readonly lingering = new Map<string, Member>();
  private readonly signalLimiter: SignalLimiter;
  private readonly routeTable: RouteTable;
  private readonly policyLinks: PolicyLinks;
  /** Presence changes, coalesced into one members refresh (PRESENCE_BATCH_MS). */
  private readonly presenceBatch = new PresenceBatch(() => this.refreshMembers());
  private readonly statusFile: string | null;
  private statusTimer: NodeJS.Timeout | null = null;
  private statusRefresh: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private datapathProcess: HelloResult | null = null;
  private stopped = false;
  private readonly unknownSenderLogged = new Set<string>();
  private adoptedChecked = false;
  /** Addresses were removed: offer every link again once XMPP is back online. */
  private relinkOnLogin = false;

  constructor(private readonly opts: ControllerOptions) {
    const { config, logger, policy } = opts;
    this.log = logger.component(opts.name);
    this.statusFile =
      opts.statusFile === undefined ? defaultStatusFile(config.datapath.tokenFile) : opts.statusFile;
    this.datapath = new DatapathClient({
      rpc: config.datapath.rpc,
      tokenFile: config.datapath.tokenFile,
      log: logger.component("rpc"),
      watchdogSec: config.datapath.watchdogSec,
      restartOnHang: config.datapath.restartOnHang,
      onCall: (method, seconds, code) => this.metrics.onRpc(method, seconds, code),
    });
    this.routeTable = new RouteTable(this.datapath, logger.component("routes"));
    this.xmpp = new XmppSession({
      service: config.xmpp.service,
      domain: config.xmpp.domain,
      username: config.xmpp.username,
      password: config.xmpp.password,
      resource: config.xmpp.resource ?? defaultDeviceName(),
      caFile: config.xmpp.caFile,
      pingIntervalSec: config.xmpp.pingIntervalSec,
      log: logger.component("xmpp"),
    });
    this.network = new NetworkWatch({ ignoreInterfaces: [config.vnic.name] });
    this.admission = new Admission({
      ownJid: this.xmpp.bareJid,
      refuse: (item) => policy.refuse?.(item) ?? null,
      log: logger.component("admission"),
    });
    this.signalLimiter = new SignalLimiter(logger.component("signals"), signalLimitsFrom(config.links));
    this.links = new LinkManager({
      selfUid: policy.uid,
      datapath: this.datapath,
      signals: this.xmpp,
      log: logger.component("links"),
      links: config.links,
      hasTurn: config.ice.turn.length > 0,
      admit: (peer) => this.admission.allows(peer.bareJid, "link"),
      maxBackoffMs: config.links.retryMaxSec * 1000,
      maxUpgradeBackoffMs: config.links.directRetryMaxSec * 1000,
    });
    this.policyLinks = new PolicyLinks({
      proactive: config.links.policy === "proactive",
      linkMembersOnDemand: config.links.policy === "on-demand",
      ensureLink: (peer, o) => this.links.ensureLink(peer, o),
      proactiveFor: (m) => policy.proactiveFor?.(m) ?? false,
      peers: () => this.peers(),
      addressesOf: (m) => this.addressesOf(m),
      routes: () => this.routes(),
    });
    this.metrics = new ControllerMetrics({
      datapath: this.datapath,
      links: () => this.links.links(),
      xmppOnline: () => this.xmpp.isOnline,
      jidOf: (uid) => (this.members.get(uid) ?? this.lingering.get(uid))?.bareJid,
    });
    this.map = config.web?.listen
      ? new MapServer({
          listen: config.web.listen,
          snapshot: () => this.overlay(),
          log: logger.component("web"),
        })
      : null;
    this.wire();
  }

  /** The process logger (run-time level changes). */
  get logger(): RootLogger {
    return this.opts.logger;
  }

  get policy(): Policy {
    return this.opts.policy;
  }

  /** Online peers that pass admission, by UID. */
  peers(): Member[] {
    return [...this.members.values()];
  }

  peer(uid: string): Member | undefined {
    return this.members.get(uid);
  }

  /** A PeerRef for the link manager, if the peer is online. */
  peerRef(uid: string): PeerRef | undefined {
    const m = this.members.get(uid);
    return m && peerRefOf(m);
  }

  /** A member's addresses as this node knows it (the policy's view, else those of its presence). */
  addressesOf(m: Member): PeerAddresses {
    return this.opts.policy.peerAddresses?.(m) ?? presenceAddresses(m.tincan);
  }

  /**
   * Sets a route; it counts as ours from now on (re-set after a datapath restart, removed on stop;
   * see RouteTable for RPCs that get no answer).
   */
  async setRoute(params: RpcParamsOf<"route.set">): Promise<void> {
    await this.routeTable.set(params);
  }

  async removeRoute(prefix: string): Promise<void> {
    await this.routeTable.remove(prefix);
  }

  routes(): RpcParamsOf<"route.set">[] {
    return this.routeTable.list();
  }

  async ensureLink(peer: Member, opts: { pinned: boolean }): Promise<void> {
    await this.links.ensureLink(peerRefOf(peer), opts);
  }

  async removeLink(peerUid: string, reason: string): Promise<void> {
    await this.links.removeLink(peerUid, reason);
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    const listen = this.opts.config.metrics?.listen;
    if (listen) this.metricsServer = await serveMetrics(this.metrics, listen, this.log);
    const hello = await this.waitForDatapath();
    this.datapathProcess = hello;
    this.log.info("datapath answered", { version: hello.version, startedAt: hello.startedAt });
    await this.configureDatapath();
    await this.links.sync();
    for (const r of await queryAll(this.datapath, "route.query")) this.routeTable.adopt(r);
    this.hook("onStart", () => this.opts.policy.onStart?.(this));
    await this.xmpp.setPresence(this.policy.presence());
    this.links.start();
    this.network.start();
    this.statusRefresh = setInterval(() => this.scheduleStatus(), STATUS_REFRESH_MS);
    this.statusRefresh.unref();
    await this.map?.start().catch((err: Error) => {
      this.log.error("cannot serve the overlay map", { listen: config.web?.listen, error: err.message });
    });
    try {
      await this.xmpp.start();
    } catch (err) {
      this.log.error("XMPP login failed; retrying in the background", { error: (err as Error).message });
    }
  }

  /**
   * Says goodbye on XMPP and closes everything. Links and routes stay in the datapath: traffic keeps
   * flowing, the next controller adopts them, and the datapath's liveness checks remove a link whose
   * peer dies meanwhile. Stopping `tincan` stops the VPN.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.presenceBatch.stop();
    this.log.info("stopping: links and routes stay in the datapath");
    this.links.stop();
    this.network.stop();
    this.routeTable.stop();
    await this.xmpp.stop().catch(() => {});
    await this.map?.stop();
    this.datapath.close();
    this.metricsServer?.close();
    if (this.statusTimer) clearTimeout(this.statusTimer);
    if (this.statusRefresh) clearInterval(this.statusRefresh);
    if (this.statusFile) await unlink(this.statusFile).catch(() => {});
  }

  // ---- wiring --------------------------------------------------------------------------------------

  private wire(): void {
    const p = this.opts.policy;
    this.datapath.on("datapath-restarted", (hello) => {
      this.datapathProcess = hello;
      void this.onDatapathRestarted();
    });
    this.datapath.on("datapath-health", () => this.scheduleStatus());
    this.datapath.on("packet.unmapped", (n) =>
      this.hook("onPacketUnmapped", async () => {
        await this.policyLinks.packetUnmapped(n.dst);
        await p.onPacketUnmapped?.(n, this);
      }),
    );
    this.datapath.on("icc.message", (n) => {
      this.map?.changed();
      this.hook("onIccMessage", () => p.onIccMessage?.(n, this));
    });

    this.xmpp.on("roster", (items: RosterItem[]) => {
      if (!this.adoptedChecked) {
        // Links and routes adopted at start belong to whoever was a member then: once the roster and
        // presence have settled, drop those of peers that are no members now.
        this.adoptedChecked = true;
        setTimeout(() => void this.dropAdoptedNonMembers(), ADOPTED_CHECK_MS).unref();
      }
      this.admission.setRoster(items);
      this.presenceBatch.now();
      this.hook("onRosterChanged", () => p.onRosterChanged?.(items, this));
    });
    this.xmpp.on("peer-online", () => this.presenceBatch.poke());
    this.xmpp.on("peer-offline", () => this.presenceBatch.poke());
    this.xmpp.on("online", () => {
      this.scheduleStatus();
      if (this.relinkOnLogin) {
        this.relinkOnLogin = false;
        void this.links.relinkAll("local addresses changed");
      }
    });
    this.xmpp.on("signal", (e: SignalEvent) => this.onSignal(e));
    this.network.on("change", (c: AddressChange) => {
      // The XMPP connection may be bound to an address that is gone: log in again from the new one.
      this.log.info("local addresses changed", { added: c.added, removed: c.removed });
      // Links may use an address that is gone, and only this side knows: set them up again from
      // the new address once signalling works again (an address that only appeared breaks nothing).
      if (c.removed.length > 0) this.relinkOnLogin = true;
      this.xmpp.reconnectNow("local addresses changed");
    });

    this.links.on("link-setup", (e: LinkEvent) => this.hook("onLinkSetup", () => p.onLinkSetup?.(e, this)));
    this.links.on("link-up", (e: LinkEvent) => {
      this.scheduleStatus();
      this.hook("onLinkUp", () => p.onLinkUp?.(e, this));
    });
    this.links.on("link-down", (e: LinkEvent) => {
      this.scheduleStatus();
      this.hook("onLinkDown", () => p.onLinkDown?.(e, this));
    });
    this.links.on("link-removed", (uid: string) => this.onLinkRemoved(uid));
    this.links.on("link-setup", (e: LinkEvent) => this.metrics.onLinkSetup(e));
    this.links.on("link-up", (e: LinkEvent) => this.metrics.onLinkUp(e));
    this.links.on("link-setup-failed", (e: LinkEvent) => this.metrics.onLinkSetupFailed(e));
    this.links.on("relay-attempt", () => this.metrics.onRelayAttempt());
    this.xmpp.on("online", () => this.metrics.onXmppOnline());
  }

  /**
   * The link manager forgot a peer. An offline member whose link kept it now goes (the policy removes
   * its routes); routes adopted for a peer that never showed up in presence go with its link.
   */
  private onLinkRemoved(uid: string): void {
    if (this.stopped || this.members.has(uid)) return;
    const old = this.lingering.get(uid);
    if (old) {
      this.lingering.delete(uid);
      this.peerOffline(old);
      return;
    }
    for (const r of this.routeTable.list()) {
      if (r.peerUid === uid) void this.removeRoute(r.prefix).catch(() => {});
    }
  }

  /** Recomputes the members from presence + roster, reporting who came and went. */
  private refreshMembers(): void {
    const next = new Map<string, Member>();
    for (const pres of this.xmpp.peers()) {
      if (!this.admission.allows(pres.bareJid, "presence")) continue;
      if (this.opts.policy.verifyPeer && !this.opts.policy.verifyPeer(pres)) continue;
      const uid = pres.tincan.uid;
      const existing = next.get(uid);
      if (existing && existing.bareJid !== pres.bareJid) {
        this.log.warn("two JIDs announce the same UID; ignoring the second", {
          uid,
          jids: [existing.bareJid, pres.bareJid],
        });
        continue;
      }
      next.set(uid, { ...pres, name: this.admission.item(pres.bareJid)?.name });
    }
    for (const [uid, old] of this.members) {
      const now = next.get(uid);
      if (now && now.bareJid === old.bareJid) continue;
      this.members.delete(uid);
      this.memberGone(old, !now && this.admission.isMember(old.bareJid));
    }
    for (const [uid, old] of this.lingering) {
      if (next.get(uid)?.bareJid === old.bareJid) continue; // back online: below
      if (this.admission.isMember(old.bareJid)) continue; // still offline, still a member
      this.lingering.delete(uid);
      void this.links.peerGone(uid, "peer left the roster");
      this.peerOffline(old);
    }
    const came: Member[] = [];
    for (const [uid, m] of next) {
      const old = this.members.get(uid);
      this.members.set(uid, m);
      if (!old) {
        // Back online while its link stayed up, or a link adopted from the datapath at start: the link
        // learns where the peer is now.
        this.lingering.delete(uid);
        void this.links.updatePeer(peerRefOf(m));
        came.push(m);
      } else if (old.fullJid !== m.fullJid) void this.links.updatePeer(peerRefOf(m));
      else if (
        old.tincan.ipv4 !== m.tincan.ipv4 ||
        old.tincan.ipv6 !== m.tincan.ipv6 ||
        !sameRoutes(old.tincan, m.tincan)
      )
        this.peerOnline(m);
    }
    this.peersOnline(came);
    this.scheduleStatus();
  }

  /** New members: one onPeersOnline for all when the policy takes them so, else onPeerOnline each. */
  private peersOnline(came: Member[]): void {
    const { policy } = this.opts;
    if (came.length === 0) return;
    if (!policy.onPeersOnline) {
      for (const m of came) this.peerOnline(m);
      return;
    }
    this.hook("onPeersOnline", async () => {
      await policy.onPeersOnline?.(came, this);
      for (const m of came) await this.policyLinks.peerOnline(m);
    });
  }

  /** The policy sets the member's routes, then (proactive) the core links to it. */
  private peerOnline(m: Member): void {
    this.hook("onPeerOnline", async () => {
      await this.opts.policy.onPeerOnline?.(m, this);
      await this.policyLinks.peerOnline(m);
    });
  }

  private peerOffline(m: Member): void {
    this.hook("onPeerOffline", () => this.opts.policy.onPeerOffline?.(m, this));
  }

  /**
   * A member is no longer online. Presence only says whether signalling is possible, not whether the
   * link works: when it merely went offline (still a member) and its link is connected, the link and
   * its routes stay until the datapath reports the link dead (onLinkRemoved). Otherwise (it left the
   * roster or group, or had no working link) its link and routes go now.
   */
  private memberGone(old: Member, stillMember: boolean): void {
    const uid = old.tincan.uid;
    if (!stillMember) {
      void this.links.peerGone(uid, "peer left the roster");
      this.peerOffline(old);
      return;
    }
    this.lingering.set(uid, old);
    void this.links.peerOffline(uid).then((kept) => {
      if (kept || this.lingering.get(uid) !== old) return;
      this.lingering.delete(uid);
      this.peerOffline(old);
    });
  }

  private onSignal(e: SignalEvent): void {
    if (!this.admission.allows(e.fromBareJid, "signal")) return;
    const pres = this.xmpp.peer(e.fromFullJid);
    // Its presence may wait in the batch: members are refreshed first.
    if (pres && this.presenceBatch.pending && this.members.get(pres.tincan.uid)?.fullJid !== e.fromFullJid)
      this.presenceBatch.now();
    const member = pres && this.members.get(pres.tincan.uid);
    if (!pres || !member || member.fullJid !== e.fromFullJid) {
      if (!this.unknownSenderLogged.has(e.fromFullJid)) {
        this.unknownSenderLogged.add(e.fromFullJid);
        this.log.info("ignored a signal from a resource without tincan presence (logged once)", {
          from: e.fromFullJid,
        });
      }
      return;
    }
    const signal: Signal = e.signal;
    if (signal.from !== pres.tincan.uid) {
      this.log.warn("ignored a signal whose UID differs from the sender's presence", { from: e.fromFullJid });
      return;
    }
    if (!this.signalLimiter.take(pres.bareJid)) {
      this.scheduleStatus();
      return;
    }
    void this.links.handleSignal(peerRefOf(member), signal);
  }

  private async configureDatapath(): Promise<void> {
    const { config } = this.opts;
    const vnic = await this.datapath.call("vnic.configure", this.opts.policy.vnic());
    this.log.info("vnic configured", { name: vnic.name, mtu: vnic.mtu });
    this.hook("onVnicConfigured", () => this.opts.policy.onVnicConfigured?.(vnic, this));
    await this.datapath.call("ice.configure", {
      stun: config.ice.stun,
      turn: config.ice.turn.map((t) =>
        t.secret !== undefined
          ? { urls: t.urls, username: t.username, secret: t.secret, ttlSec: t.ttlSec }
          : { urls: t.urls, username: t.username, credential: t.credential },
      ),
      portRange: config.ice.portRange,
      udpMux: config.ice.udpMux,
      bindAddress: config.ice.bindAddress,
    });
  }

  private async onDatapathRestarted(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.configureDatapath();
      await this.routeTable.reapply();
      await this.links.resync();
      this.hook("onDatapathRestarted", () => this.opts.policy.onDatapathRestarted?.(this));
    } catch (err) {
      this.log.error("re-sync with the restarted datapath failed", { error: (err as Error).message });
    }
  }

  /**
   * Once presence has settled after start: adopted links of peers not online stay while the datapath
   * keeps them connected (their peer may be restarting too; a dead one is removed by the datapath's
   * liveness checks, and its routes with it, see onLinkRemoved); routes of peers with neither presence
   * nor a link go.
   */
  private async dropAdoptedNonMembers(): Promise<void> {
    if (this.stopped) return;
    const kept = this.links
      .links()
      .filter((l) => !this.members.has(l.peer.uid) && !this.lingering.has(l.peer.uid))
      .map((l) => l.peer.uid);
    if (kept.length > 0)
      this.log.info("adopted links of peers not online stay while they are connected", { peerUids: kept });
    for (const r of this.routeTable.list()) {
      if (
        r.peerUid === this.policy.uid ||
        this.members.has(r.peerUid) ||
        this.lingering.has(r.peerUid) ||
        this.links.isConnected(r.peerUid)
      )
        continue;
      this.log.info("removing an adopted route of a peer that is not online and has no link", {
        prefix: r.prefix,
      });
      await this.removeRoute(r.prefix).catch(() => {});
    }
  }

  private async waitForDatapath() {
    let delay = 1000;
    for (;;) {
      try {
        return await this.datapath.start();
      } catch (err) {
        if (this.stopped) throw err;
        this.log.warn("datapath not answering; retrying", { error: (err as Error).message, inMs: delay });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  private hook(name: string, fn: () => void | Promise<void>): void {
    Promise.resolve()
      .then(fn)
      .catch((err: Error) => this.log.error("policy hook failed", { hook: name, error: err.message }));
  }

  private scheduleStatus(): void {
    this.map?.changed();
    if (!this.statusFile || this.statusTimer || this.stopped) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = null;
      void this.writeStatus();
    }, 500);
    this.statusTimer.unref();
  }

  /** Every roster entry: online or offline members, and refused entries with the reason. */
  private memberStatus(): MemberStatus[] {
    const online = new Set([...this.members.values()].map((m) => m.bareJid));
    const named = (jid: string) => {
      const name = this.admission.item(jid)?.name;
      return name ? { name } : {};
    };
    const members: MemberStatus[] = this.admission.members().map((jid) => ({
      jid,
      ...named(jid),
      state: online.has(jid) ? "online" : "offline",
    }));
    for (const r of this.admission.refusals()) members.push({ ...r, state: "refused" });
    return members.sort((a, b) => a.jid.localeCompare(b.jid));
  }

  /** The overlay as this node knows it: members, its links, the links its neighbours announced. */
  async overlay(): Promise<OverlayMap> {
    const links = await queryAll(this.datapath, "link.query");
    const uidOfDevice = new Map([...this.members.values()].map((m) => [m.fullJid, m.tincan.uid]));
    for (const m of this.members.values()) this.seenMembers.set(m.tincan.uid, m);
    for (const [uid, m] of this.seenMembers) {
      // Gone from the roster, or the same device (resource) is online under another UID now.
      const now = uidOfDevice.get(m.fullJid);
      if (!this.admission.isMember(m.bareJid) || (now !== undefined && now !== uid))
        this.seenMembers.delete(uid);
    }
    const online = [...this.members.values()];
    const offline = [...this.lingering.values(), ...this.seenMembers.values()].filter(
      (m) => !this.members.has(m.tincan.uid),
    );
    return buildOverlay({
      controller: this.opts.name,
      self: {
        uid: this.policy.uid,
        jid: this.xmpp.fullJid?.split("/")[0] ?? null,
        online: this.xmpp.isOnline,
        ...presenceAddresses(this.policy.presence()),
      },
      online,
      offline,
      links,
      neighborLinks: this.policy.neighborLinks?.() ?? new Map(),
      refused: this.admission.refusals(),
      now: Date.now(),
    });
  }

  /** The link manager's view of each link, with the policy's role for it (structured overlay). */
  private linkStatus(): ControllerStatus["links"] {
    const links = this.links.status();
    for (const [uid, role] of this.opts.policy.linkRoles?.() ?? []) {
      const link = links[uid];
      if (link) link.role = role;
    }
    return links;
  }

  private async writeStatus(): Promise<void> {
    if (!this.statusFile || this.stopped) return;
    const status: ControllerStatus = {
      controller: this.opts.name,
      pid: process.pid,
      jid: this.xmpp.fullJid,
      uid: this.opts.policy.uid,
      updatedAt: Date.now(),
      peers: {},
      signalDrops: { rateLimited: this.signalLimiter.dropped, setupInProgress: this.links.offersDropped },
      datapath: this.datapath.health(),
      version: VERSION,
      startedAt: this.startedAt,
      datapathProcess: this.datapathProcess && {
        version: this.datapathProcess.version,
        startedAt: this.datapathProcess.startedAt,
        pid: this.datapathProcess.pid,
      },
      xmpp: this.xmpp.status(),
      members: this.memberStatus(),
      links: this.linkStatus(),
      ...(this.opts.policy.routerStatus ? { routes: this.opts.policy.routerStatus() } : {}),
    };
    for (const [uid, m] of [...this.members, ...this.lingering]) {
      const device = m.fullJid.slice(m.fullJid.indexOf("/") + 1);
      status.peers[uid] = {
        jid: m.bareJid,
        ...(device ? { device } : {}),
        ...(m.name ? { name: m.name } : {}),
        ...this.addressesOf(m),
      };
    }
    try {
      await writeFileAtomic(this.statusFile, `${JSON.stringify(status, null, 2)}\n`, 0o644);
    } catch (err) {
      this.log.debug("cannot write the status file", {
        file: this.statusFile,
        error: (err as Error).message,
      });
    }
  }
}

/**
 * Runs a controller in the foreground: start, then stop cleanly on SIGINT/SIGTERM (a second signal
 * exits at once). Exits 1 when start fails. With `datapath` (a one-process node) the datapath starts
 * first in this process and stops after the controller; SIGHUP stops both too, the log-level
 * signals set both, and a datapath that fails ends the process (its supervisor restarts the node).
 */
export async function runController(ctl: Controller, log: Log, datapath?: InProcessDatapath): Promise<void> {
  let running: RunningDatapath | undefined;
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info(`got ${sig}; shutting down`);
    const force = setTimeout(() => process.exit(1), 5000);
    force.unref();
    void ctl.stop().finally(() => {
      if (!running) process.exit(0);
      running.log.info("shutting down", { signal: sig });
      running.stop();
      // As `tincan` does: the links' close messages get out before the process ends.
      setTimeout(() => process.exit(0), 100).unref();
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  if (datapath) process.on("SIGHUP", onSignal);
  const configured = ctl.logger.level;
  handleLogLevelSignals((level) => {
    ctl.logger.setLevel(level);
    log.warn("log level set", { level, by: "signal" });
  }, configured);
  if (datapath) {
    try {
      running = await datapath.start();
      running.followLogLevelSignals();
    } catch (err) {
      log.error("datapath failed to start", { error: (err as Error).message });
      process.exit((err as { exitCode?: number }).exitCode ?? 1);
    }
  }
  try {
    await ctl.start();
    log.info("controller running");
  } catch (err) {
    log.error("controller failed to start", { error: (err as Error).message });
    await ctl.stop().catch(() => {});
    running?.stop();
    process.exit(1);
  }
}
