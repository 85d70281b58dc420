// GroupVPN structured overlay (#18) for real: tincan + groupvpn with `links.policy: "structured"` on
// flat hosts, real prosody. A pure ring (k = 1, no long-distance links): a member without a direct
// link is reached greedily via ring neighbours, a shortcut link appears for traffic above the
// threshold, and the ring relinks around a node killed with SIGKILL.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab, sleep } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { PingRecorder } from "./support/ping-recorder.js";
import {
  addGroupNodes,
  labUsers,
  ringOf,
  type VpnNode,
  waitAllPairsPing,
  waitRingLinks,
} from "./support/vpn-node.js";

const can = Lab.canRun();
const NAMES = ["s1", "s2", "s3", "s4", "s5", "s6", "s7"];
/** Bytes/s to one member above which a shortcut link is set up (a ping of 1000 bytes every 0.1 s is ~10 kB/s). */
const SHORTCUT_BYTES_PER_SEC = 3000;

const uidOf = (n: VpnNode) => uidForIpv4(n.address);

interface PeerRow {
  uid: string;
  state: string;
  role?: string;
}
interface RouteRow {
  prefix: string;
  peerUid: string;
  via: string | null;
}

async function peerRows(n: VpnNode): Promise<PeerRow[]> {
  return (await n.status()).peers as PeerRow[];
}

async function routeTo(from: VpnNode, to: VpnNode): Promise<RouteRow | undefined> {
  const routes = (await from.status()).routes as RouteRow[];
  return routes.find((r) => r.prefix === `${to.address}/32`);
}

/** `spoofed` drops on all of a node's links (the source check of packets for it). */
async function spoofedDrops(n: VpnNode): Promise<number> {
  let sum = 0;
  for (const l of await n.links()) sum += (l.drops as Record<string, number> | undefined)?.spoofed ?? 0;
  return sum;
}

