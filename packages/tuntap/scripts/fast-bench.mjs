#!/usr/bin/env node
// Micro-benchmark of FastSocket: seal + sendmmsg + recvmmsg + open of 1400-byte frames between
// two sockets on 127.0.0.1 in this one process (so one core does both ends), per cipher, with
// and without UDP GSO/GRO (`udpOffload`).
// Usage: node packages/tuntap/scripts/fast-bench.mjs [seconds per run, default 3] [frame bytes, 1400]
// Build first: pnpm --filter @tincan/tuntap run build.
import { randomBytes } from "node:crypto";
import { FastSocket } from "../dist/index.js";

const seconds = Number(process.argv[2] ?? 3);
const frameBytes = Number(process.argv[3] ?? 1400);
const WINDOW = 1024; // frames in flight (sent, not yet received): fits the 4 MiB socket buffers

function run(cipher, udpOffload) {
  return new Promise((resolve) => {
    const a = new FastSocket({ address: "127.0.0.1", cipher, udpOffload });
    const b = new FastSocket({ address: "127.0.0.1", cipher, udpOffload });
    const kAB = randomBytes(32);
    const kBA = randomBytes(32);
    a.setSession(1, 2, kAB, kBA, { address: "127.0.0.1", port: b.port });
    b.setSession(2, 1, kBA, kAB, { address: "127.0.0.1", port: a.port });
    const frame = randomBytes(frameBytes);
    let sent = 0;
    let received = 0;
    let bytes = 0;
    b.onBatch((_idx, _buf, _off, lengths, count) => {
      received += count;
      for (let i = 0; i < count; i++) bytes += lengths[i];
    });
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const deadline = t0 + BigInt(Math.round(seconds * 1e9));
    const pump = () => {
      if (process.hrtime.bigint() >= deadline) {
        const ns = Number(process.hrtime.bigint() - t0);
        const cpu = process.cpuUsage(cpu0);
        const stats = a.stats();
        const lost = sent - received;
        a.close();
        b.close();
        resolve({
          cipher,
          udpOffload,
          gbps: (bytes * 8) / ns,
          kpps: (received / ns) * 1e6,
          cpuPerGB: (cpu.user + cpu.system) / 1e6 / (bytes / 1e9),
          sendFailed: stats.drops.sendFailed,
          inFlightOrLost: lost,
        });
        return;
      }
      // Send while the window allows, then let the loop run the receive side.
      while (sent - received < WINDOW) {
        a.send(1, frame, 0, frame.length);
        sent++;
      }
      a.flush();
      setImmediate(pump);
    };
    pump();
  });
}

const results = [];
for (let rep = 0; rep < 2; rep++) {
  for (const cipher of ["aes-256-gcm", "chacha20-poly1305"]) {
    for (const udpOffload of [true, false]) results.push(await run(cipher, udpOffload));
  }
}
for (const r of results) {
  console.log(
    `${r.cipher.padEnd(18)} GSO/GRO ${r.udpOffload ? "on " : "off"} ${frameBytes} B frames: ${r.gbps.toFixed(2)} Gbit/s, ${r.kpps.toFixed(0)} kframes/s, ` +
      `${r.cpuPerGB.toFixed(2)} CPU s/GB, sendFailed ${r.sendFailed}, in flight at the end ${r.inFlightOrLost}`,
  );
}
