// Runs one tuntap test scenario inside a network namespace (the test starts it with
// `ip netns exec NS node child.mjs SCENARIO`) and prints one JSON line with what it saw.
// The assertions live in src/tuntap.test.ts. The scenarios end by release()ing the device
// and closing sockets, never with process.exit: a leaked handle shows up as a timeout.

import { execFileSync } from "node:child_process";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { existsSync } from "node:fs";
import { FastSocket, Tun } from "../dist/index.js";
import { icmp4Echo, inetChecksum, parsePacket, udp4Packet, udp6Packet } from "./packets.mjs";

const scenario = process.argv[2];
const watchdog = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ error: `scenario ${scenario} timed out` })}\n`);
  process.exit(3);
}, 10_000);
watchdog.unref();

const hex = (b) => Buffer.from(b).toString("hex");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Collects copies of packets read from `tun` until `done(matching)` or timeout. */
function collect(tun, match, want, ms = 5000) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => {
      tun.onPackets(null);
      reject(new Error(`only ${got.length}/${want} matching packets within ${ms} ms`));
    }, ms);
    tun.onPackets((batch, offsets, lengths, count) => {
      for (let i = 0; i < count; i++) {
        const p = Buffer.from(batch.subarray(offsets[i], offsets[i] + lengths[i]));
        if (match(parsePacket(p))) got.push(p);
      }
      if (got.length >= want) {
        clearTimeout(timer);
        tun.onPackets(null);
        resolve(got);
      }
    });
  });
}

function bindUdp(type, address, port) {
  const s = dgram.createSocket(type);
  const messages = [];
  s.on("message", (msg, rinfo) =>
    messages.push({ data: msg.toString(), address: rinfo.address, port: rinfo.port }),
  );
  return new Promise((resolve) => s.bind(port, address, () => resolve({ s, messages })));
}

async function waitFor(cond, ms = 3000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(10);
  }
  return true;
}

function send(s, data, port, address) {
  return new Promise((resolve, reject) => s.send(data, port, address, (e) => (e ? reject(e) : resolve())));
}

function attempt(label, fn) {
  try {
    const value = fn();
    return { label, threw: false, value: value === undefined ? null : value };
  } catch (e) {
    return {
      label,
      threw: true,
      ctor: e.constructor.name,
      code: e.code ?? null,
      errno: e.errno ?? null,
      message: e.message,
    };
  }
}

function up4(opts = {}) {
  const tun = new Tun({ name: "tt0", ...opts });
  tun.ipv4 = "10.99.0.1/24";
  tun.mtu = 1400;
  tun.isUp = true;
  return tun;
}

/** A fast-path datagram (AES-256-GCM) sealed by the documented format, independently of the addon. */
function fastSeal(key, index, counter, frame) {
  const h = Buffer.alloc(16);
  h[0] = 1;
  h.writeUInt32LE(index, 4);
  h.writeBigUInt64LE(counter, 8);
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64LE(counter, 4);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(h);
  return Buffer.concat([h, c.update(frame), c.final(), c.getAuthTag()]);
}

/** Opens a fast-path datagram: { index, counter, frame }; throws when it does not authenticate. */
function fastOpen(key, d) {
  const h = d.subarray(0, 16);
  const counter = h.readBigUInt64LE(8);
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64LE(counter, 4);
  const c = createDecipheriv("aes-256-gcm", key, iv);
  c.setAAD(h);
  c.setAuthTag(d.subarray(d.length - 16));
  const frame = Buffer.concat([c.update(d.subarray(16, d.length - 16)), c.final()]);
  return { index: h.readUInt32LE(4), counter: Number(counter), frame };
}

/**
 * Native forwarding between a TUN and a FastSocket whose session 1 leads to a "peer" (a plain
 * UDP socket that seals and opens datagrams with node:crypto). The table holds 10.99.0.2; we are
 * 10.99.0.1. Reports what the peer got, what the kernel got, and what still reached JS.
 */
async function nativeForward(offload) {
  const tun = up4({ offload });
  const a = new FastSocket({ address: "127.0.0.1" });
  const peer = dgram.createSocket("udp4");
  const atPeer = [];
  peer.on("message", (m) => atPeer.push(m));
  await new Promise((r) => peer.bind(0, "127.0.0.1", r));
  const kOut = randomBytes(32);
  const kIn = randomBytes(32);
  a.setSession(1, 2, kOut, kIn, { address: "127.0.0.1", port: peer.address().port });
  a.setForward(1, 4, 1400, ["10.99.0.2"]);
  a.setLocalAddresses("10.99.0.1", null);
  tun.forwardTo(a);
  const tunToJs = [];
  tun.onPackets((batch, offsets, lengths, count) => {
    for (let i = 0; i < count; i++) {
      const p = parsePacket(batch.subarray(offsets[i], offsets[i] + lengths[i]));
      if (p.version !== 4) continue; // the kernel's own IPv6 chatter (router solicitations)
      tunToJs.push(p.udp ? p.udp.data.toString() : `${p.dst} proto ${p.protocol}`);
    }
  });
  const framesToJs = [];
  a.onBatch((_indexes, buf, offsets, lengths, count) => {
    for (let i = 0; i < count; i++)
      framesToJs.push(hex(buf.subarray(offsets[i], offsets[i] + Math.min(lengths[i], 2))));
  });
  const opened = () =>
    atPeer.map((d) => {
      const o = fastOpen(kOut, d);
      const p = parsePacket(o.frame.subarray(2));
      return {
        index: o.index,
        counter: o.counter,
        type: o.frame[0],
        hops: o.frame[1],
        dst: p.dst,
        what: p.udp ? p.udp.data.toString() : `icmp ${p.icmp?.type}`,
        checksumOk: p.udp ? p.udp.checksumOk : p.icmp?.checksumOk,
      };
    });
  const frame = (ip) => Buffer.concat([Buffer.from([1, 4]), ip]);
  const toPeer = (counter, f) => send(peer, fastSeal(kIn, 1, BigInt(counter), f), a.port, "127.0.0.1");

  // Out: one destination in the table, one not.
  const out = dgram.createSocket("udp4");
  await new Promise((r) => out.bind(0, r));
  await send(out, "native-out", 9999, "10.99.0.2");
  await send(out, "js-out", 9999, "10.99.0.3");
  await waitFor(() => atPeer.length >= 1 && tunToJs.includes("js-out"));

  // In: from the table's address to ours (written natively), spoofed (to JS), a control frame.
  const { s: rx, messages } = await bindUdp("udp4", "10.99.0.1", 7777);
  const udpIn = (src, data) =>
    udp4Packet({ src, dst: "10.99.0.1", sport: 5555, dport: 7777, data: Buffer.from(data) });
  await toPeer(0, frame(udpIn("10.99.0.2", "native-in")));
  await toPeer(1, frame(udpIn("10.99.0.5", "spoofed")));
  await toPeer(2, Buffer.from([0x12, 0, 0, 0, 1]));
  await waitFor(() => messages.length >= 1 && framesToJs.length >= 2);

  // An echo request written natively: the kernel's reply leaves natively in the same wake-up.
  await toPeer(
    3,
    frame(icmp4Echo({ src: "10.99.0.2", dst: "10.99.0.1", id: 7, seq: 1, data: Buffer.from("ping") })),
  );
  await waitFor(() => atPeer.length >= 2);
  const stats = a.forwardStats(1);

  // Larger than the entry's maxPacket, held, cleared: all to JS.
  a.setForward(1, 4, 100, ["10.99.0.2"]);
  await send(out, "x".repeat(200), 9999, "10.99.0.2");
  a.setForward(1, 4, 1400, ["10.99.0.2"]);
  a.holdForward(true);
  await send(out, "held", 9999, "10.99.0.2");
  await waitFor(() => tunToJs.includes("held"));
  a.holdForward(false);
  a.clearForward(1);
  await send(out, "cleared", 9999, "10.99.0.2");
  await waitFor(() => tunToJs.includes("cleared"));
  await sleep(50);
  const result = {
    offload: tun.offload,
    atPeer: opened(),
    tunToJs,
    framesToJs,
    kernelGot: messages.map((m) => m.data),
    stats,
    afterClear: a.forwardStats(1),
  };
  out.close();
  rx.close();
  peer.close();
  a.close();
  tun.release();
  return result;
}

const scenarios = {
  "native-forward": () => nativeForward(false),
  "native-forward-vnet": () => nativeForward(true),

  async "read-udp4"() {
    const tun = up4();
    const info = { name: tun.name, ipv4: tun.ipv4, mtu: tun.mtu, isUp: tun.isUp, ipv6: tun.ipv6 };
    const s = dgram.createSocket("udp4");
    await new Promise((r) => s.bind(0, r));
    const sport = s.address().port;
    const wait = collect(tun, (p) => p.version === 4 && p.protocol === 17, 1);
    await send(s, "tincan-read-v4", 9999, "10.99.0.2");
    const [pkt] = await wait;
    s.close();
    tun.release();
    await sleep(50);
    return { info, sport, packet: hex(pkt), existsAfterRelease: existsSync(`/sys/class/net/${info.name}`) };
  },

  async "write-udp4"() {
    const tun = up4();
    const { s, messages } = await bindUdp("udp4", "10.99.0.1", 7777);
    const one = udp4Packet({
      src: "10.99.0.2",
      dst: "10.99.0.1",
      sport: 5555,
      dport: 7777,
      data: Buffer.from("from-tun-v4"),
    });
    const writeOk = tun.write(one);
    // three packets packed in one buffer, written with one writeBatch call
    const parts = [0, 1, 2].map((i) =>
      udp4Packet({
        src: "10.99.0.2",
        dst: "10.99.0.1",
        sport: 5556 + i,
        dport: 7777,
        data: Buffer.from(`batch-${i}`),
        id: i,
      }),
    );
    const buf = Buffer.alloc(4096);
    const offsets = new Uint32Array([100, 1000, 2000]);
    const lengths = new Uint32Array(parts.map((p) => p.length));
    parts.forEach((p, i) => {
      p.copy(buf, offsets[i]);
    });
    const batchWritten = tun.writeBatch(buf, offsets, lengths, 3);
    await waitFor(() => messages.length >= 4);
    // ICMP echo request in, echo reply out of the tun
    const replyWait = collect(tun, (p) => p.version === 4 && p.protocol === 1 && p.icmp.type === 0, 1);
    tun.write(
      icmp4Echo({ src: "10.99.0.2", dst: "10.99.0.1", id: 0xbeef, seq: 7, data: Buffer.from("ping-data") }),
    );
    const [reply] = await replyWait;
    s.close();
    tun.release();
    return { writeOk, batchWritten, messages, reply: hex(reply) };
  },

  async udp6() {
    const tun = new Tun({ name: "tt6" });
    tun.isUp = true;
    tun.ipv6 = "fd99::1/64";
    const info = { ipv6: tun.ipv6, mtu: tun.mtu };
    const out = dgram.createSocket("udp6");
    await new Promise((r) => out.bind(0, "fd99::1", r));
    const sport = out.address().port;
    const wait = collect(tun, (p) => p.version === 6 && p.nextHeader === 17, 1);
    await send(out, "tincan-read-v6", 9999, "fd99::2");
    const [pkt] = await wait;
    const { s, messages } = await bindUdp("udp6", "fd99::1", 7777);
    const writeOk = tun.write(
      udp6Packet({
        src: "fd99::2",
        dst: "fd99::1",
        sport: 5555,
        dport: 7777,
        data: Buffer.from("from-tun-v6"),
      }),
    );
    await waitFor(() => messages.length >= 1);
    tun.ipv6 = "fd98::1/64"; // replaces the first one
    const replaced = tun.ipv6;
    out.close();
    s.close();
    tun.release();
    return { info, sport, packet: hex(pkt), writeOk, messages, replaced };
  },

  async "bad-inputs"() {
    const r = [];
    r.push(attempt("name too long", () => new Tun({ name: "a-very-long-ifname" })));
    r.push(attempt("batchSize 0", () => new Tun({ batchSize: 0 })));
    const tun = new Tun({ name: "tt0" });
    r.push(
      attempt("write while down", () =>
        tun.write(
          udp4Packet({ src: "10.0.0.2", dst: "10.0.0.1", sport: 1, dport: 2, data: Buffer.from("x") }),
        ),
      ),
    );
    r.push(
      attempt("ipv4 banana", () => {
        tun.ipv4 = "banana";
      }),
    );
    r.push(
      attempt("ipv4 /33", () => {
        tun.ipv4 = "10.0.0.1/33";
      }),
    );
    r.push(
      attempt("ipv4 300.1.1.1", () => {
        tun.ipv4 = "300.1.1.1/24";
      }),
    );
    r.push(
      attempt("ipv6 zz::1", () => {
        tun.ipv6 = "zz::1/64";
      }),
    );
    r.push(
      attempt("ipv6 /129", () => {
        tun.ipv6 = "fd00::1/129";
      }),
    );
    r.push(
      attempt("mtu -1", () => {
        tun.mtu = -1;
      }),
    );
    r.push(
      attempt("mtu 70000", () => {
        tun.mtu = 70000;
      }),
    );
    r.push(
      attempt("mtu 1.5", () => {
        tun.mtu = 1.5;
      }),
    );
    r.push(attempt("ipv4 still unset", () => tun.ipv4));
    r.push(attempt("mtu unchanged", () => tun.mtu));
    tun.isUp = true;
    const buf = Buffer.alloc(64);
    r.push(attempt("write offset beyond", () => tun.write(buf, 65)));
    r.push(attempt("write length beyond", () => tun.write(buf, 10, 60)));
    r.push(attempt("write negative offset", () => tun.write(buf, -1)));
    r.push(attempt("write empty", () => tun.write(buf, 64)));
    r.push(attempt("write string", () => tun.write("hello")));
    r.push(
      attempt("writeBatch beyond", () =>
        tun.writeBatch(buf, new Uint32Array([0, 60]), new Uint32Array([20, 20]), 2),
      ),
    );
    r.push(
      attempt("writeBatch count", () => tun.writeBatch(buf, new Uint32Array([0]), new Uint32Array([20]), 2)),
    );
    r.push(attempt("writeBatch not u32", () => tun.writeBatch(buf, [0], [20], 1)));
    r.push(attempt("stats after bad writes", () => tun.stats));
    tun.release();
    r.push(attempt("release twice", () => tun.release()));
    r.push(attempt("mtu after release", () => tun.mtu));
    r.push(
      attempt("ipv4 set after release", () => {
        tun.ipv4 = "10.0.0.1/24";
      }),
    );
    r.push(attempt("write after release", () => tun.write(buf)));
    r.push(
      attempt("onPackets after release", () => {
        tun.onPackets(() => {});
      }),
    );
    r.push(
      attempt("onPackets(null) after release", () => {
        tun.onPackets(null);
      }),
    );
    r.push(attempt("name after release", () => tun.name));
    r.push(attempt("stats after release", () => tun.stats));
    return { results: r };
  },

  async eperm() {
    return { results: [attempt("create without CAP_NET_ADMIN", () => new Tun())] };
  },

  async stats() {
    const tun = up4();
    let seenPackets = 0;
    let seenBytes = 0;
    let udpSeen = 0;
    tun.onPackets((batch, offsets, lengths, count) => {
      for (let i = 0; i < count; i++) {
        seenPackets++;
        seenBytes += lengths[i];
        const p = parsePacket(batch.subarray(offsets[i], offsets[i] + lengths[i]));
        if (p.version === 4 && p.protocol === 17 && p.udp.dport === 9999) udpSeen++;
      }
    });
    const before = tun.stats;
    const s = dgram.createSocket("udp4");
    for (let i = 0; i < 5; i++) await send(s, Buffer.alloc(100 + i, 1), 9999, "10.99.0.2");
    await waitFor(() => udpSeen >= 5);
    const { s: rx, messages } = await bindUdp("udp4", "10.99.0.1", 7777);
    let txBytes = 0;
    for (let i = 0; i < 3; i++) {
      const p = udp4Packet({
        src: "10.99.0.2",
        dst: "10.99.0.1",
        sport: 5555,
        dport: 7777,
        data: Buffer.alloc(10 + i, 2),
      });
      txBytes += p.length;
      tun.write(p);
    }
    const p2 = udp4Packet({
      src: "10.99.0.2",
      dst: "10.99.0.1",
      sport: 5555,
      dport: 7777,
      data: Buffer.alloc(50, 3),
    });
    const two = Buffer.concat([p2, p2]);
    tun.writeBatch(two, new Uint32Array([0, p2.length]), new Uint32Array([p2.length, p2.length]));
    txBytes += 2 * p2.length;
    await waitFor(() => messages.length >= 5);
    await sleep(50);
    const after = tun.stats;
    s.close();
    rx.close();
    tun.release();
    return {
      before,
      after,
      seenPackets,
      seenBytes,
      udpSeen,
      txBytes,
      received: messages.length,
      afterRelease: tun.stats,
    };
  },

  async batch() {
    const tun = up4({ batchSize: 8 });
    const calls = [];
    let udp = 0;
    tun.pause();
    tun.onPackets((batch, offsets, lengths, count) => {
      calls.push(count);
      for (let i = 0; i < count; i++) {
        const p = parsePacket(batch.subarray(offsets[i], offsets[i] + lengths[i]));
        if (
          p.version === 4 &&
          p.protocol === 17 &&
          p.udp.dport === 9999 &&
          p.udp.data.toString() === `n${udp}`
        )
          udp++;
      }
    });
    const readingWhilePaused = tun.reading;
    const s = dgram.createSocket("udp4");
    for (let i = 0; i < 40; i++) await send(s, `n${i}`, 9999, "10.99.0.2");
    await sleep(100);
    const callsWhilePaused = calls.length;
    tun.resume();
    await waitFor(() => udp >= 40);
    s.close();
    tun.release();
    return { calls, callsWhilePaused, readingWhilePaused, udpInOrder: udp };
  },

  async "packet-event"() {
    const tun = up4();
    const got = [];
    tun.on("packet", (p) => {
      const q = parsePacket(p);
      if (q.version === 4 && q.protocol === 17) got.push(p);
    });
    const s = dgram.createSocket("udp4");
    await send(s, "first", 9999, "10.99.0.2");
    await send(s, "second", 9999, "10.99.0.2");
    await waitFor(() => got.length >= 2);
    // copies: they must stay intact after later reads reuse the batch buffer
    await send(s, "third-overwrites", 9999, "10.99.0.2");
    await waitFor(() => got.length >= 3);
    s.close();
    tun.release();
    return { payloads: got.map((p) => parsePacket(p).udp.data.toString()) };
  },

  async "read-now"() {
    const tun = up4();
    const isReply = (q) => q.version === 4 && q.protocol === 1 && q.icmp.type === 0;
    let inReadNow = false;
    let fromReadNow = 0;
    let fromWakeUp = 0;
    let nested = null;
    tun.onPackets((batch, offsets, lengths, count) => {
      if (nested === null) nested = tun.readNow();
      for (let i = 0; i < count; i++) {
        const q = parsePacket(batch.subarray(offsets[i], offsets[i] + lengths[i]));
        if (!isReply(q)) continue;
        if (inReadNow) fromReadNow++;
        else fromWakeUp++;
      }
    });
    await sleep(100); // what the new interface sends first (IPv6 autoconfiguration) is read now
    while (tun.readNow() > 0) {}
    const idle = tun.readNow();
    tun.write(
      icmp4Echo({ src: "10.99.0.2", dst: "10.99.0.1", id: 0xbeef, seq: 1, data: Buffer.from("now") }),
    );
    // The kernel answers while we write; softirq work deferred to ksoftirqd may take a moment.
    const until = Date.now() + 2000;
    let returned = 0;
    while (fromReadNow === 0 && Date.now() < until) {
      inReadNow = true;
      returned += tun.readNow();
      inReadNow = false;
    }
    tun.pause();
    const paused = tun.readNow();
    tun.release();
    return { idle, returned, fromReadNow, fromWakeUp, nested, paused, released: tun.readNow() };
  },

  async offload() {
    const tun = up4({ offload: true });
    const flags = { vnetHdr: tun.vnetHdr, offload: tun.offload };
    // Read: the local stack leaves the UDP checksum to us (partial) and says so in the header.
    const s = dgram.createSocket("udp4");
    await new Promise((r) => s.bind(0, r));
    let header = null;
    const got = new Promise((resolve) => {
      tun.onPackets((batch, offsets, lengths, count) => {
        for (let i = 0; i < count; i++) {
          const p = Buffer.from(batch.subarray(offsets[i], offsets[i] + lengths[i]));
          const q = parsePacket(p);
          if (q.version === 4 && q.protocol === 17) {
            header = hex(batch.subarray(offsets[i] - 10, offsets[i]));
            tun.onPackets(null);
            resolve(p);
          }
        }
      });
    });
    await send(s, "offload-read", 9999, "10.99.0.2");
    const packet = await got;
    s.close();
    // Write: a packet with a partial checksum (pseudo-header sum only) and NEEDS_CSUM, and a
    // plain one without a header argument.
    const { s: rx, messages } = await bindUdp("udp4", "10.99.0.1", 7777);
    const partial = udp4Packet({
      src: "10.99.0.2",
      dst: "10.99.0.1",
      sport: 5555,
      dport: 7777,
      data: Buffer.from("partial"),
    });
    const pseudo = Buffer.alloc(12);
    partial.copy(pseudo, 0, 12, 20);
    pseudo[9] = 17;
    pseudo.writeUInt16BE(partial.length - 20, 10);
    partial.writeUInt16BE(~inetChecksum(pseudo) & 0xffff, 26);
    const vh = Buffer.alloc(10);
    vh[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
    vh.writeUInt16LE(20, 6); // csum_start
    vh.writeUInt16LE(6, 8); // csum_offset
    const partialOk = tun.write(partial, 0, partial.length, vh);
    const plainOk = tun.write(
      udp4Packet({
        src: "10.99.0.2",
        dst: "10.99.0.1",
        sport: 5556,
        dport: 7777,
        data: Buffer.from("plain"),
      }),
    );
    await waitFor(() => messages.length >= 2);
    rx.close();
    tun.release();
    return { flags, header, packet: hex(packet), partialOk, plainOk, messages };
  },

  // FastSocket over a loopback with MTU 1000: a GSO run of 1432-byte datagrams is refused by the
  // kernel (segment larger than the route's MTU), tried one by one, and each is refused again (DF:
  // never fragmented) and counted; GSO stays on and a run of 532-byte ones goes as one message.
  "fast-gso-mtu": async () => {
    execFileSync("ip", ["link", "set", "lo", "mtu", "1000"]);
    // 64 slots: all 50 small datagrams fit one pending batch (one GSO message).
    const a = new FastSocket({ address: "127.0.0.1", batchSize: 64 });
    const b = new FastSocket({ address: "127.0.0.1", batchSize: 64 });
    const k1 = Buffer.alloc(32, 1);
    const k2 = Buffer.alloc(32, 2);
    a.setSession(1, 2, k1, k2, { address: "127.0.0.1", port: b.port });
    b.setSession(2, 1, k2, k1, { address: "127.0.0.1", port: a.port });
    const sizes = [];
    b.onBatch((_indexes, _buf, _offsets, lengths, count) => {
      for (let i = 0; i < count; i++) sizes.push(lengths[i]);
    });
    const big = Buffer.alloc(1400, 7);
    for (let i = 0; i < 50; i++) a.send(1, big, 0, big.length);
    a.flush();
    const bigStats = a.stats();
    const small = Buffer.alloc(500, 7);
    for (let i = 0; i < 50; i++) a.send(1, small, 0, small.length);
    a.flush();
    await waitFor(() => sizes.length >= 50);
    const stats = a.stats();
    a.close();
    b.close();
    return {
      big: sizes.filter((n) => n === 1400).length,
      small: sizes.filter((n) => n === 500).length,
      bigMessages: bigStats.txMessages,
      smallMessages: stats.txMessages - bigStats.txMessages,
      udpGso: stats.udpGso,
      sendFailed: stats.drops.sendFailed,
    };
  },
};

const fn = scenarios[scenario];
if (!fn) {
  process.stdout.write(`${JSON.stringify({ error: `unknown scenario ${scenario}` })}\n`);
  process.exitCode = 2;
} else {
  try {
    const result = await fn();
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ error: String(e?.stack ?? e) })}\n`);
    process.exitCode = 1;
  }
}
