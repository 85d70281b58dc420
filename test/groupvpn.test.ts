// GroupVPN end to end: real prosody (shared roster group) and coturn in the lab's "internet",
// tincan + groupvpn on every host, traffic through the VPN.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { type StatusReport, uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CoturnHandle, Lab, type ProsodyHandle, tail } from "./lab/index.js";
import { DAEMON_NODE_FLAGS, REPO, waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, fullJidOf, labUsers, sendRogueOffers, VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

async function pingAllPairs(nodes: VpnNode[]): Promise<string[]> {
  const failures: string[] = [];
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b) continue;
      const r = await a.ping(b.address, 1, 2);
      if (r.code !== 0) failures.push(`${a.opts.user}->${b.opts.user}`);
    }
  }
  return failures;
}

async function reachesAll(from: VpnNode, to: VpnNode[]): Promise<boolean> {
  for (const t of to) if ((await from.ping(t.address, 1, 1)).code !== 0) return false;
  return true;
}

describe.skipIf(!can.ok)("GroupVPN, 3 nodes on a flat network, proactive", () => {
  let lab: Lab;
  const nodes: VpnNode[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "gvp" });
    const names = ["alice", "bob", "carol"];
    const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    nodes.push(...(await addGroupNodes(lab, prosody, names, "10.10.0", { links: { policy: "proactive" } })));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  // How fast is measured by bench/ (link setup, scale); here a loaded CI machine gets time.
  it("every pair pings soon after start, over direct links", async () => {
    await Promise.all(nodes.map((n) => n.start()));
    const started = Date.now();
    await waitFor("all pairs to ping", async () => (await pingAllPairs(nodes)).length === 0, 20_000);
    console.log(`proactive: all pairs ping ${Date.now() - started} ms after the controllers ran`);
    // A ping may pass via a neighbour while the direct link still connects.
    await waitFor("2 links connected", async () => (await nodes[0]!.connectedLinks()).length === 2);
  });

  it("tincanctl shows peers with names, addresses and paths", async () => {
    const out = await nodes[0]!.host.run([
      "node",
      join(REPO, "packages/controller/dist/tincanctl.js"),
      "status",
      "--token-file",
      nodes[0]!.tokenFile,
    ]);
    expect(out).toMatch(/bob@lab\.local/);
    expect(out).toMatch(/10\.10\.0\.3/);
    expect(out).toMatch(/connected/);
  });

  it("recovers from a controller crash: the restarted controller links up again", async () => {
    const [alice, bob, carol] = nodes as [VpnNode, VpnNode, VpnNode];
    alice.controller.signal("SIGKILL");
    await alice.controller.wait();
    await alice.startController();
    await waitFor("alice reaches bob and carol again", () => reachesAll(alice, [bob, carol]), 20_000);
  });

  it("re-configures a restarted datapath and sets its links up again", async () => {
    const [alice, bob, carol] = nodes as [VpnNode, VpnNode, VpnNode];
    alice.tincan.signal("SIGKILL");
    await alice.tincan.wait();
    await alice.startDatapath();
    await waitFor("alice reaches bob and carol again", () => reachesAll(alice, [bob, carol]), 20_000);
    await waitFor("2 links connected", async () => (await alice.connectedLinks()).length === 2);
  });
});

