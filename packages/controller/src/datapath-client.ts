import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { EventEmitter } from "node:events";
import { readFile, stat } from "node:fs/promises";
import {
  describeIssues,
  type HelloResult,
  MAX_QUERY_PAGE,
  MAX_RPC_DATAGRAM,
  type NotificationMethod,
  NotificationParams,
  type NotificationParamsOf,
  RPC_SOCKET_BUFFER,
  RpcErrorCode,
  type RpcMethod,
  type RpcParamsOf,
  type RpcResults,
  smallRpcBuffer,
  splitHostPort,
} from "@tincan/protocol";
import {
  createJSONRPCErrorResponse,
  isJSONRPCResponse,
  JSONRPCClient,
  JSONRPCErrorException,
} from "json-rpc-2.0";
import type { Log } from "./logger.js";

/** Local error code for a request that got no answer in time (never sent by the datapath). */
export const RPC_TIMEOUT = -32099;

/** An RPC that failed: `code` is the JSON-RPC error code (RPC_TIMEOUT when nothing answered). */
export class RpcError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(`${method}: ${message} (${code})`);
    this.name = "RpcError";
  }
}

/** The list queries that can be paged (offset/limit). */
type ListMethod = "link.query" | "route.query";

/**
 * Every item of link.query / route.query (`params` without paging, e.g. `{ peerUid }`): first asked
 * whole (one request in the common case); if the answer would not fit in one datagram, asked page by
 * page until an empty page. Links added or removed between pages may be missed or listed twice; the
 * list is de-duplicated.
 */
export async function queryAll<M extends ListMethod>(
  datapath: Pick<DatapathApi, "call">,
  method: M,
  params: Omit<RpcParamsOf<M>, "offset" | "limit"> = {} as Omit<RpcParamsOf<M>, "offset" | "limit">,
): Promise<RpcResults[M]> {
  try {
    return await datapath.call(method, params as RpcParamsOf<M>);
  } catch (err) {
    if (!(err instanceof RpcError && err.code === RpcErrorCode.ResponseTooLarge)) throw err;
  }
  const all = new Map<string, RpcResults[M][number]>();
  for (let offset = 0; ; ) {
    const page = await datapath.call(method, { ...params, offset, limit: MAX_QUERY_PAGE } as RpcParamsOf<M>);
    if (page.length === 0) break;
    for (const item of page) all.set("prefix" in item ? item.prefix : item.peerUid, item);
    offset += page.length;
  }
  return [...all.values()] as RpcResults[M];
}

/** Methods that may be sent again when no answer came (doing them twice does no harm). */
const IDEMPOTENT: ReadonlySet<RpcMethod> = new Set<RpcMethod>([
  "hello",
  "vnic.configure",
  "vnic.query",
  "ice.configure",
  "link.query",
  "route.set",
  "route.remove",
  "route.query",
  "exit.serve",
  "exit.use",
  "log.level",
]);

export type NotificationHandler<N extends NotificationMethod> = (params: NotificationParamsOf<N>) => void;

/** What the link manager and the policies need from a datapath connection (fakes implement it in tests). */
export interface DatapathApi {
  call<M extends RpcMethod>(method: M, params: RpcParamsOf<M>): Promise<RpcResults[M]>;
  on<N extends NotificationMethod>(name: N, handler: NotificationHandler<N>): () => void;
}

export interface DatapathClientOptions {
  /** "127.0.0.1:5800" */
  rpc: string;
  tokenFile: string;
  log: Log;
  /** Per attempt. Default 3000 ms. */
  timeoutMs?: number;
  /** Per call of link.create, link.accept and link.complete (never repeated). Default 10000 ms. */
  linkSetupTimeoutMs?: number;
  /** Extra attempts for idempotent methods after a timeout. Default 2. */
  retries?: number;
  /**
   * Register for notifications with `hello` (default true). Tools that only query (tincanctl) pass false,
   * so they do not take the notifications away from the running controller.
   */
  register?: boolean;
  /**
   * Watchdog: the datapath counts as hung when RPCs stay unanswered (no answer to any request since
   * the oldest unanswered one was sent) for this many seconds. Default: no watchdog.
   */
  watchdogSec?: number;
  /** When hung: end the datapath by the PID its `hello` gave, so that its supervisor restarts it. */
  restartOnHang?: boolean;
  /** How a hung datapath is ended (tests). Default: SIGKILL (a hung event loop handles no SIGTERM). */
  kill?: (pid: number) => void;
  /** Told of every request's end (each attempt): its duration, and its error code (null: answered). */
  onCall?: (method: RpcMethod, seconds: number, errorCode: number | null) => void;
}

