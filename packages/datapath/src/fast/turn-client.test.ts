import { createHmac } from "node:crypto";
import {
  Attr,
  decodeStun,
  type Endpoint,
  encodeStun,
  longTermKey,
  readAddress,
  type StunMessage,
  StunType,
  writeXorAddress,
} from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { CHANNEL_DATA_HEADER, readChannelData, writeChannelData } from "./channel-data.js";
import { FIRST_CHANNEL, TurnClient } from "./turn-client.js";

const SERVER: Endpoint = { address: "192.0.2.1", port: 3478 };
const CLIENT: Endpoint = { address: "198.51.100.7", port: 40000 };
const RELAYED: Endpoint = { address: "192.0.2.1", port: 50000 };
const REALM = "lab.local";
const USER = { username: "alice", password: "secret" };

/** A TURN server as far as one client sees it: long-term credentials checked, requests recorded. */
class FakeTurnServer {
  readonly requests: StunMessage[] = [];
  readonly permissions = new Set<string>();
  readonly channels = new Map<number, Endpoint>();
  nonce = "n1";
  /** Requests to ignore before answering (lost datagrams). */
  drop = 0;
  /** Answer the next signed request with 438 Stale Nonce (and a new nonce). */
  staleOnce = false;
  client!: TurnClient;

  readonly send = (to: Endpoint, datagram: Buffer): boolean => {
    expect(to).toEqual(SERVER);
    const m = decodeStun(datagram);
    if (!m) throw new Error("client sent a malformed message");
    this.requests.push(m);
    if (this.drop > 0) {
      this.drop--;
      return true;
    }
    queueMicrotask(() => this.client.onMessage(this.answer(datagram, m), SERVER));
    return true;
  };

  private answer(datagram: Buffer, m: StunMessage): Buffer {
    const id = m.transactionId;
    const error = (code: number, extra: Array<[number, Buffer]> = []) =>
      encodeStun(m.type | 0x0110, id, [
        [Attr.ErrorCode, Buffer.from([0, 0, Math.floor(code / 100), code % 100])],
        ...extra,
      ]);
    if (!m.attrs.has(Attr.MessageIntegrity))
      return error(401, [
        [Attr.Realm, Buffer.from(REALM)],
        [Attr.Nonce, Buffer.from(this.nonce)],
      ]);
    if (!integrityOk(datagram, m)) return error(401);
    if (this.staleOnce || m.attrs.get(Attr.Nonce)?.toString() !== this.nonce) {
      this.staleOnce = false;
      this.nonce = `${this.nonce}x`;
      return error(438, [[Attr.Nonce, Buffer.from(this.nonce)]]);
    }
    const peer = readAddress(m.attrs.get(Attr.XorPeerAddress), true, id);
    switch (m.type) {
      case StunType.AllocateRequest: {
        const xor = (e: Endpoint) => writeXorAddress(e, id);
        return encodeStun(StunType.AllocateSuccess, id, [
          [Attr.XorRelayedAddress, xor(RELAYED)],
          [Attr.XorMappedAddress, xor(CLIENT)],
          [Attr.Lifetime, Buffer.from([0, 0, 2, 88])],
        ]);
      }
      case StunType.CreatePermissionRequest:
        if (!peer) return error(400);
        this.permissions.add(peer.address);
        return encodeStun(StunType.CreatePermissionSuccess, id, []);
      case StunType.ChannelBindRequest: {
        const channel = m.attrs.get(Attr.ChannelNumber)?.readUInt16BE(0) ?? 0;
        if (!peer || !this.permissions.has(peer.address)) return error(403);
        this.channels.set(channel, peer);
        return encodeStun(StunType.ChannelBindSuccess, id, []);
      }
      case StunType.RefreshRequest:
        return encodeStun(StunType.RefreshSuccess, id, []);
    }
    return error(400);
  }
}

/** Checks MESSAGE-INTEGRITY (HMAC-SHA1 over the message up to it, length covering it). */
function integrityOk(datagram: Buffer, m: StunMessage): boolean {
  const mi = m.attrs.get(Attr.MessageIntegrity);
  const username = m.attrs.get(Attr.Username)?.toString();
  if (!mi || username !== USER.username) return false;
  const at = mi.byteOffset - datagram.byteOffset - 4;
  const head = Buffer.from(datagram.subarray(0, at));
  head.writeUInt16BE(at - 20 + 24, 2);
  const key = longTermKey(USER.username, REALM, USER.password);
  return createHmac("sha1", key).update(head).digest().equals(mi);
}

