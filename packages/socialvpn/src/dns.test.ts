import { createSocket } from "node:dgram";
import { nullLog } from "@tincan/controller";
import dnsPacket from "dns-packet";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerQuery, DnsResponder, NameTable } from "./dns.js";

const table = new NameTable("svpn");
table.set([
  { jid: "alice@lab.local", ipv4: "172.31.0.1", ipv6: "fd53:7670:6e00:0:1:2:3:4" },
  { jid: "bob@lab.local", ipv4: "172.31.0.2", ipv6: "fd53:7670:6e00:0:5:6:7:8" },
  { jid: "bob@other.org", ipv4: "172.31.0.3", ipv6: "fd53:7670:6e00:0:9:a:b:c" },
  { jid: "carol@lab.local", ipv4: undefined, ipv6: "fd53:7670:6e00:0:d:e:f:1" },
]);

function query(name: string, type: dnsPacket.RecordType = "A", id = 4242): Buffer {
  return dnsPacket.encode({
    type: "query",
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
  });
}

function ask(msg: Buffer) {
  const out = answerQuery(table, msg);
  return out && dnsPacket.decode(out);
}

describe("NameTable", () => {
  it("gives short names to unique local parts and long names to everyone", () => {
    const names = table.all().map(([n]) => n);
    expect(names).toContain("alice.svpn");
    expect(names).toContain("carol.svpn");
    expect(names).not.toContain("bob.svpn"); // two bobs on different servers
    expect(names).toContain("bob.lab-local.svpn");
    expect(names).toContain("bob.other-org.svpn");
    expect(table.lookup("ALICE.SVPN.")?.jid).toBe("alice@lab.local");
  });
});

describe("NameTable with devices", () => {
  const t = new NameTable("svpn");
  t.set([
    {
      jid: "alice@lab.local",
      device: "laptop",
      ipv4: "172.31.0.1",
      ipv6: "fd53::1",
      online: true,
      self: true,
    },
    { jid: "alice@lab.local", device: "phone", ipv4: "172.31.0.3", ipv6: "fd53::3", online: true },
    { jid: "bob@lab.local", device: "Desk", ipv4: "172.31.0.2", ipv6: "fd53::2", online: true },
    { jid: "bob@lab.local", device: "pi", ipv4: "172.31.0.4", ipv6: "fd53::4", online: true },
    { jid: "bob@lab.local", device: "old", ipv4: "172.31.0.5", ipv6: "fd53::5", online: false },
    { jid: "carol@lab.local", device: "a", ipv4: "172.31.0.6", online: false },
    { jid: "carol@lab.local", device: "b", ipv4: "172.31.0.7", online: false },
    // Two resources that make the same label: neither gets the name.
    { jid: "dave@lab.local", device: "x y", ipv4: "172.31.0.8", online: true },
    { jid: "dave@lab.local", device: "x.y", ipv4: "172.31.0.9", online: true },
  ]);

  it("names each device under its account, and the account answers with its online devices", () => {
    expect(t.lookup("desk.bob.svpn")).toEqual({
      jid: "bob@lab.local",
      device: "Desk",
      ipv4: ["172.31.0.2"],
      ipv6: ["fd53::2"],
    });
    expect(t.lookup("old.bob.lab-local.svpn")?.ipv4).toEqual(["172.31.0.5"]);
    expect(t.lookup("bob.svpn")?.ipv4).toEqual(["172.31.0.2", "172.31.0.4"]);
    // None online: every known device.
    expect(t.lookup("carol.svpn")?.ipv4).toEqual(["172.31.0.6", "172.31.0.7"]);
    expect(t.lookup("dave.svpn")?.ipv4).toEqual(["172.31.0.8", "172.31.0.9"]);
    expect(t.lookup("x-y.dave.svpn")).toBeUndefined();
  });

  it("the own account's name is this device; the other own devices are named under it", () => {
    expect(t.lookup("alice.svpn")?.ipv4).toEqual(["172.31.0.1"]);
    expect(t.lookup("phone.alice.svpn")?.ipv4).toEqual(["172.31.0.3"]);
    expect(t.lookup("laptop.alice.svpn")?.ipv6).toEqual(["fd53::1"]);
  });

  it("answers an account's name with one record per device", () => {
    const r = dnsPacket.decode(answerQuery(t, query("bob.svpn", "A")) as Buffer);
    expect(r.answers?.map((a) => a.data)).toEqual(["172.31.0.2", "172.31.0.4"]);
  });
});

