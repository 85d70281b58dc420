import type { Member, PolicyContext, RosterItem } from "@tincan/controller";
import { uidForIpv4 } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { RouterRoutes } from "./router.js";

function member(name: string, ipv4: string, routes?: string[]): Member {
  return {
    bareJid: `${name}@lab`,
    fullJid: `${name}@lab/r`,
    tincan: { uid: uidForIpv4(ipv4), ipv4, ...(routes ? { routes } : {}) },
  } as Member;
}

const item = (name: string, groups: string[]): RosterItem => ({
  jid: `${name}@lab`,
  subscription: "both",
  groups,
});

function context(members: Member[]) {
  const routes = new Map<string, { prefix: string; peerUid: string; kernel?: boolean }>();
  const warnings: unknown[] = [];
  const calls: [string, unknown][] = [];
  const links: [string, boolean][] = [];
  const ctx = {
    log: { info: () => {}, debug: () => {}, error: () => {}, warn: (...a: unknown[]) => warnings.push(a) },
    datapath: { call: async (method: string, params: unknown) => void calls.push([method, params]) },
    ensureLink: async (m: Member, o: { pinned: boolean }) => void links.push([m.bareJid, o.pinned]),
    peers: () => members,
    setRoute: async (r: { prefix: string; peerUid: string; kernel?: boolean }) =>
      void routes.set(r.prefix, r),
    removeRoute: async (prefix: string) => void routes.delete(prefix),
  } as unknown as PolicyContext;
  return { ctx, routes, warnings, calls, links };
}

function router(accept = true, exitNode?: string, carry = false) {
  return new RouterRoutes(
    {
      vnic: { name: "tincan0", ipv4: "10.10.0.1/16", mtu: 1280 },
      routes: {
        advertise: ["192.168.7.0/24"],
        routerGroup: "routers",
        accept,
        ...(exitNode ? { exitNode } : {}),
      },
    },
    uidForIpv4("10.10.0.1"),
    ["127.0.0.1"],
    carry,
  );
}

