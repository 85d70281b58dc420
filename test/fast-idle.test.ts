// The idle cost of a link on the fast path (#19): two GroupVPN nodes with `tune.fastPath: true`. Once
// the link has been on the fast path for 20 s, both ends close its PeerConnection (no more ICE consent
// checks); only the lower UID probes the idle link, every 10 s. Counts every UDP byte on one node's
// underlay interface for 60 s idle, then kills the peer (controller and datapath, SIGKILL) and checks
// that the survivor reports the link down within ~15 s, and that the link comes back with the peer.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Host, Lab, type ProsodyHandle, sleep, tail } from "./lab/index.js";
import { DAEMON_NODE_FLAGS, TINCAN_BIN, waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const IDLE_SECONDS = Number(process.env.FAST_IDLE_SECONDS ?? 60);
/** The goal, each direction. */
const MAX_IDLE_BYTES_PER_SEC = 10;

/** UDP bytes (IP headers included) out of and into `host`'s underlay interface so far (our rules are the only ones naming eth0). */
async function udpBytes(host: Host): Promise<{ out: number; in: number }> {
  const count = async (chain: string) => {
    const line = (await host.run(["iptables", "-nvxL", chain])).split("\n").find((l) => l.includes("eth0"));
    return Number(line?.trim().split(/\s+/)[1] ?? Number.NaN);
  };
  return { out: await count("OUTPUT"), in: await count("INPUT") };
}

describe.skipIf(!can.ok)("fast path idle cost and liveness (2 GroupVPN nodes, proactive)", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  let alice: VpnNode;
  let bob: VpnNode;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "tfi" });
    const names = ["alice", "bob"];
    prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    const config = join(lab.dir, "tincan-fast.json");
    writeFileSync(config, JSON.stringify({ tune: { fastPath: true } }));
    [alice, bob] = (await addGroupNodes(lab, prosody, names, "10.10.9", {
      links: { policy: "proactive" },
      commands: { tincan: ["node", ...DAEMON_NODE_FLAGS, TINCAN_BIN, "--config", config] },
    })) as [VpnNode, VpnNode];
    for (const n of [alice, bob]) {
      await n.host.run(["iptables", "-I", "OUTPUT", "-o", "eth0", "-p", "udp"]);
      await n.host.run(["iptables", "-I", "INPUT", "-i", "eth0", "-p", "udp"]);
    }
    await Promise.all([alice.start(), bob.start()]);
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 2)).code === 0, 30_000);
  }, 90_000);

  afterAll(async () => {
    await alice?.stop().catch(() => {});
    await bob?.stop().catch(() => {});
    await lab?.destroy();
  });

  const logs = () => `alice:\n${tail(alice.controller.log(), 40)}\n\nbob:\n${tail(bob.controller.log(), 40)}`;
  const linkTo = async (from: VpnNode, to: VpnNode) =>
    (await from.links()).find((l) => l.peerUid === uidForIpv4(to.address)) as
      | { state: string; transport?: string; path: string | null; fast?: { peerConnection?: string } }
      | undefined;

  it(`an idle link on the fast path costs <= ${MAX_IDLE_BYTES_PER_SEC} B/s each way on the wire`, async () => {
    await waitFor(
      "both ends on the fast path, their PeerConnections closed",
      async () => {
        const [a, b] = [await linkTo(alice, bob), await linkTo(bob, alice)];
        return (
          a?.transport === "fast" &&
          b?.transport === "fast" &&
          a.fast?.peerConnection === "closed" &&
          b.fast?.peerConnection === "closed"
        );
      },
      60_000,
    );
    const a = await linkTo(alice, bob);
    expect(a?.state).toBe("connected");
    expect(a?.path).not.toBeNull();
    // Pings work on the fast path alone, and then the link is left alone (RTT probes of a busy link end).
    expect((await alice.ping(bob.address, 3, 2)).code).toBe(0);
    await sleep(8000);
    const before = await udpBytes(alice.host);
    await sleep(IDLE_SECONDS * 1000);
    const after = await udpBytes(alice.host);
    const out = (after.out - before.out) / IDLE_SECONDS;
    const into = (after.in - before.in) / IDLE_SECONDS;
    console.log(
      `idle ${IDLE_SECONDS} s on the fast path, PeerConnection closed: alice->bob ${out.toFixed(1)} B/s, bob->alice ${into.toFixed(1)} B/s (all UDP on alice's eth0)`,
    );
    expect(out, logs()).toBeLessThanOrEqual(MAX_IDLE_BYTES_PER_SEC);
    expect(into, logs()).toBeLessThanOrEqual(MAX_IDLE_BYTES_PER_SEC);
    expect((await linkTo(alice, bob))?.state).toBe("connected");
    expect((await alice.ping(bob.address, 3, 2)).code).toBe(0);
  }, 150_000);

  it("a peer killed outright (controller and datapath, SIGKILL) is reported down within ~15 s; the link comes back with it", async () => {
    expect((await linkTo(alice, bob))?.fast?.peerConnection).toBe("closed");
    // Idle first: a link that just carried traffic probes within a second anyway (RTT, fast-path replies).
    await sleep(8000);
    // The controller stopped (it keeps its XMPP session: no bye, no presence change), then the datapath
    // killed: only the data plane can tell.
    bob.controller.signal("SIGSTOP");
    bob.tincan.signal("SIGKILL");
    await bob.tincan.wait();
    const killedAt = Date.now();
    const logFrom = alice.controller.log().length;
    const tincanLogFrom = alice.tincan.log().length;
    const downAfter = await waitFor(
      "alice's link to bob down",
      async () => ((await linkTo(alice, bob))?.state === "connected" ? undefined : Date.now()),
      30_000,
    ).then((t) => (t - killedAt) / 1000);
    console.log(`peer killed: alice reported the link down after ${downAfter.toFixed(1)} s`);
    console.log(
      tail(alice.controller.log().slice(logFrom), 8),
      tail(alice.tincan.log().slice(tincanLogFrom), 8),
    );
    expect(downAfter, logs()).toBeLessThanOrEqual(17);
    bob.controller.signal("SIGKILL");
    bob.controller.signal("SIGCONT");
    await bob.controller.wait();
    await bob.startDatapath();
    await bob.startController();
    const restartedAt = Date.now();
    await waitFor(
      "alice pings bob again",
      async () => (await alice.ping(bob.address, 1, 1)).code === 0,
      60_000,
    );
    console.log(`peer restarted: ping through ${((Date.now() - restartedAt) / 1000).toFixed(1)} s later`);
    await waitFor(
      "the new link on the fast path",
      async () => (await linkTo(alice, bob))?.transport === "fast",
      30_000,
    );
  }, 150_000);
});
