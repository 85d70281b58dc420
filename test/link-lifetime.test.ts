// Link lifetime is decided by the data plane: XMPP server restarts, a controller crash, a datapath
// restart and a signal flood from a member, each with a ping every 0.1 s through the VPN.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab, type ProsodyHandle, sleep, tail } from "./lab/index.js";
import { DatapathHandle, waitFor } from "./support/datapath-driver.js";
import { PingRecorder } from "./support/ping-recorder.js";
import { addGroupNodes, fullJidOf, labUsers, sendRogueOffers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const MALLORY_IP = "10.10.7.66";

describe.skipIf(!can.ok)("link lifetime: what survives what (2 GroupVPN nodes, proactive)", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  let alice: VpnNode;
  let bob: VpnNode;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "ll" });
    const names = ["alice", "bob", "mallory"];
    prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    [alice, bob] = (await addGroupNodes(lab, prosody, ["alice", "bob"], "10.10.7", {
      links: { policy: "proactive" },
    })) as [VpnNode, VpnNode];
    await Promise.all([alice.start(), bob.start()]);
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 2)).code === 0, 20_000);
    await waitFor("the link connected", () => alice.connectedTo(uidForIpv4(bob.address)));
  });

  afterAll(async () => {
    await alice?.stop().catch(() => {});
    await bob?.stop().catch(() => {});
    await lab?.destroy();
  });

  const logs = () => `alice:\n${tail(alice.controller.log(), 60)}\n\nbob:\n${tail(bob.controller.log(), 60)}`;

  /** Pings alice -> bob every 0.1 s while `during` runs (and 2 s after); returns what was lost. */
  async function pingThrough(what: string, during: () => Promise<void>) {
    const ping = PingRecorder.start(alice.host, bob.address);
    await waitFor("the first reply", () => ping.record().replies.length > 0, 10_000);
    await during();
    await sleep(2000);
    const r = await ping.stop();
    console.log(`${what}: ${r.lost} of ${r.sent} pings lost (longest gap between replies ${r.maxGapMs} ms)`);
    return r;
  }

  /**
   * No outage: every ping answered, except that on this shared 2-core test machine (load average
   * up to ~12 while other suites run) a starved datapath sheds about 1 % of pings at moments when
   * nothing happens to the link; a link torn down costs seconds (dozens of pings).
   */
  function expectNoOutage(r: { sent: number; lost: number; maxGapMs: number }, maxLost = 2) {
    expect(r.maxGapMs, logs()).toBeLessThan(1000);
    expect(r.lost, logs()).toBeLessThanOrEqual(maxLost + Math.floor(r.sent / 100));
  }

  const onlineCount = (n: VpnNode) => (n.controller.log().match(/xmpp online/g) ?? []).length;

  async function restartProsody(graceful: boolean): Promise<void> {
    const before = [onlineCount(alice), onlineCount(bob)];
    await prosody.restart({ graceful });
    await waitFor(
      "both controllers to log in again",
      () => onlineCount(alice) > before[0]! && onlineCount(bob) > before[1]!,
      60_000,
    );
    await sleep(6000); // presence settles (peers not seen again within 5 s count as offline)
  }

  it("a graceful XMPP server restart (SIGTERM: everyone announced offline) loses no ping", async () => {
    const r = await pingThrough("graceful prosody restart", () => restartProsody(true));
    expectNoOutage(r);
    // The server did announce the peers offline (else this would test nothing new).
    expect(alice.controller.log() + bob.controller.log()).toMatch(/its link stays while the datapath keeps/);
  });

  it("a hard XMPP server restart (SIGKILL) loses no ping", async () => {
    const r = await pingThrough("hard prosody restart", () => restartProsody(false));
    expectNoOutage(r);
  });

  for (const [how, verb, downSec] of [
    ["SIGTERM", "stopped", 5],
    ["SIGKILL", "killed", 30],
  ] as const) {
    it(`a peer's controller ${verb} (${how}) for ${downSec} s loses no ping; the restarted controller adopts the link`, async () => {
      const r = await pingThrough(`bob's controller ${verb} for ${downSec} s`, async () => {
        bob.controller.signal(how);
        await bob.controller.wait();
        await sleep(downSec * 1000);
        await bob.startController();
        await waitFor("bob adopts the link", () => /adopted an existing link/.test(bob.controller.log()));
      });
      expectNoOutage(r);
      expect(alice.controller.log()).not.toMatch(/link down/);
      expect(await bob.connectedTo(uidForIpv4(alice.address))).toBeDefined();
    });
  }

  for (const [side, how] of [
    ["larger", "SIGKILL"],
    ["smaller", "SIGKILL"],
    ["larger", "SIGTERM"],
  ] as const) {
    it(`a datapath restarted (${how}) on the ${side}-UID side has traffic back within 2 s`, async () => {
      const aliceLarger = uidForIpv4(alice.address) > uidForIpv4(bob.address);
      const [restarted, peer] = (side === "larger") === aliceLarger ? [alice, bob] : [bob, alice];
      const ping = PingRecorder.start(peer.host, restarted.address);
      await waitFor("the first reply", () => ping.record().replies.length > 0, 10_000);
      restarted.tincan.signal(how);
      await restarted.tincan.wait();
      await restarted.startDatapath();
      const ready = Date.now();
      const back = await waitFor("a reply from the restarted side", () => ping.firstReplyAfter(ready), 30_000)
        .then((t) => (t - ready) / 1000)
        .catch(() => Number.POSITIVE_INFINITY);
      await ping.stop();
      console.log(
        `datapath restarted (${how}) on the ${side}-UID side (${restarted.opts.user}): traffic back ${back.toFixed(2)} s after it was ready`,
      );
      expect(
        back,
        `${restarted.opts.user}:\n${tail(restarted.controller.log(), 80)}\n\n${logs()}`,
      ).toBeLessThanOrEqual(2);
    });
  }

  it("a flood of 2000 offers from a member builds a bounded number of links; the others keep passing traffic", async () => {
    const malloryHost = await lab.addHost("mallory");
    const aliceUid = uidForIpv4(alice.address);
    const malloryUid = uidForIpv4(MALLORY_IP);
    // A real offer (with a fingerprint and candidates), so each accepted one costs a PeerConnection.
    const dp = await DatapathHandle.start(lab, malloryHost);
    try {
      await dp.configure(malloryUid, `${MALLORY_IP}/16`);
      const { description } = await dp.call("link.create", { peerUid: aliceUid });
      const descriptionFile = join(lab.dir, "mallory-offer.json");
      writeFileSync(descriptionFile, JSON.stringify(description));
      const aliceJid = await fullJidOf(alice);
      let flood = "";
      const r = await pingThrough("2000 offers from a member", async () => {
        const out = await sendRogueOffers(malloryHost, prosody, "mallory", aliceJid, aliceUid, {
          count: 2000,
          ipv4: MALLORY_IP,
          descriptionFile,
        });
        expect(out.code, out.stderr).toBe(0);
        flood = out.stdout.trim();
        await sleep(3000);
      });
      const created = (alice.tincan.log().match(new RegExp(`link created.*${malloryUid}`, "g")) ?? []).length;
      const drops = ((await alice.status()).controller as { signalDrops?: Record<string, number> })
        .signalDrops;
      console.log(
        `signal flood ${flood}: ${created} links created for mallory, drops ${JSON.stringify(drops)}`,
      );
      // Parsing 2000 stanzas costs the target's controller and the server CPU that the datapath
      // then lacks on this 2-core machine: a few pings may be shed, the link stays.
      expectNoOutage(r, 10);
      expect(created).toBeGreaterThanOrEqual(1); // the flood did reach the datapath
      expect(created).toBeLessThanOrEqual(5);
      expect(drops?.rateLimited ?? 0).toBeGreaterThan(1900);
      expect(alice.controller.log().match(/exceed its rate/g)?.length ?? 0).toBeLessThanOrEqual(2);
    } finally {
      await dp.stop();
    }
  });
});
