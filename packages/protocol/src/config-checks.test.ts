import { describe, expect, it } from "vitest";
import { describeIssues, GroupVpnConfig, isNetworkOrBroadcast, SocialVpnConfig } from "./index.js";

const base = {
  xmpp: { service: "xmpp://x.example:5222", domain: "example.org", username: "a", password: "p" },
  vnic: { ipv4: "10.10.0.5/16" },
};

function problems(schema: typeof GroupVpnConfig | typeof SocialVpnConfig, config: unknown): string {
  const r = schema.safeParse(config);
  return r.success ? "" : describeIssues(r.error);
}

describe("isNetworkOrBroadcast", () => {
  it("is true for the first and last address of /30 and wider, never for /31 or /32", () => {
    expect(
      ["10.10.0.0/16", "10.10.255.255/16", "192.168.1.4/30", "192.168.1.7/30"].map(isNetworkOrBroadcast),
    ).toEqual([true, true, true, true]);
    expect(
      ["10.10.0.1/16", "10.10.255.254/16", "192.168.1.5/30", "10.0.0.0/31", "10.0.0.1/32"].map(
        isNetworkOrBroadcast,
      ),
    ).toEqual([false, false, false, false, false]);
  });
});

describe("GroupVPN config checks", () => {
  it("accepts a host address of the subnet", () => {
    expect(problems(GroupVpnConfig, { ...base, group: "lab" })).toBe("");
  });

  it("refuses the network or broadcast address as the own address", () => {
    for (const ipv4 of ["10.10.0.0/16", "10.10.255.255/16"]) {
      expect(problems(GroupVpnConfig, { ...base, group: "lab", vnic: { ipv4 } })).toBe(
        "vnic.ipv4: the own address must not be the network or broadcast address of the subnet",
      );
    }
  });

  it("router mode: advertised prefixes are networks, overlap nothing, need a router group; a router may advertise the default route; exitNode needs accept", () => {
    const routes = (r: unknown) => problems(GroupVpnConfig, { ...base, group: "lab", routes: r });
    expect(routes({ advertise: ["192.168.5.0/24", "fd00:5::/64"], routerGroup: "r" })).toBe("");
    expect(routes({ advertise: ["192.168.5.0/24"] })).toBe(
      "routes.advertise: needs routes.routerGroup (only members of the router group may advertise)",
    );
    expect(routes({ advertise: ["192.168.5.1/24"], routerGroup: "r" })).toBe(
      "routes.advertise.0: host bits set: the network is 192.168.5.0/24",
    );
    expect(routes({ advertise: ["192.168.5.0/24", "192.168.5.128/25"], routerGroup: "r" })).toBe(
      "routes.advertise.1: overlaps 192.168.5.0/24",
    );
    expect(routes({ advertise: ["10.10.7.0/24"], routerGroup: "r" })).toBe(
      "routes.advertise.0: overlaps the overlay subnet 10.10.0.5/16",
    );
    // A router may advertise the default route (an exit node), beside its LAN.
    expect(routes({ advertise: ["0.0.0.0/0", "::/0", "192.168.5.0/24"], routerGroup: "r" })).toBe("");
    expect(routes({ advertise: ["0.0.0.0/0"] })).toBe(
      "routes.advertise: needs routes.routerGroup (only members of the router group may advertise)",
    );
    expect(routes({ exitNode: "gw@lab", routerGroup: "r" })).toBe(
      "routes.exitNode: needs routes.accept: true (an exit node's default route is an accepted route)",
    );
    expect(routes({ exitNode: "gw@lab", routerGroup: "r", accept: true })).toBe("");
    expect(routes({ exitNode: "not a jid", accept: true })).toMatch(/^routes.exitNode: must be a bare JID/);
    expect(routes({ advertise: ["300.1.1.0/24"], routerGroup: "r" })).toMatch(/^routes.advertise.0: /);
  });

  it("refuses a host name in the datapath RPC address", () => {
    expect(
      problems(GroupVpnConfig, { ...base, group: "lab", datapath: { rpc: "127.x.example:5800" } }),
    ).toMatch(/^datapath\.rpc: must be "ip:port" with an IPv4 address, not a host name/);
  });
});

describe("SocialVPN *.listen", () => {
  it("refuses a host name in dns.listen and accepts an address", () => {
    const svpn = { ...base, vnic: { ipv4: "172.31.0.1/16" } };
    expect(problems(SocialVpnConfig, { ...svpn, dns: { listen: "localhost:5353" } })).toBe(
      'dns.listen: must be "ip:port" with an IPv4 address, not a host name',
    );
    expect(problems(SocialVpnConfig, { ...svpn, dns: { listen: "127.0.0.53:5353" } })).toBe("");
  });
});

describe("web.listen (the overlay map)", () => {
  it("is off by default and accepts a loopback address", () => {
    const parsed = GroupVpnConfig.parse({ ...base, group: "lab" });
    expect(parsed.web.listen).toBeUndefined();
    const on = { ...base, group: "lab", web: { listen: "127.0.0.1:9481" } };
    expect(problems(GroupVpnConfig, on)).toBe("");
    expect(problems(SocialVpnConfig, { ...base, web: { listen: "127.0.0.2:9481" } })).toBe("");
  });

  it("refuses an address that is not loopback, a host name, or a bad port", () => {
    for (const listen of ["0.0.0.0:9481", "10.0.0.1:9481", "localhost:9481", "127.0.0.1:0", "127.0.0.1"]) {
      expect(problems(GroupVpnConfig, { ...base, group: "lab", web: { listen } })).toMatch(/web\.listen/);
    }
    expect(problems(GroupVpnConfig, { ...base, group: "lab", web: { listen: "0.0.0.0:9481" } })).toMatch(
      /127\.0\.0\.0\/8/,
    );
  });
});
