// Runs inside a lab namespace: relays JSON-RPC datagrams between stdin/stdout (one JSON per line)
// and the datapath's loopback RPC port of that namespace, so a test in the root namespace can
// drive a datapath that listens on the namespace's own 127.0.0.1.
import dgram from "node:dgram";
import readline from "node:readline";

const [host = "127.0.0.1", port = "5800"] = (process.argv[2] ?? "127.0.0.1:5800").split(":");
const socket = dgram.createSocket("udp4");
socket.bind(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ bridgePort: socket.address().port })}\n`);
});
socket.on("message", (msg) => process.stdout.write(`${msg.toString("utf8").replace(/\n/g, " ")}\n`));
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim()) socket.send(line, Number(port), host);
});
process.stdin.on("end", () => process.exit(0));
