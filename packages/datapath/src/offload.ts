import type { PacketView } from "./packet-view.js";

/**
 * Checksum and segmentation offload (the vNIC's virtio-net header, carried over links in a
 * compact form). With offload the kernel hands us TCP super-packets of up to 64 KiB whose
 * L4 checksum is partial (the pseudo-header sum only, to be completed over the L4 bytes), and
 * takes the same back. Packets that must leave as plain IP (a peer without offload frames, a
 * queue that copies packets) are completed and segmented here in software.
 *
 * A packet's offload state is one number, `meta`, plus `csumStart` and `gsoSize`:
 * - META_PARTIAL: the L4 checksum at csumStart + (16 for TCP, 6 for UDP) is partial.
 * - META_UDP: the L4 header is UDP (else TCP); only meaningful with META_PARTIAL.
 * - META_GSO_TCP4 / META_GSO_TCP6: a TCP super-packet to be cut into gsoSize-byte segments.
 * - META_ECN: the super-packet's TCP uses ECN (CWR only on the first segment).
 */

export const META_PARTIAL = 0x01;
export const META_UDP = 0x02;
export const META_GSO_TCP4 = 0x04;
export const META_GSO_TCP6 = 0x08;
export const META_GSO = META_GSO_TCP4 | META_GSO_TCP6;
export const META_ECN = 0x80;
/** Bits a valid meta may have. */
export const META_KNOWN = META_PARTIAL | META_UDP | META_GSO | META_ECN;

/** virtio_net_hdr constants (linux/virtio_net.h). */
export const VNET_HDR_BYTES = 10;
const VNET_F_NEEDS_CSUM = 1;
const VNET_GSO_TCPV4 = 1;
const VNET_GSO_TCPV6 = 4;
const VNET_GSO_ECN = 0x80;

/** The offload state of one packet, decoded from a virtio-net header or a frame. */
export interface PacketOffload {
  meta: number;
  csumStart: number;
  gsoSize: number;
}

/**
 * Reads the virtio_net_hdr (little-endian) at buf[hdr..hdr+10) into `out`. Returns false for a
 * header we cannot carry (UDP fragmentation offload, or a partial checksum at an offset other
 * than TCP's or UDP's).
 */
export function readVnetHdr(buf: Uint8Array, hdr: number, out: PacketOffload): boolean {
  const flags = buf[hdr] as number;
  const gsoType = buf[hdr + 1] as number;
  let meta = 0;
  let csumStart = 0;
  if (flags & VNET_F_NEEDS_CSUM) {
    csumStart = (buf[hdr + 6] as number) | ((buf[hdr + 7] as number) << 8);
    const csumOffset = (buf[hdr + 8] as number) | ((buf[hdr + 9] as number) << 8);
    if (csumOffset === 6) meta = META_PARTIAL | META_UDP;
    else if (csumOffset === 16) meta = META_PARTIAL;
    else return false;
  }
  let gsoSize = 0;
  const kind = gsoType & ~VNET_GSO_ECN;
  if (kind !== 0) {
    if (kind === VNET_GSO_TCPV4) meta |= META_GSO_TCP4;
    else if (kind === VNET_GSO_TCPV6) meta |= META_GSO_TCP6;
    else return false;
    if (gsoType & VNET_GSO_ECN) meta |= META_ECN;
    gsoSize = (buf[hdr + 4] as number) | ((buf[hdr + 5] as number) << 8);
    if (gsoSize === 0 || !(meta & META_PARTIAL) || meta & META_UDP) return false;
  }
  out.meta = meta;
  out.csumStart = csumStart;
  out.gsoSize = gsoSize;
  return true;
}

/**
 * Writes the virtio_net_hdr for a packet at pkt[off..off+len) with the given offload state into
 * hdr[0..10). Returns false when the packet cannot hold what the state claims (the kernel would
 * refuse it).
 */
export function writeVnetHdr(hdr: Uint8Array, p: PacketView): boolean {
  const { buf: pkt, off, len, meta, csumStart, gsoSize } = p;
  hdr.fill(0, 0, VNET_HDR_BYTES);
  if (meta & META_PARTIAL) {
    const csumOffset = meta & META_UDP ? 6 : 16;
    if (csumStart < 20 || csumStart + csumOffset + 2 > len) return false;
    hdr[0] = VNET_F_NEEDS_CSUM;
    hdr[6] = csumStart & 0xff;
    hdr[7] = csumStart >> 8;
    hdr[8] = csumOffset;
  }
  if (meta & META_GSO) {
    if (!(meta & META_PARTIAL) || meta & META_UDP || gsoSize === 0 || csumStart + 20 > len) return false;
    const hdrLen = csumStart + (((pkt[off + csumStart + 12] as number) >> 4) << 2);
    if (hdrLen > len) return false;
    hdr[1] = (meta & META_GSO_TCP4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6) | (meta & META_ECN ? VNET_GSO_ECN : 0);
    hdr[2] = hdrLen & 0xff;
    hdr[3] = hdrLen >> 8;
    hdr[4] = gsoSize & 0xff;
    hdr[5] = gsoSize >> 8;
  }
  return true;
}

