import { createServer, type Socket } from "node:net";
import { MAX_SIGNAL_BYTES, SIGNAL_NS, type Signal, uidForJid } from "@tincan/protocol";
import { xml } from "@xmpp/client";
import { describe, expect, it } from "vitest";
import { nullLog } from "./logger.js";
import {
  parsePresenceTincan,
  parseRosterItem,
  parseSignalMessage,
  parseSignalText,
  signalMessage,
  tincanPresence,
  XmppSession,
} from "./xmpp.js";

const alice = uidForJid("alice@lab.local");
const bob = uidForJid("bob@lab.local");
const offer: Signal = {
  type: "offer",
  from: alice,
  to: bob,
  setup: "abc",
  relayOnly: false,
  description: { type: "offer", sdp: "v=0\r\n" },
};

describe("signal parsing", () => {
  it("round-trips a signal through the message stanza", () => {
    const msg = signalMessage("bob@lab.local/t", offer);
    expect(msg.attrs.type).toBe("chat");
    const parsed = parseSignalMessage(msg);
    expect(parsed).toEqual({ ok: true, value: offer });
  });

  it("marks signals not to be archived, stored or copied to other clients (XEP-0334, XEP-0280)", () => {
    const msg = signalMessage("bob@lab.local/t", offer);
    expect(msg.getChild("no-store", "urn:xmpp:hints")).toBeDefined();
    expect(msg.getChild("no-copy", "urn:xmpp:hints")).toBeDefined();
    expect(msg.getChild("private", "urn:xmpp:carbons:2")).toBeDefined();
    expect(msg.getChildren("body")).toHaveLength(0);
    // A received message's hints are ignored: the signal still parses.
    expect(parseSignalMessage(msg)).toEqual({ ok: true, value: offer });
  });

  it("rejects malformed JSON", () => {
    const r = parseSignalText("{not json");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/not JSON/);
  });

  it("rejects oversized payloads before parsing", () => {
    const big = JSON.stringify({
      ...offer,
      description: { type: "offer", sdp: "x".repeat(MAX_SIGNAL_BYTES) },
    });
    const r = parseSignalText(big);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/too large/);
  });

  it("rejects payloads that fail the schema, naming the field", () => {
    const r = parseSignalText(JSON.stringify({ ...offer, from: "ALICE" }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/from:/);
    expect(parseSignalText(JSON.stringify({ ...offer, extra: 1 })).ok).toBe(false);
    expect(parseSignalText(JSON.stringify({ ...offer, type: "hello" })).ok).toBe(false);
  });

  it("ignores messages without a signal and refuses two signals in one message", () => {
    expect(parseSignalMessage(xml("message", { type: "chat" }, xml("body", null, "hi")))).toBeNull();
    const two = xml(
      "message",
      { type: "chat" },
      xml("signal", { xmlns: SIGNAL_NS }, JSON.stringify(offer)),
      xml("signal", { xmlns: SIGNAL_NS }, JSON.stringify(offer)),
    );
    expect(parseSignalMessage(two)?.ok).toBe(false);
  });
});

describe("presence and roster parsing", () => {
  it("round-trips the tincan presence child and rejects a bad uid", () => {
    const p = tincanPresence({ uid: alice, ipv4: "10.10.0.5" });
    expect(parsePresenceTincan(p)).toEqual({ ok: true, value: { uid: alice, ipv4: "10.10.0.5" } });
    const bad = xml("presence", null, xml("tincan", { xmlns: "urn:tincan:0", uid: "nope" }));
    expect(parsePresenceTincan(bad)?.ok).toBe(false);
    expect(parsePresenceTincan(xml("presence"))).toBeNull();
  });

  it("parses roster items with groups", () => {
    const item = parseRosterItem(
      xml("item", { jid: "Bob@Lab.local", subscription: "both", name: "Bob" }, xml("group", null, "lab")),
    );
    expect(item).toEqual({
      ok: true,
      value: { jid: "bob@lab.local", subscription: "both", name: "Bob", groups: ["lab"] },
    });
    const weird = parseRosterItem(xml("item", { jid: "c@lab.local", subscription: "weird" }));
    expect(weird.ok && weird.value.subscription).toBe("none");
    expect(parseRosterItem(xml("item", {}))).toEqual({ ok: false, error: "roster item without a jid" });
  });
});

describe("XmppSession login", () => {
  it("drops a connection whose login stalls and connects again", async () => {
    // A server that accepts TCP and never says a word (like an overloaded or wedged one).
    const sockets: Socket[] = [];
    let closed = 0;
    const server = createServer((sock) => {
      sockets.push(sock);
      sock.resume(); // read (and ignore) the client's stream header, so its close is seen
      sock.on("close", () => closed++);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    const session = new XmppSession({
      service: `xmpp://127.0.0.1:${port}`,
      domain: "lab.local",
      username: "alice",
      password: "x",
      log: nullLog,
      loginTimeoutMs: 300,
    });
    void session.start().catch(() => {});
    try {
      // First attempt, dropped after 300 ms, then a new one after the 1 s reconnect delay.
      const deadline = Date.now() + 4000;
      while (sockets.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(sockets.length).toBeGreaterThanOrEqual(2);
      expect(closed).toBeGreaterThanOrEqual(1);
    } finally {
      await session.stop();
      for (const s of sockets) s.destroy();
      server.close();
    }
  });
});

describe("@xmpp/connection (patched, xmpp-patches.ts)", () => {
  it("ignores socket data that arrives after the stream parser is gone", () => {
    // disconnect() detaches the parser when closing the stream times out, and the socket may still
    // deliver data: unpatched, that throws from the socket's data handler and kills the process.
    const session = new XmppSession({
      service: "xmpp://127.0.0.1:1",
      domain: "lab.local",
      username: "alice",
      password: "x",
      log: nullLog,
    });
    const conn = (session as unknown as { xmpp: { parser: unknown; _onData(d: Buffer): void } }).xmpp;
    expect(conn.parser).toBeNull();
    expect(() => conn._onData(Buffer.from("<presence/>"))).not.toThrow();
  });
});

describe("SCRAM-SHA-1 with native key derivation", () => {
  function scram() {
    const session = new XmppSession({
      service: "xmpp://127.0.0.1:1",
      domain: "example.com",
      username: "user",
      password: "pencil",
      log: nullLog,
    });
    const factory = (session as unknown as { xmpp: { saslFactory: { create(m: string[]): any } } }).xmpp
      .saslFactory;
    return factory.create(["SCRAM-SHA-1"]);
  }

  it("answers the RFC 5802 example exchange", async () => {
    const m = scram();
    expect(m.constructor.name).toBe("NativeScramSha1");
    m._genNonce = () => "fyko+d2lbbFgONRv9qkxdawL";
    const cred = { username: "user", password: "pencil" };
    expect(await m.response(cred)).toBe("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    m.challenge("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");
    expect(await m.response(cred)).toBe(
      "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    );
  });

  it("refuses a server asking for an absurd iteration count", async () => {
    const m = scram();
    const cred = { username: "user", password: "pencil" };
    await m.response(cred);
    m.challenge("r=abc,s=QSXCR+Q6sek8bf92,i=2000000000");
    await expect(m.response(cred)).rejects.toThrow(/iterations/);
  });
});
