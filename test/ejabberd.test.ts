// GroupVPN through ejabberd (Debian 23.01) instead of prosody: STARTTLS with the lab's certificate,
// accounts made with `ejabberdctl register`, the group as a mod_shared_roster group.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EjabberdHandle, Lab } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

describe.skipIf(!can.ok)("GroupVPN over ejabberd with a mod_shared_roster group", () => {
  let lab: Lab;
  let ejabberd: EjabberdHandle;
  const nodes: VpnNode[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "ejab" });
    const started = Date.now();
    // carol has an account but is outside the group: nobody may link with her.
    ejabberd = await lab.startEjabberd({
      users: labUsers(["alice", "bob", "carol"]),
      groups: { lab: ["alice", "bob"] },
    });
    console.log(`ejabberd up with accounts and the shared roster group in ${Date.now() - started} ms`);
    nodes.push(...(await addGroupNodes(lab, ejabberd, ["alice", "bob", "carol"], "10.10.9")));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await ejabberd?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("the shared roster group gives each member the other with subscription both", async () => {
    const roster = await ejabberd.ctl(["get_roster", "alice", ejabberd.domain]);
    expect(roster).toMatch(/^bob@lab\.local\s.*\bboth\b.*\blab$/m);
    expect(roster).not.toMatch(/carol/);
  });

  it("two members ping each other through a link set up over ejabberd; the outsider gets no link", async () => {
    const [alice, bob, carol] = nodes as [VpnNode, VpnNode, VpnNode];
    await Promise.all(nodes.map((n) => n.start()));
    const started = Date.now();
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 2)).code === 0, 30_000);
    const firstMs = Date.now() - started;
    const ping = await alice.ping(bob.address, 20, 1);
    const lost = /(\d+)% packet loss/.exec(ping.stdout)?.[1];
    const link = await alice.connectedTo(uidForIpv4(bob.address));
    console.log(
      `ejabberd: first ping alice->bob ${firstMs} ms after start; 20 pings, ${lost}% lost; path ${link?.path}`,
    );
    expect(ping.code).toBe(0);
    expect(["host", "prflx", "srflx"]).toContain(link?.path); // direct (prflx when a check arrived before the candidate)
    expect((await bob.ping(alice.address, 1, 2)).code).toBe(0);
    expect((await carol.ping(alice.address, 1, 1)).code).not.toBe(0);
    expect(await carol.links()).toEqual([]);
  });
});
