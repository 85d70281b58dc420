#!/usr/bin/env node
// TURN Allocate (RFC 5766) over UDP with long-term credentials: first request gets 401 with
// REALM/NONCE, the second carries USERNAME/REALM/NONCE/MESSAGE-INTEGRITY; the allocation is
// released afterwards. Prints {"relayed": "ADDR:PORT", "mapped": "ADDR:PORT"}; exit 0 on success,
// 1 otherwise (the error response code and reason go to stderr, e.g. "401 Unauthorized" for a wrong
// password). The messages come from the controller's built STUN module (run `pnpm run build` first).
// usage: node turn-allocate.mjs HOST PORT USER PASSWORD [TIMEOUT_MS=3000]
import dgram from "node:dgram";
import { turnAllocate } from "../../../packages/controller/dist/stun.js";

const [host, portText, user, password, timeoutText] = process.argv.slice(2);
const port = Number(portText ?? 3478);
const timeoutMs = Number(timeoutText ?? 3000);
const text = (e) => (e ? `${e.address}:${e.port}` : null);

const sock = dgram.createSocket("udp4");
sock.bind(0, async () => {
  const r = await turnAllocate(sock, { address: host, port }, { username: user, password }, timeoutMs);
  if (!r.ok) {
    console.error(`${r.error} (${host}:${port})`);
    process.exit(1);
  }
  console.log(JSON.stringify({ relayed: text(r.relayed), mapped: text(r.mapped) }));
  process.exit(0);
});
