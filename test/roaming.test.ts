// Roaming: a node's underlay address changes (the old one deleted, a new one added, as when a laptop
// changes networks) while it pings its peer through the VPN every 0.1 s. The moved side notices the
// change, logs into XMPP again from the new address and offers its links again; the peer takes the
// fresh offer in place of the dead link. Each test prints how long traffic was gone.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab, type ProsodyHandle, sleep, tail } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { PingRecorder } from "./support/ping-recorder.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

/** The bound: traffic back within 5 s of the new address being usable. */
const BACK_WITHIN_MS = 5000;

describe.skipIf(!can.ok)("roaming (2 GroupVPN nodes, proactive)", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  let alice: VpnNode;
  let bob: VpnNode;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "roam" });
    const names = ["alice", "bob"];
    prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    [alice, bob] = (await addGroupNodes(lab, prosody, names, "10.10.8", {
      links: { policy: "proactive" },
      xmpp: { pingIntervalSec: 5 },
    })) as [VpnNode, VpnNode];
    await Promise.all([alice.start(), bob.start()]);
    await waitFor("the link connected", () => alice.connectedTo(uidForIpv4(bob.address)), 30_000);
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 2)).code === 0, 10_000);
  });

  afterAll(async () => {
    await alice?.stop().catch(() => {});
    await bob?.stop().catch(() => {});
    await lab?.destroy();
  });

  const logs = () => `alice:\n${tail(alice.controller.log(), 60)}\n\nbob:\n${tail(bob.controller.log(), 60)}`;

  for (const side of ["alice", "bob"] as const) {
    it(`${side} moves to a new address: traffic is back within ${BACK_WITHIN_MS / 1000} s`, async () => {
      const mover = side === "alice" ? alice : bob;
      const ping = PingRecorder.start(alice.host, bob.address);
      let stopped = false;
      try {
        await waitFor("the first reply", () => ping.record().replies.length > 0, 10_000);
        const from = mover.host.publicIp;
        const movedAt = Date.now();
        const to = await mover.host.roam();
        await waitFor(
          "a reply after the move",
          () => ping.firstReplyAfter(movedAt + 200) !== undefined,
          BACK_WITHIN_MS + 10_000,
        ).catch((err) => {
          throw new Error(`${(err as Error).message}\n${logs()}`);
        });
        const backMs = (ping.firstReplyAfter(movedAt + 200) as number) - movedAt;
        await sleep(2000);
        const r = await ping.stop();
        stopped = true;
        console.log(
          `${side} roamed ${from} -> ${to}: traffic back ${(backMs / 1000).toFixed(2)} s after the move, ` +
            `${r.lost} of ${r.sent} pings lost`,
        );
        expect(backMs, logs()).toBeLessThanOrEqual(BACK_WITHIN_MS);
        expect(mover.controller.log()).toContain("local addresses changed");
        const link = await alice.connectedTo(uidForIpv4(bob.address));
        expect(link?.state).toBe("connected");
      } finally {
        if (!stopped) await ping.stop().catch(() => {});
      }
    });
  }
});
