import { lookup } from "node:dns/promises";
import type { GroupVpnConfig } from "@tincan/protocol";

/** Addresses kept outside an exit node's tunnel at most (the RPC's bound). */
const MAX_BYPASS = 32;

/** The hosts of the XMPP server (its service, else the domain) and of the STUN/TURN servers. */
export function bypassHosts(config: Pick<GroupVpnConfig, "xmpp" | "ice">): string[] {
  const xmpp = config.xmpp.service
    ? hostOf(config.xmpp.service.replace(/^xmpps?:\/\//, ""))
    : config.xmpp.domain;
  const ice = [...config.ice.stun, ...config.ice.turn.map((t) => t.urls)].map((url) =>
    hostOf(url.replace(/^(stuns?|turns?):/, "").split("?")[0] ?? ""),
  );
  const hosts = [xmpp, ...ice].filter((h): h is string => !!h);
  return [...new Set(hosts.map((h) => h.replace(/^\[|\]$/g, "")))];
}

/** "host:port" -> host (null when it is no host: the config check let it through, ICE will fail). */
function hostOf(hostPort: string): string | null {
  try {
    return new URL(`http://${hostPort}`).hostname || null;
  } catch {
    return null;
  }
}

/** Their addresses (names resolved now; one that does not resolve is left out and reported). */
export async function bypassAddresses(
  hosts: readonly string[],
  onError: (host: string, err: Error) => void,
): Promise<string[]> {
  const out = new Set<string>();
  for (const host of hosts) {
    try {
      for (const a of await lookup(host, { all: true })) out.add(a.address);
    } catch (err) {
      onError(host, err as Error);
    }
  }
  return [...out].slice(0, MAX_BYPASS);
}
