// `tincanctl netcheck`: what this host's network lets a node do, from the controller's config:
// UDP out, the NAT's mapping behaviour (STUN from one socket to several servers), TURN allocation
// with the configured credentials, and the XMPP server over STARTTLS.
import { createSocket, type Socket } from "node:dgram";
import { readFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import {
  type Endpoint,
  encodeStun,
  mappedAddress,
  newTransactionId,
  StunType,
  turnRestCredentials,
} from "@tincan/protocol";
import { stunRequest, turnAllocate } from "./stun.js";
import { xmppClientServices } from "./xmpp-srv.js";

export interface NetcheckInput {
  stun: string[];
  turn: Array<{ urls: string; username?: string; credential?: string; secret?: string; ttlSec?: number }>;
  xmpp: { service?: string; domain: string; caFile?: string };
}

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckResult {
  check: "udp" | "mapping" | "turn" | "xmpp";
  status: CheckStatus;
  /** One line for people. */
  detail: string;
  /** What the line is made of, for `--json`. */
  data: Record<string, unknown>;
}

export interface StunAnswer {
  server: string;
  mapped: Endpoint | null;
}

/** host:port of a "stun:" / "turn:" URL (default port 3478), or null for TCP/TLS-only URLs. */
export function udpServerOf(url: string): Endpoint | null {
  const m = /^(?:stun|turn):(?:[^@]*@)?(\[[^\]]+\]|[^:?]+)(?::(\d+))?(\?transport=(\w+))?$/.exec(url);
  if (!m || (m[4] && m[4] !== "udp")) return null;
  return { address: (m[1] ?? "").replace(/^\[|\]$/g, ""), port: Number(m[2] ?? 3478) };
}

const key = (e: Endpoint) => `${e.address}:${e.port}`;

/**
 * The NAT's mapping from the mapped addresses one socket got from several servers: the same for
 * every destination (endpoint-independent: direct links work from behind it) or not (symmetric).
 */
export function classifyMapping(localAddress: string | null, answers: StunAnswer[]): CheckResult {
  const got = answers.filter((a): a is StunAnswer & { mapped: Endpoint } => a.mapped !== null);
  const data = { local: localAddress, answers };
  if (got.length === 0)
    return { check: "mapping", status: "fail", detail: "no STUN answer: mapping unknown", data };
  const mapped = [...new Set(got.map((a) => key(a.mapped)))];
  const behind = got[0]?.mapped.address === localAddress ? "no NAT (the mapped address is local)" : "NAT";
  if (got.length === 1)
    return {
      check: "mapping",
      status: "warn",
      detail: `${behind}, mapped to ${mapped[0]}; one STUN server answered: cannot tell whether the mapping is symmetric`,
      data: { ...data, symmetric: null },
    };
  if (mapped.length === 1)
    return {
      check: "mapping",
      status: "ok",
      detail: `${behind}, endpoint-independent mapping (not symmetric): ${mapped[0]} from ${got.length} servers`,
      data: { ...data, symmetric: false },
    };
  return {
    check: "mapping",
    status: "warn",
    detail: `symmetric NAT: the mapping changes per destination (${got.map((a) => `${a.server} -> ${key(a.mapped)}`).join(", ")}); direct links to peers behind NAT will need the relay`,
    data: { ...data, symmetric: true },
  };
}

function bind(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    s.once("error", reject);
    s.bind(0, () => resolve(s));
  });
}

/** The local address the host would send from to `to` (a connected UDP socket; nothing is sent). */
async function localAddressTowards(to: Endpoint): Promise<string | null> {
  const s = createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.connect(to.port, to.address, resolve);
    });
    return s.address().address;
  } catch {
    return null;
  } finally {
    s.close();
  }
}

async function stunChecks(servers: Endpoint[], timeoutMs: number): Promise<CheckResult[]> {
  const socket = await bind();
  try {
    const answers: StunAnswer[] = [];
    for (const server of servers) {
      const reply = await stunRequest(
        socket,
        server,
        encodeStun(StunType.BindingRequest, newTransactionId(), []),
        timeoutMs,
      );
      answers.push({
        server: key(server),
        mapped: reply?.type === StunType.BindingSuccess ? mappedAddress(reply) : null,
      });
    }
    const answered = answers.filter((a) => a.mapped).length;
    const udp: CheckResult =
      servers.length === 0
        ? { check: "udp", status: "warn", detail: "no STUN or TURN server configured: not tested", data: {} }
        : answered > 0
          ? {
              check: "udp",
              status: "ok",
              detail: `UDP works: ${answered} of ${servers.length} STUN servers answered`,
              data: { answered, asked: servers.length },
            }
          : {
              check: "udp",
              status: "fail",
              detail: `UDP blocked? none of ${servers.length} STUN servers answered in ${timeoutMs} ms`,
              data: { answered, asked: servers.length },
            };
    const local = servers[0] ? await localAddressTowards(servers[0]) : null;
    return servers.length === 0 ? [udp] : [udp, classifyMapping(local, answers)];
  } finally {
    socket.close();
  }
}

async function turnCheck(t: NetcheckInput["turn"][number], timeoutMs: number): Promise<CheckResult> {
  const server = udpServerOf(t.urls);
  const data: Record<string, unknown> = { url: t.urls };
  if (!server)
    return { check: "turn", status: "warn", detail: `${t.urls}: not a UDP TURN URL, not tested`, data };
  const creds =
    t.secret !== undefined
      ? turnRestCredentials(t.secret, t.username ?? "netcheck", t.ttlSec ?? 86_400)
      : { username: t.username ?? "", password: t.credential ?? "" };
  const socket = await bind();
  try {
    const r = await turnAllocate(socket, server, creds, timeoutMs);
    if (!r.ok)
      return {
        check: "turn",
        status: "fail",
        detail: `${t.urls}: ${r.error}`,
        data: { ...data, error: r.error },
      };
    const relayed = r.relayed ? key(r.relayed) : "?";
    return {
      check: "turn",
      status: "ok",
      detail: `${t.urls}: authenticated as ${creds.username}, relay address ${relayed}`,
      data: { ...data, username: creds.username, relayed, mapped: r.mapped && key(r.mapped) },
    };
  } finally {
    socket.close();
  }
}

