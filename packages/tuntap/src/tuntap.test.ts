// Tests of the built addon (run `pnpm --filter @tincan/tuntap run build` first). Each test
// makes its own network namespace, runs test-fixtures/child.mjs inside it (so TUN devices,
// addresses and traffic never leave the namespace), and checks the JSON the child prints.
// Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for `ip netns`); skipped otherwise.

import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { parsePacket } from "../test-fixtures/packets.mjs";
import { parseIpv4Cidr, parseIpv6Cidr } from "./index.js";

const run = promisify(execFile);
const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const child = path.join(pkgDir, "test-fixtures", "child.mjs");

function haveIp(): boolean {
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const canRun = process.platform === "linux" && process.getuid?.() === 0 && haveIp();

let seq = 0;
const namespaces = new Set<string>();

async function ns(args: string[], name: string): Promise<void> {
  await run("ip", ["netns", "exec", name, ...args]);
}

/** Runs a child.mjs scenario in a fresh namespace and returns its JSON result. */
async function scenario(name: string, opts: { dropNetAdmin?: boolean } = {}): Promise<any> {
  const netns = `tt-${process.pid}-${seq++}`;
  await run("ip", ["netns", "add", netns]);
  namespaces.add(netns);
  await ns(["ip", "link", "set", "lo", "up"], netns);
  await ns(
    [
      "sysctl",
      "-qw",
      "net.ipv6.conf.all.accept_dad=0",
      "net.ipv6.conf.default.accept_dad=0",
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
    ],
    netns,
  );
  const cmd = opts.dropNetAdmin
    ? ["setpriv", "--bounding-set=-net_admin", process.execPath, child, name]
    : [process.execPath, child, name];
  let stdout: string;
  try {
    ({ stdout } = await run("ip", ["netns", "exec", netns, ...cmd], { timeout: 15_000 }));
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`scenario ${name} failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
  }
  const last = stdout.trim().split("\n").pop() ?? "";
  const result = JSON.parse(last);
  if (result.error) throw new Error(`scenario ${name}: ${result.error}`);
  return result;
}

afterEach(async () => {
  for (const name of namespaces) {
    await run("ip", ["netns", "del", name]).catch(() => {});
    namespaces.delete(name);
  }
});

const pkt = (hex: string) => parsePacket(Buffer.from(hex, "hex"));

describe("address parsing (no root needed)", () => {
  it("parses and rejects CIDR strings", () => {
    expect(parseIpv4Cidr("10.10.0.1/16")).toEqual({ address: "10.10.0.1", prefixLen: 16 });
    expect(parseIpv4Cidr("10.10.0.1")).toEqual({ address: "10.10.0.1", prefixLen: 32 });
    expect(parseIpv6Cidr("fd00::1/64")).toEqual({ address: "fd00::1", prefixLen: 64 });
    expect(() => parseIpv4Cidr("banana")).toThrow(/invalid IPv4 address "banana"/);
    expect(() => parseIpv4Cidr("10.0.0.1/33")).toThrow(RangeError);
    expect(() => parseIpv4Cidr("10.0.0/8")).toThrow(TypeError);
    expect(() => parseIpv6Cidr("zz::1/64")).toThrow(/invalid IPv6 address/);
    expect(() => parseIpv6Cidr("fd00::1/200")).toThrow(RangeError);
  });
});

describe.skipIf(!canRun)("Tun in a network namespace", () => {
  it("has a built addon and dist", () => {
    expect(existsSync(path.join(pkgDir, "build", "Release", "tuntap.node"))).toBe(true);
    expect(existsSync(path.join(pkgDir, "dist", "index.js"))).toBe(true);
  });

  it("configures the device and reads a UDP/IPv4 datagram routed into it", async () => {
    const r = await scenario("read-udp4");
    expect(r.info).toEqual({ name: "tt0", ipv4: "10.99.0.1/24", mtu: 1400, isUp: true, ipv6: null });
    const p = pkt(r.packet);
    expect(p.version).toBe(4);
    expect(p.ihl).toBe(20);
    expect(p.protocol).toBe(17);
    expect(p.src).toBe("10.99.0.1");
    expect(p.dst).toBe("10.99.0.2");
    expect(p.totalLength).toBe(r.packet.length / 2);
    expect(p.headerChecksumOk).toBe(true);
    expect(p.udp.sport).toBe(r.sport);
    expect(p.udp.dport).toBe(9999);
    expect(p.udp.checksumOk).toBe(true);
    expect(p.udp.data.toString()).toBe("tincan-read-v4");
    // release() closed the fd, so the kernel removed the interface
    expect(r.existsAfterRelease).toBe(false);
  });

  it("writes crafted IPv4 packets (write, writeBatch, ICMP echo) that the kernel accepts", async () => {
    const r = await scenario("write-udp4");
    expect(r.writeOk).toBe(true);
    expect(r.batchWritten).toBe(3);
    expect(r.messages).toEqual([
      { data: "from-tun-v4", address: "10.99.0.2", port: 5555 },
      { data: "batch-0", address: "10.99.0.2", port: 5556 },
      { data: "batch-1", address: "10.99.0.2", port: 5557 },
      { data: "batch-2", address: "10.99.0.2", port: 5558 },
    ]);
    const reply = pkt(r.reply);
    expect(reply.protocol).toBe(1);
    expect(reply.src).toBe("10.99.0.1");
    expect(reply.dst).toBe("10.99.0.2");
    expect(reply.icmp.type).toBe(0);
    expect(reply.icmp.id).toBe(0xbeef);
    expect(reply.icmp.seq).toBe(7);
    expect(reply.icmp.checksumOk).toBe(true);
    expect(reply.icmp.data.toString()).toBe("ping-data");
  });

  it("with offload, reads packets behind a virtio-net header and writes packets with one", async () => {
    const r = await scenario("offload");
    expect(r.flags).toEqual({ vnetHdr: true, offload: true });
    // flags NEEDS_CSUM, no GSO, csum_start 20 (after the IPv4 header), csum_offset 6 (UDP)
    const h = Buffer.from(r.header, "hex");
    expect(h[0]).toBe(1);
    expect(h[1]).toBe(0);
    expect(h.readUInt16LE(6)).toBe(20);
    expect(h.readUInt16LE(8)).toBe(6);
    const p = pkt(r.packet);
    expect(p.udp.data.toString()).toBe("offload-read");
    expect(r.partialOk).toBe(true);
    expect(r.plainOk).toBe(true);
    expect(r.messages.map((m: { data: string }) => m.data).sort()).toEqual(["partial", "plain"]);
  });

  it("reads and writes UDP over IPv6", async () => {
    const r = await scenario("udp6");
    expect(r.info.ipv6).toBe("fd99::1/64");
    const p = pkt(r.packet);
    expect(p.version).toBe(6);
    expect(p.nextHeader).toBe(17);
    expect(p.src).toBe("fd99::1");
    expect(p.dst).toBe("fd99::2");
    expect(p.udp.sport).toBe(r.sport);
    expect(p.udp.dport).toBe(9999);
    expect(p.udp.checksumOk).toBe(true);
    expect(p.udp.data.toString()).toBe("tincan-read-v6");
    expect(r.writeOk).toBe(true);
    expect(r.messages).toEqual([{ data: "from-tun-v6", address: "fd99::2", port: 5555 }]);
    expect(r.replaced).toBe("fd98::1/64");
  });

  it("rejects bad input with clear errors and is unusable after release()", async () => {
    const { results } = await scenario("bad-inputs");
    const by = Object.fromEntries(results.map((x: { label: string }) => [x.label, x]));
    const threw = (label: string, ctor: string, code: string, msg: RegExp) => {
      expect(by[label], label).toMatchObject({ threw: true, ctor, code });
      expect(by[label].message, label).toMatch(msg);
    };
    threw("name too long", "RangeError", "ERR_INVALID_ARG_VALUE", /^tuntap: interface name .* too long/);
    threw("batchSize 0", "RangeError", "ERR_OUT_OF_RANGE", /batchSize/);
    threw("write while down", "Error", "EIO", /^tuntap: cannot write to tt0: .*\(EIO\)$/);
    expect(by["write while down"].errno).toBe(-5);
    threw("ipv4 banana", "TypeError", "ERR_INVALID_ARG_VALUE", /invalid IPv4 address "banana"/);
    threw("ipv4 /33", "RangeError", "ERR_OUT_OF_RANGE", /0\.\.32/);
    threw("ipv4 300.1.1.1", "TypeError", "ERR_INVALID_ARG_VALUE", /invalid IPv4/);
    threw("ipv6 zz::1", "TypeError", "ERR_INVALID_ARG_VALUE", /invalid IPv6 address "zz::1\/64"/);
    threw("ipv6 /129", "RangeError", "ERR_OUT_OF_RANGE", /0\.\.128/);
    threw("mtu -1", "RangeError", "ERR_OUT_OF_RANGE", /mtu/);
    threw("mtu 70000", "RangeError", "ERR_OUT_OF_RANGE", /mtu/);
    threw("mtu 1.5", "RangeError", "ERR_OUT_OF_RANGE", /mtu/);
    expect(by["ipv4 still unset"]).toMatchObject({ threw: false, value: null });
    expect(by["mtu unchanged"]).toMatchObject({ threw: false, value: 1500 });
    threw("write offset beyond", "RangeError", "ERR_OUT_OF_RANGE", /offset 65 is beyond/);
    threw("write length beyond", "RangeError", "ERR_OUT_OF_RANGE", /beyond the buffer/);
    threw("write negative offset", "RangeError", "ERR_OUT_OF_RANGE", /offset/);
    threw("write empty", "RangeError", "ERR_OUT_OF_RANGE", /empty/);
    threw("write string", "TypeError", "ERR_INVALID_ARG_VALUE", /Buffer/);
    threw("writeBatch beyond", "RangeError", "ERR_OUT_OF_RANGE", /packet 1 .* beyond/);
    threw("writeBatch count", "RangeError", "ERR_OUT_OF_RANGE", /count 2/);
    threw("writeBatch not u32", "TypeError", "ERR_INVALID_ARG_VALUE", /Uint32Array/);
    // validation failures write nothing; the EIO write is not counted either
    expect(by["stats after bad writes"].value).toMatchObject({ txPackets: 0, txDropsEagain: 0 });
    expect(by["release twice"]).toMatchObject({ threw: false });
    threw("mtu after release", "Error", "ERR_TUNTAP_RELEASED", /tt0 was released/);
    threw("ipv4 set after release", "Error", "ERR_TUNTAP_RELEASED", /released/);
    threw("write after release", "Error", "ERR_TUNTAP_RELEASED", /released/);
    threw("onPackets after release", "Error", "ERR_TUNTAP_RELEASED", /released/);
    expect(by["onPackets(null) after release"]).toMatchObject({ threw: false });
    expect(by["name after release"]).toMatchObject({ threw: false, value: "tt0" });
    expect(by["stats after release"]).toMatchObject({ threw: false, value: { txPackets: 0 } });
  });

  it("reports a missing CAP_NET_ADMIN as EPERM", async () => {
    const { results } = await scenario("eperm", { dropNetAdmin: true });
    expect(results[0]).toMatchObject({ threw: true, ctor: "Error", code: "EPERM", errno: -1 });
    expect(results[0].message).toBe("tuntap: cannot create TUN device: Operation not permitted (EPERM)");
  });

  it("counts packets and bytes in both directions", async () => {
    const r = await scenario("stats");
    expect(r.before).toEqual({ rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropsEagain: 0 });
    expect(r.udpSeen).toBe(5);
    expect(r.after.rxPackets).toBe(r.seenPackets);
    expect(r.after.rxBytes).toBe(r.seenBytes);
    // 5 datagrams of 100..104 bytes + 28 bytes of headers, plus whatever else the kernel sent
    expect(r.after.rxBytes).toBeGreaterThanOrEqual(5 * 128 + 10);
    expect(r.after.txPackets).toBe(5);
    expect(r.after.txBytes).toBe(r.txBytes);
    expect(r.after.txDropsEagain).toBe(0);
    expect(r.received).toBe(5);
    expect(r.afterRelease).toEqual(r.after);
  });

  it("delivers at most batchSize packets per callback, in order, and honours pause()", async () => {
    const r = await scenario("batch");
    expect(r.readingWhilePaused).toBe(false);
    expect(r.callsWhilePaused).toBe(0);
    expect(r.udpInOrder).toBe(40);
    expect(Math.max(...r.calls)).toBe(8);
    expect(r.calls.every((c: number) => c >= 1 && c <= 8)).toBe(true);
    expect(r.calls.reduce((a: number, b: number) => a + b, 0)).toBeGreaterThanOrEqual(40);
  });

  it("emits private copies through on('packet')", async () => {
    const r = await scenario("packet-event");
    expect(r.payloads).toEqual(["first", "second", "third-overwrites"]);
  });

  it("readNow hands what the device holds to the reader before returning (0 when empty, paused, released, nested)", async () => {
    const r = await scenario("read-now");
    expect(r.idle).toBe(0);
    expect(r.fromReadNow).toBe(1);
    expect(r.fromWakeUp).toBe(0);
    expect(r.returned).toBeGreaterThanOrEqual(1);
    expect(r.nested).toBe(0);
    expect(r.paused).toBe(0);
    expect(r.released).toBe(0);
  });

  for (const offload of [false, true]) {
    it(`native forwarding (offload ${offload}): sealed out and written in without JS; the rest, spoofed sources included, still reach JS`, async () => {
      const r = await scenario(offload ? "native-forward-vnet" : "native-forward");
      expect(r.offload).toBe(offload);
      // To the peer: a one-packet frame [1][hop limit 4][IP packet] on session 1's remote index
      // 2, counters 0 and 1 (the echo reply the kernel made for the request written natively).
      expect(r.atPeer).toEqual([
        { index: 2, counter: 0, type: 1, hops: 4, dst: "10.99.0.2", what: "native-out", checksumOk: true },
        { index: 2, counter: 1, type: 1, hops: 4, dst: "10.99.0.2", what: "icmp 0", checksumOk: true },
      ]);
      // The packet not in the table, the one above maxPacket, and those while held or cleared.
      expect(r.tunToJs).toEqual(["js-out", "x".repeat(200), "held", "cleared"]);
      // The spoofed source and the control frame reached JS (which drops and counts the spoofed one).
      expect(r.framesToJs).toEqual(["0104", "1200"]);
      expect(r.kernelGot).toEqual(["native-in"]);
      expect(r.stats).toMatchObject({ txPackets: 2, rxPackets: 2, vnicFull: 0 });
      expect(r.stats.addresses).toEqual([
        { address: "10.99.0.2", txPackets: 2, txBytes: r.stats.txBytes, rxPackets: 2 },
      ]);
      expect(r.afterClear).toBeNull();
    });
  }

  it("FastSocket: datagrams larger than the route MTU are refused (DF) and counted, also in a GSO run; smaller ones go", async () => {
    const r = await scenario("fast-gso-mtu");
    expect(r).toEqual({ big: 0, small: 50, bigMessages: 0, smallMessages: 1, udpGso: true, sendFailed: 50 });
  });
});
