import { addressFromBytes } from "@tincan/protocol";
/**
 * Allocation-free accessors for IPv4/IPv6 headers in a byte buffer. Every function takes the
 * buffer and the packet's offset, so packets can be read in place inside a batch buffer.
 */

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

export function ipVersion(buf: Uint8Array, off: number): number {
  return (buf[off] ?? 0) >> 4;
}

/**
 * Length of the IP packet starting at `off` according to its own header, or -1 when the header
 * is not a well-formed IPv4/IPv6 header that fits in `available` bytes.
 */
export function ipPacketLength(buf: Uint8Array, off: number, available: number): number {
  if (available < 20) return -1;
  const v = (buf[off] as number) >> 4;
  if (v === 4) {
    const ihl = ((buf[off] as number) & 0x0f) * 4;
    const total = ((buf[off + 2] as number) << 8) | (buf[off + 3] as number);
    if (ihl < 20 || total < ihl || total > available) return -1;
    return total;
  }
  if (v === 6) {
    if (available < 40) return -1;
    const total = 40 + (((buf[off + 4] as number) << 8) | (buf[off + 5] as number));
    if (total > available) return -1;
    return total;
  }
  return -1;
}

/** Offset of the destination address inside the packet (12/16 for v4 src/dst, 8/24 for v6). */
export function dstOffset(version: number): number {
  return version === 4 ? 16 : 24;
}

export function srcOffset(version: number): number {
  return version === 4 ? 12 : 8;
}

export function ipv4At(buf: Uint8Array, off: number): number {
  return (
    (((buf[off] as number) << 24) |
      ((buf[off + 1] as number) << 16) |
      ((buf[off + 2] as number) << 8) |
      (buf[off + 3] as number)) >>>
    0
  );
}

/** Text form of the address at `off` (for notifications and logs, not the hot path). */
export function addressText(buf: Uint8Array, off: number, version: number): string {
  return addressFromBytes(buf.subarray(off, off + (version === 4 ? 4 : 16)));
}

export function isMulticastDestination(buf: Uint8Array, off: number, version: number): boolean {
  if (version === 4) {
    const first = buf[off + 16] as number;
    return (first >= 224 && first <= 239) || ipv4At(buf, off + 16) === 0xffffffff;
  }
  return buf[off + 24] === 0xff;
}
