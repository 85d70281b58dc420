import ipaddr from "ipaddr.js";

/**
 * IP address and prefix text for controllers and configs: parse, canonical form, contains, IPv4
 * ranges. Off the packet path (the datapath reads addresses from packet bytes itself). Built on
 * ipaddr.js, but stricter: IPv4 only as four decimal parts, IPv6 without a zone. Parsers throw
 * IpTextError naming the text; the `canonical*` forms return null instead, for checks.
 */

export type IpVersion = 4 | 6;

export class IpTextError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IpTextError";
  }
}

/** An address with prefix length, e.g. an interface address "10.10.0.5/16" or a route "fd00::1/128". */
export interface IpPrefix {
  version: IpVersion;
  /** The address as given (host bits kept), canonical text. */
  address: string;
  length: number;
  /** The address with the host bits cleared, canonical text. */
  network: string;
}

/** Longer text is no address or prefix (the longest IPv6 with an IPv4 tail and "/128" is 49 chars). */
const MAX_TEXT = 64;

function parse(text: string): ipaddr.IPv4 | ipaddr.IPv6 {
  if (typeof text === "string" && text.length <= MAX_TEXT) {
    if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
    if (!text.includes("%") && ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  }
  throw new IpTextError(`not an IP address: "${String(text).slice(0, MAX_TEXT)}"`);
}

/** Canonical text: dotted decimal, or RFC 5952 for IPv6 (lowercase, shortest "::"). */
function format(ip: ipaddr.IPv4 | ipaddr.IPv6): string {
  return ip.kind() === "ipv4" ? ip.toString() : (ip as ipaddr.IPv6).toRFC5952String();
}

const versionOf = (ip: ipaddr.IPv4 | ipaddr.IPv6): IpVersion => (ip.kind() === "ipv4" ? 4 : 6);

/** The version and canonical text of an IPv4 or IPv6 address; throws IpTextError. */
export function parseAddress(text: string): { version: IpVersion; address: string } {
  const ip = parse(text);
  return { version: versionOf(ip), address: format(ip) };
}

/** Canonical text of an address (for comparing addresses written differently); null if none. */
export function canonicalAddress(text: string): string | null {
  try {
    return format(parse(text));
  } catch {
    return null;
  }
}

/** "address/length"; throws IpTextError. */
export function parsePrefix(text: string): IpPrefix {
  const bad = () =>
    new IpTextError(`not an IP address with prefix length: "${String(text).slice(0, MAX_TEXT)}"`);
  if (typeof text !== "string") throw bad();
  const slash = text.indexOf("/");
  const lengthText = text.slice(slash + 1);
  if (slash < 0 || !/^\d{1,3}$/.test(lengthText)) throw bad();
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = parse(text.slice(0, slash));
  } catch {
    throw bad();
  }
  const version = versionOf(ip);
  const length = Number(lengthText);
  if (length > (version === 4 ? 32 : 128)) throw bad();
  const bytes = ip.toByteArray();
  for (let bit = length; bit < bytes.length * 8; bit++)
    bytes[bit >> 3] = (bytes[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  return { version, address: format(ip), length, network: format(ipaddr.fromByteArray(bytes)) };
}

/** The 4 or 16 bytes of an address; throws IpTextError. */
export function addressBytes(text: string): Uint8Array {
  return Uint8Array.from(parse(text).toByteArray());
}

/** Canonical text of 4 or 16 address bytes (e.g. read from a packet); throws IpTextError for another length. */
export function addressFromBytes(bytes: ArrayLike<number>): string {
  if (bytes.length !== 4 && bytes.length !== 16)
    throw new IpTextError(`an address has 4 or 16 bytes, not ${bytes.length}`);
  return format(ipaddr.fromByteArray(Array.from(bytes)));
}

/** A prefix ("address/length", or a bare address as its host prefix) with its network as bytes, for tries keyed by bits. */
export function prefixBytes(text: string): IpPrefix & { bytes: Uint8Array } {
  const p = parsePrefix(typeof text === "string" && !text.includes("/") ? hostPrefix(text) : text);
  return { ...p, bytes: addressBytes(p.network) };
}

/** "address/length" with the address in canonical text (host bits kept); null if not a prefix. */
export function canonicalPrefix(text: string): string | null {
  try {
    const p = parsePrefix(text);
    return `${p.address}/${p.length}`;
  } catch {
    return null;
  }
}

/** Whether `address` lies in `prefix`; false for an address of the other version or bad text. */
export function prefixContains(prefix: IpPrefix | string, address: string): boolean {
  try {
    const p = typeof prefix === "string" ? parsePrefix(prefix) : prefix;
    const ip = parse(address);
    return versionOf(ip) === p.version && ip.match(parse(p.network), p.length);
  } catch {
    return false;
  }
}

/** The /32 or /128 route of one address (the text as given); throws IpTextError. */
export function hostPrefix(address: string): string {
  return `${address}/${parseAddress(address).version === 4 ? 32 : 128}`;
}

/** An IPv4 interface address with its range, as numbers (for handing out addresses of the range). */
export interface Ipv4Range {
  address: number;
  network: number;
  broadcast: number;
  length: number;
  /** Canonical "network/length". */
  cidr: string;
}

/** The range of "172.31.0.1/16"; throws IpTextError (also for an IPv6 prefix). */
export function ipv4Range(cidr: string): Ipv4Range {
  const p = parsePrefix(cidr);
  if (p.version !== 4) throw new IpTextError(`not an IPv4 address with prefix length: "${cidr}"`);
  const size = 2 ** (32 - p.length);
  const network = ipv4ToInt(p.network);
  return {
    address: ipv4ToInt(p.address),
    network,
    broadcast: network + size - 1,
    length: p.length,
    cidr: `${p.network}/${p.length}`,
  };
}

/** True if the address of `cidr` (e.g. "10.10.0.0/16") is the network or broadcast address of its subnet (/30 and wider); false for malformed text. */
export function isNetworkOrBroadcast(cidr: string): boolean {
  let range: Ipv4Range;
  try {
    range = ipv4Range(cidr);
  } catch {
    return false;
  }
  return range.length <= 30 && (range.address === range.network || range.address === range.broadcast);
}

/** Dotted decimal to a 32-bit unsigned number; throws IpTextError. */
export function ipv4ToInt(text: string): number {
  const ip = parse(text);
  if (ip.kind() !== "ipv4") throw new IpTextError(`not an IPv4 address: "${text}"`);
  return ip.toByteArray().reduce((n, b) => n * 256 + b, 0);
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Canonical (RFC 5952) text of an IPv6 address given as eight 16-bit groups. */
export function ipv6FromGroups(groups: readonly number[]): string {
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff))
    throw new IpTextError(`not eight 16-bit groups: [${groups.join(",")}]`);
  return new ipaddr.IPv6([...groups]).toRFC5952String();
}
