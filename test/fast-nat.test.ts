// The fast path through NATs (#19): GroupVPN nodes behind NAT routers in the lab. Behind
// endpoint-independent NATs that change ports the fast socket's STUN-mapped address is offered and
// probed, and the link goes fast directly. Behind symmetric NATs (ICE relays the link
// through coturn) both datapaths allocate on coturn from their fast socket, bind a channel to each
// other's relayed address and the link goes fast through the relay; garbage from a third namespace
// is dropped and counted; a restarted coturn (every allocation gone) takes the link off the fast
// path, and it recovers.
import { readFileSync } from "node:fs";
import type { PeerRow } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CoturnHandle, type Host, Lab, type NatKind, type Router, sleep } from "./lab/index.js";
import { DAEMON_NODE_FLAGS, TINCAN_BIN, waitFor } from "./support/datapath-driver.js";
import { iperfTcp, pingLoss, sendUdp } from "./support/traffic.js";
import { type LinkStatus, labUsers, VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
/** carol's fast-path port, fixed so that the garbage can be aimed at it. */
const CAROL_FAST_PORT = 47001;

const tincanWithTune = (tune: Record<string, unknown>): string[] => [
  "env",
  `TINCAN_TUNE=${JSON.stringify(tune)}`,
  "node",
  ...DAEMON_NODE_FLAGS,
  TINCAN_BIN,
];

/**
 * Makes the host's NAT an endpoint-independent one that does not keep ports, as many home routers
 * are: UDP from the LAN is mapped into 20000-29999 (Linux reuses a source's mapping for every
 * destination), and unsolicited datagrams on the WAN are dropped (so an early probe from the peer
 * leaves no conntrack entry that would make the router pick another port). The peer then reaches the
 * fast socket only at the address and port STUN reported, not at its own port on the NAT's address.
 */
async function endpointIndependentNat(host: Host): Promise<void> {
  const router = host.router as Router;
  await router.run(
    "iptables -t nat -I POSTROUTING 1 -o wan0 -p udp -j MASQUERADE --to-ports 20000-29999".split(" "),
  );
  await router.run("iptables -A INPUT -i wan0 -m conntrack --ctstate NEW -j DROP".split(" "));
}

type FastInfo = { phase: string; endpoint: string | null; fallbacks: number; relayed?: boolean };
const fastOf = (l: LinkStatus | undefined): FastInfo | undefined => l?.fast as FastInfo | undefined;

describe.skipIf(!can.ok)("fast path through NATs: STUN-mapped and TURN-relayed", () => {
  let lab: Lab;
  let coturn: CoturnHandle;
  const coturnOptions = { user: "fastuser", password: "fastpass" };
  const nodes: VpnNode[] = [];
  const node = (user: string) => nodes.find((n) => n.opts.user === user) as VpnNode;

  /** Both ends' links to each other are on the fast path (and `check` holds for each). */
  const bothFast = async (a: VpnNode, b: VpnNode, check: (l: LinkStatus) => boolean = () => true) => {
    const [la, lb] = [(await a.connectedLinks())[0], (await b.connectedLinks())[0]];
    return la?.transport === "fast" && lb?.transport === "fast" && check(la) && check(lb);
  };

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "fnat" });
    const prosody = await lab.startProsody({
      users: labUsers(["alice", "bob", "carol", "dave", "erin", "frank"]),
      groups: { eim: ["alice", "bob"], sym: ["carol", "dave"], slow: ["erin", "frank"] },
    });
    coturn = await lab.startCoturn(coturnOptions);
    const add = async (
      user: string,
      ipv4: string,
      group: string,
      nat: NatKind,
      tune?: Record<string, unknown>,
    ) => {
      const host = await lab.addHost(user, { nat });
      nodes.push(
        new VpnNode(lab, host, {
          user,
          ipv4,
          prosody,
          group,
          coturn,
          links: { policy: "proactive" },
          ...(tune ? { commands: { tincan: tincanWithTune(tune) } } : {}),
        }),
      );
    };
    await add("alice", "10.10.9.1/16", "eim", "masquerade");
    await add("bob", "10.10.9.2/16", "eim", "masquerade");
    for (const user of ["alice", "bob"]) await endpointIndependentNat(lab.host(user));
    await add("carol", "10.10.9.3/16", "sym", "symmetric", { fastPathPort: CAROL_FAST_PORT });
    await add("dave", "10.10.9.4/16", "sym", "symmetric");
    // The same relayed link without the fast path: what it carries on node-datachannel.
    await add("erin", "10.10.9.5/16", "slow", "symmetric", { fastPath: false });
    await add("frank", "10.10.9.6/16", "slow", "symmetric", { fastPath: false });
    await Promise.all(nodes.map((n) => n.start()));
  }, 180_000);

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("behind endpoint-independent NATs the fast socket offers its STUN-mapped address and the link goes fast directly", async () => {
    const [alice, bob] = [node("alice"), node("bob")];
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 2)).code === 0, 60_000);
    const t0 = Date.now();
    // The controller races a relay-only link against the direct one; the direct one carries the
    // traffic once it connects.
    await waitFor(
      "the NATed link on the fast path, directly",
      () =>
        bothFast(
          alice,
          bob,
          (l) => l.path !== "relay" && fastOf(l)?.endpoint !== `${coturn.host}:${coturn.port}`,
        ),
      90_000,
    );
    const fastAfterMs = Date.now() - t0;
    const link = (await alice.connectedLinks())[0];
    // Straight to bob's NAT, neither through coturn nor to a private address.
    expect(fastOf(link)?.endpoint).toMatch(new RegExp(`^${bob.host.publicIp.replace(/\./g, "\\.")}:\\d+$`));
    expect(link?.path).not.toBe("relay");
    expect(fastOf(link)?.relayed).toBe(false);
    // Each side's hello carried its mapped address (the NAT's WAN address and a port of its range), as
    // STUN told its fast socket; the endpoint is such a mapped port.
    expect(Number(fastOf(link)?.endpoint?.split(":")[1])).toBeGreaterThanOrEqual(20000);
    for (const n of [alice, bob]) {
      const hellos = readFileSync(n.tincan.logFile, "utf8")
        .split("\n")
        .filter((l) => /fast path (offer|accept)/.test(l));
      expect(hellos.join("\n"), `${n.opts.user}'s hellos`).toContain(`${n.host.publicIp}:`);
    }
    const lost = await pingLoss(alice.host, bob.address, 20);
    const bps = await iperfTcp(alice.host, bob.host, bob.address, 2);
    console.log(
      `EIM NATs: fast ${fastAfterMs} ms after the first ping, endpoint ${fastOf(link)?.endpoint}, ` +
        `20 pings ${lost} lost, iperf3 ${(bps / 1e6).toFixed(0)} Mbit/s`,
    );
    expect(lost).toBeLessThanOrEqual(1);
    expect(bps).toBeGreaterThan(1e6);
  }, 150_000);

  it("between symmetric NATs the link goes fast through TURN; faster than the relayed node-datachannel path", async () => {
    const [carol, dave, erin, frank] = [node("carol"), node("dave"), node("erin"), node("frank")];
    await waitFor("carol pings dave", async () => (await carol.ping(dave.address, 1, 2)).code === 0, 60_000);
    const server = `${coturn.host}:${coturn.port}`;
    const t0 = Date.now();
    await waitFor(
      "the relayed link on the fast path through coturn",
      () => bothFast(carol, dave, (l) => fastOf(l)?.endpoint === server),
      60_000,
    );
    const fastAfterMs = Date.now() - t0;
    expect((await carol.connectedLinks())[0]?.path).toBe("relay");
    // Shown as relayed: link.query's fast.relayed, and tincanctl's row (PATH "relay+fast(turn...)").
    expect(fastOf((await carol.connectedLinks())[0])?.relayed).toBe(true);
    const rows = (await carol.status()).peers as PeerRow[];
    expect(rows.find((r) => r.transport === "fast")?.fast?.relayed).toBe(true);
    const lost = await pingLoss(carol.host, dave.address, 20);
    const fastBps = await iperfTcp(carol.host, dave.host, dave.address, 3);

    await waitFor("erin pings frank", async () => (await erin.ping(frank.address, 1, 2)).code === 0, 60_000);
    const slow = (await erin.connectedLinks())[0];
    expect(slow?.path).toBe("relay");
    expect(slow?.transport).toBe("datachannel");
    const slowBps = await iperfTcp(erin.host, frank.host, frank.address, 3);
    console.log(
      `symmetric NATs through coturn: fast ${fastAfterMs} ms after the first ping; 20 pings ${lost} lost; ` +
        `iperf3 relayed fast ${(fastBps / 1e6).toFixed(0)} Mbit/s vs relayed node-datachannel ${(slowBps / 1e6).toFixed(0)} Mbit/s`,
    );
    expect(lost).toBeLessThanOrEqual(1);
    expect(fastBps).toBeGreaterThan(1e6);
  }, 150_000);

  it("garbage at the fast port and at coturn from third namespaces is dropped and counted; the link stays fast", async () => {
    const [carol, dave] = [node("carol"), node("dave")];
    const drops = async () => ((await carol.status()).vnic as { drops: Record<string, number> }).drops;
    const before = await drops();
    const router = carol.host.router;
    if (!router) throw new Error("carol has no NAT router");
    const index = "12345678";
    const data = `01000000${index}${"00".repeat(8)}${"ab".repeat(40)}`;
    const short = `01000000${"00".repeat(8)}`;
    const channelData = `4001${(data.length / 2).toString(16).padStart(4, "0")}${data}`;
    const garbage = Array.from({ length: 10 }, () => [short, data, channelData, "deadbeefcafe"]).flat();
    const pinging = pingLoss(carol.host, dave.address, 40);
    // On-path (carol's NAT router, on her LAN): straight at the fast socket.
    await sendUdp(router, carol.host.ip, CAROL_FAST_PORT, garbage);
    // Off-path (the internet): at coturn and at the NAT's WAN address (neither lets it through to us).
    await sendUdp(lab.internet, coturn.host, coturn.port, garbage);
    await sendUdp(lab.internet, carol.host.publicIp, CAROL_FAST_PORT, garbage);
    const lost = await pinging;
    await sleep(1500); // drops are collected once a second
    const after = await drops();
    const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
    console.log(
      `garbage: fastShort +${delta("fastShort")}, fastUnknownIndex +${delta("fastUnknownIndex")}; 40 pings meanwhile ${lost} lost`,
    );
    expect(delta("fastShort")).toBeGreaterThanOrEqual(10);
    expect(delta("fastUnknownIndex")).toBeGreaterThanOrEqual(20);
    expect(lost).toBeLessThanOrEqual(2);
    expect(await bothFast(carol, dave)).toBe(true);
  }, 90_000);

  it("a restarted coturn (allocations gone) takes the link off the fast path; it recovers and goes fast again", async () => {
    const [carol, dave] = [node("carol"), node("dave")];
    const server = `${coturn.host}:${coturn.port}`;
    await coturn.stop();
    coturn = await lab.startCoturn(coturnOptions);
    const t0 = Date.now();
    await waitFor("the link off the relayed fast path", async () => !(await bothFast(carol, dave)), 30_000);
    const offAfterMs = Date.now() - t0;
    await waitFor(
      "carol pings dave again",
      async () => (await carol.ping(dave.address, 1, 2)).code === 0,
      120_000,
    );
    const pingAfterMs = Date.now() - t0;
    await waitFor(
      "the link fast through coturn again",
      () => bothFast(carol, dave, (l) => fastOf(l)?.endpoint === server),
      120_000,
    );
    const fastAfterMs = Date.now() - t0;
    const lost = await pingLoss(carol.host, dave.address, 20);
    console.log(
      `coturn restarted: off the fast path after ${offAfterMs} ms, pings again after ${pingAfterMs} ms, ` +
        `fast again after ${fastAfterMs} ms; 20 pings ${lost} lost`,
    );
    expect(lost).toBeLessThanOrEqual(1);
  }, 300_000);
});
