#!/usr/bin/env node
// Send datagrams from a connected UDP socket to HOST:PORT, where nothing listens, and print the
// error the kernel reports once an ICMP port unreachable comes back for it (ECONNREFUSED: the
// ICMP error quoted our datagram's addresses and ports). Exit 0 on an error, 1 on timeout, 3 on a reply.
// usage: node udp-refused.mjs HOST PORT [TIMEOUT_MS]
import dgram from "node:dgram";

const [host, portText, timeoutText] = process.argv.slice(2);
const sock = dgram.createSocket("udp4");
sock.on("error", (err) => {
  console.log(err.code ?? err.message);
  process.exit(0);
});
sock.on("message", (msg) => {
  console.log(`reply: ${msg}`);
  process.exit(3);
});
sock.connect(Number(portText), host, () => {
  const send = () => sock.send("probe", (err) => err && sock.emit("error", err));
  send();
  setInterval(send, 200);
});
setTimeout(
  () => {
    console.error(`no error for ${host}:${portText}`);
    process.exit(1);
  },
  Number(timeoutText ?? 3000),
);
