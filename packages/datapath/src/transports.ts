import type { Link } from "./link.js";

/**
 * A peer's transports: at most one full-candidate link and one relay-only link (set up side by
 * side so a relay can carry traffic while a direct path is found, or is still being tried).
 */
export interface PeerTransports {
  full?: Link;
  relay?: Link;
}

/**
 * How well a transport carries traffic: connected on a direct path (4) > connected relay-only (3) >
 * a full-candidate one connected through a relay (2: the controller replaces it to try a direct path
 * again, so the relay-only one is preferred) > still setting up or recovering (1: it holds the
 * packets waiting for a connection) > failed or closed (0).
 */
export function transportRank(link: Link): number {
  switch (link.state) {
    case "connected":
      return link.path !== "relay" ? 4 : link.relayOnly ? 3 : 2;
    case "failed":
    case "closed":
      return 0;
    default:
      return 1;
  }
}

/**
 * The transport that should carry the peer's traffic: the current one, unless another ranks
 * strictly higher (so equal ones never flap, and the one set up first keeps its waiting packets).
 */
export function bestTransport(current: Link | undefined, transports: PeerTransports): Link | undefined {
  let best = current && (transports.full === current || transports.relay === current) ? current : undefined;
  for (const link of [transports.full, transports.relay]) {
    if (link && (!best || transportRank(link) > transportRank(best))) best = link;
  }
  return best;
}

/** The transport an RPC addresses: by kind, or without one the only one (the full one when both exist). */
export function transportOf(transports: PeerTransports | undefined, relayOnly?: boolean): Link | undefined {
  if (!transports) return undefined;
  if (relayOnly === undefined) return transports.full ?? transports.relay;
  return relayOnly ? transports.relay : transports.full;
}
