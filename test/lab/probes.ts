// Small network probes that run inside a lab namespace (plain Node scripts in ./tools; the STUN/TURN
// ones use the built packages/controller/dist/stun.js).
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Netns } from "./lab.js";
import type { LabProcess } from "./proc.js";

export const TOOLS_DIR = join(dirname(fileURLToPath(import.meta.url)), "tools");
export const tool = (name: string): string => join(TOOLS_DIR, name);

/** Start a UDP echo on `where` that answers each datagram with "SRC_ADDR:SRC_PORT" as it saw it. */
export async function startUdpEcho(where: Netns, port: number): Promise<LabProcess> {
  const p = where.spawn(process.execPath, [tool("udp-echo.mjs"), String(port)], { name: `udp-echo-${port}` });
  await p.waitForLog(/listening/, 5000);
  return p;
}

/** Send UDP from `from` to addr:port (retrying) and return the reply text, or throw. */
export async function udpProbe(from: Netns, addr: string, port: number, timeoutMs = 3000): Promise<string> {
  const r = await from.exec([process.execPath, tool("udp-probe.mjs"), addr, String(port), String(timeoutMs)]);
  if (r.code !== 0) throw new Error(`udp probe ${from.name} -> ${addr}:${port} failed: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** Send UDP from a connected socket to addr:port where nothing listens; returns the error code seen. */
export async function udpRefused(from: Netns, addr: string, port: number, timeoutMs = 3000): Promise<string> {
  const r = await from.exec([
    process.execPath,
    tool("udp-refused.mjs"),
    addr,
    String(port),
    String(timeoutMs),
  ]);
  if (r.code !== 0)
    throw new Error(`udp refused probe ${from.name} -> ${addr}:${port}: ${r.stdout}${r.stderr}`.trim());
  return r.stdout.trim();
}

/** STUN Binding request from `from` to server:port; returns the mapped (public) address. */
export async function stunBinding(
  from: Netns,
  server: string,
  port = 3478,
  timeoutMs = 3000,
): Promise<{ address: string; port: number }> {
  const r = await from.exec([
    process.execPath,
    tool("stun-probe.mjs"),
    server,
    String(port),
    String(timeoutMs),
  ]);
  if (r.code !== 0) throw new Error(`STUN ${from.name} -> ${server}:${port} failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as { address: string; port: number };
}

/**
 * TURN Allocate (UDP, long-term credentials) from `from`; returns the relayed and mapped
 * addresses ("ADDR:PORT"), or throws with the server's error (e.g. "401 Unauthorized").
 */
export async function turnAllocate(
  from: Netns,
  server: { host: string; port: number; username: string; credential: string },
  timeoutMs = 3000,
): Promise<{ relayed: string; mapped: string }> {
  const r = await from.exec([
    process.execPath,
    tool("turn-allocate.mjs"),
    server.host,
    String(server.port),
    server.username,
    server.credential,
    String(timeoutMs),
  ]);
  if (r.code !== 0)
    throw new Error(`TURN allocate ${from.name} -> ${server.host}:${server.port}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as { relayed: string; mapped: string };
}

/** Raw <stream:features> an XMPP server offers to `from` before TLS. */
export async function xmppFeatures(
  from: Netns,
  server: string,
  port: number,
  domain: string,
): Promise<string> {
  const r = await from.exec([process.execPath, tool("xmpp-features.mjs"), server, String(port), domain]);
  if (r.code !== 0) throw new Error(`XMPP features ${from.name} -> ${server}:${port}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

export interface RosterItem {
  jid: string;
  subscription: string;
  groups: string[];
}

/** Log in with @xmpp/client from `from` (CA passed as tls `ca`) and return the roster. */
export async function xmppRoster(
  from: Netns,
  server: { service: string; domain: string; caFile: string },
  user: string,
  password: string,
): Promise<RosterItem[]> {
  const r = await from.exec(
    [process.execPath, tool("xmpp-roster.mjs"), server.service, server.domain, user, password, server.caFile],
    { timeoutMs: 20_000 },
  );
  if (r.code !== 0) throw new Error(`XMPP login ${user} from ${from.name}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as RosterItem[];
}

/** ping -c COUNT from `from`; true when at least one reply came back. */
export async function ping(from: Netns, addr: string, opts: { count?: number; timeoutSec?: number } = {}) {
  const r = await from.exec([
    "ping",
    "-n",
    "-q",
    "-c",
    String(opts.count ?? 1),
    "-W",
    String(opts.timeoutSec ?? 1),
    addr,
  ]);
  return r.code === 0;
}
