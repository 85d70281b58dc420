import { request } from "node:http";
import type { OverlayMap } from "@tincan/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../logger.js";
import { MAX_MAP_CLIENTS, MapServer } from "./map-server.js";

const UID = "0".repeat(32);
let model: OverlayMap = { self: UID, controller: "test", updatedAt: 0, nodes: [], edges: [], refused: [] };
const servers: MapServer[] = [];

async function serve(): Promise<{ server: MapServer; port: number }> {
  const server = new MapServer({
    listen: "127.0.0.1:0",
    snapshot: async () => ({ ...model, updatedAt: Date.now() }),
    log: createLogger("error", { silent: true }).component("web"),
  });
  servers.push(server);
  const bound = await server.start();
  return { server, port: Number(bound.split(":")[1]) };
}

afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

function get(port: number, path: string, host = `127.0.0.1:${port}`) {
  return new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

/** An event-stream client: the `data:` payloads it received so far. */
function subscribe(port: number) {
  const events: OverlayMap[] = [];
  let status = 0;
  const req = request({ host: "127.0.0.1", port, path: "/events" }, (res) => {
    status = res.statusCode ?? 0;
    let buf = "";
    res.on("data", (d) => {
      buf += d;
      for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
        const chunk = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (chunk.startsWith("data: ")) events.push(JSON.parse(chunk.slice(6)));
      }
    });
  });
  req.on("error", () => {});
  req.end();
  return { events, status: () => status, close: () => req.destroy() };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("MapServer", () => {
  it("serves the page, its assets and the model", async () => {
    const { port } = await serve();
    const page = await get(port, "/");
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/text\/html/);
    expect(page.body).toContain('src="/map.js"');
    expect((await get(port, "/map.js")).body).toContain("EventSource");
    expect((await get(port, "/map.css")).type).toMatch(/text\/css/);
    const json = await get(port, "/overlay.json");
    expect(JSON.parse(json.body)).toMatchObject({ self: UID, nodes: [] });
    expect((await get(port, "/nope")).status).toBe(404);
  });

  it("answers only requests that name its own address (no DNS rebinding)", async () => {
    const { server, port } = await serve();
    expect((await get(port, "/overlay.json", `evil.example:${port}`)).status).toBe(421);
    expect((await get(port, "/overlay.json", `localhost:${port}`)).status).toBe(200);
    expect(server.drops.badHost).toBe(1);
  });

  it("pushes the model to event-stream clients when it changes, not when only the time does", async () => {
    const { server, port } = await serve();
    const client = subscribe(port);
    await until(() => client.events.length === 1);
    model = { ...model, nodes: [{ uid: UID, jid: null, self: true, online: true }] };
    server.changed();
    await until(() => client.events.length === 2);
    expect(client.events[1]?.nodes).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1300)); // one periodic refresh: nothing new to send
    expect(client.events).toHaveLength(2);
    client.close();
  });

  it("refuses clients beyond MAX_MAP_CLIENTS, counted", async () => {
    const { server, port } = await serve();
    const clients = Array.from({ length: MAX_MAP_CLIENTS + 1 }, () => subscribe(port));
    await until(() => clients.every((c) => c.status() !== 0));
    expect(clients.filter((c) => c.status() === 503)).toHaveLength(1);
    expect(server.drops.tooManyClients).toBe(1);
    for (const c of clients) c.close();
  });
});
