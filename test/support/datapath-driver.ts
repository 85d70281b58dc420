// Drives `tincan` datapaths inside lab hosts over their RPC API, the way a controller would,
// without XMPP: descriptions and candidates are handed from one datapath to the other directly.
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { uidForIpv4 } from "@tincan/protocol";
import type { Host, Lab, LabProcess } from "../lab/index.js";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const TINCAN_BIN = join(REPO, "packages/datapath/dist/cli.js");
/**
 * The daemons' Node flags, read from the shebang line of `tincan`'s bin file: the one place they are
 * set (build-deb.sh and the Docker image take them from there too; README.md, "Running a node").
 */
export const DAEMON_NODE_FLAGS = readFileSync(join(REPO, "packages/datapath/bin/tincan.js"), "utf8")
  .split("\n", 1)[0]
  ?.replace(/^#!\/usr\/bin\/env -S node\s*/, "")
  .split(/\s+/)
  .filter(Boolean) as string[];
const BRIDGE = join(REPO, "test/support/rpc-bridge.mjs");

export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 15_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class DatapathHandle extends EventEmitter {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { method: string; resolve: (v: any) => void; reject: (e: Error) => void }
  >();
  private token = "";
  uid = "";

  private constructor(
    readonly host: Host,
    readonly proc: LabProcess,
    private readonly bridge: ChildProcess,
    readonly tokenFile: string,
    private readonly bridgePort: number,
  ) {
    super();
  }

  /**
   * Starts tincan in the host's namespace and a bridge to its RPC port; registers as its controller.
   * `tune`: these tune keys, in a config file of the host's (the driver passes no environment).
   */
  static async start(
    lab: Lab,
    host: Host,
    opts: { logLevel?: string; tokenFile?: string; args?: string[]; tune?: Record<string, unknown> } = {},
  ): Promise<DatapathHandle> {
    const tokenFile = opts.tokenFile ?? join(lab.dir, `${host.name}.token`);
    const configArgs: string[] = [];
    if (opts.tune) {
      const file = join(lab.dir, `${host.name}-tincan.json`);
      writeFileSync(file, JSON.stringify({ tune: opts.tune }));
      configArgs.push("--config", file);
    }
    const proc = host.spawn(
      "node",
      [
        ...DAEMON_NODE_FLAGS,
        TINCAN_BIN,
        "--token-file",
        tokenFile,
        "--log-level",
        opts.logLevel ?? "info",
        ...configArgs,
        ...(opts.args ?? []),
      ],
      {
        name: "tincan",
      },
    );
    await waitFor(`tincan ready on ${host.name}`, () => {
      if (proc.exited) throw new Error(`tincan on ${host.name} exited: ${proc.log()}`);
      return proc.log().includes(" ready ");
    });
    // Piped stdio (the lab's processes log to files); ended by PID in stop(), and the lab's
    // teardown kills anything left in its namespaces.
    const bridge = spawn("ip", ["netns", "exec", host.ns, "node", BRIDGE, "127.0.0.1:5800"], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const lines = readline.createInterface({ input: bridge.stdout! });
    let bridgePort = 0;
    const handleRef: { h?: DatapathHandle } = {};
    lines.on("line", (line) => {
      const msg = JSON.parse(line);
      if (msg.bridgePort) bridgePort = msg.bridgePort;
      else handleRef.h?.onMessage(msg);
    });
    await waitFor("rpc bridge", () => bridgePort > 0);
    const h = new DatapathHandle(host, proc, bridge, tokenFile, bridgePort);
    handleRef.h = h;
    h.token = readFileSync(tokenFile, "utf8").trim();
    await h.call("hello", { controller: { host: "127.0.0.1", port: bridgePort } });
    return h;
  }

  call(method: string, params: Record<string, unknown> = {}, auth = this.token): Promise<any> {
    const id = this.nextId++;
    const text = JSON.stringify({ jsonrpc: "2.0", id, method, params: { ...params, auth } });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from ${this.host.name}`));
      }, 10_000);
      this.pending.set(id, {
        method,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.bridge.stdin!.write(`${text}\n`);
    });
  }

  /** Like call, but resolves with the whole response (result or error) instead of throwing. */
  async raw(method: string, params: Record<string, unknown> = {}, auth = this.token): Promise<any> {
    try {
      return { result: await this.call(method, params, auth) };
    } catch (e) {
      return { error: (e as Error & { rpc?: unknown }).rpc ?? { message: (e as Error).message } };
    }
  }

  private onMessage(msg: any): void {
    if (msg.id !== undefined && msg.id !== null) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error)
        p.reject(
          Object.assign(
            new Error(`${p.method} on ${this.host.name}: ${msg.error.code}: ${msg.error.message}`),
            { rpc: msg.error },
          ),
        );
      else p.resolve(msg.result);
    } else if (msg.method) {
      this.emit(msg.method, msg.params);
    }
  }

  async configure(uid: string, ipv4: string, extra: Record<string, unknown> = {}): Promise<void> {
    this.uid = uid;
    await this.call("vnic.configure", { uid, ipv4, ...extra });
  }

  async stop(): Promise<void> {
    this.bridge.stdin?.end();
    await this.proc.stop(5000);
    if (this.bridge.exitCode === null && this.bridge.pid) {
      const exited = new Promise((r) => this.bridge.once("exit", r));
      process.kill(this.bridge.pid, "SIGTERM");
      await exited;
    }
  }
}

/**
 * Datapaths on two hosts with overlay addresses `${net}.1` and `${net}.2` (and these tune keys),
 * routed to each other, and their link set up (after `beforeLink`, e.g. a firewall rule).
 */
export async function linkedPair(
  lab: Lab,
  [ha, hb]: [Host, Host],
  net: string,
  tune: Record<string, unknown>,
  beforeLink: (b: DatapathHandle) => Promise<unknown> = async () => {},
): Promise<[DatapathHandle, DatapathHandle]> {
  const a = await DatapathHandle.start(lab, ha, { tune });
  const b = await DatapathHandle.start(lab, hb, { tune });
  await a.configure(uidForIpv4(`${net}.1`), `${net}.1/24`);
  await b.configure(uidForIpv4(`${net}.2`), `${net}.2/24`);
  await a.call("route.set", { prefix: `${net}.2/32`, peerUid: b.uid });
  await b.call("route.set", { prefix: `${net}.1/32`, peerUid: a.uid });
  await beforeLink(b);
  await connectLink(a, b);
  return [a, b];
}

/**
 * Sets up a link between two datapaths, relaying trickled candidates, and waits until both are
 * connected. Like a controller, it offers again (twice at most) when a setup fails its DTLS
 * handshake (see `reason: "handshake"` in packages/protocol/README.md). Returns the setup's ms.
 */
export async function connectLink(
  a: DatapathHandle,
  b: DatapathHandle,
  opts: { relayOnly?: boolean } = {},
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const result = await setUpLink(a, b, opts);
    if (typeof result === "number") return result;
    if (result !== "handshake" || attempt === 3) throw new Error(`link setup failed (${result})`);
    await a.call("link.remove", { peerUid: b.uid });
    await b.call("link.remove", { peerUid: a.uid });
  }
}

/** One setup attempt: its duration in ms, or why the link failed. */
async function setUpLink(
  a: DatapathHandle,
  b: DatapathHandle,
  opts: { relayOnly?: boolean } = {},
): Promise<number | string> {
  const t0 = Date.now();
  const aCands: { candidate: string; mid: string }[] = [];
  let bReady = false;
  const onA = (p: any) => {
    if (p.peerUid !== b.uid) return;
    if (bReady)
      void b
        .call("link.addCandidate", { peerUid: a.uid, candidate: p.candidate, mid: p.mid })
        .catch(() => {});
    else aCands.push(p);
  };
  const onB = (p: any) => {
    if (p.peerUid === a.uid)
      void a
        .call("link.addCandidate", { peerUid: b.uid, candidate: p.candidate, mid: p.mid })
        .catch(() => {});
  };
  a.on("link.candidate", onA);
  b.on("link.candidate", onB);
  try {
    const { description: offer } = await a.call("link.create", {
      peerUid: b.uid,
      relayOnly: opts.relayOnly ?? false,
    });
    const { description: answer } = await b.call("link.accept", {
      peerUid: a.uid,
      description: offer,
      relayOnly: opts.relayOnly ?? false,
    });
    bReady = true;
    for (const c of aCands.splice(0))
      await b.call("link.addCandidate", { peerUid: a.uid, candidate: c.candidate, mid: c.mid });
    await a.call("link.complete", { peerUid: b.uid, description: answer });
    let failure: string | null = null;
    const onState = (p: { peerUid: string; state: string; reason?: string }) => {
      if (p.peerUid === b.uid && p.state === "failed") failure = p.reason ?? "failed";
    };
    a.on("link.state", onState);
    try {
      await waitFor("link connected", async () => {
        if (failure) return true;
        const [la] = await a.call("link.query", { peerUid: b.uid });
        const [lb] = await b.call("link.query", { peerUid: a.uid });
        return la?.state === "connected" && lb?.state === "connected";
      });
    } finally {
      a.off("link.state", onState);
    }
    return failure ?? Date.now() - t0;
  } finally {
    a.off("link.candidate", onA);
    b.off("link.candidate", onB);
  }
}
