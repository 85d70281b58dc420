import type { LinkTimings } from "@tincan/controller";
import { GroupPolicy } from "@tincan/groupvpn";
import { seededRandom } from "../../packages/groupvpn/src/ring.js";
import { DEFAULT_PARAMS, SimNetwork, type SimParams, type Traffic } from "./network.js";
import { SimNode } from "./sim-node.js";
import { VirtualClock } from "./virtual-clock.js";

export const POLICIES = ["proactive", "on-demand", "structured"] as const;
export type PolicyName = (typeof POLICIES)[number];

export interface SimulationOptions {
  policy: PolicyName;
  seed: string;
  params?: Partial<SimParams>;
  /** links.maxLinks (default: enough for a full mesh of `expectedNodes`). */
  maxLinks?: number;
  /** Structured overlay keys (defaults as in the GroupVPN config schema). */
  structured?: Partial<StructuredKeys>;
  expectedNodes: number;
  /** Structured: groups up to this many other members route every member (default: the policy's). */
  eagerRoutesUpTo?: number;
}

const SUBNET_BITS = 16;

export interface StructuredKeys {
  successors: number;
  longDistance: number | "auto";
  shortcutBytesPerSec: number;
}

const STRUCTURED_DEFAULTS: StructuredKeys = {
  successors: 2,
  longDistance: "auto",
  shortcutBytesPerSec: 8192,
};

/** The GroupVPN address of the i-th node (1-based) in 10.10.0.0/16. */
export function addressOf(i: number): string {
  return `10.10.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

/**
 * A GroupVPN of simulated nodes on one virtual clock: nodes join, leave and crash, the network
 * partitions, packets flow; measurements read the fake datapaths' links and routes.
 */
export class Simulation {
  readonly clock = new VirtualClock();
  readonly net: SimNetwork;
  readonly nodes: SimNode[] = [];
  readonly random: () => number;
  readonly hookErrors = new Map<string, number>();
  private readonly timings: LinkTimings;

  constructor(readonly opts: SimulationOptions) {
    this.random = seededRandom(opts.seed);
    this.net = new SimNetwork(this.clock, { ...DEFAULT_PARAMS, ...opts.params });
    const fullMesh = opts.policy === "proactive" ? opts.expectedNodes + 8 : 64;
    this.timings = {
      maxLinks: opts.maxLinks ?? fullMesh,
      idleTimeoutSec: 300,
      relayFallbackSec: 2,
      setupTimeoutSec: 10,
    };
    this.clock.install(seededRandom(`${opts.seed}:math`));
  }

  /** Stops the nodes' timers and gives the global clock back. */
  close(): void {
    for (const n of this.nodes) if (n.up) n.links.stop();
    this.clock.uninstall();
  }

  now(): number {
    return this.clock.now();
  }

  async run(ms: number): Promise<void> {
    await this.clock.advance(ms);
  }

  /** A new node starts and logs in now. */
  join(): SimNode {
    const ipv4 = addressOf(this.nodes.length + 1);
    const policy = this.makePolicy(ipv4);
    const node = new SimNode(this.net, {
      ipv4,
      policy,
      greedyNextHop: (uid) => policy.structured?.nextHop(uid, this.clock.now()) ?? null,
      proactive: this.opts.policy === "proactive",
      linkMembersOnDemand: this.opts.policy === "on-demand",
      links: this.timings,
      onHookError: (hook, err) => {
        const key = `${hook}: ${err.message}`;
        this.hookErrors.set(key, (this.hookErrors.get(key) ?? 0) + 1);
      },
    });
    this.nodes.push(node);
    this.net.add(node);
    node.start();
    return node;
  }

  live(): SimNode[] {
    return this.nodes.filter((n) => n.up);
  }

  /** `count` distinct live nodes picked at random. */
  pick(count: number): SimNode[] {
    const pool = this.live();
    // Only the last `count` places are shuffled (a pair is picked from 10,000 nodes 500 times).
    const end = Math.max(0, pool.length - count);
    for (let i = pool.length - 1; i >= end && i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [pool[i], pool[j]] = [pool[j] as SimNode, pool[i] as SimNode];
    }
    return pool.slice(end).reverse();
  }

  /** Sum of every node's counters (crashed ones included: what they sent counts). */
  totalTraffic(): Traffic {
    const t: Traffic = { xmppStanzas: 0, xmppBytes: 0, iccMessages: 0, iccBytes: 0 };
    for (const n of this.nodes) {
      t.xmppStanzas += n.traffic.xmppStanzas;
      t.xmppBytes += n.traffic.xmppBytes;
      t.iccMessages += n.traffic.iccMessages;
      t.iccBytes += n.traffic.iccBytes;
    }
    return t;
  }

  private makePolicy(ipv4: string): GroupPolicy {
    const links = {
      policy: this.opts.policy,
      ...this.timings,
      ...STRUCTURED_DEFAULTS,
      ...this.opts.structured,
    };
    const clock = this.clock;
    return new GroupPolicy(
      {
        group: "sim",
        vnic: { name: "tincan0", ipv4: `${ipv4}/${SUBNET_BITS}`, mtu: 1280 },
        links,
        routes: { advertise: [], accept: false },
      } as unknown as ConstructorParameters<typeof GroupPolicy>[0],
      {
        clock: {
          now: () => clock.now(),
          setTimer: (fire, ms) => {
            const timer = clock.at(ms, fire);
            return () => clock.cancel(timer);
          },
        },
        random: seededRandom(`${this.opts.seed}:${ipv4}`),
        ...(this.opts.eagerRoutesUpTo !== undefined ? { eagerRoutesUpTo: this.opts.eagerRoutesUpTo } : {}),
      },
    );
  }
}