describe("RouterRoutes", () => {
  const gw = member("gw", "10.10.0.2", ["192.168.50.0/24", "fd00:50::/64"]);
  const eve = member("eve", "10.10.0.3", ["192.168.60.0/24"]);

  it("routes a router's prefixes to it with kernel routes, and withdraws them when it goes", async () => {
    const r = router();
    const { ctx, routes } = context([gw]);
    r.noteRosterItem(item("gw", ["lab", "routers"]));
    await r.peerOnline(gw, ctx);
    expect([...routes.values()]).toEqual([
      { prefix: "192.168.50.0/24", peerUid: gw.tincan.uid, kernel: true },
      { prefix: "fd00:50::/64", peerUid: gw.tincan.uid, kernel: true },
    ]);
    expect(r.status().accepted).toEqual([
      { prefix: "192.168.50.0/24", jid: "gw@lab" },
      { prefix: "fd00:50::/64", jid: "gw@lab" },
    ]);
    await r.peerOnline(member("gw", "10.10.0.2", ["192.168.50.0/24"]), ctx);
    expect([...routes.keys()]).toEqual(["192.168.50.0/24"]);
    await r.peerOffline(gw, ctx);
    expect(routes.size).toBe(0);
  });

  it("ignores a member outside the router group, logging once across presences", async () => {
    const r = router();
    const { ctx, routes, warnings } = context([eve]);
    r.noteRosterItem(item("eve", ["lab"]));
    for (let i = 0; i < 3; i++) {
      await r.peerOnline(eve, ctx);
      await r.peerOffline(eve, ctx);
    }
    await r.peerOnline(eve, ctx);
    expect(routes.size).toBe(0);
    expect(warnings).toHaveLength(1);
    expect(r.status().ignored).toEqual([
      { prefix: "192.168.60.0/24", jid: "eve@lab", reason: 'not in the router group "routers"' },
    ]);
  });

  it("a member that joins the router group gets its routes; one that leaves it loses them", async () => {
    const r = router();
    const { ctx, routes } = context([eve]);
    r.noteRosterItem(item("eve", ["lab"]));
    await r.peerOnline(eve, ctx);
    await r.rosterChanged([item("eve", ["lab", "routers"])], ctx);
    expect([...routes.keys()]).toEqual(["192.168.60.0/24"]);
    await r.rosterChanged([item("eve", ["lab"])], ctx);
    expect(routes.size).toBe(0);
  });

  it("refuses overlaps with our own prefixes and with another router's, the default route, and all when accept is off", async () => {
    const r = router();
    const other = member("gw2", "10.10.0.4", [
      "192.168.50.128/25",
      "192.168.7.0/25",
      "10.10.5.0/24",
      "0.0.0.0/0",
    ]);
    const { ctx, routes } = context([gw, other]);
    for (const n of ["gw", "gw2"]) r.noteRosterItem(item(n, ["routers"]));
    await r.peerOnline(gw, ctx);
    await r.peerOnline(other, ctx);
    expect([...routes.values()].every((x) => x.peerUid === gw.tincan.uid)).toBe(true);
    expect(r.status().ignored.map((i) => i.reason)).toEqual([
      "overlaps 192.168.50.0/24, routed to gw@lab",
      "overlaps our own 192.168.7.0/24",
      "overlaps our own 10.10.0.0/16",
      "a default route: routes.exitNode does not name this router",
    ]);
    const off = router(false);
    const c2 = context([gw]);
    off.noteRosterItem(item("gw", ["routers"]));
    await off.peerOnline(gw, c2.ctx);
    expect(c2.routes.size).toBe(0);
    expect(c2.warnings).toHaveLength(0);
  });

  it("exit node: routes the default route of the named router in the datapath only, uses it, links at once; withdraws it when it goes", async () => {
    const exit = member("ex", "10.10.0.5", ["0.0.0.0/0", "::/0", "192.168.70.0/24"]);
    const r = router(true, "ex@lab");
    const online = [exit];
    const { ctx, routes, calls, links, warnings } = context(online);
    r.noteRosterItem(item("ex", ["routers"]));
    await r.peerOnline(exit, ctx);
    expect(routes.get("0.0.0.0/0")).toEqual({ prefix: "0.0.0.0/0", peerUid: exit.tincan.uid });
    expect(routes.get("::/0")).toEqual({ prefix: "::/0", peerUid: exit.tincan.uid });
    expect(routes.get("192.168.70.0/24")?.kernel).toBe(true); // not refused as overlapping the default
    expect(calls).toEqual([["exit.use", { peerUid: exit.tincan.uid, bypass: ["127.0.0.1"] }]]);
    expect(links).toEqual([["ex@lab", true]]);
    expect(r.status().exitNode).toEqual({ jid: "ex@lab", state: "in use" });
    await r.peerOnline(exit, ctx); // the same presence again: nothing new
    expect(calls).toHaveLength(1);
    online.pop();
    await r.peerOffline(exit, ctx);
    expect(routes.size).toBe(0);
    expect(calls[1]).toEqual(["exit.use", { peerUid: null, bypass: [] }]);
    expect(r.status().exitNode).toEqual({ jid: "ex@lab", state: "waiting", reason: "not online" });
    expect(warnings).toHaveLength(0);
  });

  it("exit node: another router's default route is not taken; naming a non-router is refused, logged once", async () => {
    const exit = member("ex", "10.10.0.5", ["0.0.0.0/0"]);
    const r = router(true, "eve@lab");
    const { ctx, routes, calls, warnings } = context([exit, eve]);
    r.noteRosterItem(item("ex", ["routers"]));
    r.noteRosterItem(item("eve", ["lab"]));
    await r.peerOnline(exit, ctx);
    expect(routes.size).toBe(0);
    for (let i = 0; i < 3; i++) await r.peerOnline(eve, ctx);
    expect(routes.size).toBe(0);
    expect(calls).toEqual([]);
    expect(r.status().exitNode).toEqual({
      jid: "eve@lab",
      state: "refused",
      reason: "routes.exitNode names a member that is not a router",
    });
    // one for eve's prefix (not a router), one for the exit node naming her
    expect(warnings).toHaveLength(2);
  });

  it("an exit node advertising the default route still takes other routers' prefixes", async () => {
    const r = new RouterRoutes(
      {
        vnic: { name: "tincan0", ipv4: "10.10.0.1/16", mtu: 1280 },
        routes: { advertise: ["0.0.0.0/0"], routerGroup: "routers", accept: true },
      },
      uidForIpv4("10.10.0.1"),
    );
    const { ctx, routes } = context([gw]);
    r.noteRosterItem(item("gw", ["routers"]));
    await r.peerOnline(gw, ctx);
    expect([...routes.keys()]).toEqual(["192.168.50.0/24", "fd00:50::/64"]);
  });

  it("sets routes to our own UID for the prefixes we advertise", async () => {
    const r = router();
    const { ctx, routes } = context([]);
    const { calls } = context([]);
    await r.start({
      ...ctx,
      datapath: { call: async (m: string, p: unknown) => void calls.push([m, p]) },
    } as never);
    expect(calls).toEqual([
      ["exit.serve", { on: false }],
      ["exit.use", { peerUid: null, bypass: [] }],
    ]);
    expect([...routes.values()]).toEqual([{ prefix: "192.168.7.0/24", peerUid: uidForIpv4("10.10.0.1") }]);
    expect(r.advertised()).toEqual(["192.168.7.0/24"]);
  });

  it("structured (carry): a router's prefixes it does not accept get transit-only routes, withdrawn alike", async () => {
    const r = router(false, undefined, true);
    const { ctx, routes } = context([gw, eve]);
    r.noteRosterItem(item("gw", ["lab", "routers"]));
    r.noteRosterItem(item("eve", ["lab"]));
    await r.peerOnline(gw, ctx);
    await r.peerOnline(eve, ctx);
    expect([...routes.values()]).toEqual([
      { prefix: "192.168.50.0/24", peerUid: gw.tincan.uid, transit: true },
      { prefix: "fd00:50::/64", peerUid: gw.tincan.uid, transit: true },
    ]);
    expect(r.status().accepted).toEqual([]);
    expect(r.prefixesBehind(gw.tincan.uid)).toEqual(["192.168.50.0/24", "fd00:50::/64"]);
    expect(r.routerOf("192.168.50.9")).toBe(gw.tincan.uid);
    expect(r.routerOf("192.168.60.9")).toBeUndefined(); // eve is no router
    await r.peerOffline(gw, ctx);
    expect(routes.size).toBe(0);
  });
});
