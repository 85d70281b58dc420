import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { RPC_SOCKET_BUFFER, RpcErrorCode } from "@tincan/protocol";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  DatapathClient,
  type DatapathClientOptions,
  type DatapathHealth,
  queryAll,
  RPC_TIMEOUT,
  RpcError,
} from "./datapath-client.js";
import { nullLog } from "./logger.js";

interface Req {
  id?: number;
  method: string;
  params: Record<string, unknown>;
}

/** A fake datapath: answers per a handler; `null` from the handler = stay silent. */
class FakeServer {
  socket: Socket = createSocket("udp4");
  requests: Req[] = [];
  token = "token-number-one-0123456789";
  controllerPort = 0;
  handler: (r: Req) => unknown = () => ({});
  async start(): Promise<number> {
    this.socket.on("message", (msg, rinfo) => {
      const req = JSON.parse(msg.toString()) as Req;
      this.requests.push(req);
      if (req.params.auth !== this.token) {
        this.reply(rinfo.port, {
          jsonrpc: "2.0",
          id: req.id,
          error: { code: -32001, message: "unauthorized" },
        });
        return;
      }
      if (req.method === "hello") this.controllerPort = (req.params.controller as { port: number }).port;
      const result =
        req.method === "hello"
          ? { version: "t", uid: null, vnic: null, startedAt: 1, pid: 4242 }
          : this.handler(req);
      if (result !== null) this.reply(rinfo.port, { jsonrpc: "2.0", id: req.id, result });
    });
    await new Promise<void>((r) => this.socket.bind(0, "127.0.0.1", r));
    return this.socket.address().port;
  }
  reply(port: number, msg: unknown): void {
    this.socket.send(JSON.stringify(msg), port, "127.0.0.1");
  }
  notify(method: string, params: unknown): void {
    this.reply(this.controllerPort, { jsonrpc: "2.0", method, params });
  }
  close(): void {
    this.socket.close();
  }
}

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

