import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ipv4At } from "./packet.js";

/** Ones'-complement update of a 16-bit checksum for a 32-bit field changing old -> new (RFC 1624, eqn. 3). */
export function checksumReplace32(checksum: number, oldValue: number, newValue: number): number {
  let sum =
    (~checksum & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    (newValue >>> 16) +
    (newValue & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Ones'-complement update of a 16-bit checksum for a 16-bit field changing old -> new (RFC 1624). */
function checksumReplace16(checksum: number, oldValue: number, newValue: number): number {
  let sum = (~checksum & 0xffff) + (~oldValue & 0xffff) + (newValue & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** ICMP types whose payload quotes the IP header of the packet that caused them. */
const ICMP_DEST_UNREACHABLE = 3;
const ICMP_TIME_EXCEEDED = 11;
const ICMP_PARAMETER_PROBLEM = 12;

function read16(buf: Uint8Array, off: number): number {
  return ((buf[off] as number) << 8) | (buf[off + 1] as number);
}

function write16(buf: Uint8Array, off: number, value: number): void {
  buf[off] = value >> 8;
  buf[off + 1] = value & 0xff;
}

function write32(buf: Uint8Array, off: number, value: number): void {
  buf[off] = value >>> 24;
  buf[off + 1] = (value >>> 16) & 0xff;
  buf[off + 2] = (value >>> 8) & 0xff;
  buf[off + 3] = value & 0xff;
}

/**
 * Rewrites the source and destination of the IPv4 packet at buf[off..off+len) in place and fixes
 * the IPv4 header checksum and the TCP/UDP checksum (whose pseudo-header covers the addresses).
 * ICMP checksums do not cover IP addresses, but an ICMP error quotes the header of the packet it
 * is about: that header is translated too (as the reverse direction: its source is our own
 * address), so the kernel finds the socket the error is for (e.g. path MTU, port unreachable).
 * Returns false (packet untouched) when the packet is too short to hold the headers it claims.
 * With `partialL4` (checksum offload) the TCP/UDP checksum field holds the uncomplemented
 * pseudo-header sum, which is updated as a sum (and UDP's "0 = no checksum" does not apply).
 */
export function translateIpv4(
  buf: Uint8Array,
  off: number,
  len: number,
  newSrc: number,
  newDst: number,
  partialL4 = false,
): boolean {
  const ihl = ((buf[off] as number) & 0x0f) * 4;
  if (ihl < 20 || len < ihl) return false;
  const oldSrc = ipv4At(buf, off + 12);
  const oldDst = ipv4At(buf, off + 16);
  let ipSum = read16(buf, off + 10);
  ipSum = checksumReplace32(ipSum, oldSrc, newSrc);
  ipSum = checksumReplace32(ipSum, oldDst, newDst);

  const fragmentOffset = read16(buf, off + 6) & 0x1fff;
  if (fragmentOffset === 0) {
    const proto = buf[off + 9];
    const l4 = off + ihl;
    const l4Len = len - ihl;
    if (partialL4 && (proto === IPPROTO_TCP || proto === IPPROTO_UDP)) {
      const field = l4 + (proto === IPPROTO_TCP ? 16 : 6);
      if (field + 2 <= off + len) {
        let sum = ~read16(buf, field) & 0xffff;
        sum = checksumReplace32(sum, oldSrc, newSrc);
        write16(buf, field, ~checksumReplace32(sum, oldDst, newDst) & 0xffff);
      }
    } else if (proto === IPPROTO_TCP && l4Len >= 18) {
      let sum = read16(buf, l4 + 16);
      sum = checksumReplace32(sum, oldSrc, newSrc);
      write16(buf, l4 + 16, checksumReplace32(sum, oldDst, newDst));
    } else if (proto === IPPROTO_UDP && l4Len >= 8) {
      let sum = read16(buf, l4 + 6);
      if (sum !== 0) {
        // 0 means "no checksum" for UDP over IPv4; a computed 0 is sent as 0xffff.
        sum = checksumReplace32(sum, oldSrc, newSrc);
        sum = checksumReplace32(sum, oldDst, newDst);
        write16(buf, l4 + 6, sum === 0 ? 0xffff : sum);
      }
    } else if (proto === IPPROTO_ICMP) {
      translateIcmpError(buf, l4, off + len, newDst, newSrc);
    }
  }
  write16(buf, off + 10, ipSum);
  write32(buf, off + 12, newSrc);
  write32(buf, off + 16, newDst);
  return true;
}

/**
 * Rewrites the header quoted by the ICMP error at buf[icmp..end) to innerSrc -> innerDst, fixing
 * the quoted IPv4 header checksum, the quoted TCP/UDP checksum when it was quoted, and the ICMP
 * checksum (which covers the quote). Not an error, or a quote too short: nothing changes.
 */
function translateIcmpError(
  buf: Uint8Array,
  icmp: number,
  end: number,
  innerSrc: number,
  innerDst: number,
): void {
  const type = buf[icmp];
  if (type !== ICMP_DEST_UNREACHABLE && type !== ICMP_TIME_EXCEEDED && type !== ICMP_PARAMETER_PROBLEM)
    return;
  const inner = icmp + 8;
  if (end - inner < 20 || (buf[inner] as number) >> 4 !== 4) return;
  const ihl = ((buf[inner] as number) & 0x0f) * 4;
  if (ihl < 20 || end - inner < ihl) return;
  const oldSrc = ipv4At(buf, inner + 12);
  const oldDst = ipv4At(buf, inner + 16);
  let icmpSum = read16(buf, icmp + 2);
  const oldIpSum = read16(buf, inner + 10);
  const newIpSum = checksumReplace32(checksumReplace32(oldIpSum, oldSrc, innerSrc), oldDst, innerDst);
  icmpSum = checksumReplace32(icmpSum, oldSrc, innerSrc);
  icmpSum = checksumReplace32(icmpSum, oldDst, innerDst);
  icmpSum = checksumReplace16(icmpSum, oldIpSum, newIpSum);
  if ((read16(buf, inner + 6) & 0x1fff) === 0) {
    const proto = buf[inner + 9];
    const l4 = inner + ihl;
    const field = proto === IPPROTO_TCP ? l4 + 16 : proto === IPPROTO_UDP ? l4 + 6 : -1;
    if (field >= 0 && field + 2 <= end) {
      const old = read16(buf, field);
      if (!(proto === IPPROTO_UDP && old === 0)) {
        let sum = checksumReplace32(checksumReplace32(old, oldSrc, innerSrc), oldDst, innerDst);
        if (proto === IPPROTO_UDP && sum === 0) sum = 0xffff;
        icmpSum = checksumReplace16(icmpSum, old, sum);
        write16(buf, field, sum);
      }
    }
  }
  write16(buf, inner + 10, newIpSum);
  write32(buf, inner + 12, innerSrc);
  write32(buf, inner + 16, innerDst);
  write16(buf, icmp + 2, icmpSum);
}
