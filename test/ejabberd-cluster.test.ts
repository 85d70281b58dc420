// GroupVPN on a 2-node ejabberd cluster (one XMPP domain, Mnesia shared by `join_cluster`): half of the
// nodes log in to each cluster node, found through DNS SRV (`_xmpp-client._tcp.lab.local` with both
// nodes as targets; each half asks a resolver that lists "its" node first, as an operator would give
// two sites two priorities). When one cluster node stops, its clients log in to the next SRV target,
// the other, and links that carry traffic stay up.
import { type ControllerStatus, uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DnsRecord,
  type EjabberdClusterHandle,
  type EjabberdClusterNode,
  Lab,
  startDnsServer,
  useResolver,
  xmppRoster,
} from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { PingRecorder } from "./support/ping-recorder.js";
import { addGroupNodes, labUsers, PASSWORD, type VpnNode, waitAllPairsPing } from "./support/vpn-node.js";

const can = Lab.canRun();
const USERS = ["n1", "n2", "n3", "n4"];
/** XMPP ping period of the nodes (default 60 s): a session to a node that went away is noticed sooner. */
const PING_SEC = 10;

/** SRV records listing the cluster's nodes, `first` with the better (lower) priority. */
function srvRecords(cluster: EjabberdClusterHandle, first: number): DnsRecord[] {
  return cluster.nodes.flatMap((n, i) => {
    const target = `xmpp${i + 1}.${cluster.domain}`;
    return [
      {
        name: `_xmpp-client._tcp.${cluster.domain}`,
        type: "SRV" as const,
        data: { priority: i === first ? 10 : 20, weight: 1, port: n.port, target },
      },
      { name: target, type: "A" as const, data: n.host },
    ];
  });
}

async function controllerOf(node: VpnNode): Promise<ControllerStatus | null> {
  return (await node.status()).controller as ControllerStatus | null;
}

async function xmppOf(node: VpnNode): Promise<NonNullable<ControllerStatus["xmpp"]>> {
  const xmpp = (await controllerOf(node))?.xmpp;
  if (!xmpp) throw new Error(`${node.host.name}: no xmpp status`);
  return xmpp;
}

