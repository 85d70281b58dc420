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
  const ctx = {
    log: { info: () => {}, debug: () => {}, error: () => {}, warn: (...a: unknown[]) => warnings.push(a) },
    peers: () => members,
    setRoute: async (r: { prefix: string; peerUid: string; kernel?: boolean }) =>
      void routes.set(r.prefix, r),
    removeRoute: async (prefix: string) => void routes.delete(prefix),
  } as unknown as PolicyContext;
  return { ctx, routes, warnings };
}

function router(accept = true) {
  return new RouterRoutes(
    {
      vnic: { name: "tincan0", ipv4: "10.10.0.1/16", mtu: 1280 },
      routes: { advertise: ["192.168.7.0/24"], routerGroup: "routers", accept },
    },
    uidForIpv4("10.10.0.1"),
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
      "the default route (exit node) is not supported",
    ]);
    const off = router(false);
    const c2 = context([gw]);
    off.noteRosterItem(item("gw", ["routers"]));
    await off.peerOnline(gw, c2.ctx);
    expect(c2.routes.size).toBe(0);
    expect(c2.warnings).toHaveLength(0);
  });

  it("sets routes to our own UID for the prefixes we advertise", async () => {
    const r = router();
    const { ctx, routes } = context([]);
    await r.start(ctx);
    expect([...routes.values()]).toEqual([{ prefix: "192.168.7.0/24", peerUid: uidForIpv4("10.10.0.1") }]);
    expect(r.advertised()).toEqual(["192.168.7.0/24"]);
  });
});
