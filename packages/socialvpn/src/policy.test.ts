import {
  type Member,
  nullLog,
  type PolicyContext,
  PolicyLinks,
  type PolicyLinksOptions,
} from "@tincan/controller";
import { SocialVpnConfig, uidForDevice } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { AddressBook } from "./addresses.js";
import { NameTable } from "./dns.js";
import { SocialPolicy } from "./policy.js";
import { PROACTIVE_MIN_SCORE, type SavedScore, SocialProfile } from "./profile.js";
import type { StateWriter } from "./state.js";
import { ulaForUid } from "./ula.js";

const config = SocialVpnConfig.parse({
  xmpp: {
    service: "xmpp://x:5222",
    domain: "lab.local",
    username: "alice",
    password: "p",
    resource: "laptop",
  },
  vnic: { ipv4: "172.31.0.1/16" },
});

function member(bareJid: string, tincan: Partial<Member["tincan"]> = {}, device = "r"): Member {
  const uid = uidForDevice(bareJid, device);
  return { bareJid, fullJid: `${bareJid}/${device}`, tincan: { uid, ipv6: ulaForUid(uid), ...tincan } };
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
    proactiveFor: (m) => p.proactiveFor(m),
  });
  return { links, ensured };
}

describe("SocialPolicy", () => {
  it("UID from the JID and resource, IPv6 from the UID, translation on, no IPv4 in presence", () => {
    const p = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), log: nullLog });
    expect(p.uid).toBe(uidForDevice("alice@lab.local", "laptop"));
    expect(p.presence()).toEqual({ uid: p.uid, ipv6: ulaForUid(p.uid) });
    expect(p.vnic()).toMatchObject({
      ipv4: "172.31.0.1/16",
      ipv6: `${ulaForUid(p.uid)}/64`,
      translate: true,
    });
  });

  it("verifyPeer: UID must be the full JID's, an announced IPv6 the UID's", () => {
    const p = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), log: nullLog });
    expect(p.verifyPeer(member("bob@lab.local"))).toBe(true);
    expect(p.verifyPeer(member("bob@lab.local", { ipv6: undefined }))).toBe(true);
    expect(p.verifyPeer(member("bob@lab.local", { uid: uidForDevice("carol@lab.local", "r") }))).toBe(false);
    // Another device's UID, or the account's UID of before devices.
    expect(p.verifyPeer(member("bob@lab.local", { uid: uidForDevice("bob@lab.local", "pi") }))).toBe(false);
    expect(p.verifyPeer(member("alice@lab.local", {}, "phone"))).toBe(true);
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
    // No device seen yet: names without addresses.
    expect(names.lookup("carol.svpn")?.ipv4).toEqual([]);
    expect(names.lookup("alice.svpn")?.ipv4).toEqual(["172.31.0.1"]);
    expect(names.lookup("laptop.alice.svpn")?.ipv4).toEqual(["172.31.0.1"]);
    expect(names.lookup("dave.svpn")).toBeUndefined();
    await p.onPeerOnline(carol, ctx);
    await p.onPeerOnline(bob, ctx);
    expect(names.lookup("bob.svpn")?.ipv4).toEqual(["172.31.0.3"]);
    expect(names.lookup("r.bob.svpn")?.ipv6).toEqual([ulaForUid(bob.tincan.uid)]);
    routes.clear();
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

  it("gives each device of a buddy and each own other device its own address, route and name", async () => {
    const names = new NameTable("svpn");
    const book = new AddressBook(config.vnic.ipv4);
    const p = new SocialPolicy({ config, book, names, log: nullLog });
    const bobDesk = member("bob@lab.local", {}, "desk");
    const bobPi = member("bob@lab.local", {}, "pi");
    const phone = member("alice@lab.local", {}, "phone");
    const { ctx, routes } = fakeContext([bobDesk, bobPi, phone]);
    p.onRosterChanged([{ jid: "bob@lab.local", subscription: "both", groups: [] }]);
    for (const m of [bobDesk, phone, bobPi]) await p.onPeerOnline(m, ctx);
    expect(book.toRecord()).toEqual({
      "bob@lab.local/desk": "172.31.0.2",
      "alice@lab.local/phone": "172.31.0.3",
      "bob@lab.local/pi": "172.31.0.4",
    });
    expect(routes.get("172.31.0.4/32")).toBe(bobPi.tincan.uid);
    expect(routes.get(`${ulaForUid(phone.tincan.uid)}/128`)).toBe(phone.tincan.uid);
    expect(names.lookup("bob.svpn")?.ipv4).toEqual(["172.31.0.2", "172.31.0.4"]);
    expect(names.lookup("phone.alice.svpn")?.ipv4).toEqual(["172.31.0.3"]);
    expect(names.lookup("alice.svpn")?.ipv4).toEqual(["172.31.0.1"]);
    // One device going offline: only its routes go; the account's name answers with the other.
    await p.onPeerOffline(bobDesk, ctx);
    expect(routes.has("172.31.0.2/32")).toBe(false);
    expect(routes.get("172.31.0.4/32")).toBe(bobPi.tincan.uid);
    expect(names.lookup("bob.svpn")?.ipv4).toEqual(["172.31.0.4"]);
    expect(names.lookup("desk.bob.svpn")?.ipv4).toEqual(["172.31.0.2"]);
  });

  it("a buddy's first device keeps the address of a state file of before devices", async () => {
    const book = new AddressBook(config.vnic.ipv4, { "bob@lab.local": "172.31.0.7" });
    const names = new NameTable("svpn");
    const p = new SocialPolicy({ config, book, names, log: nullLog });
    p.onRosterChanged([{ jid: "bob@lab.local", subscription: "both", groups: [] }]);
    expect(names.lookup("bob.svpn")?.ipv4).toEqual(["172.31.0.7"]);
    const { ctx } = fakeContext();
    await p.onPeerOnline(member("bob@lab.local", {}, "desk"), ctx);
    await p.onPeerOnline(member("bob@lab.local", {}, "pi"), ctx);
    expect(book.toRecord()).toEqual({ "bob@lab.local/desk": "172.31.0.7", "bob@lab.local/pi": "172.31.0.2" });
  });
});

