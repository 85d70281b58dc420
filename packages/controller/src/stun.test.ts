import { createHmac } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import {
  Attr,
  decodeStun,
  encodeStun,
  errorCode,
  longTermKey,
  MAGIC_COOKIE,
  mappedAddress,
  newTransactionId,
  StunType,
  withIntegrity,
} from "@tincan/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { classifyMapping, udpServerOf } from "./netcheck.js";
import { stunRequest, turnAllocate } from "./stun.js";

/** XOR-MAPPED-ADDRESS of an IPv4 endpoint, written the way RFC 8489 section 14.2 says. */
function xorV4(address: string, port: number): Buffer {
  const v = Buffer.alloc(8);
  v[1] = 0x01;
  v.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
  v.writeUInt32BE((address.split(".").reduce((a, o) => a * 256 + Number(o), 0) ^ MAGIC_COOKIE) >>> 0, 4);
  return v;
}

describe("STUN messages", () => {
  it("reads XOR-MAPPED-ADDRESS (IPv4 and IPv6) from a Binding success", () => {
    const id = newTransactionId();
    const m = decodeStun(
      encodeStun(StunType.BindingSuccess, id, [[Attr.XorMappedAddress, xorV4("100.64.0.11", 40000)]]),
    );
    expect(m && mappedAddress(m)).toEqual({ address: "100.64.0.11", port: 40000 });

    const v6 = Buffer.alloc(20);
    v6[1] = 0x02;
    v6.writeUInt16BE(5000 ^ (MAGIC_COOKIE >>> 16), 2);
    const plain = Buffer.from("fd500000000000000000000000000005", "hex");
    const pad = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), id]);
    for (let i = 0; i < 16; i++) v6[4 + i] = (plain[i] ?? 0) ^ (pad[i] ?? 0);
    const m6 = decodeStun(encodeStun(StunType.BindingSuccess, id, [[Attr.XorMappedAddress, v6]]));
    expect(m6 && mappedAddress(m6)).toEqual({ address: "fd50::5", port: 5000 });
  });

  it("rejects what is not a STUN message, and truncated attributes, without throwing", () => {
    const good = encodeStun(StunType.BindingSuccess, newTransactionId(), [
      [Attr.XorMappedAddress, xorV4("1.2.3.4", 1)],
    ]);
    expect(decodeStun(Buffer.from("hello, world, this is no stun"))).toBeNull();
    const noCookie = Buffer.from(good);
    noCookie.writeUInt32BE(0, 4);
    expect(decodeStun(noCookie)).toBeNull();
    expect(decodeStun(good.subarray(0, good.length - 4))).toBeNull(); // length says more than there is
    const longAttr = Buffer.from(good);
    longAttr.writeUInt16BE(200, 22); // the attribute claims 200 bytes
    expect(decodeStun(longAttr)).toBeNull();
    const shortAddr = decodeStun(
      encodeStun(StunType.BindingSuccess, newTransactionId(), [[Attr.XorMappedAddress, Buffer.alloc(3)]]),
    );
    expect(shortAddr && mappedAddress(shortAddr)).toBeNull();
  });

  it("reads ERROR-CODE and signs with MESSAGE-INTEGRITY over the adjusted length", () => {
    const err = Buffer.concat([Buffer.from([0, 0, 4, 1]), Buffer.from("Unauthorized")]);
    const m = decodeStun(encodeStun(StunType.AllocateError, newTransactionId(), [[Attr.ErrorCode, err]]));
    expect(m && errorCode(m)).toEqual({ code: 401, text: "Unauthorized" });
    const key = longTermKey("u", "lab.local", "p");
    const plain = encodeStun(StunType.AllocateRequest, newTransactionId(), [
      [Attr.Username, Buffer.from("u")],
    ]);
    const signed = withIntegrity(plain, key);
    expect(signed.readUInt16BE(2)).toBe(signed.length - 20);
    const mac = createHmac("sha1", key).update(signed.subarray(0, plain.length)).digest();
    expect(decodeStun(signed)?.attrs.get(Attr.MessageIntegrity)).toEqual(mac);
  });

  it("takes host and port of UDP stun:/turn: URLs only", () => {
    expect(udpServerOf("stun:100.64.0.1:3479")).toEqual({ address: "100.64.0.1", port: 3479 });
    expect(udpServerOf("turn:u:p@turn.example.org?transport=udp")).toEqual({
      address: "turn.example.org",
      port: 3478,
    });
    expect(udpServerOf("turn:turn.example.org:443?transport=tcp")).toBeNull();
  });
});

