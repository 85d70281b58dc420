// Router mode over the GroupVPN structured overlay (#18) for real: a pure ring of 5 (k = 1, no
// long-distance links, no shortcuts), a LAN of one host behind one member (the router), and a member
// two hops from it on the ring that accepts the LAN. The others do not accept it (routes.accept off):
// they carry it for others only (transit-only routes). Ping and TCP reach the LAN greedily over the
// ring, with no direct link to the router, and the LAN host reaches the member back. Then the router
// serves as an exit node for a member it is no ring neighbour of: that link stays up while idle.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Host, Lab, sleep } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import {
  addGroupNodes,
  EXIT_TABLE,
  labUsers,
  ringOf,
  type VpnNode,
  waitRingLinks,
} from "./support/vpn-node.js";

const can = Lab.canRun();
const NAMES = ["q1", "q2", "q3", "q4", "q5"];

const uidOf = (n: VpnNode) => uidForIpv4(n.address);

interface RouteRow {
  prefix: string;
  peerUid: string;
  via: string | null;
  kernel?: boolean;
  transit?: boolean;
}

async function routeFor(n: VpnNode, prefix: string): Promise<RouteRow | undefined> {
  return ((await n.status()).routes as RouteRow[]).find((r) => r.prefix === prefix);
}

describe.skipIf(!can.ok)("GroupVPN router mode over a structured ring of 5 (k = 1)", () => {
  let lab: Lab;
  let nodes: VpnNode[] = [];
  /** The nodes in ring order (by UID): the router is ring[0], the member that uses its LAN ring[2]. */
  let ring: VpnNode[] = [];
  let at: (i: number) => VpnNode;
  let lanHost: Host;
  let lan: string;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "rrt" });
    // Everyone is in the router group so that their rosters show who is a router (mod_groups shows a
    // group to its own members); only the router advertises.
    const prosody = await lab.startProsody({
      users: labUsers(NAMES),
      groups: { lab: NAMES, routers: NAMES },
    });
    nodes = await addGroupNodes(lab, prosody, NAMES, "10.10.12", {
      links: {
        policy: "structured",
        successors: 1,
        longDistance: 0,
        // No shortcut: the LAN must stay reached over the ring.
        shortcutBytesPerSec: 1_000_000_000,
        // Links of the ring as it was while members were still coming online go once idle.
        idleTimeoutSec: 15,
      },
      logLevel: "info",
      startTimeoutMs: 60_000, // a shared 2-core machine
    });
    ({ ring, at } = ringOf(nodes));
    const [router, , user] = ring as [VpnNode, VpnNode, VpnNode];
    [lanHost] = (await lab.addLan(router.host, ["qlan"])) as [Host];
    lan = `${lanHost.ip.split(".").slice(0, 3).join(".")}.0/24`;
    for (const n of ring) n.opts.extra = { routes: { routerGroup: "routers" } };
    router.opts.extra = { routes: { routerGroup: "routers", advertise: [lan] } };
    user.opts.extra = { routes: { routerGroup: "routers", accept: true } };
    await Promise.all(nodes.map((n) => n.start()));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("reaches the LAN behind a router two hops away on the ring (ping, TCP), over ring links only", async () => {
    const [router, user] = [at(0), at(2)];
    const started = Date.now();
    await waitRingLinks(ring, 90_000, { only: true });
    console.log(
      `ring-route: ring of ${ring.length} with 2 links per node ${Date.now() - started} ms after start`,
    );

    await waitFor(
      "the user pings the LAN host",
      async () => (await user.ping(lanHost.ip, 1, 2)).code === 0,
      30_000,
    );
    const ping = await user.ping(lanHost.ip, 10, 2);
    expect(ping.code, ping.stdout).toBe(0);
    expect(ping.stdout).toMatch(/10 received/);
    // Greedily over the ring: no direct link, the LAN routed via a ring neighbour (kernel route kept).
    expect(await user.connectedTo(uidOf(router))).toBeUndefined();
    const route = await routeFor(user, lan);
    expect(route).toMatchObject({ peerUid: uidOf(router), kernel: true });
    expect([uidOf(at(1)), uidOf(at(3))]).toContain(route?.via);
    // The next hop does not accept the LAN (routes.accept off): it carries it, transit only.
    const next = ring.find((n) => uidOf(n) === route?.via) as VpnNode;
    expect(await routeFor(next, lan)).toMatchObject({ peerUid: uidOf(router), transit: true });
    expect(await next.host.run(["ip", "route", "show", lan])).toBe("");

    // TCP: 2 MB from the user to the LAN host and back.
    const server = lanHost.spawn("iperf3", ["-s", "-1", "-B", lanHost.ip], { name: "iperf3-s" });
    try {
      await waitFor("iperf3 server", async () =>
        (await lanHost.exec(["ss", "-ltn"])).stdout.includes(":5201"),
      );
      const tcp = await user.host.exec(["iperf3", "-c", lanHost.ip, "-n", "2M", "-J"], { timeoutMs: 60_000 });
      expect(tcp.code, tcp.stdout + tcp.stderr).toBe(0);
      const { sum_sent: sent, sum_received: received } = JSON.parse(tcp.stdout).end;
      console.log(
        `ring-route: ${user.opts.user} -> LAN ${lanHost.ip} via ${next.opts.user} (transit only): 10/10 pings (${ping.stdout.match(/rtt min\/avg\/max\/mdev = [\d./]+ ms/)?.[0]}), TCP ${sent.bytes} bytes sent, ${received.bytes} received by the end`,
      );
      expect(sent.bytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
      expect(received.bytes).toBeGreaterThan(0);
    } finally {
      await server.stop(3000);
    }
    expect(await user.connectedTo(uidOf(router))).toBeUndefined();
  });

  it("the LAN host reaches the member back over the ring", async () => {
    const user = at(2);
    const r = await lanHost.exec(["ping", "-c", "5", "-i", "0.2", "-W", "2", user.address]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/5 received/);
    console.log(`ring-route: LAN ${lanHost.ip} -> ${user.opts.user} ${user.address}: 5/5 pings`);
    expect(await user.connectedTo(uidOf(at(0)))).toBeUndefined();
  });

  it("a member whose exit node is the router keeps that link while idle, though no ring link of either wants it", async () => {
    const [router, member] = [at(0), at(3)];
    const jid = `${router.opts.user}@${router.opts.prosody.domain}`;
    router.opts.extra = { routes: { routerGroup: "routers", advertise: [lan, "0.0.0.0/0"] } };
    member.opts.extra = { routes: { routerGroup: "routers", accept: true, exitNode: jid } };
    for (const n of [router, member]) {
      n.writeConfig();
      await n.controller.stop(5000);
      await n.startController();
    }
    const exitState = async () =>
      ((await member.status()).controller as { routes?: { exitNode?: { state: string } } } | null)?.routes
        ?.exitNode?.state;
    const link = await waitFor(
      "the exit in use over a direct link",
      async () => ((await exitState()) === "in use" ? member.connectedTo(uidOf(router)) : undefined),
      60_000,
    );
    // Idle for longer than links.idleTimeoutSec (15 s) and several maintenance rounds (5 s): neither
    // end's ring wants the link (k = 1: the member's neighbours are at(2) and at(4)).
    await sleep(25_000);
    const after = await member.connectedTo(uidOf(router));
    expect(
      after?.createdAt,
      member.controller
        .log()
        .split("\n")
        .filter((l) => l.includes("trim"))
        .join("\n"),
    ).toBe(link.createdAt);
    expect(await exitState()).toBe("in use");
    expect(await member.host.run(["ip", "rule"])).toMatch(EXIT_TABLE);
    const ping = await member.ping(lanHost.ip, 3, 2);
    expect(ping.code, ping.stdout).toBe(0);
    console.log(`ring-route: exit link ${member.opts.user} -> ${router.opts.user} still up after 25 s idle`);
  });
});
