#!/usr/bin/env node
// UDP echo that answers every datagram with the sender's address as it saw it: "ADDR:PORT".
// usage: node udp-echo.mjs PORT [BIND_ADDR]
import dgram from "node:dgram";

const port = Number(process.argv[2] ?? 7000);
const bind = process.argv[3] ?? "0.0.0.0";
const sock = dgram.createSocket("udp4");
sock.on("message", (msg, rinfo) => {
  const seen = `${rinfo.address}:${rinfo.port}`;
  console.log(`from ${seen} ${msg.length} bytes`);
  sock.send(seen, rinfo.port, rinfo.address);
});
sock.bind(port, bind, () => console.log(`listening ${bind}:${port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
