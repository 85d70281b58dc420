// Starts TinCan-TS nodes (tincan datapath + a controller) inside lab hosts, with config files
// written into the lab dir, and reads their status with `tincanctl status --json`.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { uidForIpv4 } from "@tincan/protocol";
import {
  type CoturnHandle,
  type Host,
  type Lab,
  type LabProcess,
  sleep,
  type XmppServerHandle,
} from "../lab/index.js";
import { DAEMON_NODE_FLAGS, REPO, TINCAN_BIN, waitFor } from "./datapath-driver.js";

const TINCANCTL = join(REPO, "packages/controller/dist/tincanctl.js");
const CONTROLLER_BIN = {
  groupvpn: join(REPO, "packages/groupvpn/dist/cli.js"),
  socialvpn: join(REPO, "packages/socialvpn/dist/cli.js"),
};

export const PASSWORD = "lab-password-1";
/** The routing table a member's datapath sends everything to while it uses an exit node (README, "Exit node"). */
export const EXIT_TABLE = "21572";

export interface NodeOptions {
  kind?: "groupvpn" | "socialvpn";
  /** XMPP user (local part). */
  user: string;
  /** Device name: the XMPP resource (`xmpp.resource`); nodes of one user need different ones. */
  device?: string;
  /** vNIC address with prefix, e.g. "10.10.0.1/16". */
  ipv4: string;
  ipv6?: string;
  /** The XMPP server (prosody or ejabberd). */
  prosody: XmppServerHandle;
  coturn?: CoturnHandle;
  group?: string;
  links?: {
    policy?: "proactive" | "on-demand" | "structured";
    idleTimeoutSec?: number;
    /** Structured overlay (GroupVPN). */
    successors?: number;
    longDistance?: number | "auto";
    shortcutBytesPerSec?: number;
    relayFallbackSec?: number;
    maxLinks?: number;
    /** SocialVPN: relay for buddies while their direct links are set up. */
    relayForBuddies?: boolean;
  };
  logLevel?: string;
  /** Extra config keys (SocialVPN: dns, stateFile). */
  extra?: Record<string, unknown>;
  /** Keys of the `ice` section over the default (e.g. portRange, udpMux, turn). */
  ice?: Record<string, unknown>;
  /** Extra keys of the `xmpp` section (e.g. pingIntervalSec). */
  xmpp?: Record<string, unknown>;
  /**
   * Commands to run instead of the workspace's (e.g. an installed package's, under setpriv):
   * argv prefixes that the usual flags are appended to.
   */
  commands?: { tincan?: string[]; controller?: string[]; tincanctl?: string[] };
  /**
   * A one-process node: the controller runs the datapath in its own process (`--with-datapath`, with
   * a tincan.json of these keys over rpc, tokenFile and the log level); `tincan` is then that process.
   */
  oneProcess?: { tincan?: Record<string, unknown> };
  /** How long the controller may take to log in and run (default 30 s; many nodes start slower), and the datapath (at least 15 s). */
  startTimeoutMs?: number;
}

export interface LinkStatus {
  peerUid: string;
  state: string;
  path: string | null;
  [k: string]: unknown;
}

export class VpnNode {
  tincan!: LabProcess;
  controller!: LabProcess;
  readonly tokenFile: string;
  readonly configFile: string;

  constructor(
    readonly lab: Lab,
    readonly host: Host,
    readonly opts: NodeOptions,
  ) {
    // One dir per node: the controller's status file for tincanctl lives beside the token.
    const dir = join(lab.dir, "nodes", opts.device ? `${opts.user}-${opts.device}` : opts.user);
    mkdirSync(dir, { recursive: true });
    this.tokenFile = join(dir, "tincan.token");
    this.configFile = join(dir, `${opts.kind ?? "groupvpn"}.json`);
  }

  get address(): string {
    return this.opts.ipv4.split("/")[0] as string;
  }

