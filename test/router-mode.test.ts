// Router mode (GroupVPN): a member carries a LAN for the group. Real prosody (the VPN group and
// a router group), a router member with a LAN of two hosts behind it (a host sharing its container
// bridge), a remote member that accepts routes, and a member outside the router group that
// advertises a prefix and forges sources.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Host, Lab } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

interface RouterStatus {
  advertised: string[];
  accepted: { prefix: string; jid: string }[];
  ignored: { prefix: string; jid: string; reason: string }[];
}

async function routerStatus(node: VpnNode): Promise<RouterStatus | undefined> {
  return ((await node.status()).controller as { routes?: RouterStatus } | null)?.routes;
}

async function vnicTxPackets(node: VpnNode): Promise<number> {
  const out = await node.host.run(["cat", "/sys/class/net/tincan0/statistics/tx_packets"]);
  return Number(out.trim());
}

function count(text: string, what: string): number {
  return text.split(what).length - 1;
}

describe.skipIf(!can.ok)("GroupVPN router mode: a LAN behind a member", () => {
  let lab: Lab;
  let rt: VpnNode;
  let alice: VpnNode;
  let carol: VpnNode;
  let lan: Host[];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "rtr" });
    const names = ["rt", "alice", "carol"];
    // alice is in the router group only so that her roster shows who is in it (mod_groups shows a
    // group to its own members); she advertises nothing. carol is not in it.
    const prosody = await lab.startProsody({
      users: labUsers(names),
      groups: { lab: names, routers: ["rt", "alice"] },
    });
    [rt, alice, carol] = (await addGroupNodes(lab, prosody, names, "10.10.9")) as [VpnNode, VpnNode, VpnNode];
    lan = await lab.addLan(rt.host, ["lana", "lanb"]);
    const lanN = lan[0]!.ip.split(".")[2];
    rt.opts.ipv6 = "fd50::1/64";
    alice.opts.ipv6 = "fd50::2/64";
    carol.opts.ipv6 = "fd50::3/64";
    rt.opts.extra = {
      routes: { advertise: [`192.168.${lanN}.0/24`, `fd00:${lanN}::/64`], routerGroup: "routers" },
    };
    alice.opts.extra = { routes: { routerGroup: "routers", accept: true } };
    carol.opts.extra = { routes: { advertise: ["192.168.60.0/24"], routerGroup: "routers", accept: true } };
    await Promise.all([rt, alice, carol].map((n) => n.start()));
  });

  afterAll(async () => {
    for (const n of [rt, alice, carol]) await n?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("a remote member reaches both LAN hosts by their LAN addresses (IPv4 and IPv6); replies return", async () => {
    const [lana, lanb] = lan as [Host, Host];
    const lanN = lana.ip.split(".")[2];
    const targets = [lana.ip, lanb.ip, `fd00:${lanN}::2`, `fd00:${lanN}::3`];
    const t0 = Date.now();
    for (const ip of targets) {
      await waitFor(`alice pings ${ip}`, async () => (await alice.ping(ip, 1, 2)).code === 0, 30_000);
    }
    console.log(`router mode: alice reached 4 LAN addresses ${Date.now() - t0} ms after start`);
    const r = await alice.ping(lanb.ip, 10, 2);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/10 received/);
    // The kernel routes are the datapath's, on the vNIC.
    const routes = await alice.host.run(["ip", "route", "show", `192.168.${lanN}.0/24`]);
    expect(routes).toMatch(/dev tincan0/);
    expect(await alice.host.run(["ip", "-6", "route", "show", `fd00:${lanN}::/64`])).toMatch(/dev tincan0/);
  });

  it("tincanctl status shows advertised and accepted routes", async () => {
    const lanN = lan[0]!.ip.split(".")[2];
    expect((await routerStatus(rt))?.advertised).toEqual([`192.168.${lanN}.0/24`, `fd00:${lanN}::/64`]);
    const accepted = (await routerStatus(alice))?.accepted ?? [];
    expect(accepted.map((a) => a.prefix).sort()).toEqual(
      [`192.168.${lanN}.0/24`, `fd00:${lanN}::/64`].sort(),
    );
    expect(accepted.every((a) => a.jid === "rt@lab.local")).toBe(true);
    const dpRoutes = (await alice.status()).routes as { prefix: string; kernel?: boolean }[];
    expect(dpRoutes.find((r) => r.prefix === `192.168.${lanN}.0/24`)?.kernel).toBe(true);
  });

  it("traffic between the two LAN hosts never reaches the router's vNIC", async () => {
    const [lana, lanb] = lan as [Host, Host];
    const before = await vnicTxPackets(rt);
    const r = await lana.exec(["ping", "-c", "20", "-i", "0.05", "-W", "2", lanb.ip]);
    expect(r.code, r.stdout).toBe(0);
    const after = await vnicTxPackets(rt);
    console.log(`router mode: 20 LAN-local pings, router vNIC tx packets +${after - before}`);
    expect(after - before).toBeLessThan(5);
  });

  it("a member outside the router group advertising a prefix is ignored, logged once, nothing routed", async () => {
    await waitFor(
      "alice lists carol's prefix as ignored",
      async () => ((await routerStatus(alice))?.ignored ?? []).some((i) => i.jid === "carol@lab.local"),
      20_000,
    );
    const ignored = (await routerStatus(alice))?.ignored.find((i) => i.jid === "carol@lab.local");
    expect(ignored).toMatchObject({ prefix: "192.168.60.0/24", reason: 'not in the router group "routers"' });
    expect(await alice.host.run(["ip", "route", "show", "192.168.60.0/24"])).toBe("");
    const dpRoutes = (await alice.status()).routes as { prefix: string }[];
    expect(dpRoutes.map((r) => r.prefix)).not.toContain("192.168.60.0/24");
    // carol logs in again (a new presence): still logged once.
    await carol.controller.stop(5000);
    await carol.startController();
    await waitFor("alice sees carol again", async () =>
      ((await routerStatus(alice))?.ignored ?? []).some((i) => i.jid === "carol@lab.local"),
    );
    const log = alice.controller.log();
    expect(count(log, "ignored an advertised prefix")).toBe(1);
  });

  it("a member forging a source inside the router's prefix is dropped at the receiver and counted", async () => {
    const lanN = lan[0]!.ip.split(".")[2];
    await waitFor(
      "carol pings alice",
      async () => (await carol.ping(alice.address, 1, 2)).code === 0,
      30_000,
    );
    const forged = `192.168.${lanN}.99`;
    await carol.host.run(["ip", "addr", "add", `${forged}/32`, "dev", "tincan0"]);
    const r = await carol.host.exec(["ping", "-c", "5", "-i", "0.2", "-W", "1", "-I", forged, alice.address]);
    expect(r.stdout).toMatch(/ 0 received/);
    const carolUid = (await carol.status()).vnic as { uid: string };
    const link = (await alice.links()).find((l) => l.peerUid === carolUid.uid) as
      | { drops: Record<string, number> }
      | undefined;
    console.log(`router mode: forged-source pings dropped at alice as spoofed: ${link?.drops.spoofed}`);
    expect(link?.drops.spoofed ?? 0).toBeGreaterThanOrEqual(5);
  });

  it("the router leaving takes its routes from the accepting member (kernel routes too)", async () => {
    const lanN = lan[0]!.ip.split(".")[2];
    await rt.stop();
    // The controller withdraws the prefixes one after the other: wait for both kernel routes.
    await waitFor(
      "alice removes the LAN routes",
      async () =>
        (await alice.host.run(["ip", "route", "show", `192.168.${lanN}.0/24`])) === "" &&
        (await alice.host.run(["ip", "-6", "route", "show", `fd00:${lanN}::/64`])) === "",
      60_000,
    );
    // The status file follows the routes (it is written after them): wait for it too.
    await waitFor(
      "alice's status without the LAN",
      async () => (await routerStatus(alice))?.accepted.length === 0,
      15_000,
    );
  });
});