// Timeouts are generous unless a test is about them: a stalled test runner must not cause retries.
async function setup(
  timeoutMs = 2000,
  linkSetupTimeoutMs = timeoutMs,
  extra: Partial<DatapathClientOptions> = {},
) {
  const server = new FakeServer();
  const port = await server.start();
  const dir = mkdtempSync(join(tmpdir(), "tincan-token-"));
  const tokenFile = join(dir, "tincan.token");
  writeFileSync(tokenFile, `${server.token}\n`);
  const client = new DatapathClient({
    rpc: `127.0.0.1:${port}`,
    tokenFile,
    log: nullLog,
    timeoutMs,
    linkSetupTimeoutMs,
    retries: 2,
    ...extra,
  });
  cleanup.push(() => {
    client.close();
    server.close();
  });
  return { server, client, tokenFile };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The kernel's cap on socket receive buffers (the burst test needs 4 MiB). */
const rmemMax = () => Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8"));
const uid = "a".repeat(32);

describe("DatapathClient", () => {
  it("sends the token with every request and registers its port with hello", async () => {
    const { server, client } = await setup();
    await client.start();
    server.handler = () => [];
    expect(await client.call("route.query", {})).toEqual([]);
    expect(server.requests.map((r) => r.method)).toEqual(["hello", "route.query"]);
    expect(server.requests.every((r) => r.params.auth === server.token)).toBe(true);
    expect(server.controllerPort).toBe(client.localPort);
  });

  it("gives link.create its own timeout", async () => {
    const { server, client } = await setup(300, 3000);
    await client.start();
    server.handler = (r) => {
      if (r.method !== "link.create") return [];
      setTimeout(() => server.reply(server.controllerPort, { jsonrpc: "2.0", id: r.id, result: {} }), 900);
      return null;
    };
    expect(await client.call("link.query", {}).catch((e: RpcError) => e.code)).toEqual([]);
    expect(await client.call("link.create", { peerUid: uid })).toEqual({});
  });

  it("retries idempotent methods after a timeout, but not link.create", async () => {
    const { server, client } = await setup(400);
    await client.start();
    let n = 0;
    server.handler = () => (++n < 3 ? null : []);
    expect(await client.call("link.query", {})).toEqual([]);
    expect(server.requests.filter((r) => r.method === "link.query")).toHaveLength(3);

    server.handler = () => null;
    const err = await client.call("link.create", { peerUid: uid }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(RPC_TIMEOUT);
    expect(server.requests.filter((r) => r.method === "link.create")).toHaveLength(1);
  });

  it.skipIf(rmemMax() < RPC_SOCKET_BUFFER)(
    "keeps a burst of notifications that arrives while its event loop is busy",
    async () => {
      // The datapath is another thread here: it sends 1000 notifications of ~1.5 KB (1.5 MB, 7x the
      // kernel's default socket buffer) while this thread spins, as a datapath does while a loaded
      // controller is busy.
      const datapath = new Worker(
        `const { parentPort } = require("node:worker_threads");
       const s = require("node:dgram").createSocket("udp4");
       s.bind(0, "127.0.0.1", () => parentPort.postMessage(s.address().port));
       parentPort.once("message", ({ port, uid }) => {
         const msg = Buffer.from(JSON.stringify({ jsonrpc: "2.0", method: "icc.message",
           params: { peerUid: uid, data: "x".repeat(1400) } }));
         let n = 0;
         const next = () => (n++ < 1000 ? s.send(msg, port, "127.0.0.1", next) : parentPort.postMessage("sent"));
         next();
       });`,
        { eval: true },
      );
      cleanup.push(() => void datapath.terminate());
      const datapathPort = await new Promise<number>((r) => datapath.once("message", r));
      const dir = mkdtempSync(join(tmpdir(), "tincan-token-"));
      writeFileSync(join(dir, "tincan.token"), "token-number-one-0123456789\n");
      const client = new DatapathClient({
        rpc: `127.0.0.1:${datapathPort}`,
        tokenFile: join(dir, "tincan.token"),
        log: nullLog,
      });
      cleanup.push(() => client.close());
      await client.open();
      let got = 0;
      client.on("icc.message", () => got++);
      const sent = new Promise((r) => datapath.once("message", r));
      datapath.postMessage({ port: client.localPort, uid });
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        // busy: no datagram is read now
      }
      await sent;
      await vi.waitFor(() => expect(got).toBe(1000), { timeout: 5000 });
    },
  );

  it("re-reads the token file when the datapath answers -32001, says hello again and repeats the call", async () => {
    const { server, client, tokenFile } = await setup();
    await client.start();
    const restarted: number[] = [];
    client.on("datapath-restarted", (h) => restarted.push(h.startedAt));
    server.token = "token-number-two-9876543210";
    writeFileSync(tokenFile, server.token);
    server.handler = () => ({});
    await client.call("route.remove", { prefix: "10.10.0.7/32" });
    const methods = server.requests.map(
      (r) => `${r.method}:${r.params.auth === server.token ? "new" : "old"}`,
    );
    expect(methods).toEqual(["hello:old", "route.remove:old", "hello:new", "route.remove:new"]);
    expect(restarted).toEqual([]); // same startedAt from the fake: not a restart
  });

  it("dispatches valid notifications and ignores malformed ones", async () => {
    const { server, client } = await setup();
    await client.start();
    const states: unknown[] = [];
    client.on("link.state", (p) => states.push(p));
    server.notify("link.state", { peerUid: uid, state: "bogus" });
    server.notify("link.state", { peerUid: "short", state: "connected" });
    server.notify("no.such.method", {});
    server.notify("link.state", { peerUid: uid, state: "connected", path: "relay" });
    // The valid one is sent last: a malformed one dispatched before it would make this never pass.
    await vi.waitFor(() => expect(states).toEqual([{ peerUid: uid, state: "connected", path: "relay" }]));
  });

  it("ignores datagrams that do not come from the datapath's address", async () => {
    const { client } = await setup();
    await client.start();
    const states: unknown[] = [];
    client.on("link.state", (p) => states.push(p));
    const other = createSocket("udp4");
    await new Promise<void>((r) => other.bind(0, "127.0.0.1", r));
    other.send(
      JSON.stringify({ jsonrpc: "2.0", method: "link.state", params: { peerUid: uid, state: "connected" } }),
      client.localPort,
      "127.0.0.1",
    );
    await sleep(100);
    other.close();
    expect(states).toEqual([]);
  });

  it("emits datapath-restarted on datapath.started with a new startedAt", async () => {
    const { server, client } = await setup();
    await client.start();
    const restarted: number[] = [];
    client.on("datapath-restarted", (h) => restarted.push(h.startedAt));
    // the restarted fake answers hello with startedAt 2
    server.socket.removeAllListeners("message");
    server.socket.on("message", (msg, rinfo) => {
      const req = JSON.parse(msg.toString()) as Req;
      server.requests.push(req);
      server.reply(rinfo.port, {
        jsonrpc: "2.0",
        id: req.id,
        result: { version: "t", uid: null, vnic: null, startedAt: 2 },
      });
    });
    server.notify("datapath.started", { version: "t", startedAt: 2 });
    await vi.waitFor(() => expect(restarted).toEqual([2]));
  });
});

describe("queryAll", () => {
  const links = Array.from({ length: 2500 }, (_, i) => ({ peerUid: i.toString(16).padStart(32, "0") }));

  it("asks once when the whole list fits", async () => {
    const { server, client } = await setup();
    await client.start();
    server.handler = () => links.slice(0, 3);
    expect(await queryAll(client, "link.query")).toHaveLength(3);
    expect(server.requests.filter((r) => r.method === "link.query")).toHaveLength(1);
  });

  it("pages when the datapath says the list does not fit, until an empty page", async () => {
    const { server, client } = await setup();
    await client.start();
    server.handler = (r) => {
      if (r.params.offset === undefined) {
        server.reply(server.controllerPort, {
          jsonrpc: "2.0",
          id: r.id,
          error: { code: RpcErrorCode.ResponseTooLarge, message: "too large" },
        });
        return null;
      }
      const offset = r.params.offset as number;
      return links.slice(offset, offset + Math.min(r.params.limit as number, 230)); // a page cut to fit
    };
    const all = await queryAll(client, "link.query");
    expect(all.map((l) => l.peerUid)).toEqual(links.map((l) => l.peerUid));
    expect(server.requests.filter((r) => r.method === "link.query")).toHaveLength(1 + 11 + 1);
  });
});

describe("datapath watchdog", () => {
  async function hangingDatapath(restartOnHang: boolean) {
    const killed: number[] = [];
    const { server, client } = await setup(300, 300, {
      retries: 0,
      watchdogSec: 1,
      restartOnHang,
      kill: (pid) => killed.push(pid),
    });
    const health: DatapathHealth[] = [];
    client.on("datapath-health", (h) => health.push(h));
    await client.start();
    return { server, client, killed, health };
  }

  it("reports a datapath that stops answering, ends it by its pid, and sees it answer again", async () => {
    const { server, client, killed, health } = await hangingDatapath(true);
    server.handler = () => null; // hung: every request stays unanswered
    const t0 = Date.now();
    while (health.length === 0 && Date.now() - t0 < 5000) {
      await client.call("link.query", {}).catch(() => {}); // the link manager polls like this
      await sleep(100);
    }
    expect(health).toEqual([{ responsive: false, unansweredSinceMs: expect.any(Number) }]);
    expect(Date.now() - (health[0]?.unansweredSinceMs ?? 0)).toBeGreaterThanOrEqual(1000);
    expect(client.health().responsive).toBe(false);
    expect(killed).toEqual([4242]);
    server.handler = () => [];
    expect(await client.call("link.query", {})).toEqual([]);
    expect(client.health()).toEqual({ responsive: true, unansweredSinceMs: null });
    expect(health.at(-1)).toEqual({ responsive: true, unansweredSinceMs: null });
  });

  it("does not end the datapath unless restartOnHang, and never flags one that answers slowly", async () => {
    const { server, client, killed, health } = await hangingDatapath(false);
    server.handler = (r) => {
      setTimeout(() => server.reply(server.controllerPort, { jsonrpc: "2.0", id: r.id, result: [] }), 250);
      return null;
    };
    const t0 = Date.now();
    while (Date.now() - t0 < 2500) await client.call("link.query", {});
    expect(health).toEqual([]);
    server.handler = () => null;
    while (health.length === 0 && Date.now() - t0 < 8000) {
      await client.call("link.query", {}).catch(() => {});
      await sleep(100);
    }
    expect(health[0]?.responsive).toBe(false);
    expect(killed).toEqual([]);
  });
});
