import { timingSafeEqual } from "node:crypto";
import dgram from "node:dgram";
import {
  describeIssues,
  MAX_RPC_DATAGRAM,
  type NotificationMethod,
  type NotificationParamsOf,
  RPC_METHODS,
  RPC_SOCKET_BUFFER,
  RpcErrorCode,
  RpcParams,
  smallRpcBuffer,
  splitHostPort,
} from "@tincan/protocol";
import {
  createJSONRPCErrorResponse,
  createJSONRPCNotification,
  JSONRPCErrorException,
  type JSONRPCErrorResponse,
  type JSONRPCID,
  JSONRPCServer,
} from "json-rpc-2.0";
import type { Logger } from "winston";
import type { Datapath } from "./datapath.js";
import { rpcError } from "./errors.js";

export interface Endpoint {
  host: string;
  port: number;
}

/**
 * JSON-RPC 2.0 over UDP on loopback: one message per datagram. Every request must carry the
 * secret token as params.auth; params are validated by the method's zod schema before the
 * handler runs, so a bad request changes nothing.
 */
export class RpcServer {
  private readonly socket = dgram.createSocket({ type: "udp4", recvBufferSize: RPC_SOCKET_BUFFER });
  private readonly server: JSONRPCServer;
  private readonly token: Buffer;
  controller: Endpoint | null = null;

  constructor(
    private readonly datapath: Datapath,
    token: string,
    private readonly log: Logger,
    private readonly onControllerChange: (endpoint: Endpoint) => void = () => {},
  ) {
    this.token = Buffer.from(token);
    this.server = new JSONRPCServer({
      errorListener: (message, data) => this.log.debug(`rpc error: ${message}`, { error: String(data) }),
    });
    this.server.mapErrorToJSONRPCErrorResponse = (id: JSONRPCID, error: unknown): JSONRPCErrorResponse => {
      if (error instanceof JSONRPCErrorException)
        return createJSONRPCErrorResponse(id, error.code, error.message);
      this.log.error("rpc handler failed", { error: (error as Error)?.stack ?? String(error) });
      return createJSONRPCErrorResponse(
        id,
        RpcErrorCode.Internal,
        `internal error: ${(error as Error)?.message}`,
      );
    };
    for (const method of RPC_METHODS) {
      this.server.addMethod(method, (params: unknown) => this.dispatch(method, params));
    }
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
    this.socket.close();
  }

  private async dispatch(method: (typeof RPC_METHODS)[number], raw: unknown): Promise<unknown> {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw rpcError(RpcErrorCode.Unauthorized, "params.auth: missing token");
    }
    const { auth, ...rest } = raw as Record<string, unknown>;
    if (!this.checkToken(auth))
      throw rpcError(RpcErrorCode.Unauthorized, "params.auth: wrong or missing token");
    const parsed = RpcParams[method].safeParse(rest);
    if (!parsed.success)
      throw rpcError(RpcErrorCode.InvalidParams, `invalid params: ${describeIssues(parsed.error)}`);
    const handler = this.datapath.methods[method] as (p: unknown) => unknown;
    const result = await handler(parsed.data);
    if (method === "hello") {
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

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (!rinfo.address.startsWith("127.")) return; // bound to loopback; belt and braces
    if (msg.length > MAX_RPC_DATAGRAM) {
      this.reply(createJSONRPCErrorResponse(null, RpcErrorCode.InvalidRequest, "request too large"), rinfo);
      return;
    }
    this.server.receiveJSON(msg.toString("utf8")).then(
      (response) => {
        if (response) this.reply(response, rinfo);
      },
      (err: unknown) => this.log.error("rpc receive failed", { error: String(err) }),
    );
  }

  private reply(response: unknown, rinfo: dgram.RemoteInfo): void {
    let text = JSON.stringify(response);
    if (Buffer.byteLength(text) > MAX_RPC_DATAGRAM) {
      const id = (response as { id?: JSONRPCID }).id ?? null;
      text = JSON.stringify(
        createJSONRPCErrorResponse(id, RpcErrorCode.Internal, "response too large for one datagram"),
      );
    }
    this.socket.send(text, rinfo.port, rinfo.address);
  }
}
