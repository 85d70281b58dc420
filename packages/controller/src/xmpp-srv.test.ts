import type { SrvRecord } from "node:dns";
import { describe, expect, it } from "vitest";
import { xmppClientServices } from "./xmpp-srv.js";

const srv = (name: string, port: number, priority = 10, weight = 0): SrvRecord => ({
  name,
  port,
  priority,
  weight,
});

describe("xmppClientServices (RFC 6120 3.2)", () => {
  it("asks for _xmpp-client._tcp.<domain> and orders targets by priority", async () => {
    const asked: string[] = [];
    const services = await xmppClientServices("example.org", async (name) => {
      asked.push(name);
      return [srv("b.example.org.", 5223, 20), srv("a.example.org", 5222, 10), srv("2001:db8::1", 5222, 30)];
    });
    expect(asked).toEqual(["_xmpp-client._tcp.example.org"]);
    expect(services).toEqual({
      services: ["xmpp://a.example.org:5222", "xmpp://b.example.org:5223", "xmpp://[2001:db8::1]:5222"],
      fromSrv: true,
    });
  });

  it("picks by weight within one priority", async () => {
    const records = [srv("light", 1, 10, 1), srv("heavy", 2, 10, 99)];
    expect(
      await xmppClientServices(
        "d",
        async () => records.map((r) => ({ ...r })),
        () => 0.5,
      ).then((r) => r.services),
    ).toEqual(["xmpp://heavy:2", "xmpp://light:1"]);
    expect(
      await xmppClientServices(
        "d",
        async () => records.map((r) => ({ ...r })),
        () => 0,
      ).then((r) => r.services),
    ).toEqual(["xmpp://light:1", "xmpp://heavy:2"]);
  });

  it("falls back to the domain on port 5222 when the lookup fails or finds nothing", async () => {
    const notFound = Object.assign(new Error("queryNothing ENOTFOUND"), { code: "ENOTFOUND" });
    const fallback = { services: ["xmpp://example.org:5222"], fromSrv: false };
    expect(await xmppClientServices("example.org", () => Promise.reject(notFound))).toEqual(fallback);
    expect(await xmppClientServices("example.org", async () => [])).toEqual(fallback);
  });

  it('refuses a domain whose only target is "." (no service)', async () => {
    await expect(xmppClientServices("example.org", async () => [srv(".", 0)])).rejects.toThrow(
      /no XMPP client service/,
    );
  });
});