/** Ones'-complement sum of buf[start..end) as 16-bit big-endian words, added to `sum` (unfolded). */
function sum16(buf: Uint8Array, start: number, end: number, sum: number): number {
  let i = start;
  for (; i + 1 < end; i += 2) sum += ((buf[i] as number) << 8) | (buf[i + 1] as number);
  if (i < end) sum += (buf[i] as number) << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * Completes the partial L4 checksum of the packet at buf[off..off+len) in place: the field holds
 * the pseudo-header sum, so the sum over the L4 bytes (field included) gives the checksum.
 */
export function completeChecksum(
  buf: Uint8Array,
  off: number,
  len: number,
  meta: number,
  csumStart: number,
): boolean {
  const field = off + csumStart + (meta & META_UDP ? 6 : 16);
  if (csumStart < 20 || field + 2 > off + len) return false;
  let c = ~fold(sum16(buf, off + csumStart, off + len, 0)) & 0xffff;
  if (c === 0 && meta & META_UDP) c = 0xffff;
  buf[field] = c >> 8;
  buf[field + 1] = c & 0xff;
  return true;
}

/** Sum of the TCP/UDP pseudo-header of the IP packet at off (L4 length `l4Len`, protocol `proto`). */
function pseudoSum(buf: Uint8Array, off: number, l4Len: number, proto: number): number {
  const v6 = (buf[off] as number) >> 4 === 6;
  const sum = v6 ? sum16(buf, off + 8, off + 40, 0) : sum16(buf, off + 12, off + 20, 0);
  return sum + proto + l4Len;
}

/** What {@link writeSegment} needs to know about a TCP super-packet (see {@link parseTcpSuper}). */
export interface TcpSuper {
  /** Length of the IP + TCP headers. */
  hdrLen: number;
  /** Payload bytes after the headers. */
  payload: number;
  /** Number of segments of gsoSize payload bytes. */
  segments: number;
  seq: number;
  flags: number;
  ipId: number;
}

/** Reads the headers of the TCP super-packet at src[off..off+len); false when malformed. */
export function parseTcpSuper(
  src: Uint8Array,
  off: number,
  len: number,
  csumStart: number,
  gsoSize: number,
  out: TcpSuper,
): boolean {
  const tcp = off + csumStart;
  if (csumStart < 20 || csumStart + 20 > len || gsoSize <= 0) return false;
  const hdrLen = csumStart + (((src[tcp + 12] as number) >> 4) << 2);
  if (hdrLen > len || hdrLen < csumStart + 20) return false;
  out.hdrLen = hdrLen;
  out.payload = len - hdrLen;
  out.segments = out.payload === 0 ? 1 : Math.ceil(out.payload / gsoSize);
  out.seq =
    (src[tcp + 4] as number) * 0x1000000 +
    ((src[tcp + 5] as number) << 16) +
    ((src[tcp + 6] as number) << 8) +
    (src[tcp + 7] as number);
  out.flags = src[tcp + 13] as number;
  out.ipId = (src[off] as number) >> 4 === 4 ? ((src[off + 4] as number) << 8) | (src[off + 5] as number) : 0;
  return true;
}

/**
 * Writes segment `i` of the TCP super-packet at src[off..] (headers `sup`, gsoSize payload bytes
 * per segment) at out[o..] and returns its length: IP total length, IPv4 id and header checksum,
 * TCP sequence number and flags (FIN/PSH only on the last, CWR only on the first) fixed. The TCP
 * checksum is complete, or with `partial` only the pseudo-header sum (checksum offload: the
 * receiver's kernel trusts it, and the link's own authentication protects the bytes).
 */
export function writeSegment(
  src: Uint8Array,
  off: number,
  csumStart: number,
  gsoSize: number,
  sup: TcpSuper,
  i: number,
  out: Uint8Array,
  o: number,
  partial: boolean,
): number {
  const hdrLen = sup.hdrLen;
  const pos = i * gsoSize;
  const seg = Math.max(Math.min(gsoSize, sup.payload - pos), 0);
  const total = hdrLen + seg;
  out.set(src.subarray(off, off + hdrLen), o);
  if (seg > 0) out.set(src.subarray(off + hdrLen + pos, off + hdrLen + pos + seg), o + hdrLen);
  const t = o + csumStart;
  if ((out[o] as number) >> 4 === 4) {
    out[o + 2] = total >> 8;
    out[o + 3] = total & 0xff;
    const id = (sup.ipId + i) & 0xffff;
    out[o + 4] = id >> 8;
    out[o + 5] = id & 0xff;
    const ihl = ((out[o] as number) & 0x0f) << 2;
    out[o + 10] = 0;
    out[o + 11] = 0;
    const ipSum = ~fold(sum16(out, o, o + ihl, 0)) & 0xffff;
    out[o + 10] = ipSum >> 8;
    out[o + 11] = ipSum & 0xff;
  } else {
    out[o + 4] = (total - 40) >> 8;
    out[o + 5] = (total - 40) & 0xff;
  }
  const seq = (sup.seq + pos) % 0x100000000;
  out[t + 4] = seq >>> 24;
  out[t + 5] = (seq >>> 16) & 0xff;
  out[t + 6] = (seq >>> 8) & 0xff;
  out[t + 7] = seq & 0xff;
  let flags = sup.flags;
  if (i < sup.segments - 1) flags &= ~0x09; // FIN and PSH only on the last segment
  if (i > 0) flags &= ~0x80; // CWR only on the first
  out[t + 13] = flags;
  const pseudo = pseudoSum(out, o, total - csumStart, 6);
  let c: number;
  if (partial) {
    c = fold(pseudo);
  } else {
    out[t + 16] = 0;
    out[t + 17] = 0;
    c = ~fold(sum16(out, t, o + total, pseudo)) & 0xffff;
  }
  out[t + 16] = c >> 8;
  out[t + 17] = c & 0xff;
  return total;
}

const sup: TcpSuper = { hdrLen: 0, payload: 0, segments: 0, seq: 0, flags: 0, ipId: 0 };

/**
 * Software TSO: cuts the TCP super-packet at src[off..off+len) (TCP header at csumStart) into
 * segments of at most gsoSize payload bytes with complete checksums, written one after the other
 * into `out` (which must hold len + (number of segments - 1) * header bytes); calls emit for each.
 * Returns the number of segments, or -1 when the headers are malformed.
 */
export function segmentTcp(
  src: Uint8Array,
  off: number,
  len: number,
  csumStart: number,
  gsoSize: number,
  out: Uint8Array,
  emit: (buf: Uint8Array, off: number, len: number) => void,
): number {
  if (!parseTcpSuper(src, off, len, csumStart, gsoSize, sup)) return -1;
  if (out.length < len + (sup.segments - 1) * sup.hdrLen) return -1;
  let o = 0;
  for (let i = 0; i < sup.segments; i++) {
    const n = writeSegment(src, off, csumStart, gsoSize, sup, i, out, o, false);
    emit(out, o, n);
    o += n;
  }
  return sup.segments;
}

let scratch = new Uint8Array(0);

/**
 * Hands the packet to `emit` as plain IP packet(s): completes a partial checksum (in place) and
 * segments a super-packet. Returns false (nothing emitted) when the packet is malformed.
 */
/** Smallest segment size accepted from a peer (Linux's TCP_MIN_MSS is 88). */
const MIN_GSO_SIZE = 64;

/**
 * Whether offload metadata received from a peer fits the packet it describes: the checksum start
 * is the L4 header right after the IP header (IPv6: after at most 40 bytes of extension headers),
 * and a super-packet is TCP of the IP version its GSO type says, cut into segments of a sane size.
 * Everything later (software segmentation, the vNIC's virtio-net header) relies on this.
 */
export function offloadMetaValid(p: PacketView): boolean {
  const { buf, off, len, meta, csumStart, gsoSize } = p;
  if (meta === 0) return true;
  const version = (buf[off] as number) >> 4;
  if (!(meta & META_PARTIAL)) return (meta & META_GSO) === 0;
  const ipHdr = version === 4 ? ((buf[off] as number) & 0x0f) * 4 : 40;
  const maxStart = version === 4 ? ipHdr : ipHdr + 40;
  if (csumStart < ipHdr || csumStart > maxStart) return false;
  if (csumStart + (meta & META_UDP ? 8 : 20) > len) return false;
  if (!(meta & META_GSO)) return true;
  if (meta & META_UDP || gsoSize < MIN_GSO_SIZE) return false;
  if (version === 4) return (meta & META_GSO) === META_GSO_TCP4 && buf[off + 9] === 6;
  return (meta & META_GSO) === META_GSO_TCP6;
}

export function toPlainPackets(
  p: PacketView,
  emit: (buf: Uint8Array, off: number, len: number) => void,
): boolean {
  const { buf, off, len, meta, csumStart, gsoSize } = p;
  if (meta & META_GSO) {
    if (!offloadMetaValid(p)) return false;
    const need = len + Math.ceil(len / gsoSize) * (csumStart + 60);
    if (scratch.length < need) scratch = new Uint8Array(Math.max(need, 2 * scratch.length));
    // The scratch buffer is reused: emit must consume (or copy) each segment before returning.
    return segmentTcp(buf, off, len, csumStart, gsoSize, scratch, emit) > 0;
  }
  if (meta & META_PARTIAL && !completeChecksum(buf, off, len, meta, csumStart)) return false;
  emit(buf, off, len);
  return true;
}