describe.skipIf(!can.ok)("GroupVPN on a 2-node ejabberd cluster", () => {
  let lab: Lab;
  let cluster: EjabberdClusterHandle;
  const nodes: VpnNode[] = [];
  const undoResolvers: (() => void)[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "ejcl" });
    const started = Date.now();
    cluster = await lab.startEjabberdCluster({ nodes: 2, users: labUsers(USERS), groups: { lab: USERS } });
    console.log(
      `ejabberd cluster ${(await cluster.listCluster()).join(" + ")} up with accounts and group in ${Date.now() - started} ms`,
    );
    // Two resolvers: one lists xmpp1 first (for n1, n2), the other xmpp2 first (for n3, n4).
    const dns1 = await startDnsServer(lab, await lab.addHost("dns1"), srvRecords(cluster, 0));
    const dns2 = await startDnsServer(lab, await lab.addHost("dns2"), srvRecords(cluster, 1));
    nodes.push(
      ...(await addGroupNodes(lab, cluster.nodes[0] as EjabberdClusterNode, USERS, "10.10.21", {
        links: { policy: "proactive" },
        xmpp: { service: undefined, pingIntervalSec: PING_SEC },
        logLevel: "info",
      })),
    );
    for (const [i, n] of nodes.entries()) undoResolvers.push(useResolver(n.host, i < 2 ? dns1.ip : dns2.ip));
  }, 300_000); // every ejabberdctl command starts an Erlang VM: ~3 s each, far more on a loaded machine

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    for (const undo of undoResolvers) undo();
    await cluster?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("accounts and the shared roster group are the same on both cluster nodes", async () => {
    for (const node of cluster.nodes) {
      const roster = await node.ctl(["get_roster", "n1", cluster.domain]);
      for (const peer of ["n2", "n3", "n4"])
        expect(roster).toMatch(new RegExp(`^${peer}@lab\\.local\\s.*\\bboth\\b`, "m"));
    }
  });

  it("two nodes log in to each cluster node and all pairs ping across", async () => {
    const started = Date.now();
    await Promise.all(nodes.map((n) => n.start()));
    const servers = await Promise.all(nodes.map(async (n) => (await xmppOf(n)).server));
    console.log(`logged in to: ${nodes.map((n, i) => `${n.host.name} ${servers[i]}`).join(", ")}`);
    expect(servers).toEqual([
      "xmpp://xmpp1.lab.local:5222",
      "xmpp://xmpp1.lab.local:5222",
      "xmpp://xmpp2.lab.local:5222",
      "xmpp://xmpp2.lab.local:5222",
    ]);
    await waitAllPairsPing(nodes, (_, to) => [to.address], 60_000);
    console.log(`all 12 pairs ping ${Date.now() - started} ms after start`);
  });

  it("a cluster node stopped: its clients log in to the other, links carrying traffic stay up, it comes back", async () => {
    const [n1, n2, n3, n4] = nodes as [VpnNode, VpnNode, VpnNode, VpnNode];
    const [xmpp1] = cluster.nodes as [EjabberdClusterNode];
    const upSince = async (from: VpnNode, to: VpnNode) =>
      (await controllerOf(from))?.links?.[uidForIpv4(to.address)]?.upSince;
    const linksBefore = [await upSince(n1, n3), await upSince(n2, n4)];
    expect(linksBefore.every((t) => typeof t === "number")).toBe(true);

    // Pings every 0.1 s across the two halves (each way) while xmpp1 goes away.
    const pings = [
      PingRecorder.start(n1.host, n3.address),
      PingRecorder.start(n3.host, n1.address),
      PingRecorder.start(n2.host, n4.address),
    ];
    await waitFor("pings flowing", () => pings.every((p) => p.record().replies.length >= 5), 10_000);
    const stopAt = Date.now();
    await xmpp1.stop();
    const stoppedMs = Date.now() - stopAt;
    expect(xmpp1.running).toBe(false);

    await waitFor(
      "n1 and n2 online on xmpp2",
      async () => {
        for (const n of [n1, n2]) {
          const x = await xmppOf(n);
          if (!x.online || x.server !== "xmpp://xmpp2.lab.local:5222") return false;
        }
        return true;
      },
      4 * PING_SEC * 1000,
    );
    const failoverMs = Date.now() - stopAt;
    // Presence crosses again: n3 sees n1 (now on xmpp2) online.
    await waitFor(
      "n3 sees n1 online again",
      async () =>
        (await controllerOf(n3))?.members?.find((m) => m.jid === "n1@lab.local")?.state === "online",
      20_000,
    );
    await new Promise((r) => setTimeout(r, 3000));
    const records = await Promise.all(pings.map((p) => p.stop()));
    const lost = records.map((r) => `${r.lost}/${r.sent} (longest gap ${r.maxGapMs} ms)`);
    console.log(
      `xmpp1 stopped in ${stoppedMs} ms; n1, n2 online on xmpp2 ${failoverMs} ms after the stop; ` +
        `pings lost n1->n3 ${lost[0]}, n3->n1 ${lost[1]}, n2->n4 ${lost[2]}`,
    );
    for (const r of records) {
      expect(r.sent).toBeGreaterThan(30);
      expect(r.lost).toBeLessThanOrEqual(Math.max(2, r.sent * 0.03));
    }
    expect([await upSince(n1, n3), await upSince(n2, n4)]).toEqual(linksBefore); // the same links
    for (const n of [n1, n2]) expect((await xmppOf(n)).reconnects).toBeGreaterThanOrEqual(1);

    const restartAt = Date.now();
    await xmpp1.start();
    await waitFor(
      "xmpp1 back in the cluster",
      async () => (await cluster.listCluster(1)).length === 2,
      60_000,
    );
    // The restarted node serves the cluster's accounts and group again.
    const roster = await xmppRoster(
      lab.host("dns1"),
      { service: xmpp1.service, domain: cluster.domain, caFile: cluster.caFile },
      "n4",
      PASSWORD,
    );
    console.log(`xmpp1 back in the cluster and serving logins ${Date.now() - restartAt} ms after its start`);
    expect(roster.map((r) => r.jid).sort()).toEqual(["n1@lab.local", "n2@lab.local", "n3@lab.local"]);
    await waitAllPairsPing(nodes, (_, to) => [to.address], 30_000);
  });
});