describe.skipIf(!can.ok)(
  "GroupVPN structured overlay: a ring of 7 nodes (k = 1, no long-distance links)",
  () => {
    let lab: Lab;
    let nodes: VpnNode[] = [];
    /** The nodes in ring order (by UID). */
    let ring: VpnNode[] = [];
    let at: (i: number) => VpnNode;

    beforeAll(async () => {
      lab = await Lab.create({ prefix: "str" });
      const prosody = await lab.startProsody({ users: labUsers(NAMES), groups: { lab: NAMES } });
      nodes = await addGroupNodes(lab, prosody, NAMES, "10.10.7", {
        links: {
          policy: "structured",
          successors: 1,
          longDistance: 0,
          shortcutBytesPerSec: SHORTCUT_BYTES_PER_SEC,
          // Links of the ring as it was while members were still coming online go once idle.
          idleTimeoutSec: 15,
        },
        logLevel: "info",
        startTimeoutMs: 60_000, // a shared 2-core machine
      });
      ({ ring, at } = ringOf(nodes));
      await Promise.all(nodes.map((n) => n.start()));
    });

    afterAll(async () => {
      for (const n of nodes) await n.stop().catch(() => {});
      await lab?.destroy();
    });

    it("links each node to its ring successor and predecessor only", async () => {
      const started = Date.now();
      await waitRingLinks(ring, 60_000);
      console.log(
        `structured ring of ${ring.length}: all ring links up ${Date.now() - started} ms after start`,
      );
      for (const [i, n] of ring.entries()) {
        const rows = await peerRows(n);
        const role = (uid: string) => rows.find((r) => r.uid === uid)?.role;
        expect(role(uidOf(at(i + 1)))).toBe("successor");
        expect(role(uidOf(at(i - 1)))).toBe("predecessor");
      }
      // Links to members that were ring neighbours only while others were still coming online are
      // trimmed once idle (links.idleTimeoutSec); the ring's own stay.
      await waitRingLinks(ring, 60_000, { only: true });
      console.log(
        `structured ring of ${ring.length}: 2 links per node ${Date.now() - started} ms after start`,
      );
    });

    it("reaches the member farthest on the ring via ring neighbours, then over a shortcut once traffic exceeds the threshold", async () => {
      const a = at(0);
      const far = at(3); // 3 hops either way round in a ring of 7
      // Greedy routing: the route goes via a linked ring neighbour, there is no direct link.
      expect(await a.connectedTo(uidOf(far))).toBeUndefined();
      const before = await routeTo(a, far);
      expect([uidOf(at(1)), uidOf(at(-1))]).toContain(before?.via);
      const small = await a.ping(far.address, 5, 2);
      expect(small.stdout).toMatch(/5 received/);
      console.log(
        `structured ring: ${a.opts.user} -> ${far.opts.user} via ${before?.via === uidOf(at(1)) ? at(1).opts.user : at(-1).opts.user}: 5/5 pings over the ring (${small.stdout.match(/rtt min\/avg\/max\/mdev = [\d./]+ ms/)?.[0]})`,
      );
      expect(await a.connectedTo(uidOf(far))).toBeUndefined(); // small pings stay below the threshold

      // ~10 kB/s: above the threshold. A shortcut link appears and the pings carry on over it.
      const spoofedBefore = (await spoofedDrops(a)) + (await spoofedDrops(far));
      const pings = PingRecorder.start(a.host, far.address, 0.1, 1000);
      // Small pings every 5 ms besides: some are on the ring while the two ends move their routes.
      const dense = PingRecorder.start(a.host, far.address, 0.005, 56);
      const t0 = Date.now();
      await waitFor(
        "a shortcut link to the far member",
        async () => !!(await a.connectedTo(uidOf(far))),
        60_000,
      );
      const shortcutMs = Date.now() - t0;
      await waitFor(
        "the route to the far member goes direct",
        async () => (await routeTo(a, far))?.via === null,
        10_000,
      );
      await sleep(3000); // pings over the shortcut
      const record = await pings.stop();
      const denseRecord = await dense.stop();
      const role = (await peerRows(a)).find((r) => r.uid === uidOf(far))?.role;
      const spoofed = (await spoofedDrops(a)) + (await spoofedDrops(far)) - spoofedBefore;
      console.log(
        `structured ring: shortcut ${a.opts.user} -> ${far.opts.user} connected ${shortcutMs} ms after traffic started (role ${role}); pings ${record.sent} sent, ${record.lost} lost, longest gap ${record.maxGapMs} ms; pings every 5 ms ${denseRecord.sent} sent, ${denseRecord.lost} lost; spoofed drops at both ends ${spoofed}`,
      );
      expect(role).toBe("shortcut");
      // At the switch, packets still on the ring arrive after this end's route went direct: the
      // datapath's grace for a new link takes them (make-before-break), none is refused as spoofed.
      expect(spoofed).toBe(0);
      expect(record.lost).toBeLessThanOrEqual(6);
      expect(record.sent).toBeGreaterThan(20);
    });

    it("relinks around a node killed with SIGKILL; pings across the gap recover", async () => {
      // Kill a node whose neighbours both survive and are not the pair of the shortcut test.
      const victim = at(5);
      const [before, after] = [at(4), at(6)];
      expect(await before.connectedTo(uidOf(after))).toBeUndefined(); // they talk via the victim
      const pings = PingRecorder.start(before.host, after.address, 0.2);
      await waitFor("pings across the victim", async () => pings.record().replies.length >= 5, 20_000);
      const killedAt = Date.now();
      victim.controller.signal("SIGKILL");
      victim.tincan.signal("SIGKILL");
      await Promise.all([victim.controller.wait(), victim.tincan.wait()]);
      await waitFor(
        `${before.opts.user} links to ${after.opts.user} (its new successor)`,
        async () => !!(await before.connectedTo(uidOf(after))) && !!(await after.connectedTo(uidOf(before))),
        60_000,
      );
      const relinkedMs = Date.now() - killedAt;
      await waitFor(
        "pings across the gap again",
        async () => pings.firstReplyAfter(killedAt + 500) !== undefined,
        30_000,
      );
      await sleep(2000);
      const record = await pings.stop();
      const recoveredMs = (pings.firstReplyAfter(killedAt + 500) ?? Number.NaN) - killedAt;
      const rows = await peerRows(before);
      console.log(
        `structured ring: after SIGKILL of ${victim.opts.user}, ${before.opts.user} <-> ${after.opts.user} relinked in ${relinkedMs} ms; pings across the gap answered again after ${recoveredMs} ms (longest gap ${record.maxGapMs} ms, ${record.lost} of ${record.sent} lost)`,
      );
      expect(rows.find((r) => r.uid === uidOf(after))?.role).toBe("successor");
      expect(record.maxGapMs).toBeLessThan(30_000);
      // Every survivor reaches every other again (routes that went via the victim move on).
      const survivors = ring.filter((n) => n !== victim);
      await waitAllPairsPing(survivors, (_, to) => [to.address], 60_000);
      console.log(
        `structured ring: all ${survivors.length * (survivors.length - 1)} survivor pairs ping ${Date.now() - killedAt} ms after the SIGKILL`,
      );
    });
  },
);
