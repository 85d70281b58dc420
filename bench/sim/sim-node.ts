import {
  type LinkEvent,
  LinkManager,
  type LinkTimings,
  type Log,
  type Member,
  nullLog,
  type Policy,
  type PolicyContext,
  PolicyLinks,
  PresenceBatch,
  peerRefOf,
  presenceAddresses,
} from "@tincan/controller";
import type { RpcParamsOf, Signal } from "@tincan/protocol";
import { RouteTable } from "../../packages/controller/src/route-table.js";
import { FakeDatapath } from "./fake-datapath.js";
import type { SimNetwork, Traffic } from "./network.js";

const silent: Log = nullLog;

export interface SimNodeOptions {
  ipv4: string;
  /** The policy under test, built for this node's address. */
  policy: Policy;
  /** links.policy "proactive": PolicyLinks links every member at once. */
  proactive: boolean;
  /** links.policy "on-demand": a packet for a member links to it (structured routes it over the ring). */
  linkMembersOnDemand: boolean;
  links: LinkTimings;
  /**
   * Where a packet to a member this node has no route for would go: the structured policy's greedy
   * next hop, which an unmapped packet or a route request maps (null: none, or another policy).
   */
  greedyNextHop?(uid: string): string | null;
  /** Counts errors thrown by policy hooks (they are bugs: the simulator reports them). */
  onHookError(hook: string, err: Error): void;
}

/**
 * One simulated member: the real LinkManager, RouteTable, PolicyLinks and policy, wired the way the
 * controller core wires them (Controller in controller.ts), over a fake datapath and the network's
 * XMPP. Members are the nodes whose presence arrived; everyone is in the roster group.
 */
export class SimNode implements PolicyContext {
  readonly uid: string;
  readonly ipv4: string;
  readonly bareJid: string;
  readonly fullJid: string;
  readonly member: Member;
  readonly dp: FakeDatapath;
  readonly links: LinkManager;
  readonly policy: Policy;
  readonly log = silent;
  readonly traffic: Traffic = { xmppStanzas: 0, xmppBytes: 0, iccMessages: 0, iccBytes: 0 };
  /** Running (false after a crash or leave). */
  up = true;
  private readonly routeTable: RouteTable;
  private readonly policyLinks: PolicyLinks;
  /** Members that went offline while their link stays connected (see memberOffline). */
  private readonly lingering = new Map<string, Member>();
  /** Members whose presence came and waits for the batch (the controller's PresenceBatch). */
  private readonly cameOnline = new Map<string, SimNode>();
  private readonly presenceBatch = new PresenceBatch(() => this.membersCame());

  constructor(
    private readonly net: SimNetwork,
    private readonly opts: SimNodeOptions,
  ) {
    this.policy = opts.policy;
    this.uid = opts.policy.uid;
    this.ipv4 = opts.ipv4;
    this.bareJid = `${opts.ipv4}@sim`;
    this.fullJid = `${this.bareJid}/tincan`;
    this.member = { bareJid: this.bareJid, fullJid: this.fullJid, tincan: opts.policy.presence() };
    this.dp = new FakeDatapath(this.uid, this.ipv4, net);
    this.routeTable = new RouteTable(this.dp, silent);
    this.links = new LinkManager({
      selfUid: this.uid,
      datapath: this.dp,
      signals: { sendSignal: async (jid, s) => net.sendSignal(this, jid, s) },
      log: silent,
      links: opts.links,
      hasTurn: false,
      admit: (peer) => net.nodes.has(peer.uid),
    });
    this.policyLinks = new PolicyLinks({
      proactive: opts.proactive,
      linkMembersOnDemand: opts.linkMembersOnDemand,
      ensureLink: (peer, o) => this.links.ensureLink(peer, o),
      proactiveFor: (m) => this.policy.proactiveFor?.(m) ?? false,
      peers: () => this.peers(),
      addressesOf: (m) => this.policy.peerAddresses?.(m) ?? presenceAddresses(m.tincan),
      routes: () => this.routes(),
    });
    this.wire();
  }

  /** The next hop of a packet to `dst` (address of member `uid`): its route, else the greedy choice. */
  nextHopTo(dst: string, uid: string): string | undefined {
    return this.dp.nextHopFor(dst) ?? this.opts.greedyNextHop?.(uid) ?? undefined;
  }

