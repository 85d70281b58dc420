#!/usr/bin/env node
// TURN Allocate (RFC 5766) over UDP with long-term credentials: first request gets 401 with
// REALM/NONCE, the second carries USERNAME/REALM/NONCE/MESSAGE-INTEGRITY(/FINGERPRINT).
// Prints {"relayed": "ADDR:PORT", "mapped": "ADDR:PORT"}; exit 0 on success, 1 otherwise (the
// error response code and reason go to stderr, e.g. "401 Unauthorized" for a wrong password).
// usage: node turn-allocate.mjs HOST PORT USER PASSWORD [TIMEOUT_MS=3000]
import { createHash, createHmac, randomBytes } from "node:crypto";
import dgram from "node:dgram";

const [host, portText, user, password, timeoutText] = process.argv.slice(2);
const port = Number(portText ?? 3478);
const MAGIC = 0x2112a442;
const ALLOCATE = 0x0003;

function attr(type, value) {
  const pad = (4 - (value.length % 4)) % 4;
  const b = Buffer.alloc(4 + value.length + pad);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(value.length, 2);
  value.copy(b, 4);
  return b;
}

function message(type, txid, attrs, key) {
  let body = Buffer.concat(attrs);
  const header = (len) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(len, 2);
    h.writeUInt32BE(MAGIC, 4);
    txid.copy(h, 8);
    return h;
  };
  if (key) {
    // MESSAGE-INTEGRITY: HMAC-SHA1 over the message with length covering the MI attribute
    const mac = createHmac("sha1", key)
      .update(Buffer.concat([header(body.length + 24), body]))
      .digest();
    body = Buffer.concat([body, attr(0x0008, mac)]);
  }
  // FINGERPRINT: CRC32 ^ 0x5354554e over the message with length covering the attribute
  const withFp = Buffer.concat([header(body.length + 8), body]);
  const fp = Buffer.alloc(4);
  fp.writeUInt32BE((crc32(withFp) ^ 0x5354554e) >>> 0);
  return Buffer.concat([withFp, attr(0x8028, fp)]);
}

const table = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const byte of buf) c = table[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function parse(msg) {
  const attrs = new Map();
  const end = Math.min(msg.length, 20 + msg.readUInt16BE(2));
  for (let off = 20; off + 4 <= end; ) {
    const type = msg.readUInt16BE(off);
    const len = msg.readUInt16BE(off + 2);
    attrs.set(type, msg.subarray(off + 4, off + 4 + len));
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return { type: msg.readUInt16BE(0), txid: msg.subarray(8, 20), attrs };
}

function xorAddress(v) {
  const p = v.readUInt16BE(2) ^ (MAGIC >>> 16);
  const a = (v.readUInt32BE(4) ^ MAGIC) >>> 0;
  return `${[a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join(".")}:${p}`;
}

const transport = attr(0x0019, Buffer.from([17, 0, 0, 0])); // REQUESTED-TRANSPORT: UDP
const sock = dgram.createSocket("udp4");
let txid = randomBytes(12);
let pending = message(ALLOCATE, txid, [transport]);
let authed = false;
sock.on("message", (msg) => {
  if (msg.length < 20 || msg.readUInt32BE(4) !== MAGIC) return;
  const m = parse(msg);
  if (!m.txid.equals(txid)) return;
  if (m.type === 0x0103) {
    console.log(
      JSON.stringify({ relayed: xorAddress(m.attrs.get(0x0016)), mapped: xorAddress(m.attrs.get(0x0020)) }),
    );
    process.exit(0);
  }
  if (m.type === 0x0113) {
    const err = m.attrs.get(0x0009);
    const code = err ? err[2] * 100 + err[3] : 0;
    const reason = err ? err.subarray(4).toString() : "";
    if (code === 401 && !authed) {
      authed = true;
      const realm = m.attrs.get(0x0014);
      const nonce = m.attrs.get(0x0015);
      const key = createHash("md5").update(`${user}:${realm.toString()}:${password}`).digest();
      txid = randomBytes(12);
      pending = message(
        ALLOCATE,
        txid,
        [transport, attr(0x0006, Buffer.from(user)), attr(0x0014, realm), attr(0x0015, nonce)],
        key,
      );
      sock.send(pending, port, host);
      return;
    }
    console.error(`${code} ${reason}`);
    process.exit(1);
  }
});
sock.bind(0, () => {
  sock.send(pending, port, host);
  setInterval(() => sock.send(pending, port, host), 500);
});
setTimeout(
  () => {
    console.error(`no TURN response from ${host}:${port}`);
    process.exit(1);
  },
  Number(timeoutText ?? 3000),
);