  writeConfig(): void {
    const { opts } = this;
    const config: Record<string, unknown> = {
      datapath: { rpc: "127.0.0.1:5800", tokenFile: this.tokenFile },
      xmpp: {
        service: opts.prosody.service,
        domain: opts.prosody.domain,
        username: opts.user,
        password: PASSWORD,
        caFile: opts.prosody.caFile,
        ...(opts.device ? { resource: opts.device } : {}),
        ...opts.xmpp,
      },
      vnic: { ipv4: opts.ipv4, ...(opts.ipv6 ? { ipv6: opts.ipv6 } : {}) },
      ice: opts.coturn
        ? {
            stun: [opts.coturn.stunUrl],
            turn: [
              opts.coturn.authSecret
                ? { urls: opts.coturn.turnUrl, secret: opts.coturn.authSecret }
                : {
                    urls: opts.coturn.turnUrl,
                    username: opts.coturn.username,
                    credential: opts.coturn.credential,
                  },
            ],
            ...opts.ice,
          }
        : { stun: [], turn: [], ...opts.ice },
      links: { ...opts.links },
      log: { level: opts.logLevel ?? "debug" },
      // SocialVPN's default stateFile is /var/lib/tincan/ for root: each node keeps its own in its dir.
      ...(opts.kind === "socialvpn"
        ? { stateFile: join(dirname(this.configFile), "socialvpn-state.json") }
        : { group: opts.group ?? "lab" }),
      ...opts.extra,
    };
    writeFileSync(this.configFile, JSON.stringify(config, null, 2));
  }

  async start(): Promise<void> {
    this.writeConfig();
    if (this.opts.oneProcess) {
      const tincanJson = join(dirname(this.configFile), "tincan.json");
      const tincan = { rpc: "127.0.0.1:5800", tokenFile: this.tokenFile, log: { level: "debug" } };
      writeFileSync(tincanJson, JSON.stringify({ ...tincan, ...this.opts.oneProcess.tincan }));
      await this.startController(["--with-datapath", tincanJson]);
      this.tincan = this.controller;
      return;
    }
    await this.startDatapath();
    await this.startController();
  }

  async startDatapath(): Promise<void> {
    const [file, args] = splitCommand(
      this.opts.commands?.tincan ?? ["node", ...DAEMON_NODE_FLAGS, TINCAN_BIN],
    );
    this.tincan = this.host.spawn(file, [...args, "--token-file", this.tokenFile, "--log-level", "debug"], {
      name: "tincan",
    });
    await waitFor(
      `tincan ready on ${this.host.name}`,
      () => {
        if (this.tincan.exited) throw new Error(`tincan exited: ${this.tincan.log()}`);
        return this.tincan.log().includes(" ready ");
      },
      Math.max(15_000, this.opts.startTimeoutMs ?? 0),
    );
  }

  async startController(extraArgs: string[] = []): Promise<void> {
    const kind = this.opts.kind ?? "groupvpn";
    const [file, args] = splitCommand(
      this.opts.commands?.controller ?? ["node", ...DAEMON_NODE_FLAGS, CONTROLLER_BIN[kind]],
    );
    this.controller = this.host.spawn(file, [...args, "--config", this.configFile, ...extraArgs], {
      name: kind,
    });
    await waitFor(
      `${kind} running on ${this.host.name}`,
      () => {
        if (this.controller.exited) throw new Error(`${kind} exited: ${this.controller.log()}`);
        return this.controller.log().includes("controller running");
      },
      this.opts.startTimeoutMs ?? 30_000,
    );
  }

  /** tincanctl status --json; tried 3 times, since a datapath on a loaded test machine may answer late. */
  async status(): Promise<{ links: LinkStatus[]; routes: unknown[]; [k: string]: unknown }> {
    for (let attempt = 1; ; attempt++) {
      try {
        const out = await this.host.run([
          ...(this.opts.commands?.tincanctl ?? ["node", TINCANCTL]),
          "status",
          "--json",
          "--token-file",
          this.tokenFile,
        ]);
        return JSON.parse(out);
      } catch (err) {
        if (attempt === 3) throw err;
        await sleep(500);
      }
    }
  }

  async links(): Promise<LinkStatus[]> {
    return (await this.status()).links;
  }

  async connectedLinks(): Promise<LinkStatus[]> {
    return (await this.links()).filter((l) => l.state === "connected");
  }

  async connectedTo(peerUid: string): Promise<LinkStatus | undefined> {
    return (await this.connectedLinks()).find((l) => l.peerUid === peerUid);
  }

  ping(address: string, count = 1, waitSec = 1) {
    return this.host.exec(["ping", "-c", String(count), "-i", "0.2", "-W", String(waitSec), address]);
  }

  async stop(): Promise<void> {
    await this.controller?.stop(5000);
    await this.tincan?.stop(5000);
  }
}

/**
 * Adds one flat host per user to the lab and a GroupVPN node on it at `<subnet>.<i+1>/16`
 * (not started). `subnet` is the first three octets, e.g. "10.10.3".
 */
