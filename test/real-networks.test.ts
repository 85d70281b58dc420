// Real networks (#15): ICE and the fast path on a fixed UDP port range (with and without UDP mux), and TURN with
// short-lived credentials derived from a coturn `static-auth-secret` (the TURN REST scheme).
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { labUsers, VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

/** UDP ports the node's datapath has open outside loopback (`ss -uanp` in its namespace). */
async function icePorts(node: VpnNode): Promise<number[]> {
  const out = await node.host.run(["ss", "-uanp"]);
  const ports = new Set<number>();
  for (const line of out.split("\n")) {
    if (!line.includes(`pid=${node.tincan.pid},`)) continue;
    const local = line.trim().split(/\s+/)[3] ?? "";
    if (local.startsWith("127.") || local.startsWith("[::1]")) continue;
    ports.add(Number(local.slice(local.lastIndexOf(":") + 1)));
  }
  return [...ports].sort((a, b) => a - b);
}

describe.skipIf(!can.ok)("real networks: ICE port range, UDP mux, TURN REST secrets", () => {
  let lab: Lab;
  const nodes: VpnNode[] = [];
  const node = (user: string) => nodes.find((n) => n.opts.user === user) as VpnNode;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "rnet" });
    const prosody = await lab.startProsody({
      users: labUsers(["alice", "bob", "carol", "dave", "erin", "frank"]),
      groups: { lab: ["alice", "bob"], relay: ["carol", "dave"], wrong: ["erin", "frank"] },
    });
    const coturn = await lab.startCoturn({ user: "unused", password: "unused", authSecret: "north-wind" });
    const proactive = { policy: "proactive" as const };
    const add = async (
      user: string,
      ipv4: string,
      group: string,
      nat: "masquerade" | "symmetric" | undefined,
      extra: Partial<ConstructorParameters<typeof VpnNode>[2]>,
    ) => {
      const host = await lab.addHost(user, nat ? { nat } : {});
      nodes.push(new VpnNode(lab, host, { user, ipv4, prosody, group, links: proactive, ...extra }));
    };
    await add("alice", "10.10.7.1/16", "lab", undefined, {
      ice: { portRange: [41000, 41009], udpMux: true },
    });
    await add("bob", "10.10.7.2/16", "lab", undefined, { ice: { portRange: [42000, 42019] } });
    await add("carol", "10.10.7.3/16", "relay", "masquerade", { coturn });
    await add("dave", "10.10.7.4/16", "relay", "symmetric", { coturn });
    const wrong = { ice: { stun: [coturn.stunUrl], turn: [{ urls: coturn.turnUrl, secret: "south-wind" }] } };
    await add("erin", "10.10.7.5/16", "wrong", "masquerade", wrong);
    await add("frank", "10.10.7.6/16", "wrong", "symmetric", wrong);
    await Promise.all(nodes.map((n) => n.start()));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("links use only ports of ice.portRange (the fast path's too); with udpMux one port carries ICE", async () => {
    const [alice, bob] = [node("alice"), node("bob")];
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 2)).code === 0, 30_000);
    // The fast path (on by default) takes the highest free port of the range.
    const onFast = async (n: VpnNode) => (await n.connectedLinks())[0]?.transport === "fast";
    await waitFor(
      "the link on the fast path",
      async () => (await onFast(alice)) && (await onFast(bob)),
      30_000,
    );
    const ping = await alice.ping(bob.address, 20, 1);
    const lost = /(\d+)% packet loss/.exec(ping.stdout)?.[1];
    const [a, b] = [await icePorts(alice), await icePorts(bob)];
    console.log(`alice (udpMux) ports ${a.join(",")}; bob ports ${b.join(",")}; 20 pings, ${lost}% lost`);
    expect(ping.code).toBe(0);
    expect(await onFast(alice)).toBe(true);
    // ICE's shared port and the fast path's.
    expect(a).toHaveLength(2);
    expect(b.length).toBeGreaterThan(1);
    expect(Math.max(...a)).toBeGreaterThanOrEqual(41008);
    expect(Math.max(...b)).toBeGreaterThanOrEqual(42018);
    for (const p of a) {
      expect(p).toBeGreaterThanOrEqual(41000);
      expect(p).toBeLessThanOrEqual(41009);
    }
    for (const p of b) {
      expect(p).toBeGreaterThanOrEqual(42000);
      expect(p).toBeLessThanOrEqual(42019);
    }
    const link = (await alice.connectedLinks())[0];
    expect(["host", "prflx", "srflx"]).toContain(link?.path); // direct (prflx when a check arrived before the candidate)
  });

  it("two NATed nodes link through coturn with credentials derived from its static-auth-secret", async () => {
    const [carol, dave] = [node("carol"), node("dave")];
    const started = Date.now();
    await waitFor("carol pings dave", async () => (await carol.ping(dave.address, 1, 2)).code === 0, 30_000);
    const links = await carol.connectedLinks();
    console.log(
      `carol -> dave pings ${Date.now() - started} ms after the test started; path ${links[0]?.path}`,
    );
    expect(links.map((l) => l.path)).toContain("relay");
  });

  it("a wrong secret gives a clear logged error and no link", async () => {
    const [erin, frank] = [node("erin"), node("frank")];
    await waitFor(
      "erin's datapath to log the refusal",
      async () => /a TURN server refused our credentials/.test(readFileSync(erin.tincan.logFile, "utf8")),
      30_000,
    );
    expect((await erin.ping(frank.address, 3, 1)).code).not.toBe(0);
    expect(await erin.connectedLinks()).toEqual([]);
  });
});
