// `tincanctl ping PEER`: which peer a name means, and the line each probe prints.
import type { ControllerStatus, PingResult, RouteInfo } from "@tincan/protocol";

export interface PingTarget {
  uid: string;
  /** "bob@lab.local" or the UID's first 8 characters. */
  label: string;
  /** The peer's virtual address, when known. */
  address: string | null;
}

/**
 * PEER as a JID (bare or full), a UID, or a virtual address, looked up in the datapath's routes and
 * the controller's status file. A string: why it names no peer we can ping.
 */
export function resolvePeer(
  peer: string,
  routes: RouteInfo[],
  status: ControllerStatus | null,
): PingTarget | string {
  const peers = Object.entries(status?.peers ?? {});
  const addressOf = (uid: string): string | null => {
    const named = status?.peers[uid];
    if (named?.ipv4 ?? named?.ipv6) return (named?.ipv4 ?? named?.ipv6 ?? "").replace(/\/\d+$/, "");
    const r = routes.find((x) => x.peerUid === uid && x.via === null);
    return r ? (r.mapTo ?? r.prefix.replace(/\/(32|128)$/, "")) : null;
  };
  const target = (uid: string): PingTarget => ({
    uid,
    label: status?.peers[uid]?.jid ?? uid.slice(0, 8),
    address: addressOf(uid),
  });
  if (/^[0-9a-f]{32}$/.test(peer)) return target(peer);
  if (peer.includes("@")) {
    const [bareText, ...resource] = peer.split("/");
    const bare = bareText?.toLowerCase();
    const device = resource.length > 0 ? resource.join("/") : undefined;
    // A full JID names one device of the account; a bare JID any of its devices (so does a full
    // JID in the status of a controller that names no devices).
    const found = peers.find(
      ([, p]) =>
        p.jid.toLowerCase() === bare &&
        (device === undefined || p.device === undefined || p.device === device),
    );
    if (found) return target(found[0]);
    if (peers.some(([, p]) => p.jid.toLowerCase() === bare))
      return `${bare} has no device "${device}" online (its devices: ${peers
        .filter(([, p]) => p.jid.toLowerCase() === bare)
        .map(([, p]) => p.device)
        .join(", ")})`;
    const member = status?.members?.find((m) => m.jid === bare);
    if (member) return `${peer} is ${member.state}${member.reason ? ` (${member.reason})` : ""}`;
    return status ? `${peer} is not a member` : `${peer}: no controller status to look JIDs up in`;
  }
  const byRoute = routes.find(
    (r) => r.via === null && (r.mapTo === peer || r.prefix === `${peer}/32` || r.prefix === `${peer}/128`),
  );
  if (byRoute) return target(byRoute.peerUid);
  const byPresence = peers.find(
    ([, p]) => p.ipv4?.replace(/\/\d+$/, "") === peer || p.ipv6?.replace(/\/\d+$/, "") === peer,
  );
  if (byPresence) return target(byPresence[0]);
  return `unknown peer "${peer}" (give a JID, a UID or a virtual address)`;
}

/** "pong from bob@lab.local (10.10.0.2) via relay 100.64.0.1:49160 in 1.4 ms", like `tailscale ping`. */
export function pongLine(t: PingTarget, r: PingResult): string {
  const who = `${t.label}${t.address ? ` (${t.address})` : ""}`;
  if (r.rttMs === null) return `no reply from ${who}`;
  return `pong from ${who} via ${pathText(r)} in ${r.rttMs.toFixed(1)} ms`;
}

/** The path as "direct host 198.18.1.2:4000" or "relay 100.64.0.1:49160" (the TURN server's relayed address). */
export function pathText(r: PingResult): string {
  if (r.path === "relay") {
    // Our allocation when we relay, else the peer's: the TURN server's address either way.
    const relay = r.localType === "relay" ? r.local : r.remote;
    return `relay ${relay ?? "?"}${r.relayOnly ? "" : " (ICE picked the relay)"}`;
  }
  return `${r.path ?? "?"} ${r.remote ?? "?"}`;
}
