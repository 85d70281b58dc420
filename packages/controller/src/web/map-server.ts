import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type OverlayMap, splitHostPort } from "@tincan/protocol";
import type { Log } from "../logger.js";

/** Most event-stream clients at once; more get 503. */
export const MAX_MAP_CLIENTS = 16;
/** A client that has this much unsent data is too slow: it is dropped (its page reconnects). */
const MAX_CLIENT_BACKLOG = 1 << 20;
/** While clients watch, the overlay is looked at this often (traffic changes without events). */
const REFRESH_MS = 1000;
/** A change the controller reports is sent after this (changes come in bursts). */
const CHANGE_DELAY_MS = 100;

/** Served from memory, read once at start (this directory works from both src/ and dist/). */
const ASSETS: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/map.js": { file: "map.js", type: "text/javascript; charset=utf-8" },
  "/map.css": { file: "map.css", type: "text/css; charset=utf-8" },
};
const ASSET_DIR = new URL("../../src/web/assets/", import.meta.url);

export interface MapServerOptions {
  /** `web.listen`: a loopback "ip:port". */
  listen: string;
  /** The overlay now. */
  snapshot(): Promise<OverlayMap>;
  log: Log;
}

/**
 * The live overlay map: one page (`/`, its script and style), the model as `/overlay.json`, and
 * `/events`, a server-sent event stream that sends the model whenever it changes. Loopback only,
 * and only for requests that name this address in `Host` (a web page elsewhere cannot read it
 * through DNS rebinding).
 */
export class MapServer {
  private server: Server | null = null;
  /** Event-stream clients, each with the model it was sent last (JSON without `updatedAt`). */
  private readonly clients = new Map<ServerResponse, string>();
  private readonly assets = new Map<string, Buffer>();
  private timer: NodeJS.Timeout | null = null;
  private changeTimer: NodeJS.Timeout | null = null;
  private refreshing = false;
  /** A refresh was asked for while one ran: run another after it. */
  private refreshAgain = false;
  /** Clients refused or dropped, by reason. */
  readonly drops = { tooManyClients: 0, slowClient: 0, badHost: 0 };

  constructor(private readonly opts: MapServerOptions) {}

  /** Resolves with the bound "ip:port" (the port may have been 0). */
  async start(): Promise<string> {
    for (const { file } of Object.values(ASSETS))
      this.assets.set(file, await readFile(new URL(file, ASSET_DIR)));
    const { host, port } = splitHostPort(this.opts.listen);
    const server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => this.opts.log.warn("map server error", { error: err.message }));
    this.server = server;
    const addr = server.address();
    const bound = typeof addr === "object" && addr ? `${addr.address}:${addr.port}` : this.opts.listen;
    this.opts.log.info("overlay map served", { url: `http://${bound}/` });
    return bound;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.changeTimer) clearTimeout(this.changeTimer);
    this.timer = this.changeTimer = null;
    for (const c of this.clients.keys()) c.end();
    this.clients.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Something the map shows changed (links, members): clients get it soon. */
  changed(): void {
    if (this.clients.size === 0 || this.changeTimer) return;
    this.changeTimer = setTimeout(() => {
      this.changeTimer = null;
      void this.refresh();
    }, CHANGE_DELAY_MS);
    this.changeTimer.unref();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (!this.hostAllowed(req.headers.host)) {
      this.drops.badHost++;
      res.writeHead(421, { "content-type": "text/plain" }).end("misdirected request\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const asset = ASSETS[path];
    if (asset) {
      res.writeHead(200, { "content-type": asset.type, "cache-control": "no-cache" });
      res.end(req.method === "HEAD" ? undefined : this.assets.get(asset.file));
      return;
    }
    if (path === "/overlay.json") {
      this.opts
        .snapshot()
        .then((map) => {
          res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
          res.end(`${JSON.stringify(map)}\n`);
        })
        .catch((err: Error) => res.writeHead(503, { "content-type": "text/plain" }).end(`${err.message}\n`));
      return;
    }
    if (path === "/events") {
      this.subscribe(res);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }

  /** `Host` must name the address we listen on (or localhost with our port). */
  private hostAllowed(host: string | undefined): boolean {
    const addr = this.server?.address();
    if (!host || typeof addr !== "object" || !addr) return false;
    return host === `${addr.address}:${addr.port}` || host === `localhost:${addr.port}`;
  }

  private subscribe(res: ServerResponse): void {
    if (this.clients.size >= MAX_MAP_CLIENTS) {
      this.drops.tooManyClients++;
      res.writeHead(503, { "content-type": "text/plain", "retry-after": "10" }).end("too many map clients\n");
      return;
    }
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
    });
    res.write("retry: 1000\n\n");
    this.clients.set(res, "");
    res.on("close", () => {
      this.clients.delete(res);
      if (this.clients.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    });
    void this.refresh(); // the newcomer gets the model now
    if (!this.timer) {
      this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
      this.timer.unref();
    }
  }

  private async refresh(): Promise<void> {
    if (this.clients.size === 0) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    try {
      do {
        this.refreshAgain = false;
        const map = await this.opts.snapshot();
        // updatedAt changes every time: compare what is drawn.
        const drawn = JSON.stringify({ ...map, updatedAt: 0 });
        const event = `data: ${JSON.stringify(map)}\n\n`;
        for (const [c, last] of this.clients) {
          if (last === drawn) continue;
          if (c.writableLength > MAX_CLIENT_BACKLOG) {
            this.drops.slowClient++;
            this.opts.log.debug("dropped a slow map client");
            c.destroy();
            continue;
          }
          c.write(event);
          this.clients.set(c, drawn);
        }
      } while (this.refreshAgain && this.clients.size > 0);
    } catch (err) {
      this.opts.log.debug("overlay map not refreshed", { error: (err as Error).message });
    } finally {
      this.refreshing = false;
    }
  }
}
