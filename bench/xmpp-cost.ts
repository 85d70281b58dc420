// What the XMPP server side costs while a GroupVPN runs (issue #18): the lab's prosody, ejabberd or a
// 2-node ejabberd cluster, measured on the server side. Bytes and TCP segments of the c2s port come
// from iptables counters in each server's namespace (IP bytes both ways: TLS, TCP and IP overhead
// included); a segment with a payload (longer than a bare ACK) is counted as one stanza, an estimate:
// a server may write several stanzas in one segment and a large stanza spans several. CPU seconds are
// those of the processes in the servers' namespaces (utime + stime, children included).
import { readFileSync } from "node:fs";
import type { Lab, Netns, XmppServerHandle } from "../test/lab/index.js";

export const XMPP_SERVER_KINDS = ["prosody", "ejabberd", "ejabberd-cluster"] as const;
export type XmppServerKind = (typeof XMPP_SERVER_KINDS)[number];

export interface XmppUnderTest {
  kind: XmppServerKind;
  /** What the nodes log in to: node i uses servers[i % servers.length]. */
  servers: XmppServerHandle[];
  /** The namespaces the servers run in. */
  places: Netns[];
  stop(): Promise<void>;
}

/** Starts the server(s) with the users in one shared roster group "lab". */
export async function startXmppUnderTest(
  lab: Lab,
  kind: XmppServerKind,
  users: { name: string; password: string }[],
): Promise<XmppUnderTest> {
  const opts = { users, groups: { lab: users.map((u) => u.name) } };
  if (kind === "ejabberd-cluster") {
    const cluster = await lab.startEjabberdCluster({ nodes: 2, ...opts });
    return {
      kind,
      servers: cluster.nodes,
      places: cluster.hosts,
      stop: () => cluster.stop(),
    };
  }
  const server = kind === "prosody" ? await lab.startProsody(opts) : await lab.startEjabberd(opts);
  return { kind, servers: [server], places: [lab.internet], stop: () => server.stop() };
}

export interface XmppCost {
  seconds: number;
  /** c2s bytes from the clients to the server(s), per node. */
  bytesFromNodePerNode: number;
  /** c2s bytes from the server(s) to the clients, per node. */
  bytesToNodePerNode: number;
  /** Segments with a payload (about one stanza each), both ways, all nodes. */
  dataSegmentsIn: number;
  dataSegmentsOut: number;
  /** CPU seconds of the server processes (all cluster nodes together). */
  serverCpuSec: number;
  /** Cluster only: bytes between the cluster nodes (Erlang distribution), both ways. */
  clusterBytes?: number;
}

/** Counters per server namespace: c2s both ways (all segments, and those with data), cluster peers. */
interface Counters {
  c2sIn: number;
  c2sInData: number;
  peersIn: number;
  c2sOut: number;
  c2sOutData: number;
  peersOut: number;
}

interface Sample {
  at: number;
  counters: Counters[];
  cpu: Map<string, number>;
}

/** The counting chains' names: jumped to from INPUT and OUTPUT, rules without a target only count. */
const CHAIN = { INPUT: "XMPPMETER_IN", OUTPUT: "XMPPMETER_OUT" } as const;

/** Server-side counters of one XmppUnderTest: `sample()` now and later, `cost(a, b, nodes)` between. */
export class XmppMeter {
  private constructor(private readonly xut: XmppUnderTest) {}

  static async install(xut: XmppUnderTest): Promise<XmppMeter> {
    for (const [i, place] of xut.places.entries()) {
      const port = String((xut.servers[i] as XmppServerHandle).port);
      const peers = xut.servers.filter((_, j) => j !== i).map((s) => s.host);
      // a bare ACK with TCP timestamps is 52 bytes (IPv4 20 + TCP 32): longer segments carry data
      const data = ["-m", "length", "--length", "53:65535"];
      for (const [base, chain] of Object.entries(CHAIN)) {
        const [portDir, peerDir] = base === "INPUT" ? ["--dport", "-s"] : ["--sport", "-d"];
        await place.run(["iptables", "-N", chain]);
        await place.run(["iptables", "-I", base, "-j", chain]);
        await place.run(["iptables", "-A", chain, "-p", "tcp", portDir, port]);
        await place.run(["iptables", "-A", chain, "-p", "tcp", portDir, port, ...data]);
        if (peers.length > 0) await place.run(["iptables", "-A", chain, peerDir, peers.join(",")]);
      }
    }
    return new XmppMeter(xut);
  }

  async sample(): Promise<Sample> {
    const counters: Counters[] = [];
    const cpu = new Map<string, number>();
    for (const place of this.xut.places) {
      const bytes = async (chain: string) => {
        const out = await place.run(["iptables", "-L", chain, "-v", "-x", "-n"]);
        return out
          .split("\n")
          .filter((l) => /^\s*\d+\s+\d+\s/.test(l))
          .map((l) => l.trim().split(/\s+/));
      };
      const rowsIn = await bytes(CHAIN.INPUT);
      const rowsOut = await bytes(CHAIN.OUTPUT);
      const at = (rows: string[][], i: number, col: 0 | 1) => Number(rows[i]?.[col] ?? 0);
      counters.push({
        c2sIn: at(rowsIn, 0, 1),
        c2sInData: at(rowsIn, 1, 0),
        peersIn: at(rowsIn, 2, 1),
        c2sOut: at(rowsOut, 0, 1),
        c2sOutData: at(rowsOut, 1, 0),
        peersOut: at(rowsOut, 2, 1),
      });
      for (const pid of await place.pids()) {
        const t = cpuSecOf(pid);
        if (t !== undefined) cpu.set(`${place.ns}/${pid}`, t);
      }
    }
    return { at: Date.now(), counters, cpu };
  }

  /** The cost between two samples, with `nodes` VPN nodes logged in. */
  cost(a: Sample, b: Sample, nodes: number): XmppCost {
    const sum = (k: keyof Counters) =>
      b.counters.reduce((s, c, i) => s + c[k] - ((a.counters[i] as Counters)[k] ?? 0), 0);
    let serverCpuSec = 0;
    for (const [key, t] of b.cpu) serverCpuSec += t - (a.cpu.get(key) ?? 0);
    return {
      seconds: (b.at - a.at) / 1000,
      bytesFromNodePerNode: Math.round(sum("c2sIn") / nodes),
      bytesToNodePerNode: Math.round(sum("c2sOut") / nodes),
      dataSegmentsIn: sum("c2sInData"),
      dataSegmentsOut: sum("c2sOutData"),
      serverCpuSec: Math.round(serverCpuSec * 100) / 100,
      ...(this.xut.servers.length > 1 ? { clusterBytes: sum("peersIn") + sum("peersOut") } : {}),
    };
  }
}

/** utime + stime + cutime + cstime of a process, in seconds (undefined when it is gone). */
function cpuSecOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return undefined;
  }
}
