// Runs inside a lab namespace and sends raw (hostile) datagrams to the datapath's loopback RPC port,
// printing one JSON result line. Modes:
//   send ADDR B64...          each datagram in turn; the reply text (or null after 1.5 s) of each
//   flood ADDR N TOKENFILE    N garbage datagrams while a legit route.query is sent every 20 ms;
//                             prints how many legit requests were answered and their latencies
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";

const [mode, addr, ...rest] = process.argv.slice(2);
const [host, port] = addr.split(":");
const socket = dgram.createSocket("udp4");
await new Promise((r) => socket.bind(0, "127.0.0.1", r));
const out = (v) => process.stdout.write(`${JSON.stringify(v)}\n`);

if (mode === "send") {
  const replies = [];
  for (const b64 of rest) {
    const reply = new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), 1500);
      socket.once("message", (m) => {
        clearTimeout(timer);
        resolve(m.toString("utf8"));
      });
    });
    socket.send(Buffer.from(b64, "base64"), Number(port), host);
    replies.push(await reply);
  }
  out({ replies });
} else if (mode === "flood") {
  const n = Number(rest[0]);
  const token = readFileSync(rest[1], "utf8").trim();
  const sentAt = new Map();
  const latencies = [];
  let garbageReplies = 0;
  socket.on("message", (m) => {
    const text = m.toString("utf8");
    const legit = /"id":"legit-(\d+)"/.exec(text);
    if (legit && text.includes('"result"')) {
      latencies.push(Date.now() - sentAt.get(legit[1]));
      sentAt.delete(legit[1]);
    } else garbageReplies++;
  });
  const garbage = (i) => {
    switch (i % 5) {
      case 0:
        return randomBytes(1 + (i % 1400));
      case 1:
        return Buffer.from(`${"[".repeat(i % 20000)}`);
      case 2:
        return Buffer.from(
          JSON.stringify({ jsonrpc: "2.0", id: i, method: "link.create", params: { auth: "x" } }),
        );
      case 3:
        return Buffer.from(`[${Array(40).fill("null").join(",")}]`);
      default:
        return Buffer.from(`{"jsonrpc":"2.0","id":{"__proto__":{"polluted":1}},"method":"hello"}`);
    }
  };
  /** Datagrams the kernel dropped because a socket's receive buffer was full (this namespace). */
  const rcvbufErrors = () => {
    const [head, values] = readFileSync("/proc/net/snmp", "utf8")
      .split("\n")
      .filter((l) => l.startsWith("Udp:"));
    return Number(values.split(/\s+/)[head.split(/\s+/).indexOf("RcvbufErrors")]);
  };
  const dropsBefore = rcvbufErrors();
  let legit = 0;
  const timer = setInterval(() => {
    const id = String(legit++);
    sentAt.set(id, Date.now());
    const req = { jsonrpc: "2.0", id: `legit-${id}`, method: "route.query", params: { auth: token } };
    socket.send(JSON.stringify(req), Number(port), host);
  }, 20);
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    socket.send(garbage(i), Number(port), host);
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1)); // ~5 s for 10k: a flood, not a burst lost in buffers
  }
  const floodMs = Date.now() - t0;
  clearInterval(timer);
  await new Promise((r) => setTimeout(r, 1500));
  latencies.sort((a, b) => a - b);
  out({
    garbage: n,
    floodMs,
    garbageReplies,
    kernelDrops: rcvbufErrors() - dropsBefore,
    legitSent: legit,
    legitAnswered: latencies.length,
    p50Ms: latencies[Math.floor(latencies.length / 2)] ?? null,
    maxMs: latencies.at(-1) ?? null,
  });
}
socket.close();
