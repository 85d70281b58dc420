#!/usr/bin/env node
// Authoritative-only DNS over UDP for lab namespaces (dns-packet, from packages/socialvpn's
// dependencies). Records come from a JSON zone file, read again for every query so a test can
// change them while the server runs: [{name, type: "A"|"SRV", data}] with SRV data
// {priority, weight, port, target}. Unknown names get NXDOMAIN; known names without the asked type
// an empty NOERROR answer.
// usage: node dns-server.mjs ZONE_JSON BIND_ADDR [PORT=53]
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const socialvpnDir = resolve(dirname(fileURLToPath(import.meta.url)), "../../../packages/socialvpn");
const packet = createRequire(resolve(socialvpnDir, "package.json"))("dns-packet");

const [zoneFile, bind, port = "53"] = process.argv.slice(2);
const sock = dgram.createSocket("udp4");
sock.on("message", (msg, rinfo) => {
  let query;
  try {
    query = packet.decode(msg);
  } catch {
    console.log(`undecodable query from ${rinfo.address}`);
    return;
  }
  const q = query.questions?.[0];
  if (!q) return;
  const zone = JSON.parse(readFileSync(zoneFile, "utf8"));
  const name = q.name.toLowerCase();
  const known = zone.filter((r) => r.name.toLowerCase() === name);
  const answers = known.filter((r) => r.type === q.type).map((r) => ({ ...r, ttl: 0, class: "IN" }));
  const rcode = known.length === 0 ? "NXDOMAIN" : "NOERROR";
  console.log(`query ${q.type} ${q.name}: ${rcode}, ${answers.length} answer(s)`);
  const reply = packet.encode({
    id: query.id,
    type: "response",
    flags: packet.AUTHORITATIVE_ANSWER | (query.flags & packet.RECURSION_DESIRED) | rcodeFlag(rcode),
    questions: query.questions,
    answers,
  });
  sock.send(reply, rinfo.port, rinfo.address);
});
sock.bind(Number(port), bind, () => console.log(`listening ${bind}:${port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));

function rcodeFlag(rcode) {
  return rcode === "NXDOMAIN" ? 3 : 0;
}
