import { timingSafeEqual } from "node:crypto";
import dgram from "node:dgram";
import {
  describeIssues,
  MAX_RPC_BATCH,
  MAX_RPC_DATAGRAM,
  MAX_RPC_ID_LENGTH,
  type NotificationMethod,
  type NotificationParamsOf,
  RPC_SOCKET_BUFFER,
  RpcErrorCode,
  type RpcMethod,
  RpcParams,
  smallRpcBuffer,
  splitHostPort,
} from "@tincan/protocol";
import { createJSONRPCNotification, JSONRPCErrorException } from "json-rpc-2.0";
import type { Logger } from "winston";
import type { Datapath } from "./datapath.js";
import { rpcError } from "./errors.js";

export interface Endpoint {
  host: string;
  port: number;
}

type Id = string | number | null;
type Response =
  | { jsonrpc: "2.0"; id: Id; result: unknown }
  | { jsonrpc: "2.0"; id: Id; error: { code: number; message: string } };

/** A request whose envelope was checked: the id is safe to echo (bounded, never nested). */
interface Request {
  id: Id;
  /** No id: a notification, answered with nothing (unless the envelope itself is invalid). */
  notification: boolean;
  method: string;
  params: unknown;
}

/** Longest error message sent (zod issues can be long); the rest is cut. */
const MAX_ERROR_MESSAGE = 1024;
/** Bad datagrams and handler failures are logged at most once per this period, with counts. */
const LOG_PERIOD_MS = 10_000;

/** Why datagrams were refused or failed, counted since start (for tests and logs). */
export type RpcFault =
  | "tooLarge"
  | "parseError"
  | "invalidRequest"
  | "emptyBatch"
  | "batchTooLarge"
  | "methodNotFound"
  | "unauthorized"
  | "handlerFailed"
  | "replyTooLarge"
  | "internal";

/**
 * JSON-RPC 2.0 over UDP on loopback: one message (or one batch) per datagram. The envelope is
 * checked before anything echoes it (an id is a string of at most MAX_RPC_ID_LENGTH characters, a
 * finite number or null); every request must carry the secret token as params.auth; params are
 * validated by the method's zod schema before the handler runs, so a bad request changes nothing. No
 * exception from one datagram leaves `onDatagram`: faults are counted and logged at most every 10 s.
 */
export class RpcServer {
  private readonly socket = dgram.createSocket({ type: "udp4", recvBufferSize: RPC_SOCKET_BUFFER });
  private readonly token: Buffer;
  controller: Endpoint | null = null;
  /** Faults by kind since start. */
  readonly faults: Record<RpcFault, number> = {
    tooLarge: 0,
    parseError: 0,
    invalidRequest: 0,
    emptyBatch: 0,
    batchTooLarge: 0,
    methodNotFound: 0,
    unauthorized: 0,
    handlerFailed: 0,
    replyTooLarge: 0,
    internal: 0,
  };
  private unlogged: Partial<Record<RpcFault, number>> = {};
  private lastLogAt = 0;
  /** Logs the counts held back by the rate limit once its period is over. */
  private flushTimer: NodeJS.Timeout | null = null;
  private lastError: string | null = null;

  constructor(
    private readonly datapath: Datapath,
    token: string,
    private readonly log: Logger,
    private readonly onControllerChange: (endpoint: Endpoint) => void = () => {},
  ) {
    this.token = Buffer.from(token);
    this.socket.on("message", (msg, rinfo) => this.onDatagram(msg, rinfo));
    this.socket.on("error", (err) => this.log.error("rpc socket error", { error: err.message }));
  }

