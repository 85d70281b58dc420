#!/usr/bin/env node
// STUN Binding request (RFC 5389) to HOST:PORT; prints {"address","port"} from XOR-MAPPED-ADDRESS
// (or MAPPED-ADDRESS). Retries every 500 ms. Exit 0 on success, 1 on timeout/bad reply.
// The messages come from the built STUN codec (@tincan/protocol) and the controller's exchange
// (run `pnpm run build` first).
// usage: node stun-probe.mjs HOST [PORT=3478] [TIMEOUT_MS=3000] [LOCAL_PORT=0]
import dgram from "node:dgram";
import { stunRequest } from "../../../packages/controller/dist/stun.js";
import {
  encodeStun,
  mappedAddress,
  newTransactionId,
  StunType,
} from "../../../packages/protocol/dist/stun.js";

const [host, portText, timeoutText, localPortText] = process.argv.slice(2);
const port = Number(portText ?? 3478);
const timeoutMs = Number(timeoutText ?? 3000);

const sock = dgram.createSocket("udp4");
sock.bind(Number(localPortText ?? 0), async () => {
  const request = encodeStun(StunType.BindingRequest, newTransactionId(), []);
  const reply = await stunRequest(sock, { address: host, port }, request, timeoutMs);
  const mapped = reply?.type === StunType.BindingSuccess ? mappedAddress(reply) : null;
  if (!mapped) {
    console.error(reply ? `bad STUN response from ${host}:${port}` : `no STUN response from ${host}:${port}`);
    process.exit(1);
  }
  console.log(JSON.stringify(mapped));
  process.exit(0);
});
