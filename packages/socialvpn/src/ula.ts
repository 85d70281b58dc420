import { ipv6FromGroups } from "@tincan/protocol";

/**
 * SocialVPN IPv6: one fixed unique-local /64 for the whole overlay, and each node's interface ID is
 * the first 64 bits of its UID (= SHA-256 of its bare JID). So every node's IPv6 address follows from
 * its JID, is the same for all its buddies (no translation), and a peer cannot choose another's.
 *
 *   fd53:7670:6e00:0000 : UUUU:UUUU:UUUU:UUUU
 *   \_ fd + global ID 53:7670:6e ("Svpn") + subnet 0 _/   \_ UID bits 0..63 _/
 *
 * One /64 (not a /48 per node) keeps the kernel side simple: the vNIC gets `<own>/64`, so the kernel
 * sends every overlay address into the TUN, and the datapath picks the link by the buddy's /128 route.
 */
export const OVERLAY_IPV6_PREFIX = "fd53:7670:6e00::/64";
const PREFIX_GROUPS = ["fd53", "7670", "6e00", "0"];

/** The overlay IPv6 address of the node with this UID (32 hex chars), in RFC 5952 text form. */
export function ulaForUid(uid: string): string {
  if (!/^[0-9a-f]{32}$/.test(uid)) throw new Error(`not a UID: "${uid}"`);
  const iid = [0, 4, 8, 12].map((i) => uid.slice(i, i + 4));
  return ipv6FromGroups([...PREFIX_GROUPS, ...iid].map((g) => Number.parseInt(g, 16)));
}
