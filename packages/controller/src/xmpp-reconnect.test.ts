// XmppSession against a tiny local XMPP server speaking real STARTTLS: connections that go silent,
// refused logins and reconnectNow() must end in a fresh login, with the old TLS socket really closed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TLSSocket } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Log } from "./logger.js";
import { reconnectDelayMs, XmppSession } from "./xmpp.js";

const DOMAIN = "lab.local";
let dir: string;
let key: Buffer;
let cert: Buffer;
let caFile: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "xmpp-reconnect-"));
  caFile = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${DOMAIN}`].concat([
      "-addext",
      `subjectAltName=DNS:${DOMAIN}`,
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      caFile,
    ]),
    { stdio: "ignore" },
  );
  key = readFileSync(join(dir, "key.pem"));
  cert = readFileSync(caFile);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Conn {
  raw: Socket;
  closed: boolean;
  silent: boolean;
}

/** Just enough of a c2s server: STARTTLS (required), SASL PLAIN, bind, empty roster, ping. */
class FakeXmppServer {
  readonly conns: Conn[] = [];
  refuseLogin = false;
  private readonly server: Server;
  port = 0;

  constructor() {
    this.server = createServer((raw) => this.accept(raw));
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** From now on the connections that exist say nothing (their packets are "dropped"). */
  silenceCurrent(): void {
    for (const c of this.conns) c.silent = true;
  }

  close(): void {
    for (const c of this.conns) c.raw.destroy();
    this.server.close();
  }

  private accept(raw: Socket): void {
    const conn: Conn = { raw, closed: false, silent: false };
    this.conns.push(conn);
    raw.on("close", () => {
      conn.closed = true;
    });
    raw.on("error", () => {});
    let sock: Socket = raw;
    let stage: "plain" | "tls" | "authed" = "plain";
    const handle = (chunk: string): void => {
      if (conn.silent) return;
      if (chunk.includes("<stream:stream")) {
        const features =
          stage === "plain"
            ? "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
            : stage === "tls"
              ? "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
              : "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>";
        sock.write(
          `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s${this.conns.length}' from='${DOMAIN}' version='1.0'><stream:features>${features}</stream:features>`,
        );
      }
      if (chunk.includes("<starttls")) {
        sock.write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        const tls = new TLSSocket(raw, { isServer: true, key, cert });
        tls.on("data", (d: Buffer) => handle(d.toString()));
        tls.on("error", () => {});
        sock = tls;
        stage = "tls";
      }
      if (chunk.includes("<auth")) {
        if (this.refuseLogin) {
          sock.write("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
        } else {
          sock.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
          stage = "authed";
        }
      }
      for (const m of chunk.matchAll(/<iq\b[^>]*?\bid=["']([^"']+)["'][^>]*>([\s\S]*?)<\/iq>/g)) {
        const [, id, body = ""] = m;
        if (body.includes("xmpp-bind"))
          sock.write(
            `<iq type='result' id='${id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@${DOMAIN}/r</jid></bind></iq>`,
          );
        else if (body.includes("jabber:iq:roster"))
          sock.write(`<iq type='result' id='${id}'><query xmlns='jabber:iq:roster'/></iq>`);
        else if (body.includes("urn:xmpp:ping"))
          sock.write(`<iq type='result' id='${id}' from='${DOMAIN}'/>`);
      }
    };
    raw.on("data", (d: Buffer) => {
      if (stage === "plain") handle(d.toString());
    });
  }
}