  listen(address: string): Promise<Endpoint> {
    const { host, port } = splitHostPort(address);
    return new Promise((resolve, reject) => {
      this.socket.once("error", reject);
      this.socket.bind(port, host, () => {
        this.socket.off("error", reject);
        const small = smallRpcBuffer(this.socket);
        if (small)
          this.log.warn("the RPC socket's receive buffer is small: requests may be lost in bursts", small);
        const a = this.socket.address();
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  notify<M extends NotificationMethod>(
    method: M,
    params: NotificationParamsOf<M>,
    to = this.controller,
  ): void {
    if (!to) return;
    const text = JSON.stringify(createJSONRPCNotification(method, params));
    this.socket.send(text, to.port, to.host, (err) => {
      if (err) this.log.debug("notification not sent", { method, error: err.message });
    });
  }

  close(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.socket.close();
  }

  /**
   * The answer to one datagram (a JSON text of at most MAX_RPC_DATAGRAM bytes), or null when none is
   * due (notifications only). Never rejects.
   */
  async handle(msg: Buffer): Promise<string | null> {
    try {
      if (msg.length > MAX_RPC_DATAGRAM) {
        this.fault("tooLarge");
        return text(
          failure(null, RpcErrorCode.InvalidRequest, `request larger than ${MAX_RPC_DATAGRAM} bytes`),
        );
      }
      let json: unknown;
      try {
        json = JSON.parse(msg.toString("utf8"));
      } catch {
        this.fault("parseError");
        return text(failure(null, RpcErrorCode.ParseError, "parse error: not valid JSON"));
      }
      if (!Array.isArray(json)) {
        const response = await this.handleOne(json);
        return response ? this.fit([response], false) : null;
      }
      if (json.length === 0) {
        this.fault("emptyBatch");
        return text(failure(null, RpcErrorCode.InvalidRequest, "invalid request: empty batch"));
      }
      if (json.length > MAX_RPC_BATCH) {
        this.fault("batchTooLarge");
        return text(
          failure(
            null,
            RpcErrorCode.InvalidRequest,
            `invalid request: batch of ${json.length} requests (at most ${MAX_RPC_BATCH})`,
          ),
        );
      }
      const responses = (await Promise.all(json.map((r: unknown) => this.handleOne(r)))).filter(
        (r): r is Response => r !== null,
      );
      return responses.length > 0 ? this.fit(responses, true) : null;
    } catch (err) {
      this.fault("internal", err);
      return text(failure(null, RpcErrorCode.Internal, "internal error"));
    }
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      if (!rinfo.address.startsWith("127.")) return; // bound to loopback; belt and braces
      this.handle(msg).then(
        (reply) => {
          if (reply !== null) this.send(reply, rinfo);
        },
        (err: unknown) => this.fault("internal", err),
      );
    } catch (err) {
      this.fault("internal", err);
    }
  }

  private send(reply: string, rinfo: dgram.RemoteInfo): void {
    try {
      this.socket.send(reply, rinfo.port, rinfo.address, (err) => {
        if (err) this.log.debug("rpc reply not sent", { error: err.message });
      });
    } catch (err) {
      this.fault("internal", err); // socket closed meanwhile
    }
  }

  private async handleOne(raw: unknown): Promise<Response | null> {
    const req = checkEnvelope(raw);
    if (typeof req === "string") {
      this.fault("invalidRequest");
      return failure(null, RpcErrorCode.InvalidRequest, `invalid request: ${req}`);
    }
    let response: Response;
    try {
      response = { jsonrpc: "2.0", id: req.id, result: await this.dispatch(req.method, req.params) };
    } catch (err) {
      response = this.errorResponse(req.id, err);
    }
    return req.notification ? null : response;
  }

  private errorResponse(id: Id, err: unknown): Response {
    if (err instanceof JSONRPCErrorException) {
      if (err.code === RpcErrorCode.MethodNotFound) this.fault("methodNotFound");
      else if (err.code === RpcErrorCode.Unauthorized) this.fault("unauthorized");
      return failure(id, err.code, err.message);
    }
    this.fault("handlerFailed", err);
    return failure(id, RpcErrorCode.Internal, `internal error: ${(err as Error)?.message ?? String(err)}`);
  }

  private async dispatch(method: string, raw: unknown): Promise<unknown> {
    if (!Object.hasOwn(RpcParams, method))
      throw rpcError(RpcErrorCode.MethodNotFound, `method not found: ${method.slice(0, 64)}`);
    const m = method as RpcMethod;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw rpcError(RpcErrorCode.Unauthorized, "params.auth: missing token");
    }
    const { auth, ...rest } = raw as Record<string, unknown>;
    if (!this.checkToken(auth))
      throw rpcError(RpcErrorCode.Unauthorized, "params.auth: wrong or missing token");
    const parsed = RpcParams[m].safeParse(rest);
    if (!parsed.success)
      throw rpcError(RpcErrorCode.InvalidParams, `invalid params: ${describeIssues(parsed.error)}`);
    const handler = this.datapath.methods[m] as (p: unknown) => unknown;
    const result = await handler(parsed.data);
    if (m === "hello") {
      const { controller } = parsed.data as { controller: Endpoint };
      this.controller = controller;
      this.onControllerChange(controller);
      this.log.info("controller registered", controller);
    }
    return result;
  }

  private checkToken(auth: unknown): boolean {
    if (typeof auth !== "string") return false;
    const given = Buffer.from(auth);
    return given.length === this.token.length && timingSafeEqual(given, this.token);
  }

  /**
   * The reply text, at most MAX_RPC_DATAGRAM bytes: results that do not fit are replaced by
   * ResponseTooLarge errors, largest first (errors are small: a batch of MAX_RPC_BATCH of them fits).
   */
  private fit(responses: Response[], batch: boolean): string {
    const texts = responses.map((r) => text(r));
    const size = () => texts.reduce((n, t) => n + Buffer.byteLength(t) + 1, 1);
    while (size() > MAX_RPC_DATAGRAM) {
      let largest = 0;
      for (let i = 1; i < texts.length; i++)
        if ((texts[i] as string).length > (texts[largest] as string).length) largest = i;
      const bytes = Buffer.byteLength(texts[largest] as string);
      this.fault("replyTooLarge");
      texts[largest] = text(
        failure(
          (responses[largest] as Response).id,
          RpcErrorCode.ResponseTooLarge,
          `the answer (${bytes} bytes) does not fit in one datagram of ${MAX_RPC_DATAGRAM} bytes`,
        ),
      );
    }
    return batch ? `[${texts.join(",")}]` : (texts[0] as string);
  }

  /**
   * Counts a fault; logs the counts at most once per LOG_PERIOD_MS: the first at once, those held back
   * when the period is over.
   */
  private fault(kind: RpcFault, err?: unknown): void {
    this.faults[kind]++;
    this.unlogged[kind] = (this.unlogged[kind] ?? 0) + 1;
    if (err !== undefined) this.lastError = `${kind}: ${(err as Error)?.stack ?? String(err)}`;
    const wait = this.lastLogAt + LOG_PERIOD_MS - Date.now();
    if (wait <= 0) this.logFaults();
    else if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.logFaults();
      }, wait);
      this.flushTimer.unref();
    }
  }