describe("NAT mapping from several servers", () => {
  const at = (server: string, address: string, port: number) => ({ server, mapped: { address, port } });
  it("says symmetric when the mapping changes per destination, not when it stays", () => {
    const sym = classifyMapping("192.168.2.2", [
      at("s1:3478", "100.64.0.12", 1111),
      at("s1:3479", "100.64.0.12", 2222),
    ]);
    expect(sym).toMatchObject({ status: "warn", data: { symmetric: true } });
    expect(sym.detail).toMatch(/^symmetric NAT/);
    const cone = classifyMapping("192.168.1.2", [
      at("s1:3478", "100.64.0.11", 1111),
      at("s1:3479", "100.64.0.11", 1111),
    ]);
    expect(cone).toMatchObject({ status: "ok", data: { symmetric: false } });
    expect(cone.detail).toMatch(/^NAT, endpoint-independent mapping \(not symmetric\)/);
    expect(classifyMapping("100.64.0.10", [at("s", "100.64.0.10", 5)]).detail).toMatch(
      /^no NAT.*cannot tell/,
    );
    expect(classifyMapping(null, [{ server: "s", mapped: null }]).status).toBe("fail");
  });
});

describe("STUN and TURN over a socket (a fake server on loopback)", () => {
  const sockets: Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });
  const udp = async (): Promise<Socket> => {
    const s = createSocket("udp4");
    sockets.push(s);
    await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
    return s;
  };

  it("gets the mapped address of a Binding request, and null when nobody answers", async () => {
    const server = await udp();
    server.on("message", (buf, from) => {
      const m = decodeStun(buf);
      if (!m) return;
      server.send(
        encodeStun(StunType.BindingSuccess, m.transactionId, [
          [Attr.XorMappedAddress, xorV4(from.address, from.port)],
        ]),
        from.port,
        from.address,
      );
    });
    const client = await udp();
    const to = { address: "127.0.0.1", port: server.address().port };
    const reply = await stunRequest(
      client,
      to,
      encodeStun(StunType.BindingRequest, newTransactionId(), []),
      2000,
    );
    expect(reply && mappedAddress(reply)).toEqual({ address: "127.0.0.1", port: client.address().port });
    const silent = await udp();
    const none = await stunRequest(
      client,
      { address: "127.0.0.1", port: silent.address().port },
      encodeStun(StunType.BindingRequest, newTransactionId(), []),
      300,
    );
    expect(none).toBeNull();
  });

  it("allocates with long-term credentials after the 401 challenge, and reports a wrong password", async () => {
    const server = await udp();
    const key = longTermKey("u", "lab.local", "secret");
    server.on("message", (buf, from) => {
      const m = decodeStun(buf);
      if (!m) return;
      const reply = (type: number, attrs: Array<[number, Buffer]>) =>
        server.send(encodeStun(type, m.transactionId, attrs), from.port, from.address);
      if (m.type === StunType.RefreshRequest) return reply(0x0104, []);
      const mi = m.attrs.get(Attr.MessageIntegrity);
      const challenge = (): void =>
        reply(StunType.AllocateError, [
          [Attr.ErrorCode, Buffer.concat([Buffer.from([0, 0, 4, 1]), Buffer.from("Unauthorized")])],
          [Attr.Realm, Buffer.from("lab.local")],
          [Attr.Nonce, Buffer.from("n0nce")],
        ]);
      if (!mi) return challenge();
      const signedPart = Buffer.from(buf.subarray(0, buf.length - 24));
      signedPart.writeUInt16BE(buf.length - 20, 2);
      const expected = createHmac("sha1", key).update(signedPart).digest();
      if (!expected.equals(mi)) return challenge();
      reply(StunType.AllocateSuccess, [[0x0016, xorV4("127.0.0.1", 49999)]]);
    });
    const to = { address: "127.0.0.1", port: server.address().port };
    const ok = await turnAllocate(await udp(), to, { username: "u", password: "secret" }, 2000);
    expect(ok).toMatchObject({ ok: true, relayed: { address: "127.0.0.1", port: 49999 } });
    const bad = await turnAllocate(await udp(), to, { username: "u", password: "wrong" }, 2000);
    expect(bad).toEqual({ ok: false, error: "401 Unauthorized" });
  });
});