function recordingLog(): Log & { lines: { level: string; message: string; meta?: object }[] } {
  const lines: { level: string; message: string; meta?: object }[] = [];
  const at = (level: string) => (message: string, meta?: object) => lines.push({ level, message, meta });
  return { lines, error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("reconnectDelayMs", () => {
  it("doubles from 1 s, stays within the cap, and jitters by at most half", () => {
    expect(reconnectDelayMs(1, 30_000, () => 0)).toBe(500);
    expect(reconnectDelayMs(1, 30_000, () => 1)).toBe(1000);
    expect(reconnectDelayMs(3, 30_000, () => 1)).toBe(4000);
    expect(reconnectDelayMs(10, 30_000, () => 1)).toBe(30_000);
    expect(reconnectDelayMs(10_000, 30_000, () => 0)).toBe(15_000);
    expect(reconnectDelayMs(0, 30_000, () => 1)).toBe(1000);
  });
});

describe("XmppSession against a STARTTLS server", () => {
  let server: FakeXmppServer;
  let session: XmppSession | null = null;

  afterEach(async () => {
    await session?.stop();
    session = null;
    server?.close();
  });

  async function startSession(extra: { pingIntervalSec?: number } = {}) {
    server = new FakeXmppServer();
    await server.listen();
    const log = recordingLog();
    const s = new XmppSession({
      service: `xmpp://127.0.0.1:${server.port}`,
      domain: DOMAIN,
      username: "alice",
      password: "secret",
      resource: "r",
      caFile,
      log,
      ...extra,
    });
    session = s;
    const events: string[] = [];
    s.on("online", () => events.push("online"));
    s.on("offline", () => events.push("offline"));
    return { s, log, events };
  }

  it("notices a TLS connection gone silent by ping, closes it and logs in again", async () => {
    const { s, log, events } = await startSession({ pingIntervalSec: 1 });
    await s.start();
    await until("online", () => events.includes("online"), 5000);
    expect(server.conns).toHaveLength(1);
    const t0 = Date.now();
    server.silenceCurrent(); // like an iptables DROP: no FIN, no RST, nothing
    await until("online again", () => events.filter((e) => e === "online").length >= 2, 8000);
    expect(events).toEqual(["online", "offline", "online"]);
    expect(server.conns[0]?.closed).toBe(true); // the old TLS socket is really gone
    expect(log.lines.some((l) => l.level === "warn" && /ping timed out/.test(l.message))).toBe(true);
    // A ping goes out at most 1 interval after the silence, times out after 1 more, retry <= 1 s.
    expect(Date.now() - t0).toBeLessThan(6000);
  });

  it("retries a refused login with growing backoff, logged each time, until it is accepted", async () => {
    const { s, log, events } = await startSession();
    server.refuseLogin = true;
    await expect(s.start()).rejects.toThrow();
    const refusals = () => log.lines.filter((l) => l.level === "warn" && /login failed/.test(l.message));
    await until("2 refusals", () => refusals().length >= 2, 8000);
    const [first, second] = refusals().map((l) => l.meta as { why: string; retryInMs: number });
    expect(first?.why).toMatch(/not-authorized/);
    expect(first?.retryInMs).toBeGreaterThanOrEqual(500);
    expect(second?.retryInMs).toBeGreaterThanOrEqual(1000);
    await until(
      "the refused connections closed",
      () => server.conns.slice(0, 2).every((c) => c.closed),
      2000,
    );
    server.refuseLogin = false; // the password was fixed on the server
    await until("online", () => events.includes("online"), 10_000);
    expect(s.isOnline).toBe(true);
  });

  it("reconnectNow drops a working connection at once and logs in again", async () => {
    const { s, log, events } = await startSession();
    await s.start();
    await until("online", () => events.includes("online"), 5000);
    s.reconnectNow("local addresses changed");
    await until("online again", () => events.filter((e) => e === "online").length >= 2, 3000);
    expect(server.conns[0]?.closed).toBe(true);
    expect(server.conns).toHaveLength(2);
    expect(log.lines.find((l) => /reconnecting now/.test(l.message))?.meta).toMatchObject({
      why: "local addresses changed",
      retryInMs: 0,
    });
  });

  it("reconnectNow during a login attempt ends that attempt (start() settles) and starts a fresh one", async () => {
    const { s, events } = await startSession();
    server.refuseLogin = false;
    const first = s.start();
    await until("the first connection", () => server.conns.length === 1, 2000);
    server.silenceCurrent();
    s.reconnectNow("local addresses changed");
    await expect(first).rejects.toThrow(/local addresses changed/);
    await until("online", () => events.includes("online"), 5000);
    expect(server.conns[0]?.closed).toBe(true);
    expect(server.conns).toHaveLength(2);
  });

  it("gives up on a login attempt that gets no answer, and stops retrying after stop()", async () => {
    const { s, log } = await startSession();
    // Every connection is silent from the start: the attempt must fail within the login timeout
    // (5 s minimum; @xmpp gives up waiting for the stream header after 2 s), not hang.
    const timer = setInterval(() => server.silenceCurrent(), 5);
    try {
      const t0 = Date.now();
      await expect(s.start()).rejects.toThrow();
      expect(Date.now() - t0).toBeLessThan(5500);
      expect(log.lines.find((l) => /login failed/.test(l.message))?.meta).toMatchObject({
        why: "TimeoutError",
      });
      await until("the first socket closed", () => server.conns[0]?.closed === true, 2000);
      await until("a second attempt", () => server.conns.length >= 2, 3000);
    } finally {
      clearInterval(timer);
    }
    await s.stop();
    const n = server.conns.length;
    await new Promise((r) => setTimeout(r, 2500));
    expect(server.conns.length).toBe(n);
  });
});