describe.skipIf(!can.ok)("GroupVPN, 4 nodes, on-demand links with idle trimming", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  const nodes: VpnNode[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "gvo" });
    const names = ["n1", "n2", "n3", "n4"];
    prosody = await lab.startProsody({ users: labUsers([...names, "mallory"]), groups: { lab: names } });
    nodes.push(
      ...(await addGroupNodes(lab, prosody, names, "10.10.1", {
        links: { policy: "on-demand", idleTimeoutSec: 8 },
      })),
    );
    await Promise.all(nodes.map((n) => n.start()));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("has no links at start; a ping creates exactly that link; the first ping is answered", async () => {
    await new Promise((r) => setTimeout(r, 1500)); // presence settles
    for (const n of nodes) expect(await n.links()).toEqual([]);
    const [n1, n2, n3, n4] = nodes as [VpnNode, VpnNode, VpnNode, VpnNode];
    const t0 = Date.now();
    // The datapath holds the first packet while the link forms, up to its hold time (10 s): a busy
    // machine may take seconds to link, so the ping waits that long; a packet lost is never answered.
    const r = await n1.ping(n3.address, 1, 11);
    // Unanswered: where the packet went (held, sent, received, dropped and why) at both ends.
    const counters = async (n: VpnNode) => {
      const { vnic, links } = (await n.status()) as unknown as StatusReport;
      const rows = links.map(({ state, path, transport, txPackets, rxPackets, drops }) => ({
        ...{ state, path, transport, txPackets, rxPackets, drops },
      }));
      return JSON.stringify({ queued: vnic.queued, drops: vnic.drops, links: rows });
    };
    expect(
      r.code,
      r.code === 0 ? "" : `${r.stdout}\nn1 ${await counters(n1)}\nn3 ${await counters(n3)}`,
    ).toBe(0);
    console.log(
      `on-demand: first ping answered after ${Date.now() - t0} ms (${r.stdout.match(/time=[\d.]+ ms/)?.[0]})`,
    );
    expect((await n1.links()).map((l) => l.peerUid)).toEqual([uidForIpv4(n3.address)]);
    expect(await n2.links()).toEqual([]);
    expect(await n4.links()).toEqual([]);
  });

  it("trims the link after the idle timeout", async () => {
    const [n1] = nodes as [VpnNode];
    await waitFor("idle link trimmed", async () => (await n1.links()).length === 0, 30_000);
  });

  it("routes via a member that has a link while the direct link cannot come up", async () => {
    const [n1, n2, n3] = nodes as [VpnNode, VpnNode, VpnNode];
    expect((await n2.ping(n3.address, 1, 5)).code).toBe(0); // n2-n3 link
    expect((await n1.ping(n2.address, 1, 5)).code).toBe(0); // n1-n2 link: n2 tells n1 it reaches n3
    // No direct path between n1 and n3 on the underlay (UDP only: signalling still works).
    for (const [chain, dir] of [
      ["OUTPUT", "-d"],
      ["INPUT", "-s"],
    ] as const) {
      await n1.host.run(["iptables", "-A", chain, "-p", "udp", dir, n3.host.ip, "-j", "DROP"]);
    }
    // The via route may wait for n2's next link announcement (at most one a second); the direct
    // setup lasts setupTimeoutSec (10 s): 6 s plus the last ping's 2 s fall inside it.
    const t0 = Date.now();
    const reached = await waitFor(
      "n1 -> n3 via n2",
      async () => (await n1.ping(n3.address, 1, 2)).code === 0,
      6000,
    )
      .then(() => true)
      .catch(() => false);
    console.log(`via a member: n1 -> n3 answered after ${Date.now() - t0} ms`);
    expect(reached, `n1: ${tail(n1.controller.log(), 150)}\n\nn3: ${tail(n3.controller.log(), 150)}`).toBe(
      true,
    );
    expect(await n1.connectedTo(uidForIpv4(n3.address))).toBeUndefined();
    expect(n1.controller.log()).toMatch(/routing via a neighbour while the link is set up/);
    for (const [chain, dir] of [
      ["OUTPUT", "-d"],
      ["INPUT", "-s"],
    ] as const) {
      await n1.host.run(["iptables", "-D", chain, "-p", "udp", dir, n3.host.ip, "-j", "DROP"]);
    }
  });

  it("refuses offers from a JID outside the group and logs it", async () => {
    const [n1] = nodes as [VpnNode];
    const rogueHost = await lab.addHost("mallory");
    // n1's full JID: its resource is random; read it from n1's status file via tincanctl.
    const jid = await fullJidOf(n1);
    expect(jid).toMatch(/^n1@lab\.local\//);
    const r = await sendRogueOffers(rogueHost, prosody, "mallory", jid, uidForIpv4(n1.address));
    expect(r.code, r.stderr).toBe(0);
    await waitFor("the refusal logged", () => /mallory@lab\.local/.test(n1.controller.log()));
    expect((await n1.links()).map((l) => l.peerUid)).not.toContain(uidForIpv4("10.10.0.66"));
    expect((await n1.status()).routes).not.toContainEqual(
      expect.objectContaining({ prefix: "10.10.0.66/32" }),
    );
    const refusals = n1.controller.log().match(/mallory@lab\.local/g) ?? [];
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    expect(refusals.length).toBeLessThanOrEqual(2); // logged once, not per stanza
  });
});

