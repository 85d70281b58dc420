import {
  type Member,
  nullLog,
  type PolicyContext,
  PolicyLinks,
  type PolicyLinksOptions,
} from "@tincan/controller";
import { SocialVpnConfig, uidForJid } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { AddressBook } from "./addresses.js";
import { NameTable } from "./dns.js";
import { SocialPolicy } from "./policy.js";
import { ulaForUid } from "./ula.js";

const config = SocialVpnConfig.parse({
  xmpp: { service: "xmpp://x:5222", domain: "lab.local", username: "alice", password: "p" },
  vnic: { ipv4: "172.31.0.1/16" },
});

function member(bareJid: string, tincan: Partial<Member["tincan"]> = {}): Member {
  const uid = uidForJid(bareJid);
  return { bareJid, fullJid: `${bareJid}/r`, tincan: { uid, ipv6: ulaForUid(uid), ...tincan } };
}

function fakeContext(peers: Member[] = []) {
  const routes = new Map<string, string>();
  const ctx = {
    log: nullLog,
    peers: () => peers,
    setRoute: async (r: { prefix: string; peerUid: string }) => void routes.set(r.prefix, r.peerUid),
    removeRoute: async (prefix: string) => void routes.delete(prefix),
  } as Partial<PolicyContext> as PolicyContext;
  return { ctx, routes };
}

/** The core's linking, finding buddies by the policy's addresses. */
function coreLinks(p: SocialPolicy, peers: Member[], proactive = false) {
  const ensured: string[] = [];
  const ensureLink: PolicyLinksOptions["ensureLink"] = async (ref) => void ensured.push(ref.uid);
  const links = new PolicyLinks({
    proactive,
    ensureLink,
    peers: () => peers,
    addressesOf: (m) => p.peerAddresses(m),
  });
  return { links, ensured };
}

describe("SocialPolicy", () => {
  it("UID from the JID, IPv6 from the UID, translation on, no IPv4 in presence", () => {
    const p = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), log: nullLog });
    expect(p.uid).toBe(uidForJid("alice@lab.local"));
    expect(p.presence()).toEqual({ uid: p.uid, ipv6: ulaForUid(p.uid) });
    expect(p.vnic()).toMatchObject({
      ipv4: "172.31.0.1/16",
      ipv6: `${ulaForUid(p.uid)}/64`,
      translate: true,
    });
  });

  it("dns.resolved: vnic.configure asks for the registration; a configured vNIC starts the responder on it", () => {
    const plain = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), log: nullLog });
    expect(plain.vnic()).not.toHaveProperty("dns");
    const resolvedDns = { server: "172.31.0.1:5353", domains: ["~svpn"] };
    let ready = 0;
    const p = new SocialPolicy({
      config,
      book: new AddressBook(config.vnic.ipv4),
      log: nullLog,
      resolvedDns,
      onVnicReady: () => ready++,
    });
    expect(p.vnic().dns).toEqual(resolvedDns);
    p.onVnicConfigured({ name: "tincan0", mtu: 1280, dns: { registered: false, error: "Access denied" } });
    p.onVnicConfigured({ name: "tincan0", mtu: 1280, dns: { registered: true } });
    expect(ready).toBe(2);
  });

  it("verifyPeer: UID must be the JID's, an announced IPv6 the UID's", () => {
    const p = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), log: nullLog });
    expect(p.verifyPeer(member("bob@lab.local"))).toBe(true);
    expect(p.verifyPeer(member("bob@lab.local", { ipv6: undefined }))).toBe(true);
    expect(p.verifyPeer(member("bob@lab.local", { uid: uidForJid("carol@lab.local") }))).toBe(false);
    expect(p.verifyPeer(member("bob@lab.local", { ipv6: "fd53:7670:6e00::1" }))).toBe(false);
  });

  it("routes a buddy's local /32 and overlay /128 while online, removes them when it goes", async () => {
    const names = new NameTable("svpn");
    const p = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), names, log: nullLog });
    const bob = member("bob@lab.local");
    const carol = member("carol@lab.local");
    const { ctx, routes } = fakeContext([bob, carol]);
    const { links, ensured } = coreLinks(p, [bob, carol]);
    p.onRosterChanged([
      { jid: "carol@lab.local", subscription: "both", groups: [] },
      { jid: "bob@lab.local", subscription: "both", groups: [] },
      { jid: "dave@lab.local", subscription: "to", groups: [] },
    ]);
    expect(names.lookup("carol.svpn")?.ipv4).toBe("172.31.0.2");
    expect(names.lookup("bob.svpn")?.ipv4).toBe("172.31.0.3");
    expect(names.lookup("alice.svpn")?.ipv4).toBe("172.31.0.1");
    expect(names.lookup("dave.svpn")).toBeUndefined();
    await p.onPeerOnline(bob, ctx);
    await links.peerOnline(bob);
    expect(Object.fromEntries(routes)).toEqual({
      "172.31.0.3/32": bob.tincan.uid,
      [`${ulaForUid(bob.tincan.uid)}/128`]: bob.tincan.uid,
    });
    expect(ensured).toEqual([]); // on-demand: no link until a packet wants one
    await links.packetUnmapped("172.31.0.3");
    await links.packetUnmapped("172.31.0.99");
    await links.packetUnmapped(ulaForUid(carol.tincan.uid).toUpperCase());
    expect(ensured).toEqual([bob.tincan.uid, carol.tincan.uid]);
    expect(p.peerAddresses(bob)).toEqual({ ipv4: "172.31.0.3", ipv6: ulaForUid(bob.tincan.uid) });
    await p.onPeerOffline(bob, ctx);
    expect(routes.size).toBe(0);
  });
});

