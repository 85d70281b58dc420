import { IPPROTO_ICMP, IPPROTO_ICMPV6 } from "./packet.js";

/** RFC 1812 4.3.2.3: an ICMPv4 error carries as much of the packet as fits in 576 bytes. */
const V4_ERROR_MAX = 576;
/** RFC 4443 2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU. */
const V6_ERROR_MAX = 1280;
export const IPV6_MIN_MTU = 1280;

/**
 * Answers a packet too big for its link the way a router does: ICMP "fragmentation needed"
 * (type 3 code 4, IPv4 with DF) or ICMPv6 "packet too big" carrying the MTU that fits, written
 * back to the vNIC so the sender's path MTU discovery adapts. The error comes from the packet's
 * destination address (our own address would be a martian source on the vNIC). Rate-limited by a
 * token bucket; built in one reused buffer.
 */
export class TooBig {
  private readonly buf = Buffer.alloc(V6_ERROR_MAX);
  private tokens: number;
  private refilledAt = 0;

  constructor(
    private readonly perSecond = 100,
    private readonly burst = 50,
  ) {
    this.tokens = burst;
  }

  /**
   * Writes the error for the packet at src[off..off+len) with `mtu` to `vnic`; false when the
   * rate limit held it back or the write failed.
   */
  answer(
    src: Uint8Array,
    off: number,
    len: number,
    version: number,
    mtu: number,
    now: number,
    vnic: { write(buf: Uint8Array, off: number, len: number): boolean },
  ): boolean {
    if (!this.take(now)) return false;
    const n = version === 4 ? this.buildV4(src, off, len, mtu) : this.buildV6(src, off, len, mtu);
    try {
      return vnic.write(this.buf, 0, n);
    } catch {
      return false;
    }
  }

  private take(now: number): boolean {
    const elapsed = now - this.refilledAt;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.perSecond) / 1000);
      this.refilledAt = now;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  private buildV4(src: Uint8Array, off: number, len: number, mtu: number): number {
    const b = this.buf;
    const quoted = Math.min(len, V4_ERROR_MAX - 28);
    const total = 28 + quoted;
    b.fill(0, 0, 28);
    b[0] = 0x45;
    b[1] = 0xc0; // network control, as routers send errors
    b.writeUInt16BE(total, 2);
    b[8] = 64;
    b[9] = IPPROTO_ICMP;
    b.set(src.subarray(off + 16, off + 20), 12);
    b.set(src.subarray(off + 12, off + 16), 16);
    b.writeUInt16BE(checksum(b, 0, 20, 0), 10);
    b[20] = 3; // destination unreachable
    b[21] = 4; // fragmentation needed and DF set
    b.writeUInt16BE(Math.min(mtu, 0xffff), 26);
    b.set(src.subarray(off, off + quoted), 28);
    b.writeUInt16BE(checksum(b, 20, total, 0), 22);
    return total;
  }

  private buildV6(src: Uint8Array, off: number, len: number, mtu: number): number {
    const b = this.buf;
    const quoted = Math.min(len, V6_ERROR_MAX - 48);
    const payload = 8 + quoted;
    b.fill(0, 0, 48);
    b[0] = 0x60;
    b.writeUInt16BE(payload, 4);
    b[6] = IPPROTO_ICMPV6;
    b[7] = 64;
    b.set(src.subarray(off + 24, off + 40), 8);
    b.set(src.subarray(off + 8, off + 24), 24);
    b[40] = 2; // packet too big
    b.writeUInt32BE(mtu, 44);
    b.set(src.subarray(off, off + quoted), 48);
    // Pseudo-header: both addresses, the upper-layer length and next header.
    const pseudo = checksumSum(b, 8, 40, payload + IPPROTO_ICMPV6);
    b.writeUInt16BE(checksum(b, 40, 48 + quoted, pseudo), 42);
    return 48 + quoted;
  }
}

function checksumSum(b: Uint8Array, start: number, end: number, sum: number): number {
  let s = sum;
  let i = start;
  for (; i + 1 < end; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (i < end) s += (b[i] as number) << 8;
  return s;
}

function checksum(b: Uint8Array, start: number, end: number, sum: number): number {
  let s = checksumSum(b, start, end, sum);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
