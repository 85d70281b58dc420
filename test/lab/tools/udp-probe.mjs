#!/usr/bin/env node
// Send a datagram to HOST:PORT (retrying every 200 ms, for lossy paths) and print the first reply.
// Exit 0 on a reply, 1 on timeout. usage: node udp-probe.mjs HOST PORT [TIMEOUT_MS] [LOCAL_PORT]
import dgram from "node:dgram";

const [host, portText, timeoutText, localPortText] = process.argv.slice(2);
const port = Number(portText);
const sock = dgram.createSocket("udp4");
const send = () => sock.send("probe", port, host);
sock.on("message", (msg) => {
  console.log(msg.toString());
  process.exit(0);
});
sock.bind(Number(localPortText ?? 0), () => {
  send();
  setInterval(send, 200);
});
setTimeout(
  () => {
    console.error(`no reply from ${host}:${port}`);
    process.exit(1);
  },
  Number(timeoutText ?? 3000),
);
