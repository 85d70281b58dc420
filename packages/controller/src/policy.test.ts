import { ControllerConfig, uidForIpv4 } from "@tincan/protocol";
import { describe, expect, it, vi } from "vitest";
import { Controller } from "./controller.js";
import type { PeerRef } from "./link-manager.js";
import { createLogger } from "./logger.js";
import { type Member, type Policy, PolicyLinks, presenceAddresses } from "./policy.js";

function member(ipv4: string, ipv6?: string): Member {
  const tincan = { uid: uidForIpv4(ipv4), ipv4, ...(ipv6 ? { ipv6 } : {}) };
  return { bareJid: `${ipv4}@lab`, fullJid: `${ipv4}@lab/r`, tincan } as Member;
}

const bob = member("10.10.0.2", "fd00::2");
const carol = member("10.10.0.3", "FD00:0::0003"); // as a peer may write it

function links(proactive: boolean, peers: Member[] = [bob, carol], linkMembersOnDemand = true) {
  const ensured: { ref: PeerRef; pinned: boolean }[] = [];
  const l = new PolicyLinks({
    proactive,
    linkMembersOnDemand,
    ensureLink: async (ref, o) => void ensured.push({ ref, pinned: o.pinned }),
    peers: () => peers,
    addressesOf: (m) => presenceAddresses(m.tincan),
    // A LAN behind bob (router mode).
    routes: () => [{ prefix: "192.168.50.0/24", peerUid: bob.tincan.uid, kernel: true }],
  });
  return { l, ensured };
}

describe("PolicyLinks (links.policy in the core)", () => {
  it("on-demand: no link when a member comes online; one, unpinned, on a packet to its address", async () => {
    const { l, ensured } = links(false);
    await l.peerOnline(bob);
    expect(ensured).toEqual([]);
    await l.packetUnmapped("10.10.0.3");
    expect(ensured).toEqual([
      { ref: { uid: carol.tincan.uid, bareJid: carol.bareJid, fullJid: carol.fullJid }, pinned: false },
    ]);
  });

  it("on-demand: a packet to a prefix behind a member (router mode) links to that member", async () => {
    const { l, ensured } = links(false);
    await l.packetUnmapped("192.168.50.7");
    expect(ensured.map((e) => e.ref.uid)).toEqual([bob.tincan.uid]);
  });

  it("a policy that routes members itself (structured): no link on a packet to a member's address or LAN", async () => {
    const { l, ensured } = links(false, [bob, carol], false);
    await l.packetUnmapped("10.10.0.3");
    await l.packetUnmapped("192.168.50.7");
    await l.peerOnline(bob);
    expect(ensured).toEqual([]);
  });

  it("proactive: a pinned link to every member that comes online, and on packets too", async () => {
    const { l, ensured } = links(true);
    await l.peerOnline(bob);
    await l.packetUnmapped("10.10.0.3");
    expect(ensured.map((e) => [e.ref.uid, e.pinned])).toEqual([
      [bob.tincan.uid, true],
      [carol.tincan.uid, true],
    ]);
  });

  it("finds the member by either address, compared in canonical text", () => {
    const { l } = links(false);
    expect(l.memberAt("FD00:0::0002")).toBe(bob);
    expect(l.memberAt("10.10.0.2")).toBe(bob);
    expect(l.memberAt("fd00::3")).toBe(carol); // as the datapath names it
    expect(l.memberAt("10.10.0.9")).toBeUndefined();
  });

  it("a destination that is no member's, or no address at all, links nothing and throws nothing", async () => {
    const { l, ensured } = links(false, [bob, member("10.10.0.4", "not an address")]);
    for (const dst of ["10.10.0.99", "", "junk", "10.10.0.2/32", "::ffff:10.10.0.2"])
      await l.packetUnmapped(dst);
    expect(ensured).toEqual([]);
  });
});

/** Delivers a datapath notification to the controller's handlers, as the RPC client does. */
function notify(ctl: Controller, method: string, params: unknown): void {
  const handlers = (ctl.datapath as unknown as { handlers: Map<string, Set<(p: unknown) => void>> }).handlers;
  for (const h of handlers.get(method) ?? []) h(params);
}