export async function addGroupNodes(
  lab: Lab,
  prosody: XmppServerHandle,
  users: string[],
  subnet: string,
  opts: Partial<Omit<NodeOptions, "user" | "ipv4" | "prosody">> = {},
): Promise<VpnNode[]> {
  const nodes: VpnNode[] = [];
  for (const [i, user] of users.entries()) {
    const host = await lab.addHost(user);
    nodes.push(new VpnNode(lab, host, { ...opts, user, ipv4: `${subnet}.${i + 1}/16`, prosody }));
  }
  return nodes;
}

/** XMPP accounts for the lab's prosody, all with the shared test password. */
export function labUsers(names: string[]): { name: string; password: string }[] {
  return names.map((name) => ({ name, password: PASSWORD }));
}

/** The controller's own full JID, from `tincanctl status --json`. */
export async function fullJidOf(node: VpnNode): Promise<string> {
  return ((await node.status()).controller as { jid: string }).jid;
}

/**
 * From `host`, logs in as `user` and sends link offers straight to `targetJid`
 * (test/support/rogue-offer.ts). Without `flood`, `user` must not be allowed to link with the target
 * (3 stub offers); with it, `user` is a member announcing `flood.ipv4` and sends `flood.count` offers
 * carrying the description in `flood.descriptionFile`. Resolves with the script's result.
 */
export function sendRogueOffers(
  host: Host,
  prosody: XmppServerHandle,
  user: string,
  targetJid: string,
  targetUid: string,
  flood?: { count: number; ipv4: string; descriptionFile: string },
) {
  return host.exec(
    [
      "node",
      "--import",
      "tsx",
      join(REPO, "test/support/rogue-offer.ts"),
      prosody.service,
      prosody.domain,
      user,
      PASSWORD,
      prosody.caFile,
      targetJid,
      targetUid,
      ...(flood ? [String(flood.count), flood.ipv4, flood.descriptionFile] : []),
    ],
    { cwd: join(REPO, "test"), timeoutMs: 30_000 },
  );
}

/** [file, args] of an argv prefix, for Host.spawn. */
function splitCommand(argv: string[]): [string, string[]] {
  const [file, ...args] = argv;
  if (!file) throw new Error("empty command");
  return [file, args];
}

/**
 * Waits until every node pings every other at each of the addresses `addressesOf` gives for it (as
 * seen from the pinging node); on timeout the error names the pairs that still fail.
 */
export async function waitAllPairsPing(
  nodes: VpnNode[],
  addressesOf: (from: VpnNode, to: VpnNode) => string[],
  ms: number,
): Promise<void> {
  let failing: string[] = [];
  const probe = async () => {
    failing = [];
    for (const a of nodes) {
      for (const b of nodes) {
        if (a === b) continue;
        for (const address of addressesOf(a, b)) {
          if ((await a.ping(address, 1, 2)).code !== 0) failing.push(`${a.host.name}->${address}`);
        }
      }
    }
    return failing.length === 0;
  };
  await waitFor("all pairs to ping", probe, ms).catch((err: Error) => {
    throw new Error(`${err.message}; failing: ${failing.join(", ")}`);
  });
}

/** Drops UDP between two hosts (both ways, in each host), leaving their traffic to the TURN server alone. */
export async function blockUdp(a: Host, b: Host, block: boolean): Promise<void> {
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    await from.run(["iptables", block ? "-A" : "-D", "OUTPUT", "-p", "udp", "-d", to.ip, "-j", "DROP"]);
  }
}

/** GroupVPN nodes in ring order (by UID: the structured overlay's ring), and the node `i` places on. */
export function ringOf(nodes: VpnNode[]): { ring: VpnNode[]; at: (i: number) => VpnNode } {
  const ring = [...nodes].sort((a, b) => uidForIpv4(a.address).localeCompare(uidForIpv4(b.address)));
  return { ring, at: (i) => ring[((i % ring.length) + ring.length) % ring.length] as VpnNode };
}

/**
 * Waits until every node of `ring` (in ring order) has connected links to its ring successor and
 * predecessor; with `only`, to them and no other member.
 */
export async function waitRingLinks(
  ring: VpnNode[],
  ms: number,
  opts: { only?: boolean } = {},
): Promise<void> {
  const uidAt = (i: number) => uidForIpv4((ring[(i + ring.length) % ring.length] as VpnNode).address);
  await waitFor(
    opts.only ? "only the ring links left" : "every node linked to its two ring neighbours",
    async () => {
      for (const [i, n] of ring.entries()) {
        const connected = new Set((await n.connectedLinks()).map((l) => l.peerUid));
        if (!connected.has(uidAt(i + 1)) || !connected.has(uidAt(i - 1))) return false;
        if (opts.only && connected.size !== 2) return false;
      }
      return true;
    },
    ms,
  );
}
