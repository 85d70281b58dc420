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
  return formatIpv6([...PREFIX_GROUPS, ...iid].map((g) => Number.parseInt(g, 16)));
}

/** Parses IPv6 text (no zone, no embedded IPv4) into 8 groups; null when it is not one. */
export function parseIpv6(text: string): number[] | null {
  if (!/^[0-9a-fA-F:]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const part = (s: string | undefined) => (s ? s.split(":") : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  return groups.map((g) => Number.parseInt(g, 16));
}

/** RFC 5952: lowercase, no leading zeros, the longest run (>= 2) of zero groups as "::" (first wins). */
export function formatIpv6(groups: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** Canonical text of an IPv6 address (for comparing announced addresses); null if not IPv6. */
export function canonicalIpv6(text: string): string | null {
  const g = parseIpv6(text);
  return g && formatIpv6(g);
}