/** The watchdog's view, for the status file: `unansweredSinceMs` is when the oldest unanswered RPC was sent. */
export interface DatapathHealth {
  responsive: boolean;
  unansweredSinceMs: number | null;
}

/**
 * Methods that set up a link's ICE/DTLS state and are not repeated after a timeout: they get a
 * timeout of their own (linkSetupTimeoutMs). Giving up earlier on a loaded host (the request still
 * queued in the datapath's socket) made the controller remove a link the datapath was about to
 * create, and start over.
 */
const LINK_SETUP_METHODS: ReadonlySet<RpcMethod> = new Set(["link.create", "link.accept", "link.complete"]);

/**
 * JSON-RPC 2.0 client to the datapath over UDP (one message per datagram, 127.0.0.1 only).
 *
 * Events: `datapath-restarted` (HelloResult) when the datapath announces `datapath.started` or `hello`
 * returns another `startedAt` than before; the controller then re-syncs (vnic, ice, routes, links).
 * `datapath-health` (DatapathHealth) when the watchdog finds the datapath hung, or answering again.
 */
export class DatapathClient implements DatapathApi {
  readonly host: string;
  readonly port: number;
  private socket: Socket | null = null;
  private token: string | null = null;
  private readonly rpc: JSONRPCClient;
  private readonly handlers = new Map<NotificationMethod, Set<(p: unknown) => void>>();
  private readonly timeoutMs: number;
  private readonly linkSetupTimeoutMs: number;
  private readonly retries: number;
  private readonly log: Log;
  private startedAt: number | null = null;
  private helloInFlight: Promise<HelloResult> | null = null;
  private closed = false;
  private readonly events = new EventEmitter();
  /** The datapath's PID from its last hello. */
  private pid: number | null = null;
  /** The oldest request sent since the datapath last answered anything. */
  private unanswered: { since: number; method: string } | null = null;
  private hung = false;
  private readonly inFlight = new Map<number, { method: string; since: number }>();
  private nextCall = 0;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(private readonly opts: DatapathClientOptions) {
    const { host, port } = splitHostPort(opts.rpc);
    this.host = host;
    this.port = port;
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs ?? 3000;
    this.linkSetupTimeoutMs = opts.linkSetupTimeoutMs ?? 10_000;
    this.retries = opts.retries ?? 2;
    this.rpc = new JSONRPCClient((payload: unknown) => this.sendDatagram(payload));
  }

  /** Binds the local socket (ephemeral port on 127.0.0.1), reads the token and says hello. */
  async start(): Promise<HelloResult> {
    await this.open();
    return this.hello();
  }

