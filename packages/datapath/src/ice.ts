import type { IceServer } from "node-datachannel";

export interface IceSettings {
  stun: string[];
  turn: { urls: string; username: string; credential: string }[];
}

/** "stun:host:port" / "turn:host:port?transport=udp|tcp" -> node-datachannel's structured form. */
export function toIceServers(settings: IceSettings, relayOnly: boolean): IceServer[] {
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
    servers.push({
      hostname: host,
      port,
      username: t.username,
      password: t.credential,
      relayType: tls ? "TurnTls" : tcp ? "TurnTcp" : "TurnUdp",
    });
  }
  return servers;
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