/** Reads from `sock` until `done(text)` holds, or rejects after timeoutMs / on close. */
function readUntil(
  sock: NodeJS.ReadableStream & { destroy(): void },
  done: (text: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(
      () => finish(new Error(`no answer in ${timeoutMs} ms (got ${JSON.stringify(text.slice(0, 200))})`)),
      timeoutMs,
    );
    const onData = (b: Buffer) => {
      text += b.toString("utf8");
      if (text.length > 65_536) finish(new Error("answer too long"));
      else if (done(text)) finish();
    };
    const onEnd = () => finish(new Error("connection closed"));
    const finish = (err?: Error) => {
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("end", onEnd);
      sock.off("error", onEnd);
      if (err) reject(err);
      else resolve(text);
    };
    sock.on("data", onData);
    sock.on("end", onEnd);
    sock.on("error", (e: Error) => finish(e));
  });
}

/** TCP connect, stream header, `<starttls/>` offered and accepted, TLS handshake with certificate check. */
export async function xmppCheck(x: NetcheckInput["xmpp"], timeoutMs: number): Promise<CheckResult> {
  let service = x.service;
  if (!service) {
    try {
      service = (await xmppClientServices(x.domain)).services[0];
    } catch (err) {
      return {
        check: "xmpp",
        status: "fail",
        detail: `no server for ${x.domain}: ${(err as Error).message}`,
        data: {},
      };
    }
  }
  const m = /^xmpps?:\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?/.exec(service ?? "");
  if (!m) return { check: "xmpp", status: "fail", detail: `cannot read the service "${service}"`, data: {} };
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "");
  const port = Number(m[2] ?? 5222);
  const data: Record<string, unknown> = { service, domain: x.domain };
  const fail = (stage: string, err: Error): CheckResult => ({
    check: "xmpp",
    status: "fail",
    detail: `${service}: ${stage}: ${err.message}`,
    data: { ...data, stage, error: err.message },
  });
  const sock = tcpConnect({ host, port });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no TCP connection in ${timeoutMs} ms`)), timeoutMs);
      sock.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      sock.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  } catch (err) {
    sock.destroy();
    return fail("connect", err as Error);
  }
  try {
    sock.write(
      `<?xml version='1.0'?><stream:stream to='${x.domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
    );
    const features = await readUntil(
      sock,
      (t) => /<\/stream:features>|<stream:features\/>|<\/stream:stream>/.test(t),
      timeoutMs,
    );
    if (
      !/<starttls[\s>/][^>]*urn:ietf:params:xml:ns:xmpp-tls|<starttls\s+xmlns=['"]urn:ietf:params:xml:ns:xmpp-tls/.test(
        features,
      )
    )
      return fail("features", new Error("the server offers no STARTTLS"));
    sock.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    const proceed = await readUntil(sock, (t) => /<proceed|<failure/.test(t), timeoutMs);
    if (!/<proceed/.test(proceed)) return fail("starttls", new Error("the server refused STARTTLS"));
  } catch (err) {
    sock.destroy();
    return fail("stream", err as Error);
  }
  const ca = x.caFile ? readFileSync(x.caFile, "utf8") : undefined;
  return new Promise<CheckResult>((resolve) => {
    const tls = tlsConnect({ socket: sock, servername: x.domain, ...(ca ? { ca } : {}) });
    const timer = setTimeout(() => {
      tls.destroy();
      resolve(fail("tls", new Error(`no TLS handshake in ${timeoutMs} ms`)));
    }, timeoutMs);
    tls.once("secureConnect", () => {
      clearTimeout(timer);
      const protocol = tls.getProtocol();
      tls.destroy();
      resolve({
        check: "xmpp",
        status: "ok",
        detail: `${service}: STARTTLS ok, certificate valid for ${x.domain} (${protocol})`,
        data: { ...data, tls: protocol },
      });
    });
    tls.once("error", (err) => {
      clearTimeout(timer);
      tls.destroy();
      resolve(fail("tls", err));
    });
  });
}

/** Every check, in the order printed. */
export async function netcheck(input: NetcheckInput, timeoutMs = 2000): Promise<CheckResult[]> {
  const servers: Endpoint[] = [];
  for (const url of [...input.stun, ...input.turn.map((t) => t.urls)]) {
    const s = udpServerOf(url);
    if (s && !servers.some((o) => key(o) === key(s))) servers.push(s);
  }
  const [stun, turns, xmpp] = await Promise.all([
    stunChecks(servers, timeoutMs),
    Promise.all(input.turn.map((t) => turnCheck(t, timeoutMs))),
    xmppCheck(input.xmpp, timeoutMs * 2),
  ]);
  return [...stun, ...(turns.length > 0 ? turns : [noTurn()]), xmpp];
}

function noTurn(): CheckResult {
  return {
    check: "turn",
    status: "warn",
    detail: "no TURN server configured: peers behind two NATs cannot link",
    data: {},
  };
}

export function formatChecks(results: CheckResult[]): string {
  return `${results.map((r) => `${r.check.padEnd(8)}${r.status.padEnd(6)}${r.detail}`).join("\n")}\n`;
}
