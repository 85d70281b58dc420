// GroupVPN structured overlay (#18) under faults, for real (flat hosts, real prosody): a partition
// of the underlay between two halves of the ring, and a node whose incoming long-distance links are
// full. test/structured.test.ts covers greedy routing, shortcuts and a crash.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Host, Lab, sleep } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { PingRecorder } from "./support/ping-recorder.js";
import { addGroupNodes, labUsers, type VpnNode, waitAllPairsPing } from "./support/vpn-node.js";

const can = Lab.canRun();
/** The bye reason of a trimmed incoming link (packages/groupvpn/src/structured.ts INCOMING_FULL). */
const INCOMING_FULL = "incoming long-distance links full";

const uidOf = (n: VpnNode) => uidForIpv4(n.address);

async function linkedBothWays(a: VpnNode, b: VpnNode): Promise<boolean> {
  return !!(await a.connectedTo(uidOf(b))) && !!(await b.connectedTo(uidOf(a)));
}

async function linkedEitherWay(a: VpnNode, b: VpnNode): Promise<boolean> {
  return !!(await a.connectedTo(uidOf(b))) || !!(await b.connectedTo(uidOf(a)));
}

/**
 * Cuts (or heals) the underlay between two sets of hosts at the lab's switch (the internet bridge):
 * frames between them are dropped there, while each still reaches the servers on the bridge itself.
 */
async function cutUnderlay(lab: Lab, a: Host[], b: Host[], cut: boolean): Promise<void> {
  for (const x of a) {
    for (const y of b) {
      for (const [src, dst] of [
        [x, y],
        [y, x],
      ] as const) {
        const rule = ["FORWARD", "-p", "IPv4", "--ip-src", src.ip, "--ip-dst", dst.ip, "-j", "DROP"];
        await lab.internet.run(["ebtables", cut ? "-A" : "-D", ...rule]);
      }
    }
  }
}

/**
 * A lab with prosody and a structured GroupVPN node per name at `<subnet>.<i+1>`; `adjust` may change
 * a node's options before all are started.
 */
async function startStructuredGroup(
  prefix: string,
  names: string[],
  subnet: string,
  links: NonNullable<VpnNode["opts"]["links"]>,
  adjust: (nodes: VpnNode[]) => void = () => {},
): Promise<{ lab: Lab; nodes: VpnNode[] }> {
  const lab = await Lab.create({ prefix });
  const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
  const nodes = await addGroupNodes(lab, prosody, names, subnet, {
    links: { policy: "structured", idleTimeoutSec: 15, ...links },
    logLevel: "info",
    startTimeoutMs: 60_000, // a shared 2-core machine
  });
  adjust(nodes);
  await Promise.all(nodes.map((n) => n.start()));
  return { lab, nodes };
}

async function stopGroup(lab: Lab | undefined, nodes: VpnNode[]): Promise<void> {
  for (const n of nodes) await n.stop().catch(() => {});
  await lab?.destroy();
}

/** The nodes in ring order (by UID). */
const ringOrder = (nodes: VpnNode[]) => [...nodes].sort((a, b) => uidOf(a).localeCompare(uidOf(b)));

describe.skipIf(!can.ok)(
  "GroupVPN structured overlay: the underlay cut between two halves of a ring of 6",
  () => {
    const NAMES = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let lab: Lab;
    let nodes: VpnNode[] = [];
    let ring: VpnNode[] = [];

    beforeAll(async () => {
      ({ lab, nodes } = await startStructuredGroup("sph", NAMES, "10.10.8", {
        successors: 1,
        longDistance: 0,
      }));
      ring = ringOrder(nodes);
    });

    afterAll(() => stopGroup(lab, nodes));

    it("each half keeps working inside while cut; after the heal the ring merges and pings cross again", async () => {
      await waitFor(
        "every node linked to its two ring neighbours",
        async () => {
          for (const [i, n] of ring.entries())
            if (!(await linkedBothWays(n, ring[(i + 1) % 6] as VpnNode))) return false;
          return true;
        },
        90_000,
      );
      // Two arcs of the ring: each half keeps a ring path inside, and the ring links [2]-[3] and [5]-[0] cross.
      const [a, b] = [ring.slice(0, 3), ring.slice(3)];
      const crossing = [
        [ring[2], ring[3]],
        [ring[5], ring[0]],
      ] as [VpnNode, VpnNode][];
      const [from, to] = [ring[0] as VpnNode, ring[4] as VpnNode]; // across the cut, 2 ring hops either way
      expect((await from.ping(to.address, 3, 2)).stdout).toMatch(/3 received/);
      const pings = PingRecorder.start(from.host, to.address, 0.2);

      const cutAt = Date.now();
      await cutUnderlay(
        lab,
        a.map((n) => n.host),
        b.map((n) => n.host),
        true,
      );
      await waitFor(
        "the links across the cut down at both ends",
        async () => {
          for (const [x, y] of crossing) if (await linkedEitherWay(x, y)) return false;
          return true;
        },
        90_000,
      );
      const downMs = Date.now() - cutAt;
      await waitAllPairsPing(a, (_, n) => [n.address], 60_000);
      await waitAllPairsPing(b, (_, n) => [n.address], 60_000);
      const halvesMs = Date.now() - cutAt;
      expect((await from.ping(to.address, 2, 1)).code).not.toBe(0);
      console.log(
        `structured partition: links across the cut down ${downMs} ms after it; all pairs inside each half ping ${halvesMs} ms after it; across: none`,
      );

      const healedAt = Date.now();
      await cutUnderlay(
        lab,
        a.map((n) => n.host),
        b.map((n) => n.host),
        false,
      );
      await waitFor("pings across again", async () => pings.firstReplyAfter(healedAt) !== undefined, 120_000);
      const crossMs = (pings.firstReplyAfter(healedAt) as number) - healedAt;
      await waitFor(
        "the ring merged: the links across up again",
        async () => {
          for (const [x, y] of crossing) if (!(await linkedBothWays(x, y))) return false;
          return true;
        },
        120_000,
      );
      const mergedMs = Date.now() - healedAt;
      await waitAllPairsPing(ring, (_, n) => [n.address], 120_000);
      const allPairsMs = Date.now() - healedAt;
      const record = await pings.stop();
      console.log(
        `structured partition healed after ${((healedAt - cutAt) / 1000).toFixed(1)} s: ${from.opts.user} -> ${to.opts.user} answered again ${crossMs} ms after the heal; ring links across up ${mergedMs} ms after; all 30 pairs ping ${allPairsMs} ms after (pings ${record.sent} sent, ${record.lost} lost)`,
      );
      expect(allPairsMs).toBeLessThan(120_000);
    }, 480_000); // up to 90 s to link, 90 + 120 s cut, 120 + 120 + 120 s healed
  },
);

