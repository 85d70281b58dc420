import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { type Endpoint, turnRestCredentials } from "@tincan/protocol";
import type { IceServer, RtcConfig } from "node-datachannel";
import ndc from "node-datachannel";

/** Moved to @tincan/protocol (tincanctl netcheck derives them too). */
export { turnRestCredentials };

export type TurnServer =
  | { urls: string; username: string; credential: string }
  | { urls: string; username?: string; secret: string; ttlSec: number };

export interface IceSettings {
  stun: string[];
  turn: TurnServer[];
  portRange?: [number, number];
  udpMux?: boolean;
  bindAddress?: string;
}

/**
 * "stun:host:port" / "turn:host:port?transport=udp|tcp" -> node-datachannel's structured form.
 * `ownUid` names us in derived TURN REST user names.
 */
export function toIceServers(settings: IceSettings, relayOnly: boolean, ownUid = ""): IceServer[] {
  const servers: IceServer[] = [];
  if (!relayOnly) {
    for (const url of settings.stun) {
      const { host, port } = hostAndPort(url.replace(/^stun:/, ""), 3478);
      servers.push({ hostname: host, port });
    }
  }
  for (const t of settings.turn) {
    const tls = t.urls.startsWith("turns:");
    const [address = "", query = ""] = t.urls.replace(/^turns?:/, "").split("?");
    const { host, port } = hostAndPort(address, tls ? 5349 : 3478);
    const tcp = /transport=tcp/i.test(query);
    const auth = turnCredentials(t, ownUid);
    servers.push({
      hostname: host,
      port,
      username: auth.username,
      password: auth.password,
      relayType: tls ? "TurnTls" : tcp ? "TurnTcp" : "TurnUdp",
    });
  }
  return servers;
}

/** A TURN server's credentials now (derived ones from a REST secret are valid for its ttlSec). */
export function turnCredentials(t: TurnServer, ownUid: string): { username: string; password: string } {
  return "secret" in t
    ? turnRestCredentials(t.secret, t.username ?? ownUid, t.ttlSec)
    : { username: t.username, password: t.credential };
}

/** ICE's servers as the fast path's socket uses them: STUN servers, and the first TURN server over UDP. */
export interface FastServers {
  stun: Endpoint[];
  turn: { server: Endpoint; config: TurnServer } | null;
}

/** Resolves ICE's STUN and UDP TURN servers' names (a name that does not resolve is left out). */
export async function resolveFastServers(settings: IceSettings): Promise<FastServers> {
  const resolve = async (url: string, defaultPort: number): Promise<Endpoint | null> => {
    try {
      const { host, port } = hostAndPort(url, defaultPort);
      return { address: isIP(host) ? host : (await lookup(host)).address, port };
    } catch {
      return null;
    }
  };
  const stun = await Promise.all(settings.stun.map((url) => resolve(url.replace(/^stun:/, ""), 3478)));
  const udpTurn = settings.turn.find((t) => /^turn:/.test(t.urls) && !/transport=tcp/i.test(t.urls));
  const turnServer = udpTurn
    ? await resolve(udpTurn.urls.replace(/^turn:/, "").split("?")[0] ?? "", 3478)
    : null;
  return {
    stun: stun.filter((e): e is Endpoint => e !== null),
    turn: udpTurn && turnServer ? { server: turnServer, config: udpTurn } : null,
  };
}

/** The socket settings of ICE: port range, UDP mux, bind address (unset keys: libjuice's defaults). */
export function iceSocketConfig(settings: IceSettings): Partial<RtcConfig> {
  const config: Partial<RtcConfig> = {};
  if (settings.portRange) {
    config.portRangeBegin = settings.portRange[0];
    config.portRangeEnd = settings.portRange[1];
  }
  if (settings.udpMux) config.enableIceUdpMux = true;
  if (settings.bindAddress) config.bindAddress = settings.bindAddress;
  return config;
}

function hostAndPort(s: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(s);
  if (!m?.[1]) throw new Error(`bad ICE server address: ${s}`);
  return { host: m[1], port: m[2] ? Number(m[2]) : defaultPort };
}

/** Candidate type and address from an SDP candidate line ("candidate:1 1 UDP 2122 10.0.0.1 4000 typ host"). */
export function parseCandidate(candidate: string): { address: string; port: string; type: string } | null {
  const parts = candidate.replace(/^a=/, "").split(" ");
  const address = parts[4];
  const typIndex = parts.indexOf("typ");
  if (!address || typIndex < 0) return null;
  return { address, port: parts[5] ?? "", type: parts[typIndex + 1] ?? "" };
}

const TURN_REFUSED = /TURN (authentication|allocation) failed|Got TURN \S+ Unauthorized/;

/**
 * Logs, at most once per `intervalMs`, when libjuice reports that a TURN server refused our
 * credentials: the link then only fails with "ice", which does not say why.
 */
export function reportTurnRefusals(
  log: { error(msg: string, fields?: Record<string, unknown>): void },
  intervalMs = 10_000,
): void {
  let last = Number.NEGATIVE_INFINITY;
  ndc.initLogger("Warning", (_level, message) => {
    if (!TURN_REFUSED.test(message) || performance.now() - last < intervalMs) return;
    last = performance.now();
    log.error("a TURN server refused our credentials: check ice.turn (secret, username, credential)", {
      detail: message,
    });
  });
}