  private logFaults(): void {
    this.lastLogAt = Date.now();
    const counts = this.unlogged;
    this.unlogged = {};
    const error = this.lastError;
    this.lastError = null;
    if (error) this.log.error("rpc requests failed (logged at most every 10 s)", { ...counts, error });
    else this.log.warn("bad rpc requests refused (logged at most every 10 s)", counts);
  }
}

/** The request, or why its envelope is not a JSON-RPC 2.0 request. */
function checkEnvelope(raw: unknown): Request | string {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return "not an object";
  const r = raw as Record<string, unknown>;
  if (r.jsonrpc !== "2.0") return 'jsonrpc must be "2.0"';
  if (typeof r.method !== "string") return "method must be a string";
  const hasId = Object.hasOwn(r, "id");
  const id = r.id;
  if (hasId && !isValidId(id))
    return `id must be a string of at most ${MAX_RPC_ID_LENGTH} characters, a number or null`;
  if (Object.hasOwn(r, "params") && (typeof r.params !== "object" || r.params === null))
    return "params must be an object or an array";
  return { id: hasId ? (id as Id) : null, notification: !hasId, method: r.method, params: r.params };
}

function isValidId(id: unknown): id is Id {
  if (id === null) return true;
  if (typeof id === "string") return id.length <= MAX_RPC_ID_LENGTH;
  return typeof id === "number" && Number.isFinite(id);
}

function failure(id: Id, code: number, message: string): Response {
  const bounded = message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE)}...` : message;
  return { jsonrpc: "2.0", id, error: { code, message: bounded } };
}

function text(response: Response): string {
  return JSON.stringify(response);
}
