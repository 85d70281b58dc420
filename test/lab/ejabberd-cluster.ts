// An ejabberd cluster in the lab: one node per host namespace (own address, own epmd), one XMPP domain,
// one Erlang cookie, joined with `ejabberdctl join_cluster`, so Mnesia (accounts, rosters, shared roster
// groups) is replicated and a user may log in to any node.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Host, Lab } from "./lab.js";
import { type LabProcess, pidAlive, waitFor } from "./proc.js";
import {
  type EjabberdHandle,
  launchEjabberdNode,
  makeCert,
  prepareXmppServer,
  provisionEjabberd,
  waitListening,
  writeEjabberdNode,
  type XmppServerOptions,
} from "./servers.js";

export interface EjabberdClusterOptions extends Omit<XmppServerOptions, "host" | "dirName"> {
  /** Cluster nodes, each on a new lab host on the internet. Default 2. */
  nodes?: number;
  /** Names of those hosts. Default "xmpp1", "xmpp2", ... */
  hostNames?: string[];
}

export interface EjabberdClusterNode extends EjabberdHandle {
  /** The Erlang node name, `ejabberd@<address>`. */
  readonly node: string;
  /** Whether its ejabberd process runs. */
  readonly running: boolean;
  /** Stops it gracefully (`ejabberdctl stop`: sessions closed, the cluster told), then its epmd. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash (epmd stopped too). */
  kill(): Promise<void>;
  /** Starts it again on its own Mnesia data; it takes up its place in the cluster. */
  start(): Promise<void>;
}

export interface EjabberdClusterHandle {
  domain: string;
  /** The certificate every node presents (trust it as the CA). */
  caFile: string;
  nodes: EjabberdClusterNode[];
  /** The lab host each node runs on (same order). */
  hosts: Host[];
  /** The cluster's running nodes as `nodeIndex` sees them (`ejabberdctl list_cluster`). */
  listCluster(nodeIndex?: number): Promise<string[]>;
  /** Stops every running node, by PID. */
  stop(): Promise<void>;
}

export async function startEjabberdCluster(
  lab: Lab,
  opts: EjabberdClusterOptions = {},
): Promise<EjabberdClusterHandle> {
  const count = opts.nodes ?? 2;
  if (count < 2) throw new Error("an ejabberd cluster needs at least 2 nodes");
  const hostNames = opts.hostNames ?? Array.from({ length: count }, (_, i) => `xmpp${i + 1}`);
  const domain = opts.domain ?? "lab.local";
  const cert = await makeCert(join(lab.dir, "ejabberd-cluster-certs"), domain);
  const cookie = randomBytes(16).toString("hex");
  const nodes: EjabberdClusterNode[] = [];
  const hosts: Host[] = [];
  try {
    for (const hostName of hostNames.slice(0, count)) {
      const host = await lab.addHost(hostName);
      hosts.push(host);
      const { place, port, dir, base } = await prepareXmppServer(
        lab,
        { ...opts, host, dirName: `ejabberd-${hostName}` },
        "ejabberd",
        cert,
      );
      const files = writeEjabberdNode(dir, {
        place,
        domain,
        port,
        ...cert,
        cluster: { cookie },
      });
      let procs: { proc: LabProcess; epmd: LabProcess } = await launchEjabberdNode(place, files, port);
      const stopProcs = async () => {
        await procs.proc.stop(10_000);
        await procs.epmd.stop(3000);
      };
      nodes.push({
        ...base,
        node: files.name,
        configFile: files.configFile,
        logFile: files.logFile,
        get process() {
          return procs.proc;
        },
        get epmd() {
          return procs.epmd;
        },
        get running() {
          return !procs.proc.exited;
        },
        register: files.register,
        ctl: files.ctl,
        async stop() {
          if (procs.proc.exited) return stopProcs();
          await files.ctl(["stop"]).catch(() => {}); // returns at once; the VM then shuts down
          await waitFor(`${files.name} stopped`, async () => !pidAlive(procs.proc.pid), 30_000).catch(
            () => {},
          );
          await stopProcs(); // no-op for the exited node; SIGTERM/SIGKILL for one that did not stop
        },
        async kill() {
          procs.proc.signal("SIGKILL");
          await procs.proc.wait();
          await procs.epmd.stop(3000);
        },
        async start() {
          if (!procs.proc.exited) return;
          procs = await launchEjabberdNode(place, files, port);
        },
      });
    }
    const first = nodes[0] as EjabberdClusterNode;
    for (const [i, n] of nodes.entries()) {
      if (i === 0) continue;
      // The joining node drops its own Mnesia schema, copies the tables from `first` and restarts its
      // ejabberd application (the VM keeps running): wait until its c2s listens again.
      await n.ctl(["join_cluster", first.node]);
      await waitListening(hosts[i] as Host, "tcp", n.host, n.port, 60_000);
    }
    const cluster: EjabberdClusterHandle = {
      domain,
      caFile: cert.certFile,
      nodes,
      hosts,
      async listCluster(nodeIndex = 0) {
        const out = await (nodes[nodeIndex] as EjabberdClusterNode).ctl(["list_cluster"]);
        return out
          .split("\n")
          .map((l) => l.trim().replace(/^'|'$/g, ""))
          .filter((l) => l !== "");
      },
      async stop() {
        for (const n of nodes) await n.stop().catch(() => {});
      },
    };
    await waitFor(
      `all ${count} ejabberd nodes in the cluster`,
      async () => {
        for (let i = 0; i < nodes.length; i++) {
          if ((await cluster.listCluster(i).catch(() => [])).length !== count) return false;
        }
        return true;
      },
      60_000,
    );
    await provisionEjabberd(first, domain, opts);
    return cluster;
  } catch (e) {
    for (const n of nodes) await n.kill().catch(() => {});
    throw e;
  }
}