  get datapath(): PolicyContext["datapath"] {
    return this.dp;
  }

  /** Starts like the controller: onStart, link polling, XMPP login. */
  start(): void {
    this.hook("onStart", () => this.policy.onStart?.(this));
    this.links.start();
    this.net.login(this);
  }

  /** Vanishes with no goodbye. */
  crash(): void {
    this.halt();
    this.net.crashed(this);
  }

  /** Shuts down: links close, presence goes unavailable. */
  leave(): void {
    this.halt();
    this.net.left(this);
  }

  // ---- PolicyContext -----------------------------------------------------------------------------------

  peers(): Member[] {
    const out: Member[] = [];
    for (const n of this.net.online.values()) if (n !== this) out.push(n.member);
    return out;
  }

  peer(uid: string): Member | undefined {
    const n = uid === this.uid ? undefined : this.net.online.get(uid);
    return n?.member ?? this.lingering.get(uid);
  }

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

  // ---- from the network --------------------------------------------------------------------------------

  memberOnline(n: SimNode): void {
    if (!this.up) return;
    this.lingering.delete(n.uid);
    void this.links.updatePeer(peerRefOf(n.member));
    this.cameOnline.set(n.uid, n);
    this.presenceBatch.poke();
  }

  /** The batch of members that came online, as Controller.refreshMembers hands it to the policy. */
  private membersCame(): void {
    const came: Member[] = [];
    for (const n of this.cameOnline.values()) if (this.net.online.get(n.uid) === n) came.push(n.member);
    this.cameOnline.clear();
    if (came.length === 0) return;
    const p = this.policy;
    this.hook("onPeersOnline", async () => {
      if (p.onPeersOnline) await p.onPeersOnline(came, this);
      else for (const m of came) await p.onPeerOnline?.(m, this);
      for (const m of came) await this.policyLinks.peerOnline(m);
    });
  }

  /** Still a member (in the roster), offline: a connected link keeps it until the datapath drops it. */
  memberOffline(n: SimNode): void {
    if (!this.up) return;
    // Came and went within one batch: the controller never saw it.
    if (this.cameOnline.get(n.uid) === n) {
      this.cameOnline.delete(n.uid);
      return;
    }
    this.lingering.set(n.uid, n.member);
    void this.links.peerOffline(n.uid).then((kept) => {
      if (kept || this.lingering.get(n.uid) !== n.member) return;
      this.lingering.delete(n.uid);
      this.hook("onPeerOffline", () => this.policy.onPeerOffline?.(n.member, this));
    });
  }

  onSignal(from: SimNode, signal: Signal): void {
    if (!this.up || signal.from !== from.uid || this.net.online.get(from.uid) !== from) return;
    void this.links.handleSignal(peerRefOf(from.member), signal);
  }

  private halt(): void {
    this.up = false;
    this.presenceBatch.stop();
    this.links.stop();
    this.routeTable.stop();
    this.dp.alive = false;
  }

  private wire(): void {
    const p = this.policy;
    this.dp.on("packet.unmapped", (n) =>
      this.hook("onPacketUnmapped", async () => {
        await this.policyLinks.packetUnmapped(n.dst);
        await p.onPacketUnmapped?.(n, this);
      }),
    );
    this.dp.on("icc.message", (n) => this.hook("onIccMessage", () => p.onIccMessage?.(n, this)));
    this.links.on("link-setup", (e: LinkEvent) => this.hook("onLinkSetup", () => p.onLinkSetup?.(e, this)));
    this.links.on("link-up", (e: LinkEvent) => this.hook("onLinkUp", () => p.onLinkUp?.(e, this)));
    this.links.on("link-down", (e: LinkEvent) => this.hook("onLinkDown", () => p.onLinkDown?.(e, this)));
    this.links.on("link-removed", (uid: string) => {
      const old = this.lingering.get(uid);
      if (!old || !this.up) return;
      this.lingering.delete(uid);
      this.hook("onPeerOffline", () => p.onPeerOffline?.(old, this));
    });
  }

  private hook(name: string, fn: () => void | Promise<void>): void {
    if (!this.up) return;
    Promise.resolve()
      .then(fn)
      .catch((err: Error) => this.opts.onHookError(name, err));
  }
}