describe.skipIf(!can.ok)("GroupVPN through NAT routers with STUN/TURN", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  let coturn: CoturnHandle;
  const nodes: VpnNode[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "gvn" });
    const names = ["open", "natted", "sym1", "sym2"];
    prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    coturn = await lab.startCoturn({ user: "turnuser", password: "turnpass" });
    const hosts = [
      await lab.addHost("open"),
      await lab.addHost("natted", { nat: "masquerade" }),
      await lab.addHost("sym1", { nat: "symmetric", lossPercent: 3 }),
      await lab.addHost("sym2", { nat: "symmetric", lossPercent: 3 }),
    ];
    for (const [i, host] of hosts.entries()) {
      nodes.push(
        new VpnNode(lab, host, {
          user: names[i]!,
          ipv4: `10.10.2.${i + 1}/16`,
          prosody,
          coturn,
          // Time for a direct setup on a loaded machine before the relay is tried (the test of the
          // NAT host wants a direct path).
          links: { policy: "on-demand", relayFallbackSec: 8 },
        }),
      );
    }
    await Promise.all(nodes.map((n) => n.start()));
    await new Promise((r) => setTimeout(r, 1500));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("links a NAT host to an open host directly (srflx or prflx)", async () => {
    const [open, natted] = nodes as [VpnNode, VpnNode];
    const r = await natted.ping(open.address, 3, 5);
    expect(r.stdout).toMatch(/[1-3] received/);
    const link = await waitFor("connected", () => natted.connectedTo(uidForIpv4(open.address)));
    expect(["srflx", "prflx"]).toContain(link.path);
    // our end is behind the NAT: libjuice names it host, the datapath srflx (pair-types.ts)
    expect(link.localType).toBe("srflx");
  });

  it("links two hosts behind symmetric NATs with 3% loss through the TURN relay", async () => {
    const sym1 = nodes[2]!;
    const sym2 = nodes[3]!;
    const t0 = Date.now();
    await waitFor("ping through relay", async () => (await sym1.ping(sym2.address, 1, 2)).code === 0, 30_000);
    console.log(`symmetric NATs: first reply after ${Date.now() - t0} ms`);
    const link = await waitFor("connected", () => sym1.connectedTo(uidForIpv4(sym2.address)));
    expect(link.path).toBe("relay");
  });

  it("keeps links passing traffic while prosody is down; controllers log in again", async () => {
    const [open, natted] = nodes as [VpnNode, VpnNode];
    // A crash, not a clean shutdown (which would announce everyone offline).
    prosody.process.signal("SIGKILL");
    await prosody.process.wait();
    const r = await natted.ping(open.address, 3, 2);
    expect(r.code, r.stdout).toBe(0);
    await prosody.restart();
    await waitFor(
      "controllers to log in again",
      () => nodes.every((n) => (n.controller.log().match(/xmpp online/g) ?? []).length >= 2),
      60_000,
    );
    const again = await natted.ping(open.address, 1, 2);
    expect(again.code).toBe(0);
  });
});

describe("groupvpn command line", () => {
  const bin = join(REPO, "packages/groupvpn/dist/cli.js");
  const run = promisify(execFile);

  it("exits 2 with a message naming the file and field for a bad config", async () => {
    const file = join(process.env.TMPDIR ?? "/tmp", `bad-groupvpn-${process.pid}.json`);
    writeFileSync(
      file,
      JSON.stringify({ group: "lab", vnic: { ipv4: "10.10.0.300/16" }, xmpp: {}, extra: 1 }),
    );
    const err = await run("node", [bin, "--config", file]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain(file);
    expect(err?.stderr).toMatch(/vnic\.ipv4/);
    expect(err?.stderr).toMatch(/extra/);
  });

  it("exits 2 on a missing config file and on unknown flags", async () => {
    const missing = await run("node", [bin, "--config", "/nonexistent/x.json"]).catch((e) => e);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read/);
    const flag = await run("node", [bin, "--bogus"]).catch((e) => e);
    expect(flag.code).toBe(2);
  });
});

describe("installed binaries", () => {
  const run = promisify(execFile);

  it("run as the README says (pnpm exec NAME), daemons with their V8 flags", async () => {
    for (const name of ["tincan", "groupvpn", "socialvpn", "tincanctl"]) {
      const { stdout } = await run("pnpm", ["exec", name, "--help"], { cwd: REPO });
      expect(stdout, name).toMatch(/Usage/);
    }
    for (const name of ["tincan", "groupvpn", "socialvpn"]) {
      expect(readFileSync(join(REPO, "node_modules/.bin", name), "utf8"), name).toContain(
        ` node  ${DAEMON_NODE_FLAGS.join(" ")} `,
      );
    }
  });
});