describe.skipIf(!can.ok)(
  "GroupVPN structured overlay: a node refuses incoming long-distance links beyond its cap",
  () => {
    const NAMES = ["c1", "c2", "c3", "c4", "c5", "c6"];
    let lab: Lab;
    let nodes: VpnNode[] = [];
    let target: VpnNode;

    beforeAll(async () => {
      // A ring of 6 (k = 1): each node has 3 members that are not its ring neighbours, and wants a
      // long-distance link to each of them; the target wants none, so its cap is the minimum, 2.
      ({ lab, nodes } = await startStructuredGroup(
        "sic",
        NAMES,
        "10.10.9",
        { successors: 1, longDistance: 3 },
        (all) => {
          target = all[0] as VpnNode;
          target.opts.links = { ...target.opts.links, longDistance: 0 };
        },
      ));
    });

    afterAll(() => stopGroup(lab, nodes));

    it("trims the newest with the documented reason; the refused member does not come back and still reaches it via others", async () => {
      const ring = ringOrder(nodes);
      const t = ring.indexOf(target);
      const neighbours = [ring[(t + 1) % 6], ring[(t + 5) % 6]] as VpnNode[];
      const strangers = nodes.filter((n) => n !== target && !neighbours.includes(n));
      const trimLine = /trimming an incoming link beyond the cap \{"peerUid":"([0-9a-f]+)","cap":(\d+)\}/;
      const trimmed = await waitFor(
        "the target trimming an incoming link",
        () => target.controller.log().match(trimLine) ?? undefined,
        120_000,
      );
      expect(trimmed[2]).toBe("2");
      const refused = strangers.find((n) => uidOf(n) === trimmed[1]);
      expect(refused, `trimmed ${trimmed[1]}, not one of the members that want a long link`).toBeDefined();
      const r = refused as VpnNode;
      const kept = strangers.filter((n) => n !== r);
      await waitFor(
        `${r.opts.user} drawing another long-distance target`,
        () =>
          r.controller
            .log()
            .includes(
              `a long-distance link went down (refused, or lost); drawing another target {"peerUid":"${uidOf(target)}"`,
            ),
        30_000,
      );
      await waitFor(
        "the target holding its 2 ring links and 2 incoming ones",
        async () => {
          for (const n of [...neighbours, ...kept]) if (!(await target.connectedTo(uidOf(n)))) return false;
          return !(await linkedEitherWay(target, r));
        },
        60_000,
      );
      // No churn: the refused member does not link again (it is not asked again for REFUSED_MS).
      await sleep(15_000);
      expect(await linkedEitherWay(target, r)).toBe(false);
      const trims = target.controller.log().match(new RegExp(trimLine.source, "g")) ?? [];
      // Under load a ring link may flap: while it is down the next member along stands in as a
      // ring neighbour for up to a minute (SUSPECT_MS), so the count is waited for, not sampled once.
      let roles: { uid: string; role?: string }[] = [];
      const incomingOf = () => roles.filter((p) => p.role === "incoming").length;
      await waitFor(
        "the target's status showing its 2 incoming links",
        async () => {
          roles = (await target.status()).peers as { uid: string; role?: string }[];
          return incomingOf() === 2;
        },
        90_000,
      ).catch((err: Error) => {
        throw new Error(
          `${err.message}; roles: ${JSON.stringify(roles.map((p) => [nodes.find((n) => uidOf(n) === p.uid)?.opts.user ?? p.uid, p.role]))}`,
        );
      });
      expect(await linkedEitherWay(target, r)).toBe(false);
      const incoming = incomingOf();
      // The bye's reason reaches the refused side when it comes before the link's own close.
      const byeSeen = r.controller.log().includes(`"reason":"${INCOMING_FULL}"`);

      const route = ((await r.status()).routes as { prefix: string; via: string | null }[]).find(
        (x) => x.prefix === `${target.address}/32`,
      );
      expect(route?.via).toBeTruthy();
      const via = nodes.find((n) => uidOf(n) === route?.via);
      const ping = await r.ping(target.address, 5, 2);
      expect(ping.stdout).toMatch(/5 received/);
      console.log(
        `structured incoming cap: ${target.opts.user} (cap 2) trimmed ${trims.length} incoming link(s), ${r.opts.user}'s first; it holds ${incoming} incoming; ${r.opts.user} saw the bye's reason: ${byeSeen}; ${r.opts.user} -> ${target.opts.user} via ${via?.opts.user}: 5/5 pings (${ping.stdout.match(/rtt min\/avg\/max\/mdev = [\d./]+ ms/)?.[0]})`,
      );
    }, 300_000);
  },
);
