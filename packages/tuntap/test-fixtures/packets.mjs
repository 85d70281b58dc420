// Minimal IPv4/IPv6/UDP/ICMP packet building and parsing for the tuntap tests and bench.
// Plain JS so that the child processes (run with plain `node`) can use it too.
import { isIPv4 } from "node:net";

/** Internet checksum (RFC 1071) over several byte ranges, as a 16-bit number. */
export function inetChecksum(...parts) {
  let sum = 0;
  for (const b of parts) {
    const n = b.length;
    for (let i = 0; i + 1 < n; i += 2) sum += (b[i] << 8) | b[i + 1];
    if (n % 2 === 1) sum += b[n - 1] << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function ipv4Bytes(text) {
  if (!isIPv4(text)) throw new Error(`bad IPv4 ${text}`);
  return Buffer.from(text.split(".").map(Number));
}

export function ipv6Bytes(text) {
  // expand "::" then parse 8 groups (no embedded IPv4 needed here)
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8) throw new Error(`bad IPv6 ${text}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}

export function ipv4Text(b) {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

export function ipv6Text(b) {
  const g = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  // RFC 5952: compress the longest run (>= 2) of zero groups
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** IPv4 packet with a correct header checksum around `payload`. */
export function ipv4Packet({ src, dst, protocol, payload, ttl = 64, id = 0x1234 }) {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(0x4000, 6); // DF
  h[8] = ttl;
  h[9] = protocol;
  ipv4Bytes(src).copy(h, 12);
  ipv4Bytes(dst).copy(h, 16);
  h.writeUInt16BE(inetChecksum(h), 10);
  return Buffer.concat([h, payload]);
}

function udpSegment(sport, dport, data, pseudo) {
  const u = Buffer.alloc(8 + data.length);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(u.length, 4);
  data.copy(u, 8);
  const c = inetChecksum(pseudo, u);
  u.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  return u;
}

/** IPv4/UDP packet with correct IP and UDP checksums. */
export function udp4Packet({ src, dst, sport, dport, data, ttl, id }) {
  const pseudo = Buffer.alloc(12);
  ipv4Bytes(src).copy(pseudo, 0);
  ipv4Bytes(dst).copy(pseudo, 4);
  pseudo[9] = 17;
  pseudo.writeUInt16BE(8 + data.length, 10);
  return ipv4Packet({ src, dst, protocol: 17, payload: udpSegment(sport, dport, data, pseudo), ttl, id });
}

/** IPv4 ICMP echo request. */
export function icmp4Echo({ src, dst, id, seq, data }) {
  const m = Buffer.alloc(8 + data.length);
  m[0] = 8;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  data.copy(m, 8);
  m.writeUInt16BE(inetChecksum(m), 2);
  return ipv4Packet({ src, dst, protocol: 1, payload: m });
}

/** IPv6/UDP packet with a correct UDP checksum. */
export function udp6Packet({ src, dst, sport, dport, data, hopLimit = 64 }) {
  const s = ipv6Bytes(src);
  const d = ipv6Bytes(dst);
  const pseudo = Buffer.alloc(40);
  s.copy(pseudo, 0);
  d.copy(pseudo, 16);
  pseudo.writeUInt32BE(8 + data.length, 32);
  pseudo[39] = 17;
  const u = udpSegment(sport, dport, data, pseudo);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(u.length, 4);
  h[6] = 17;
  h[7] = hopLimit;
  s.copy(h, 8);
  d.copy(h, 24);
  return Buffer.concat([h, u]);
}

/** Parses an IPv4 or IPv6 packet (and UDP/ICMP inside), checking checksums. */
export function parsePacket(p) {
  const version = p[0] >> 4;
  if (version === 4) {
    const ihl = (p[0] & 15) * 4;
    const totalLength = p.readUInt16BE(2);
    const out = {
      version,
      ihl,
      totalLength,
      ttl: p[8],
      protocol: p[9],
      src: ipv4Text(p.subarray(12, 16)),
      dst: ipv4Text(p.subarray(16, 20)),
      headerChecksumOk: inetChecksum(p.subarray(0, ihl)) === 0,
    };
    const l4 = p.subarray(ihl, totalLength);
    if (out.protocol === 17) {
      const pseudo = Buffer.alloc(12);
      p.copy(pseudo, 0, 12, 20);
      pseudo[9] = 17;
      pseudo.writeUInt16BE(l4.length, 10);
      out.udp = parseUdp(l4, pseudo);
    } else if (out.protocol === 1) {
      out.icmp = {
        type: l4[0],
        code: l4[1],
        id: l4.readUInt16BE(4),
        seq: l4.readUInt16BE(6),
        data: l4.subarray(8),
        checksumOk: inetChecksum(l4) === 0,
      };
    }
    return out;
  }
  if (version === 6) {
    const payloadLength = p.readUInt16BE(4);
    const out = {
      version,
      payloadLength,
      nextHeader: p[6],
      hopLimit: p[7],
      src: ipv6Text(p.subarray(8, 24)),
      dst: ipv6Text(p.subarray(24, 40)),
    };
    if (out.nextHeader === 17) {
      const pseudo = Buffer.alloc(40);
      p.copy(pseudo, 0, 8, 40);
      pseudo.writeUInt32BE(payloadLength, 32);
      pseudo[39] = 17;
      out.udp = parseUdp(p.subarray(40, 40 + payloadLength), pseudo);
    }
    return out;
  }
  return { version };
}

function parseUdp(u, pseudo) {
  return {
    sport: u.readUInt16BE(0),
    dport: u.readUInt16BE(2),
    length: u.readUInt16BE(4),
    checksumOk: u.readUInt16BE(6) === 0 || inetChecksum(pseudo, u) === 0,
    data: u.subarray(8),
  };
}