describe("Controller and its policy", () => {
  function controller(policy: Policy) {
    // The core schema with its defaults.
    const config = ControllerConfig.parse({
      datapath: { rpc: "127.0.0.1:1", tokenFile: "/nonexistent/token" },
      xmpp: { service: "xmpp://127.0.0.1:1", domain: "lab", username: "alice", password: "p" },
      vnic: { ipv4: "10.10.0.1/16" },
    }) as ConstructorParameters<typeof Controller>[0]["config"];
    const logger = createLogger("error", { silent: true });
    return new Controller({ name: "test", config, logger, policy, statusFile: null });
  }
  const base = {
    uid: uidForIpv4("10.10.0.1"),
    presence: () => ({ uid: uidForIpv4("10.10.0.1") }),
    vnic: () => ({ uid: uidForIpv4("10.10.0.1"), name: "tincan0", ipv4: "10.10.0.1/16", mtu: 1280 }),
  };
  const roster = [
    { jid: "bob@lab", subscription: "both" as const, groups: ["lab"] },
    { jid: "carol@lab", subscription: "both" as const, groups: [] },
  ];

  it("admits what the policy does not refuse (the core knows no groups)", () => {
    const open = controller(base);
    open.admission.setRoster(roster);
    expect(open.admission.members()).toEqual(["bob@lab", "carol@lab"]);
    const grouped = controller({ ...base, refuse: (i) => (i.groups.includes("lab") ? null : "not in lab") });
    grouped.admission.setRoster(roster);
    expect(grouped.admission.members()).toEqual(["bob@lab"]);
  });

  it("links to the member of an unmapped packet, then hands the policy the notification and itself", async () => {
    const onPacketUnmapped = vi.fn();
    const ctl = controller({ ...base, onPacketUnmapped });
    vi.spyOn(ctl, "peers").mockReturnValue([bob]);
    const ensureLink = vi.spyOn(ctl.links, "ensureLink").mockResolvedValue();
    const n = { src: "10.10.0.1", dst: "10.10.0.2", proto: 1, length: 84 };
    notify(ctl, "packet.unmapped", n);
    await vi.waitFor(() => expect(onPacketUnmapped).toHaveBeenCalledWith(n, ctl));
    expect(ensureLink).toHaveBeenCalledWith(
      { uid: bob.tincan.uid, bareJid: bob.bareJid, fullJid: bob.fullJid },
      { pinned: false },
    );
  });

  it("a presence burst reaches the policy as one onPeersOnline; a later presence as another", async () => {
    const onPeersOnline = vi.fn();
    const onPeerOnline = vi.fn();
    const ctl = controller({ ...base, onPeersOnline, onPeerOnline });
    const peers = ["10.10.0.2", "10.10.0.3", "10.10.0.4", "10.10.0.5"].map((a) => member(a));
    ctl.admission.setRoster(
      peers.map((m) => ({ jid: m.bareJid, subscription: "both" as const, groups: [] })),
    );
    const online = vi.spyOn(ctl.xmpp, "peers").mockReturnValue([]);
    // A login: the server's presence stanzas come back to back.
    for (let i = 0; i < 3; i++) {
      online.mockReturnValue(peers.slice(0, i + 1));
      ctl.xmpp.emit("peer-online", peers[i]);
    }
    await vi.waitFor(() => expect(onPeersOnline).toHaveBeenCalledTimes(1));
    expect(onPeersOnline.mock.calls[0]?.[0].map((m: Member) => m.bareJid)).toEqual(
      peers.slice(0, 3).map((m) => m.bareJid),
    );
    online.mockReturnValue(peers);
    ctl.xmpp.emit("peer-online", peers[3]);
    await vi.waitFor(() => expect(onPeersOnline).toHaveBeenCalledTimes(2));
    expect(onPeersOnline.mock.calls[1]?.[0].map((m: Member) => m.bareJid)).toEqual([peers[3]?.bareJid]);
    expect(onPeerOnline).not.toHaveBeenCalled();
    await ctl.stop();
  });

  it("without onPeersOnline, each member of a burst gets its onPeerOnline", async () => {
    const onPeerOnline = vi.fn();
    const ctl = controller({ ...base, onPeerOnline });
    const peers = ["10.10.0.2", "10.10.0.3"].map((a) => member(a));
    ctl.admission.setRoster(
      peers.map((m) => ({ jid: m.bareJid, subscription: "both" as const, groups: [] })),
    );
    vi.spyOn(ctl.xmpp, "peers").mockReturnValue(peers);
    for (const m of peers) ctl.xmpp.emit("peer-online", m);
    await vi.waitFor(() => expect(onPeerOnline).toHaveBeenCalledTimes(2));
    await ctl.stop();
  });

  it("a hook that throws is logged, not thrown past the controller", async () => {
    const onIccMessage = vi.fn(() => {
      throw new Error("policy bug");
    });
    const ctl = controller({ ...base, onIccMessage });
    const error = vi.spyOn(ctl.log, "error");
    notify(ctl, "icc.message", { peerUid: bob.tincan.uid, data: {} });
    await vi.waitFor(() => expect(error).toHaveBeenCalledWith("policy hook failed", expect.anything()));
    expect(onIccMessage).toHaveBeenCalledWith({ peerUid: bob.tincan.uid, data: {} }, ctl);
  });
});
