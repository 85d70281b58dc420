import dgram from "node:dgram";
import { MAX_RPC_BATCH, MAX_RPC_DATAGRAM, RpcErrorCode, uidForIpv4 } from "@tincan/protocol";
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
  datapath = new Datapath({ vnicFactory: fakeVnicFactory(), logger: silent, notify: () => {}, maxLinks: 2 });
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

  it("answers an id nested 6000 deep with Invalid Request (id null) and keeps serving", async () => {
    const id = `${"[".repeat(6000)}${"]".repeat(6000)}`;
    const res = await send(
      `{"jsonrpc":"2.0","id":${id},"method":"route.query","params":{"auth":"${TOKEN}"}}`,
    );
    expect(res).toMatchObject({ id: null, error: { code: RpcErrorCode.InvalidRequest } });
    const long = await send(JSON.stringify({ jsonrpc: "2.0", id: "x".repeat(257), method: "hello" }));
    expect(long).toMatchObject({ id: null, error: { code: RpcErrorCode.InvalidRequest } });
    expect(server.faults.invalidRequest).toBe(2);
    expect((await call("route.query", { auth: TOKEN })).result).toEqual([]);
  });

  it("follows JSON-RPC 2.0 for batches: one error per bad element, empty and oversized batches refused", async () => {
    const ok = { jsonrpc: "2.0", id: 7, method: "route.query", params: { auth: TOKEN } };
    const mixed = await send(JSON.stringify([null, ok, 1, { jsonrpc: "2.0", method: "route.query" }]));
    expect(mixed).toEqual([
      { jsonrpc: "2.0", id: null, error: { code: RpcErrorCode.InvalidRequest, message: expect.any(String) } },
      { jsonrpc: "2.0", id: 7, result: [] },
      { jsonrpc: "2.0", id: null, error: { code: RpcErrorCode.InvalidRequest, message: expect.any(String) } },
    ]);
    expect(await send("[null]")).toMatchObject([{ id: null, error: { code: RpcErrorCode.InvalidRequest } }]);
    expect(await send("[]")).toMatchObject({ id: null, error: { code: RpcErrorCode.InvalidRequest } });
    const big = await send(JSON.stringify(Array(MAX_RPC_BATCH + 1).fill(ok)));
    expect(big).toMatchObject({ id: null, error: { code: RpcErrorCode.InvalidRequest } });
    expect(big.error.message).toMatch(/at most 32/);
    // Notifications only: no answer at all.
    expect(await server.handle(Buffer.from(JSON.stringify([{ ...ok, id: undefined }])))).toBeNull();
  });

  it("refuses links beyond maxLinks with TooManyLinks and changes nothing", async () => {
    await call("vnic.configure", { auth: TOKEN, uid: uidForIpv4("10.10.0.1"), ipv4: "10.10.0.1/16" });
    for (const ip of ["10.10.0.2", "10.10.0.3"])
      expect((await call("link.create", { auth: TOKEN, peerUid: uidForIpv4(ip) })).result).toBeDefined();
    const over = await call("link.create", { auth: TOKEN, peerUid: uidForIpv4("10.10.0.4") });
    expect(over.error.code).toBe(RpcErrorCode.TooManyLinks);
    expect(over.error.message).toMatch(/maxLinks \(2\)/);
    expect((await call("link.query", { auth: TOKEN })).result).toHaveLength(2);
  });

  it("pages route.query so that every reply fits in one datagram", async () => {
    await call("vnic.configure", { auth: TOKEN, uid: uidForIpv4("10.10.0.1"), ipv4: "10.10.0.1/16" });
    const n = 1500;
    for (let i = 0; i < n; i++) {
      const ip = `10.11.${i >> 8}.${i & 255}`;
      datapath.methods["route.set"]({ prefix: `${ip}/32`, peerUid: uidForIpv4(ip) });
    }
    const whole = await call("route.query", { auth: TOKEN });
    expect(whole.error.code).toBe(RpcErrorCode.ResponseTooLarge);
    const seen = new Set<string>();
    let pages = 0;
    for (let offset = 0; ; pages++) {
      const reply = await new Promise<Buffer>((resolve) => {
        client.once("message", resolve);
        client.send(
          JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "route.query",
            params: { auth: TOKEN, offset, limit: 1000 },
          }),
          port,
          "127.0.0.1",
        );
      });
      expect(reply.length).toBeLessThanOrEqual(MAX_RPC_DATAGRAM);
      const page = JSON.parse(reply.toString()).result as { prefix: string }[];
      if (page.length === 0) break;
      for (const r of page) seen.add(r.prefix);
      offset += page.length;
    }
    expect(seen.size).toBe(n);
    expect(pages).toBeGreaterThan(1);
  });

  it("logs bad datagrams rate-limited, with counts, never one line each", async () => {
    const lines: string[] = [];
    const capture = winston.createLogger({
      transports: [new winston.transports.Console({ silent: true })],
    });
    capture.on("data", (info: { message: string }) => lines.push(info.message));
    const quiet = new RpcServer(datapath, TOKEN, capture);
    for (let i = 0; i < 100; i++) await quiet.handle(Buffer.from(i % 2 ? "[null]" : "[]"));
    expect(quiet.faults.emptyBatch + quiet.faults.invalidRequest).toBe(100);
    expect(lines).toEqual(["bad rpc requests refused (logged at most every 10 s)"]);
    quiet.close();
  });
});