describe("SocialPolicy, social profile", () => {
  it("links at once to an often-used device (on-demand policy), and saves its score", async () => {
    const saved: unknown[] = [];
    const state = { save: (f: () => unknown) => void saved.push(f()) } as unknown as StateWriter;
    const p = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), state, log: nullLog });
    const desk = member("bob@lab.local", {}, "desk");
    const pi = member("bob@lab.local", {}, "pi");
    const { ctx } = fakeContext([desk, pi]);
    await p.onPeerOnline(desk, ctx);
    await p.onPeerOnline(pi, ctx);
    p.sampleTraffic([
      { peerUid: desk.tincan.uid, rxBytes: 3 * PROACTIVE_MIN_SCORE, txBytes: 0 },
      { peerUid: pi.tincan.uid, rxBytes: 1000, txBytes: 0 },
    ]);
    expect(saved.at(-1)).toMatchObject({
      scores: { "bob@lab.local/desk": { score: 3 * PROACTIVE_MIN_SCORE } },
    });
    // The next start: the profile comes from the state file.
    const record = (saved.at(-1) as { scores: Record<string, SavedScore> }).scores;
    const q = new SocialPolicy({
      config,
      book: new AddressBook(config.vnic.ipv4),
      profile: new SocialProfile(record),
      log: nullLog,
    });
    const { links, ensured } = coreLinks(q, [desk, pi]);
    await links.peerOnline(pi);
    await links.peerOnline(desk);
    expect(ensured).toEqual([desk.tincan.uid]);
  });
});

describe("SocialPolicy, relaying through a buddy's device", () => {
  type Route = { prefix: string; peerUid: string; via?: string };
  function relayContext(peers: Member[]) {
    const routes = new Map<string, Route>();
    const sent: Array<{ peerUid: string; data: unknown }> = [];
    const ctx = {
      log: nullLog,
      peers: () => peers,
      datapath: { call: async (_m: string, p: { peerUid: string; data: unknown }) => void sent.push(p) },
      setRoute: async (r: Route) => void routes.set(r.prefix, r),
      removeRoute: async (prefix: string) => void routes.delete(prefix),
      routes: () => [...routes.values()],
    } as unknown as PolicyContext;
    return { ctx, routes, sent };
  }
  const event = (m: Member) => ({ peer: { uid: m.tincan.uid } }) as Parameters<SocialPolicy["onLinkUp"]>[0];

  it("routes a device's IPv6 through a neighbour that offered to relay, while its link is set up", async () => {
    const p = new SocialPolicy({ config, book: new AddressBook(config.vnic.ipv4), log: nullLog });
    const friend = member("bob@lab.local", {}, "desk");
    const phone = member("alice@lab.local", {}, "phone");
    const { ctx, routes } = relayContext([friend, phone]);
    await p.onPeerOnline(friend, ctx);
    await p.onPeerOnline(phone, ctx);
    await p.onLinkUp(event(friend), ctx);
    const v6 = `${ulaForUid(phone.tincan.uid)}/128`;
    // No offer yet: direct. The offer comes while the setup runs: through the friend, IPv6 only.
    await p.onLinkSetup(event(phone), ctx);
    expect(routes.get(v6)?.via).toBeUndefined();
    p.onIccMessage(
      { peerUid: friend.tincan.uid, data: { type: "socialvpn.relay", uids: [phone.tincan.uid] } },
      ctx,
    );
    await new Promise((r) => setImmediate(r));
    expect(routes.get(v6)).toEqual({ prefix: v6, peerUid: phone.tincan.uid, via: friend.tincan.uid });
    expect(routes.get("172.31.0.3/32")?.via).toBeUndefined();
    await p.onLinkUp(event(phone), ctx);
    expect(routes.get(v6)).toEqual({ prefix: v6, peerUid: phone.tincan.uid });
  });

  it("offers to relay only when opted in (links.relayForBuddies)", async () => {
    for (const relayForBuddies of [false, true]) {
      const links = { relayForBuddies, setupTimeoutSec: 10 };
      const p = new SocialPolicy({
        config: { ...config, links },
        book: new AddressBook(config.vnic.ipv4),
        log: nullLog,
      });
      const friend = member("bob@lab.local", {}, "desk");
      const { ctx, sent } = relayContext([friend]);
      await p.onPeerOnline(friend, ctx);
      await p.onLinkUp(event(friend), ctx);
      await new Promise((r) => setTimeout(r, 1100));
      expect(sent.length > 0, String(relayForBuddies)).toBe(relayForBuddies);
    }
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

  it("drops the names of buddies that left the roster but keeps their addresses", async () => {
    const names = new NameTable("svpn");
    const book = new AddressBook(config.vnic.ipv4);
    const p = new SocialPolicy({ config, book, names, log: nullLog });
    p.onRosterChanged([{ jid: "bob@lab.local", subscription: "both", groups: [] }]);
    await p.onPeerOnline(member("bob@lab.local"), fakeContext().ctx);
    expect(names.lookup("bob.svpn")?.ipv4).toEqual(["172.31.0.2"]);
    p.onRosterChanged([{ jid: "bob@lab.local", subscription: "none", groups: [] }]);
    expect(names.lookup("bob.svpn")).toBeUndefined();
    expect(book.lookup("bob@lab.local/r")).toBe("172.31.0.2");
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
