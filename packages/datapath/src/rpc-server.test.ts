import dgram from "node:dgram";
import { RpcErrorCode, uidForIpv4 } from "@tincan/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import winston from "winston";
import { Datapath } from "./datapath.js";
import { RpcServer } from "./rpc-server.js";
import { fakeVnicFactory } from "./testing.js";

const TOKEN = "test-token-0123456789abcdef";
const silent = winston.createLogger({ silent: true });

let datapath: Datapath;
let server: RpcServer;
let port: number;
let client: dgram.Socket;

beforeEach(async () => {
  datapath = new Datapath({ vnicFactory: fakeVnicFactory(), logger: silent, notify: () => {} });
  server = new RpcServer(datapath, TOKEN, silent);
  port = (await server.listen("127.0.0.1:0")).port;
  client = dgram.createSocket("udp4");
  await new Promise<void>((r) => client.bind(0, "127.0.0.1", r));
});

afterEach(() => {
  server.close();
  client.close();
  datapath.close();
});

function send(payload: string | Buffer): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no reply")), 2000);
    client.once("message", (msg) => {
      clearTimeout(timer);
      resolve(JSON.parse(msg.toString()));
    });
    client.send(payload, port, "127.0.0.1");
  });
}

let nextId = 1;
const call = (method: string, params: unknown) =>
  send(JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }));

describe("RPC server", () => {
  it("answers an authenticated request", async () => {
    const res = await call("route.query", { auth: TOKEN });
    expect(res.result).toEqual([]);
  });

  it("refuses a wrong or missing token and changes nothing", async () => {
    const uid = uidForIpv4("10.10.0.2");
    const wrong = await call("route.set", { auth: "nope", prefix: "10.10.0.2/32", peerUid: uid });
    expect(wrong.error.code).toBe(RpcErrorCode.Unauthorized);
    const missing = await call("route.set", { prefix: "10.10.0.2/32", peerUid: uid });
    expect(missing.error.code).toBe(RpcErrorCode.Unauthorized);
    const none = await call("route.query", undefined);
    expect(none.error.code).toBe(RpcErrorCode.Unauthorized);
    expect(datapath.fib.routes.size).toBe(0);
  });

  it("names the bad field in invalid params", async () => {
    const res = await call("route.set", { auth: TOKEN, prefix: "10.10.0.2/40", peerUid: "xyz" });
    expect(res.error.code).toBe(RpcErrorCode.InvalidParams);
    expect(res.error.message).toMatch(/prefix/);
    expect(res.error.message).toMatch(/peerUid/);
    expect(datapath.fib.routes.size).toBe(0);
  });

  it("answers garbage, unknown methods and oversized datagrams with JSON-RPC errors", async () => {
    expect((await send(Buffer.from([0xff, 0x00, 0x13]))).error.code).toBe(RpcErrorCode.ParseError);
    expect((await send("{}")).error.code).toBe(RpcErrorCode.InvalidRequest);
    expect((await call("no.such.method", { auth: TOKEN })).error.code).toBe(RpcErrorCode.MethodNotFound);
    expect((await send(Buffer.alloc(61_000, 0x20))).error.code).toBe(RpcErrorCode.InvalidRequest);
    // Still serving afterwards.
    expect((await call("route.query", { auth: TOKEN })).result).toEqual([]);
  });

  it("refuses links before the vNIC is configured, and a link to ourselves", async () => {
    const peer = uidForIpv4("10.10.0.2");
    const early = await call("link.create", { auth: TOKEN, peerUid: peer });
    expect(early.error.code).toBe(RpcErrorCode.NotConfigured);
    const own = uidForIpv4("10.10.0.1");
    const conf = await call("vnic.configure", { auth: TOKEN, uid: own, ipv4: "10.10.0.1/16" });
    expect(conf.result).toEqual({ name: "tincan0", mtu: 1280 });
    const self = await call("link.create", { auth: TOKEN, peerUid: own });
    expect(self.error.code).toBe(RpcErrorCode.InvalidParams);
    const missing = await call("link.complete", {
      auth: TOKEN,
      peerUid: peer,
      description: { type: "answer", sdp: "v=0" },
    });
    expect(missing.error.code).toBe(RpcErrorCode.NotFound);
  });

  it("registers the controller endpoint with hello and sends notifications there", async () => {
    const listener = dgram.createSocket("udp4");
    await new Promise<void>((r) => listener.bind(0, "127.0.0.1", r));
    const hello = await call("hello", {
      auth: TOKEN,
      controller: { host: "127.0.0.1", port: listener.address().port },
    });
    expect(hello.result.version).toBeTypeOf("string");
    const got = new Promise<any>((r) => listener.once("message", (m) => r(JSON.parse(m.toString()))));
    server.notify("link.state", { peerUid: uidForIpv4("10.10.0.9"), state: "closed" });
    const note = await got;
    listener.close();
    expect(note).toMatchObject({ jsonrpc: "2.0", method: "link.state", params: { state: "closed" } });
    expect(note.id).toBeUndefined();
  });
});