describe("SocialPolicy, proactive", () => {
  it("links to every buddy that comes online, pinned", async () => {
    const proactive = { ...config, links: { ...config.links, policy: "proactive" as const } };
    const p = new SocialPolicy({ config: proactive, book: new AddressBook(config.vnic.ipv4), log: nullLog });
    const bob = member("bob@lab.local");
    const { ctx } = fakeContext([bob]);
    const { links, ensured } = coreLinks(p, [bob], proactive.links.policy === "proactive");
    await p.onPeerOnline(bob, ctx);
    await links.peerOnline(bob);
    expect(ensured).toEqual([bob.tincan.uid]);
  });

  it("drops the names of buddies that left the roster but keeps their addresses", () => {
    const names = new NameTable("svpn");
    const book = new AddressBook(config.vnic.ipv4);
    const p = new SocialPolicy({ config, book, names, log: nullLog });
    p.onRosterChanged([{ jid: "bob@lab.local", subscription: "both", groups: [] }]);
    expect(names.lookup("bob.svpn")?.ipv4).toBe("172.31.0.2");
    p.onRosterChanged([{ jid: "bob@lab.local", subscription: "none", groups: [] }]);
    expect(names.lookup("bob.svpn")).toBeUndefined();
    expect(book.lookup("bob@lab.local")).toBe("172.31.0.2");
  });
});

describe("SocialVpnConfig", () => {
  const base = { xmpp: { service: "xmpp://x:5222", domain: "d", username: "u", password: "p" } };
  const issues = (vnic: object) =>
    SocialVpnConfig.safeParse({ ...base, vnic }).error?.issues.map(
      (i) => `${i.path.join(".")}: ${i.message}`,
    );
  it("rejects vnic.ipv6 (derived), ranges without room, and own = network/broadcast", () => {
    expect(issues({ ipv4: "172.31.0.1/16" })).toBeUndefined();
    expect(issues({ ipv4: "172.31.0.1/16", ipv6: "fd00::1/64" })).toEqual([
      "vnic.ipv6: SocialVPN derives its IPv6 address from the JID; remove this key",
    ]);
    expect(issues({ ipv4: "10.0.0.1/31" })?.[0]).toMatch(/^vnic\.ipv4: .*\/30 or shorter/);
    expect(issues({ ipv4: "10.0.0.0/24" })?.[0]).toMatch(/^vnic\.ipv4: .*network or broadcast/);
    expect(issues({ ipv4: "10.0.0.255/24" })?.[0]).toMatch(/^vnic\.ipv4: .*network or broadcast/);
  });

  it("a malformed vnic.ipv4 gets its one issue, and the range check does not throw", () => {
    for (const ipv4 of ["junk", "10.0.0.1/40", "10.0.0.1", "fd00::1/64"])
      expect(issues({ ipv4 }), ipv4).toEqual(["vnic.ipv4: Invalid IPv4 range"]);
  });
});
