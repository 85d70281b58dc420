import { networkInterfaces } from "node:os";
import { type CandidateType, prefixContains } from "@tincan/protocol";

/**
 * Our end's type in a selected direct pair. libjuice (agent_get_selected_candidate_pair) gives
 * the pair's own local candidate only when it is relayed; for a direct pair it returns its first
 * local candidate, the host one, even when our packets leave through a NAT that maps them to our
 * server-reflexive address, so `status` said "host" for a NATed flow. Our end is taken to be
 * srflx when a STUN server saw us at another address than the pair's host one (a NAT is on our
 * way out) and the peer is not on one of our own subnets (its packets pass a router, that NAT).
 * A routed private network without NAT next to a NATed uplink would read srflx too.
 */
export function localTypeOf(
  reported: CandidateType,
  pair: { localAddress: string; remoteAddress: string },
  reflexiveAddresses: Iterable<string>,
  onLink: (address: string) => boolean = onOwnSubnet,
): CandidateType {
  if (reported !== "host") return reported;
  const natted = [...reflexiveAddresses].some((a) => a !== pair.localAddress);
  return natted && !onLink(pair.remoteAddress) ? "srflx" : "host";
}

/** Whether `address` lies in the subnet of one of this host's interface addresses. */
export function onOwnSubnet(address: string): boolean {
  return Object.values(networkInterfaces()).some((addrs) =>
    (addrs ?? []).some((a) => a.cidr !== null && prefixContains(a.cidr, address)),
  );
}

/** The path a selected pair takes, from its ends' types: relay, else prflx, else srflx, else host. */
export function pathOf(types: readonly string[], viaRemoteRelay: boolean): "relay" | CandidateType {
  if (viaRemoteRelay || types.includes("relay")) return "relay";
  if (types.includes("prflx")) return "prflx";
  return types.includes("srflx") ? "srflx" : "host";
}