  /** Binds the local socket and reads the token, without registering (see `register`). */
  async open(): Promise<void> {
    if (!this.socket) {
      const socket = createSocket({ type: "udp4", recvBufferSize: RPC_SOCKET_BUFFER });
      socket.on("message", (msg, rinfo) => this.onDatagram(msg, rinfo));
      socket.on("error", (err) => this.log.error("rpc socket error", { error: err.message }));
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(0, "127.0.0.1", () => {
          socket.off("error", reject);
          resolve();
        });
      });
      const small = smallRpcBuffer(socket);
      if (small)
        this.log.warn("the RPC socket's receive buffer is small: notifications may be lost in bursts", small);
      this.socket = socket;
      this.startWatchdog();
    }
    await this.readToken();
  }

  /** The local port notifications come to. */
  get localPort(): number {
    if (!this.socket) throw new Error("datapath client not started");
    return this.socket.address().port;
  }

  /** Registers this client for notifications; emits `datapath-restarted` if the datapath's startedAt changed. */
  hello(): Promise<HelloResult> {
    // Concurrent callers (a restart seen by several requests at once) share one hello.
    this.helloInFlight ??= (async () => {
      try {
        const result = await this.call("hello", { controller: { host: "127.0.0.1", port: this.localPort } });
        const previous = this.startedAt;
        this.startedAt = result.startedAt;
        this.pid = typeof result.pid === "number" ? result.pid : null;
        if (previous !== null && previous !== result.startedAt) {
          this.log.warn("datapath restarted", { startedAt: result.startedAt, version: result.version });
          this.events.emit("datapath-restarted", result);
        }
        return result;
      } finally {
        this.helloInFlight = null;
      }
    })();
    return this.helloInFlight;
  }

  /** Subscribes to a datapath notification (validated) or to `datapath-restarted`; returns an unsubscribe. */
  on<N extends NotificationMethod>(name: N, handler: NotificationHandler<N>): () => void;
  on(event: "datapath-restarted", listener: (hello: HelloResult) => void): () => void;
  on(event: "datapath-health", listener: (health: DatapathHealth) => void): () => void;
  // biome-ignore lint/suspicious/noExplicitAny: overload implementation
  on(name: string, handler: (...args: any[]) => void): () => void {
    if (name in NotificationParams) {
      const method = name as NotificationMethod;
      let set = this.handlers.get(method);
      if (!set) {
        set = new Set();
        this.handlers.set(method, set);
      }
      set.add(handler);
      return () => void set.delete(handler);
    }
    this.events.on(name, handler);
    return () => void this.events.off(name, handler);
  }

  async call<M extends RpcMethod>(method: M, params: RpcParamsOf<M>): Promise<RpcResults[M]> {
    if (this.closed) throw new RpcError(method, RPC_TIMEOUT, "datapath client closed");
    const attempts = IDEMPOTENT.has(method) ? 1 + this.retries : 1;
    let reauthed = false;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.callOnce(method, params);
      } catch (err) {
        if (!(err instanceof RpcError)) throw err;
        if (err.code === RpcErrorCode.Unauthorized && !reauthed) {
          // A restarted datapath wrote a new token: read it, register again (unless this is the hello
          // itself), and repeat the request once. The request changed nothing on the datapath.
          reauthed = true;
          const before = this.token;
          await this.readToken();
          this.log.info("datapath refused our token; re-read the token file", {
            changed: before !== this.token,
          });
          if (method !== "hello" && this.opts.register !== false) await this.hello();
          attempt--;
          continue;
        }
        if (err.code === RPC_TIMEOUT && attempt < attempts) {
          this.log.debug("rpc timeout, retrying", { method, attempt });
          continue;
        }
        throw err;
      }
    }
  }

  /** What the watchdog sees now. */
  health(): DatapathHealth {
    return { responsive: !this.hung, unansweredSinceMs: this.unanswered?.since ?? null };
  }

  close(): void {
    this.closed = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.rpc.rejectAllPendingRequests("datapath client closed");
    this.socket?.close();
    this.socket = null;
  }

  private async callOnce<M extends RpcMethod>(method: M, params: RpcParamsOf<M>): Promise<RpcResults[M]> {
    if (this.token === null) await this.readToken();
    const timeoutMs = LINK_SETUP_METHODS.has(method) ? this.linkSetupTimeoutMs : this.timeoutMs;
    const requester = this.rpc.timeout(timeoutMs, (id) =>
      createJSONRPCErrorResponse(id, RPC_TIMEOUT, `no answer from the datapath at ${this.opts.rpc}`),
    );
    const call = this.nextCall++;
    const since = performance.now();
    this.inFlight.set(call, { method, since: Date.now() });
    let errorCode: number | null = null;
    try {
      return (await requester.request(method, { ...(params as object), auth: this.token })) as RpcResults[M];
    } catch (err) {
      errorCode = err instanceof JSONRPCErrorException ? err.code : RPC_TIMEOUT;
      if (err instanceof JSONRPCErrorException) throw new RpcError(method, err.code, err.message, err.data);
      throw new RpcError(method, RPC_TIMEOUT, err instanceof Error ? err.message : String(err));
    } finally {
      this.inFlight.delete(call);
      this.opts.onCall?.(method, (performance.now() - since) / 1000, errorCode);
    }
  }

  private startWatchdog(): void {
    const sec = this.opts.watchdogSec;
    if (sec === undefined || this.watchdog) return;
    this.watchdog = setInterval(() => this.checkHung(sec * 1000), Math.min(1000, sec * 250));
    this.watchdog.unref();
  }

  private checkHung(limitMs: number): void {
    const u = this.unanswered;
    if (!u || this.hung) return;
    const now = Date.now();
    if (now - u.since < limitMs) return;
    this.hung = true;
    this.log.warn("datapath unresponsive: RPCs unanswered", {
      forSec: Math.round((now - u.since) / 1000),
      oldest: u.method,
      pending: [...this.inFlight.values()].map(
        (c) => `${c.method} (${Math.round((now - c.since) / 1000)} s)`,
      ),
      pid: this.pid,
    });
    this.events.emit("datapath-health", this.health());
    if (!this.opts.restartOnHang) return;
    if (this.pid === null) {
      this.log.error("cannot restart the hung datapath: its pid is unknown (no hello answered)");
      return;
    }
    this.log.warn("ending the hung datapath so that its supervisor restarts it", { pid: this.pid });
    try {
      (this.opts.kill ?? ((pid: number) => process.kill(pid, "SIGKILL")))(this.pid);
    } catch (err) {
      this.log.error("cannot end the hung datapath", { pid: this.pid, error: (err as Error).message });
    }
  }

  /** Any datagram from the datapath shows that it is alive. */
  private answered(): void {
    if (this.hung) {
      this.log.info("datapath answers again", {
        afterSec: Math.round((Date.now() - (this.unanswered?.since ?? Date.now())) / 1000),
      });
    }
    this.unanswered = null;
    if (this.hung) {
      this.hung = false;
      this.events.emit("datapath-health", this.health());
    }
  }

  private async readToken(): Promise<void> {
    try {
      this.token = (await readFile(this.opts.tokenFile, "utf8")).trim();
    } catch (err) {
      throw new Error(
        `cannot read the datapath token file ${this.opts.tokenFile}: ${await tokenProblem(err)}`,
      );
    }
  }

  private async sendDatagram(payload: unknown): Promise<void> {
    const socket = this.socket;
    if (!socket) throw new Error("datapath client not started");
    const data = Buffer.from(JSON.stringify(payload));
    if (data.length > MAX_RPC_DATAGRAM) throw new Error(`request too large (${data.length} bytes)`);
    this.unanswered ??= { since: Date.now(), method: String((payload as { method?: unknown }).method) };
    await new Promise<void>((resolve, reject) =>
      socket.send(data, this.port, this.host, (err) => (err ? reject(err) : resolve())),
    );
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    if (rinfo.address !== this.host || rinfo.port !== this.port) {
      this.log.debug("dropped a datagram not from the datapath", { from: `${rinfo.address}:${rinfo.port}` });
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(msg.toString("utf8"));
    } catch {
      this.log.warn("datapath sent invalid JSON", { bytes: msg.length });
      return;
    }
    this.answered();
    if (isJSONRPCResponse(json)) {
      this.rpc.receive(json);
      return;
    }
    const m = json as { jsonrpc?: unknown; method?: unknown; params?: unknown; id?: unknown };
    if (m.jsonrpc !== "2.0" || typeof m.method !== "string" || m.id !== undefined) {
      this.log.warn("datapath sent a message that is neither a response nor a notification");
      return;
    }
    this.onNotification(m.method, m.params);
  }

  private onNotification(method: string, params: unknown): void {
    if (!Object.hasOwn(NotificationParams, method)) {
      this.log.warn("unknown notification from the datapath", { method });
      return;
    }
    const name = method as NotificationMethod;
    const parsed = NotificationParams[name].safeParse(params);
    if (!parsed.success) {
      this.log.warn("malformed notification from the datapath", {
        method,
        error: describeIssues(parsed.error, "params"),
      });
      return;
    }
    if (name === "datapath.started") {
      const { startedAt } = parsed.data as NotificationParamsOf<"datapath.started">;
      if (startedAt !== this.startedAt) {
        // The new datapath has a new token; hello re-registers us and emits datapath-restarted.
        void this.readToken()
          .then(() => this.hello())
          .catch((err: Error) =>
            this.log.error("cannot re-register with the restarted datapath", { error: err.message }),
          );
      }
    }
    for (const handler of this.handlers.get(name) ?? []) {
      try {
        handler(parsed.data);
      } catch (err) {
        this.log.error("notification handler failed", { method, error: (err as Error).message });
      }
    }
  }
}

/** Why the token could not be read, with what to do: start tincan, or join its tokenGroup. */
async function tokenProblem(err: unknown): Promise<string> {
  const e = err as NodeJS.ErrnoException;
  if (e.code !== "EACCES") return `${e.message} (is tincan running?)`;
  const st = await stat(e.path ?? "").catch(() => null);
  const mode = st
    ? `mode 0${(st.mode & 0o777).toString(8)}, uid ${st.uid}, gid ${st.gid}`
    : "its directory is not searchable by us";
  return `permission denied (${mode}; we are uid ${process.getuid?.()}, groups ${process.getgroups?.().join(",")}): run as the user tincan runs as, or as a member of the group set as tokenGroup in tincan's config`;
}
