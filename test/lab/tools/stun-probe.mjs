#!/usr/bin/env node
// STUN Binding request (RFC 5389) to HOST:PORT; prints {"address","port"} from XOR-MAPPED-ADDRESS
// (or MAPPED-ADDRESS). Retries every 200 ms. Exit 0 on success, 1 on timeout/bad reply.
// usage: node stun-probe.mjs HOST [PORT=3478] [TIMEOUT_MS=3000] [LOCAL_PORT=0]
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";

const [host, portText, timeoutText, localPortText] = process.argv.slice(2);
const port = Number(portText ?? 3478);
const MAGIC = 0x2112a442;
const txid = randomBytes(12);
const req = Buffer.alloc(20);
req.writeUInt16BE(0x0001, 0); // Binding request
req.writeUInt16BE(0, 2); // no attributes
req.writeUInt32BE(MAGIC, 4);
txid.copy(req, 8);

function parse(msg) {
  if (msg.length < 20 || msg.readUInt16BE(0) !== 0x0101 || msg.readUInt32BE(4) !== MAGIC) return undefined;
  if (!msg.subarray(8, 20).equals(txid)) return undefined;
  const end = Math.min(msg.length, 20 + msg.readUInt16BE(2));
  let off = 20;
  let mapped;
  while (off + 4 <= end) {
    const type = msg.readUInt16BE(off);
    const len = msg.readUInt16BE(off + 2);
    const v = msg.subarray(off + 4, off + 4 + len);
    if ((type === 0x0020 || type === 0x0001) && v[1] === 0x01) {
      const xor = type === 0x0020;
      const p = v.readUInt16BE(2) ^ (xor ? MAGIC >>> 16 : 0);
      const a = v.readUInt32BE(4) ^ (xor ? MAGIC : 0);
      const address = [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join(".");
      if (xor) return { address, port: p };
      mapped = { address, port: p };
    }
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return mapped;
}

const sock = dgram.createSocket("udp4");
sock.on("message", (msg) => {
  const r = parse(msg);
  if (!r) return;
  console.log(JSON.stringify(r));
  process.exit(0);
});
const send = () => sock.send(req, port, host);
sock.bind(Number(localPortText ?? 0), () => {
  send();
  setInterval(send, 200);
});
setTimeout(
  () => {
    console.error(`no STUN response from ${host}:${port}`);
    process.exit(1);
  },
  Number(timeoutText ?? 3000),
);
