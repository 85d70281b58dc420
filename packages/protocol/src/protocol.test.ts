import { describe, expect, it } from "vitest";
import {
  ControllerConfig,
  describeIssues,
  GroupVpnConfig,
  RpcParams,
  Signal,
  SocialVpnConfig,
  TincanConfig,
  uidForIpv4,
  uidForJid,
} from "./index.js";

describe("RPC params", () => {
  it("accepts a valid route.set and names the bad field otherwise", () => {
    const uid = uidForIpv4("10.10.0.7");
    expect(RpcParams["route.set"].safeParse({ prefix: "10.10.0.7/32", peerUid: uid }).success).toBe(true);
    const bad = RpcParams["route.set"].safeParse({ prefix: "10.10.0.7/33", peerUid: uid });
    expect(bad.success).toBe(false);
    if (!bad.success) expect(describeIssues(bad.error)).toMatch(/^prefix: /);
  });

  it("rejects unknown keys so typos are not silently ignored", () => {
    const r = RpcParams["link.remove"].safeParse({ peerUid: uidForIpv4("10.0.0.1"), peeruid: "x" });
    expect(r.success).toBe(false);
  });

  it("link.create takes relayOnly or directOnly, not both", () => {
    const peerUid = uidForIpv4("10.0.0.1");
    expect(RpcParams["link.create"].safeParse({ peerUid, directOnly: true }).success).toBe(true);
    const both = RpcParams["link.create"].safeParse({ peerUid, relayOnly: true, directOnly: true });
    expect(both.success).toBe(false);
    if (!both.success) expect(describeIssues(both.error)).toMatch(/exclude each other/);
  });

  it("vnic.configure dns: an ip:port server and domains that cannot pass for resolvectl options", () => {
    const uid = uidForIpv4("172.31.0.1");
    const dns = (d: unknown) => RpcParams["vnic.configure"].safeParse({ uid, dns: d }).success;
    expect(dns({ server: "172.31.0.1:5353", domains: ["~svpn"] })).toBe(true);
    expect(dns(null)).toBe(true);
    expect(dns({ server: "172.31.0.1:5353", domains: ["--interface=eth0"] })).toBe(false);
    expect(dns({ server: "host.example:53", domains: ["~svpn"] })).toBe(false);
    expect(dns({ server: "172.31.0.1:5353", domains: [] })).toBe(false);
  });

  it("only lets a controller register a loopback endpoint", () => {
    expect(RpcParams.hello.safeParse({ controller: { host: "10.0.0.1", port: 5801 } }).success).toBe(false);
    expect(RpcParams.hello.safeParse({ controller: { host: "127.0.0.1", port: 5801 } }).success).toBe(true);
  });
});

describe("signal payloads", () => {
  it("parses an offer and rejects a payload with a bad uid", () => {
    const from = uidForJid("alice@lab.local");
    const to = uidForJid("bob@lab.local");
    const offer = {
      type: "offer",
      from,
      to,
      setup: "s1",
      relayOnly: false,
      description: { type: "offer", sdp: "v=0" },
    };
    expect(Signal.safeParse(offer).success).toBe(true);
    expect(Signal.safeParse({ ...offer, from: "ALICE" }).success).toBe(false);
  });
});

describe("configs", () => {
  it("fills defaults", () => {
    const c = TincanConfig.parse({});
    expect(c.rpc).toBe("127.0.0.1:5800");
    expect(c.log.level).toBe("info");
  });

  it("refuses a non-loopback RPC address and a config with two password sources", () => {
    expect(TincanConfig.safeParse({ rpc: "0.0.0.0:5800" }).success).toBe(false);
    const r = GroupVpnConfig.safeParse({
      group: "lab",
      vnic: { ipv4: "10.10.0.5/16" },
      xmpp: { service: "xmpp://h:5222", domain: "d", username: "u", password: "p", passwordFile: "/f" },
    });
    expect(r.success).toBe(false);
  });
});

describe("controller config schemas", () => {
  const core = {
    vnic: { ipv4: "10.10.0.5/16" },
    xmpp: { service: "xmpp://h:5222", domain: "d", username: "u", password: "p" },
  };

  it("share the core keys; `group` belongs to GroupVPN alone", () => {
    const coreKeys = Object.keys(ControllerConfig.shape);
    expect(coreKeys).not.toContain("group");
    for (const schema of [GroupVpnConfig, SocialVpnConfig])
      expect(Object.keys(schema.shape)).toEqual(expect.arrayContaining(coreKeys));
    expect(ControllerConfig.safeParse(core).success).toBe(true);
    expect(ControllerConfig.safeParse({ ...core, group: "lab" }).success).toBe(false);
    expect(SocialVpnConfig.safeParse({ ...core, group: "lab" }).success).toBe(false);
    expect(GroupVpnConfig.safeParse(core).success).toBe(false);
    const coreParsed = ControllerConfig.parse(core);
    expect(GroupVpnConfig.parse({ ...core, group: "lab" })).toEqual({
      ...coreParsed,
      links: { ...coreParsed.links, successors: 2, longDistance: "auto", shortcutBytesPerSec: 8192 },
      group: "lab",
      routes: { advertise: [], accept: false },
    });
  });

  it("GroupVPN alone has the structured link policy and its keys", () => {
    const structured = { ...core, group: "lab", links: { policy: "structured", longDistance: 3 } };
    expect(GroupVpnConfig.parse(structured).links).toMatchObject({ policy: "structured", longDistance: 3 });
    expect(SocialVpnConfig.safeParse({ ...core, links: { policy: "structured" } }).success).toBe(false);
    expect(ControllerConfig.safeParse({ ...core, links: { successors: 2 } }).success).toBe(false);
    for (const bad of [{ successors: 0 }, { longDistance: "many" }, { shortcutBytesPerSec: -1 }])
      expect(GroupVpnConfig.safeParse({ ...core, group: "lab", links: bad }).success).toBe(false);
  });
});

describe("uids", () => {
  it("are 32 hex chars derived from the address text", () => {
    expect(uidForIpv4("10.10.0.5")).toMatch(/^[0-9a-f]{32}$/);
    expect(uidForIpv4("10.10.0.5")).not.toBe(uidForIpv4("10.10.0.6"));
  });
});
