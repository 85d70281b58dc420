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
  if (version === 4) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push((((buf[off + i] as number) << 8) | (buf[off + i + 1] as number)).toString(16));
  return compressIpv6(groups);
}

function compressIpv6(groups: string[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(":");
  return `${groups.slice(0, bestStart).join(":")}::${groups.slice(bestStart + bestLen).join(":")}`;
}

/** Parses an IPv4 or IPv6 address into bytes; throws on malformed text. */
export function parseAddress(text: string): Uint8Array {
  if (text.includes(":")) return parseIpv6(text);
  const parts = text.split(".");
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${text}`);
  const out = new Uint8Array(4);
  parts.forEach((p, i) => {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`not an IPv4 address: ${text}`);
    out[i] = Number(p);
  });
  return out;
}

function parseIpv6(text: string): Uint8Array {
  const bad = () => new Error(`not an IPv6 address: ${text}`);
  let head = text;
  let tail = "";
  const dbl = text.indexOf("::");
  if (dbl >= 0) {
    if (text.indexOf("::", dbl + 1) >= 0) throw bad();
    head = text.slice(0, dbl);
    tail = text.slice(dbl + 2);
  }
  const parse = (s: string): number[] => {
    if (s === "") return [];
    const words: number[] = [];
    const parts = s.split(":");
    parts.forEach((p, i) => {
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseAddress(p);
        words.push(
          ((v4[0] as number) << 8) | (v4[1] as number),
          ((v4[2] as number) << 8) | (v4[3] as number),
        );
        return;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) throw bad();
      words.push(Number.parseInt(p, 16));
    });
    return words;
  };
  const h = parse(head);
  const t = parse(tail);
  const fill = 8 - h.length - t.length;
  if ((dbl < 0 && fill !== 0) || (dbl >= 0 && fill < 1)) throw bad();
  const words = [...h, ...new Array<number>(dbl >= 0 ? fill : 0).fill(0), ...t];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

/** Parses "addr/len" into address bytes and prefix length. */
export function parsePrefix(text: string): { bytes: Uint8Array; length: number; version: 4 | 6 } {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const bytes = parseAddress(addr);
  const max = bytes.length * 8;
  const length = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(length) || length < 0 || length > max) throw new Error(`bad prefix length: ${text}`);
  return { bytes, length, version: bytes.length === 4 ? 4 : 6 };
}

export function maskedPrefixText(bytes: Uint8Array, length: number, version: 4 | 6): string {
  const masked = bytes.slice();
  for (let bit = length; bit < masked.length * 8; bit++) {
    masked[bit >> 3] = (masked[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  }
  return `${addressText(masked, 0, version)}/${length}`;
}

export function isMulticastDestination(buf: Uint8Array, off: number, version: number): boolean {
  if (version === 4) {
    const first = buf[off + 16] as number;
    return (first >= 224 && first <= 239) || ipv4At(buf, off + 16) === 0xffffffff;
  }
  return buf[off + 24] === 0xff;
}
