#!/usr/bin/env node
// Open a client stream to an XMPP server and print the raw <stream:features> it offers.
// Exit 0 when features arrived, 1 otherwise. usage: node xmpp-features.mjs HOST PORT DOMAIN
import net from "node:net";

const [host, portText, domain] = process.argv.slice(2);
const sock = net.connect(Number(portText ?? 5222), host, () => {
  sock.write(
    `<?xml version='1.0'?><stream:stream to='${domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
  );
});
let buf = "";
sock.setEncoding("utf8");
sock.on("data", (d) => {
  buf += d;
  const m = buf.match(/<stream:features[\s\S]*?<\/stream:features>/);
  if (m) {
    console.log(m[0]);
    sock.end("</stream:stream>");
    process.exit(0);
  }
});
sock.on("error", (e) => {
  console.error(`connect ${host}:${portText}: ${e.message}`);
  process.exit(1);
});
setTimeout(() => {
  console.error(`no stream features from ${host}:${portText}; got: ${buf}`);
  process.exit(1);
}, 5000);