describe("answerQuery", () => {
  it("answers A with the buddy's local address, authoritative, echoing id, question and RD", () => {
    const r = ask(query("alice.svpn"));
    expect(r?.id).toBe(4242);
    expect(r?.type).toBe("response");
    expect(r?.rcode).toBe("NOERROR");
    expect(r?.flag_aa).toBe(true);
    expect(r?.flag_rd).toBe(true);
    expect(r?.questions).toEqual([{ name: "alice.svpn", type: "A", class: "IN" }]);
    expect(r?.answers).toEqual([
      expect.objectContaining({ name: "alice.svpn", type: "A", data: "172.31.0.1", ttl: 60 }),
    ]);
    expect(ask(query("bob.other-org.svpn"))?.answers?.[0]).toMatchObject({ data: "172.31.0.3" });
  });

  it("answers AAAA with the overlay IPv6, and ANY with both", () => {
    expect(ask(query("bob.lab-local.svpn", "AAAA"))?.answers).toEqual([
      expect.objectContaining({ type: "AAAA", data: "fd53:7670:6e00:0:5:6:7:8" }),
    ]);
    const any = ask(query("alice.svpn", "ANY" as dnsPacket.RecordType));
    expect(any?.answers?.map((a) => a.type).sort()).toEqual(["A", "AAAA"]);
  });

  it("NXDOMAIN for unknown names under the suffix, NODATA for other types or missing addresses", () => {
    const nx = ask(query("mallory.svpn"));
    expect(nx?.rcode).toBe("NXDOMAIN");
    expect(nx?.answers).toEqual([]);
    expect(nx?.authorities?.[0]?.type).toBe("SOA");
    expect(ask(query("bob.svpn"))?.rcode).toBe("NXDOMAIN"); // ambiguous short name
    const mx = ask(query("alice.svpn", "MX"));
    expect(mx?.rcode).toBe("NOERROR");
    expect(mx?.answers).toEqual([]);
    const noA = ask(query("carol.svpn", "A"));
    expect(noA?.rcode).toBe("NOERROR");
    expect(noA?.answers).toEqual([]);
    expect(ask(query("svpn", "SOA"))?.answers?.[0]?.type).toBe("SOA");
  });

  it("REFUSED outside the suffix or class, NOTIMP for other opcodes, FORMERR for question counts", () => {
    expect(ask(query("example.org"))?.rcode).toBe("REFUSED");
    expect(ask(query("alice.svpn.example"))?.rcode).toBe("REFUSED");
    const chaos = dnsPacket.encode({
      type: "query",
      id: 1,
      questions: [{ name: "alice.svpn", type: "A", class: "CH" }],
    });
    expect(ask(chaos)?.rcode).toBe("REFUSED");
    const update = dnsPacket.encode({
      type: "query",
      id: 2,
      flags: 5 << 11,
      questions: [{ name: "svpn", type: "SOA" }],
    });
    expect(ask(update)?.rcode).toBe("NOTIMP");
    expect(ask(dnsPacket.encode({ type: "query", id: 3, questions: [] }))?.rcode).toBe("FORMERR");
    const two = dnsPacket.encode({
      type: "query",
      id: 4,
      questions: [
        { name: "alice.svpn", type: "A" },
        { name: "carol.svpn", type: "A" },
      ],
    });
    expect(ask(two)?.rcode).toBe("FORMERR");
  });

  it("never answers responses; FORMERR (same id) for undecodable queries; nothing for tiny junk", () => {
    const resp = dnsPacket.encode({
      type: "response",
      id: 9,
      questions: [{ name: "alice.svpn", type: "A" }],
    });
    expect(answerQuery(table, resp)).toBeNull();
    expect(answerQuery(table, Buffer.alloc(0))).toBeNull();
    expect(answerQuery(table, Buffer.from("hello"))).toBeNull();
    const claims50 = Buffer.from([0xab, 0xcd, 0x01, 0x00, 0x00, 0x32, 0, 0, 0, 0, 0, 0, 5, 0x61]);
    const r = ask(claims50);
    expect(r?.id).toBe(0xabcd);
    expect(r?.rcode).toBe("FORMERR");
    // A compression pointer that points at itself.
    const loop = Buffer.from([0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    expect(ask(loop)?.rcode).toBe("FORMERR");
  });

  it("never throws on random bytes, and random-but-decodable queries get a response", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), (bytes) => {
        const out = answerQuery(table, Buffer.from(bytes));
        if (out) expect(() => dnsPacket.decode(out)).not.toThrow();
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9.-]{1,60}$/),
        fc.constantFrom("A", "AAAA", "TXT", "PTR"),
        (name, type) => {
          const q = query(name, type as dnsPacket.RecordType);
          const out = answerQuery(table, q);
          expect(out).not.toBeNull();
        },
      ),
    );
  });
});

describe("DnsResponder over UDP", () => {
  const responder = new DnsResponder({ host: "127.0.0.1", port: 0, table, log: nullLog });
  let port = 0;
  const client = createSocket("udp4");

  beforeAll(async () => {
    port = (await responder.start()).port;
  });
  afterAll(() => {
    responder.stop();
    client.close();
  });

  const roundTrip = (msg: Buffer, timeoutMs = 500) =>
    new Promise<Buffer | null>((resolve) => {
      const t = setTimeout(() => {
        client.off("message", onMsg);
        resolve(null);
      }, timeoutMs);
      const onMsg = (m: Buffer) => {
        clearTimeout(t);
        client.off("message", onMsg);
        resolve(m);
      };
      client.on("message", onMsg);
      client.send(msg, port, "127.0.0.1");
    });

  it("keeps answering after garbage datagrams", async () => {
    expect(await roundTrip(Buffer.from([1, 2, 3]), 200)).toBeNull();
    for (let i = 0; i < 50; i++)
      client.send(Buffer.from(fc.sample(fc.uint8Array({ maxLength: 300 }), 1)[0] ?? []), port, "127.0.0.1");
    await new Promise((r) => setTimeout(r, 100));
    const out = await roundTrip(query("alice.svpn", "A", 77));
    expect(out).not.toBeNull();
    const r = dnsPacket.decode(out as Buffer);
    expect(r.id).toBe(77);
    expect(r.answers?.[0]).toMatchObject({ data: "172.31.0.1" });
  });

  it("fails to start with a clear error when the address is taken", async () => {
    const other = new DnsResponder({ host: "127.0.0.1", port, table, log: nullLog });
    await expect(other.start()).rejects.toThrow(/EADDRINUSE/);
  });
});
