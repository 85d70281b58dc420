// Router mode, exit node (GroupVPN): a member behind NAT sends all its traffic through a router
// that advertises the default route; an "internet" host (a LAN behind the exit, not advertised)
// is reachable only through it. Real prosody (the VPN group and a router group); a member outside
// the router group that advertises the default route too.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Host, Lab } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";
import { EXIT_TABLE, labUsers, VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

interface ExitStatus {
  jid: string;
  state: string;
  reason?: string;
}

async function controllerStatus(node: VpnNode) {
  return (await node.status()).controller as {
    xmpp?: { online: boolean };
    routes?: { ignored: { prefix: string; jid: string; reason: string }[]; exitNode?: ExitStatus };
  } | null;
}

/**
 * What the exit node changes in the kernel, as text (iptables counters left out); without
 * `mainRoutes`, only what is the exit node's alone (the main table changes with the vNIC).
 */
async function kernelState(host: Host, mainRoutes = true): Promise<string> {
  const parts: string[] = [];
  const main = [
    ["ip", "route"],
    ["ip", "-6", "route"],
  ];
  for (const argv of [
    ["ip", "rule"],
    ["ip", "-6", "rule"],
    ...(mainRoutes ? main : []),
    ["ip", "route", "show", "table", EXIT_TABLE],
    ["ip", "-6", "route", "show", "table", EXIT_TABLE],
    ["iptables-save"],
    ["ip6tables-save"],
    ["sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"],
  ]) {
    const r = await host.exec(argv);
    // iptables-save: the rules and our own chains (an empty table it lists once used is no state).
    const iptables = argv[0]?.endsWith("-save");
    const out = r.stdout
      .split("\n")
      .filter((l) => !iptables || l.startsWith("-A") || /^:\S+ - /.test(l))
      .join("\n");
    // stderr left out: "FIB table does not exist" before, an empty table after (the kernel keeps it).
    parts.push(`$ ${argv.join(" ")}\n${out}`);
  }
  return parts.join("\n");
}

describe.skipIf(!can.ok)("GroupVPN exit node: all traffic of a member through a router", () => {
  let lab: Lab;
  let ex: VpnNode;
  let me: VpnNode;
  let nr: VpnNode;
  let www: Host;
  let wwwV6: string;
  let exBefore: string;
  let meBefore: string;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "rtx" });
    const names = ["ex", "me", "nr"];
    // me is in the router group only so that its roster shows who is in it; nr is not in it.
    const prosody = await lab.startProsody({
      users: labUsers(names),
      groups: { lab: names, routers: ["ex", "me"] },
    });
    const exHost = await lab.addHost("ex");
    const meHost = await lab.addHost("me", { nat: "masquerade" });
    const nrHost = await lab.addHost("nr");
    [www] = (await lab.addLan(exHost, ["www"])) as [Host];
    wwwV6 = `fd00:${www.ip.split(".")[2]}::2`;
    exBefore = await kernelState(exHost);
    const node = (host: Host, user: string, n: number, routes: Record<string, unknown>) =>
      new VpnNode(lab, host, {
        user,
        ipv4: `10.10.11.${n}/16`,
        ipv6: `fd50::${n}/64`,
        prosody,
        extra: { routes: { routerGroup: "routers", ...routes } },
      });
    ex = node(exHost, "ex", 1, { advertise: ["0.0.0.0/0", "::/0"] });
    // First the bad input: exitNode names nr, a member outside the router group.
    me = node(meHost, "me", 2, { accept: true, exitNode: "nr@lab.local" });
    nr = node(nrHost, "nr", 3, { advertise: ["0.0.0.0/0"] });
    await Promise.all([ex, me, nr].map((n) => n.start()));
  });

  afterAll(async () => {
    for (const n of [ex, me, nr]) await n?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("exitNode naming a non-router: refused, logged once, nothing routed; its default route ignored", async () => {
    await waitFor(
      "me refuses nr as exit node",
      async () => (await controllerStatus(me))?.routes?.exitNode?.state === "refused",
      30_000,
    );
    expect((await controllerStatus(me))?.routes?.exitNode).toEqual({
      jid: "nr@lab.local",
      state: "refused",
      reason: "routes.exitNode names a member that is not a router",
    });
    const ignored = (await controllerStatus(me))?.routes?.ignored.find((i) => i.jid === "nr@lab.local");
    expect(ignored).toMatchObject({ prefix: "0.0.0.0/0", reason: 'not in the router group "routers"' });
    // nr logs in again (a new presence): still logged once.
    await nr.controller.stop(5000);
    await nr.startController();
    await waitFor("me sees nr again", async () =>
      ((await controllerStatus(me))?.routes?.ignored ?? []).some((i) => i.jid === "nr@lab.local"),
    );
    expect(me.controller.log().match(/routes\.exitNode refused/g)).toHaveLength(1);
    expect(me.controller.log().match(/ignored an advertised prefix/g)).toHaveLength(1);
    expect(await me.host.run(["ip", "rule"])).not.toMatch(EXIT_TABLE);
    const dpRoutes = (await me.status()).routes as { prefix: string }[];
    expect(dpRoutes.map((r) => r.prefix)).not.toContain("0.0.0.0/0");
    // The internet host is beyond the exit node: unreachable without it.
    expect((await me.ping(www.ip, 1, 1)).code).not.toBe(0);
    meBefore = await kernelState(me.host);
  });

  it("with exitNode set, the member reaches the internet host through the exit; XMPP and the link keep working", async () => {
    me.opts.extra = { routes: { routerGroup: "routers", accept: true, exitNode: "ex@lab.local" } };
    me.writeConfig();
    await me.controller.stop(5000);
    const t0 = Date.now();
    await me.startController();
    await waitFor("me reaches www through ex", async () => (await me.ping(www.ip, 1, 1)).code === 0, 60_000);
    console.log(
      `exit node: member reached the internet host ${Date.now() - t0} ms after its controller start`,
    );
    const r = await me.ping(www.ip, 20, 2);
    expect(r.code, r.stdout).toBe(0);
    console.log(`exit node: 20 pings to the internet host: ${r.stdout.match(/\d+% packet loss/)?.[0]}`);
    const r6 = await me.ping(wwwV6, 5, 2);
    expect(r6.code, r6.stdout).toBe(0);
    // Everything goes to the vNIC, except the XMPP server and the exit's underlay address.
    expect(await me.host.run(["ip", "route", "get", "100.64.0.200"])).toMatch(/dev tincan0/);
    expect(await me.host.run(["ip", "route", "get", "100.64.0.1"])).not.toMatch(/tincan0/);
    expect(await me.host.run(["ip", "route", "get", ex.host.ip])).not.toMatch(/tincan0/);
    // The XMPP server answers directly and the session stays online; the link stays up.
    const px = await me.ping("100.64.0.1", 5, 2);
    expect(px.code, px.stdout).toBe(0);
    const status = await controllerStatus(me);
    expect(status?.xmpp?.online).toBe(true);
    expect(status?.routes?.exitNode).toEqual({ jid: "ex@lab.local", state: "in use" });
    const exUid = ((await ex.status()).vnic as { uid: string }).uid;
    expect(await me.connectedTo(exUid)).toBeDefined();
    const text = await me.host.run([
      "node",
      `${REPO}/packages/controller/dist/tincanctl.js`,
      "status",
      "--token-file",
      me.tokenFile,
    ]);
    expect(text).toMatch(/exit node: ex@lab\.local in use/);
    // The exit masquerades the overlay out of its uplinks.
    expect(await ex.host.run(["iptables-save", "-t", "nat"])).toMatch(
      /-s 10\.10\.0\.0\/16 ! -o tincan0 .*MASQUERADE/,
    );
  });

  it("the exit node dying gives the member its normal routing back; both sides as before", async () => {
    const exUid = ((await ex.status()).vnic as { uid: string }).uid;
    expect(await me.connectedTo(exUid)).toBeDefined();
    const t0 = Date.now();
    await ex.stop(); // SIGTERM to controller and datapath: their processes end
    await waitFor(
      "me's policy routing is gone",
      async () => !(await me.host.run(["ip", "rule"])).includes(EXIT_TABLE),
      90_000,
    );
    console.log(`exit node: member's routing back to normal ${Date.now() - t0} ms after the exit node died`);
    await waitFor(
      "me's kernel state as before",
      async () => (await kernelState(me.host)) === meBefore,
      30_000,
    ).catch(() => {}); // the expect below shows what differs
    expect(await kernelState(me.host)).toBe(meBefore);
    expect(await kernelState(ex.host)).toBe(exBefore);
    expect((await me.ping("100.64.0.1", 3, 2)).code).toBe(0);
    expect((await controllerStatus(me))?.xmpp?.online).toBe(true);
  });

  it("rules a killed datapath left behind (SIGKILL) are removed when it starts again", async () => {
    const exExit = await kernelState(ex.host, false);
    const meExit = await kernelState(me.host, false);
    await ex.start();
    await waitFor(
      "me uses ex again",
      async () =>
        (await controllerStatus(me))?.routes?.exitNode?.state === "in use" &&
        (await me.host.run(["ip", "rule"])).includes(EXIT_TABLE),
      60_000,
    );
    for (const n of [me, ex]) {
      n.tincan.signal("SIGKILL");
      await n.tincan.wait();
      await n.controller.stop(5000);
    }
    expect(await me.host.run(["ip", "rule"])).toMatch(EXIT_TABLE);
    expect(await ex.host.run(["iptables-save", "-t", "nat"])).toMatch(/MASQUERADE/);
    // Started again without an exit node: the datapaths remove the leftovers at the first exit.* call.
    me.opts.extra = { routes: { routerGroup: "routers", accept: true } };
    ex.opts.extra = { routes: { routerGroup: "routers" } };
    await Promise.all([me.start(), ex.start()]);
    await waitFor(
      "the leftovers are gone",
      async () => (await kernelState(me.host, false)) === meExit,
      30_000,
    ).catch(() => {});
    expect(await kernelState(me.host, false)).toBe(meExit);
    expect(await kernelState(ex.host, false)).toBe(exExit);
    expect(me.tincan.log()).toMatch(/removed rules an earlier datapath left behind/);
  });
});
