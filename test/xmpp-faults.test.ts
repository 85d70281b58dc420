// XMPP faults under a running GroupVPN: the controller's XMPP connection black-holed (its packets
// dropped both ways, no FIN, no RST), and a login refused until the account exists on the server.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab, type ProsodyHandle, sleep, tail } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, PASSWORD, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

/** Seconds between XMPP pings of the nodes here (the default is 60): the bound under test scales with it. */
const PING_SEC = 5;

const onlineCount = (n: VpnNode) => (n.controller.log().match(/xmpp online/g) ?? []).length;

/** iptables rules in the node's namespace that drop its XMPP traffic both ways. */
function blackHoleRules(prosody: ProsodyHandle): string[][] {
  return [
    ["OUTPUT", "-p", "tcp", "-d", prosody.host, "--dport", String(prosody.port), "-j", "DROP"],
    ["INPUT", "-p", "tcp", "-s", prosody.host, "--sport", String(prosody.port), "-j", "DROP"],
  ];
}

describe.skipIf(!can.ok)("XMPP faults", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  const nodes: VpnNode[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "xf" });
    // carol is in the group but has no account yet.
    prosody = await lab.startProsody({
      users: labUsers(["alice", "bob"]),
      groups: { lab: ["alice", "bob", "carol"] },
    });
    nodes.push(
      ...(await addGroupNodes(lab, prosody, ["alice", "bob", "carol"], "10.10.7", {
        links: { policy: "proactive" },
        xmpp: { pingIntervalSec: PING_SEC },
      })),
    );
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it(`a black-holed XMPP connection is noticed and logged in again within 2 ping periods (${PING_SEC} s); VPN pings flow`, async () => {
    const [alice, bob] = nodes as [VpnNode, VpnNode];
    await Promise.all([alice.start(), bob.start()]);
    await waitFor(
      "alice and bob linked",
      async () => (await alice.connectedTo(uidForIpv4(bob.address))) !== undefined,
      30_000,
    );
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 1)).code === 0, 10_000);

    const holeSec = 3 * PING_SEC;
    const pingCount = Math.round((holeSec + 4 * PING_SEC) * 10);
    const pings = alice.host.exec(["ping", "-i", "0.1", "-c", String(pingCount), "-W", "1", bob.address], {
      timeoutMs: pingCount * 100 + 30_000,
    });
    await sleep(1000);
    const before = onlineCount(alice);
    for (const rule of blackHoleRules(prosody)) await alice.host.run(["iptables", "-I", ...rule]);
    await sleep(holeSec * 1000);
    expect(alice.controller.log()).toMatch(/xmpp ping timed out; reconnecting/);
    expect(onlineCount(alice)).toBe(before); // still cut off: no login got through the hole
    for (const rule of blackHoleRules(prosody)) await alice.host.run(["iptables", "-D", ...rule]);
    const lifted = Date.now();
    await waitFor("alice logged in again", () => onlineCount(alice) > before, 4 * PING_SEC * 1000);
    const recoverSec = (Date.now() - lifted) / 1000;
    const r = await pings;
    const sent = Number(r.stdout.match(/(\d+) packets transmitted/)?.[1] ?? 0);
    const received = Number(r.stdout.match(/(\d+) received/)?.[1] ?? 0);
    console.log(
      `xmpp black hole ${holeSec} s (ping period ${PING_SEC} s): logged in again ${recoverSec.toFixed(1)} s after it was lifted; ` +
        `VPN pings lost ${sent - received} of ${sent}`,
    );
    const attempts = alice.controller.log().match(/xmpp login (failed|timed out); reconnecting.*/g) ?? [];
    console.log(`attempts while black-holed: ${attempts.length}\n${attempts.slice(0, 6).join("\n")}`);
    expect(recoverSec, tail(alice.controller.log(), 40)).toBeLessThanOrEqual(2 * PING_SEC);
    expect(sent).toBeGreaterThan(0);
  });

  it("a change of the host's addresses logs XMPP in again at once", async () => {
    const [alice, bob] = nodes as [VpnNode, VpnNode];
    const { ns, ifname } = alice.host.uplink.inner;
    const before = onlineCount(alice);
    const t0 = Date.now();
    await alice.host.run(["ip", "addr", "add", "100.64.250.7/32", "dev", ifname]);
    try {
      await waitFor("alice logged in again", () => onlineCount(alice) > before, 2 * PING_SEC * 1000);
    } finally {
      await alice.host.run(["ip", "addr", "del", "100.64.250.7/32", "dev", ifname]);
    }
    console.log(
      `address added in ${ns}: XMPP logged in again after ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    expect(alice.controller.log()).toMatch(/local addresses changed.*100\.64\.250\.7/);
    expect(alice.controller.log()).toMatch(/xmpp reconnecting now.*local addresses changed/);
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 1)).code === 0, 10_000);
  });

  it("a refused login (no such account yet) is retried with backoff and succeeds once the account exists", async () => {
    const [alice, , carol] = nodes as [VpnNode, VpnNode, VpnNode];
    await carol.start(); // the controller runs; XMPP keeps retrying in the background
    const refusals = () => carol.controller.log().match(/xmpp login failed; reconnecting.*/g) ?? [];
    await waitFor("3 refused logins", () => refusals().length >= 3, 30_000);
    const delays = refusals().map((l) => Number(l.match(/"retryInMs":(\d+)/)?.[1]));
    console.log(`refused logins retried after ${delays.join(", ")} ms\n${refusals()[0]}`);
    expect(refusals()[0]).toMatch(/not-authorized/);
    expect(delays[2]).toBeGreaterThan(delays[0] as number); // backoff grows (jitter is at most half)
    await prosody.register("carol", PASSWORD);
    const registered = Date.now();
    await waitFor("carol logged in", () => onlineCount(carol) >= 1, 2 * PING_SEC * 1000 + 5000);
    console.log(
      `carol logged in ${((Date.now() - registered) / 1000).toFixed(1)} s after her account was created`,
    );
    await waitFor(
      "carol pings alice",
      async () => (await carol.ping(alice.address, 1, 1)).code === 0,
      30_000,
    );
  });
});
