// Runs inside a lab namespace: allocates on a TURN server with the datapath's TurnClient, writes its
// relayed address to OUT_DIR/NAME.relayed, waits for PEER's, binds a channel to it and sends
// ChannelData to it every 100 ms until it has received one from it (or 15 s passed). Prints one
// JSON line: {relayed, mapped, channel, got, error}.
//   turn-probe.mjs SERVER_IP SERVER_PORT USER PASSWORD OUT_DIR NAME PEER
import dgram from "node:dgram";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readChannelData, writeChannelData } from "../../packages/datapath/dist/fast/channel-data.js";
import { TurnClient } from "../../packages/datapath/dist/fast/turn-client.js";

const [serverIp, serverPort, username, password, outDir, name, peerName] = process.argv.slice(2);
const server = { address: serverIp, port: Number(serverPort) };
const socket = dgram.createSocket("udp4");
await new Promise((r) => socket.bind(0, r));
const client = new TurnClient(server, { username, password }, (to, datagram) => {
  socket.send(datagram, to.port, to.address);
  return true;
});
const result = { relayed: null, mapped: null, channel: null, got: null, error: null };
const finish = () => {
  client.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  setTimeout(() => process.exit(0), 200);
};
setTimeout(finish, 15_000);
socket.on("message", (buf, rinfo) => {
  const from = { address: rinfo.address, port: rinfo.port };
  if (client.onMessage(buf, from)) return;
  const cd = from.address === server.address ? readChannelData(buf) : null;
  if (!cd || !client.peerOf(cd.channel)) return;
  result.got = cd.data.toString("utf8");
  finish();
});
result.relayed = await client.allocate();
result.mapped = client.mapped;
result.error = client.error;
if (!result.relayed) finish();
writeFileSync(join(outDir, `${name}.relayed`), JSON.stringify(result.relayed));
const peerFile = join(outDir, `${peerName}.relayed`);
while (!existsSync(peerFile)) await new Promise((r) => setTimeout(r, 50));
const peer = JSON.parse(readFileSync(peerFile, "utf8"));
result.channel = await client.bind(peer);
if (result.channel === null) {
  result.error = "bind failed";
  finish();
}
const text = Buffer.from(`hello from ${name}`);
const frame = Buffer.alloc(4 + text.length);
text.copy(frame, 4);
writeChannelData(frame, 0, result.channel, text.length);
setInterval(() => socket.send(frame, server.port, server.address), 100);
