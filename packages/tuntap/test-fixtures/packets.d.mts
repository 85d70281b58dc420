// Types for packets.mjs (used by the TypeScript tests and the bench).
export function inetChecksum(...parts: Uint8Array[]): number;
export function ipv4Bytes(text: string): Buffer;
export function ipv6Bytes(text: string): Buffer;
export function ipv4Text(b: Uint8Array): string;
export function ipv6Text(b: Buffer): string;
export function ipv4Packet(o: {
  src: string;
  dst: string;
  protocol: number;
  payload: Buffer;
  ttl?: number;
  id?: number;
}): Buffer;
export function udp4Packet(o: {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  data: Buffer;
  ttl?: number;
  id?: number;
}): Buffer;
export function icmp4Echo(o: { src: string; dst: string; id: number; seq: number; data: Buffer }): Buffer;
export function udp6Packet(o: {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  data: Buffer;
  hopLimit?: number;
}): Buffer;
// biome-ignore lint/suspicious/noExplicitAny: parsed packet shape depends on the protocol
export function parsePacket(p: Uint8Array): any;