function clientWith(server: FakeTurnServer, creds = USER): TurnClient {
  const client = new TurnClient(SERVER, creds, server.send);
  server.client = client;
  return client;
}

describe("TurnClient", () => {
  it("allocates with long-term credentials: a 401 names realm and nonce, the signed request succeeds", async () => {
    const server = new FakeTurnServer();
    const client = clientWith(server);
    expect(await client.allocate()).toEqual(RELAYED);
    expect(client.state).toBe("ready");
    expect(client.mapped).toEqual(CLIENT);
    expect(server.requests.map((r) => r.attrs.has(Attr.MessageIntegrity))).toEqual([false, true]);
    client.close();
  });

  it("binds each peer's relayed address to its own channel, once, after a permission", async () => {
    const server = new FakeTurnServer();
    const client = clientWith(server);
    await client.allocate();
    const bob = { address: "203.0.113.5", port: 61000 };
    const carol = { address: "2001:db8::5", port: 62000 };
    const c1 = await client.bind(bob);
    const c2 = await client.bind(carol);
    expect(c1).toBe(FIRST_CHANNEL);
    expect(c2).toBe(FIRST_CHANNEL + 1);
    expect(server.channels.get(FIRST_CHANNEL)).toEqual(bob);
    expect(server.channels.get(FIRST_CHANNEL + 1)).toEqual(carol);
    expect([...server.permissions]).toEqual(["203.0.113.5", "2001:db8::5"]);
    const sent = server.requests.length;
    expect(await client.bind(bob)).toBe(c1);
    expect(server.requests.length).toBe(sent);
    expect(client.peerOf(FIRST_CHANNEL)).toEqual(bob);
    client.unbind(bob);
    expect(client.peerOf(FIRST_CHANNEL)).toBeNull();
    client.close();
  });

  it("takes a fresh nonce after 438 and retransmits a lost request", async () => {
    const server = new FakeTurnServer();
    const client = clientWith(server);
    await client.allocate();
    server.staleOnce = true;
    server.drop = 1;
    expect(await client.bind({ address: "203.0.113.5", port: 61000 })).toBe(FIRST_CHANNEL);
    client.close();
  });

  it("fails with the server's reason when the credentials are wrong, without looping", async () => {
    const server = new FakeTurnServer();
    const client = clientWith(server, { username: "alice", password: "wrong" });
    expect(await client.allocate()).toBeNull();
    expect(client.state).toBe("failed");
    expect(client.error).toMatch(/^Allocate: 401/);
    expect(server.requests.length).toBe(2);
  });

  it("releases the allocation on close (Refresh with lifetime 0) and ignores other senders", async () => {
    const server = new FakeTurnServer();
    const client = clientWith(server);
    await client.allocate();
    const reply = encodeStun(StunType.RefreshSuccess, Buffer.alloc(12), []);
    expect(client.onMessage(reply, { address: "192.0.2.99", port: 3478 })).toBe(false);
    client.close();
    const last = server.requests.at(-1);
    expect(last?.type).toBe(StunType.RefreshRequest);
    expect(last?.attrs.get(Attr.Lifetime)?.readUInt32BE(0)).toBe(0);
    expect(await client.bind({ address: "203.0.113.5", port: 61000 })).toBeNull();
  });
});

describe("ChannelData", () => {
  it("frames data on a channel and reads it back", () => {
    const buf = Buffer.alloc(CHANNEL_DATA_HEADER + 5);
    Buffer.from("hello").copy(buf, CHANNEL_DATA_HEADER);
    writeChannelData(buf, 0, 0x4001, 5);
    expect([...buf.subarray(0, 4)]).toEqual([0x40, 0x01, 0, 5]);
    const read = readChannelData(buf);
    expect(read?.channel).toBe(0x4001);
    expect(read?.data.toString()).toBe("hello");
    // Padding after the data (allowed over UDP) is not data.
    expect(readChannelData(Buffer.concat([buf, Buffer.alloc(3)]))?.data.toString()).toBe("hello");
  });

  it("refuses what is not ChannelData: STUN, sealed fast-path data, short or truncated", () => {
    expect(readChannelData(Buffer.from([0x00, 0x01, 0, 0]))).toBeNull();
    expect(readChannelData(Buffer.from([0x01, 0, 0, 0, 1, 2]))).toBeNull();
    expect(readChannelData(Buffer.from([0x40, 0x00, 0]))).toBeNull();
    expect(readChannelData(Buffer.from([0x40, 0x00, 0, 9, 1, 2]))).toBeNull();
    expect(readChannelData(Buffer.from([0x50, 0x00, 0, 0]))).toBeNull();
  });
});
