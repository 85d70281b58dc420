// A one-process node (`groupvpn --with-datapath tincan.json`): the datapath runs inside the
// controller's process, still driven over JSON-RPC on loopback. Two such nodes link up and ping;
// tincanctl works against them; the log-level signals reach both parts once; a crashed node comes
// back configured when restarted; SIGTERM and SIGHUP stop
// both cleanly (the datapath's own shutdown runs, exit code 0, the vNIC is gone).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

const count = (text: string, pattern: RegExp) => text.match(new RegExp(pattern, "g"))?.length ?? 0;

describe.skipIf(!can.ok)("one-process GroupVPN nodes", () => {
  let lab: Lab;
  let nodes: VpnNode[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "onep" });
    const names = ["alice", "bob"];
    const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    nodes = await addGroupNodes(lab, prosody, names, "10.31.0", {
      links: { policy: "proactive" },
      oneProcess: {},
    });
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("two nodes of one process each link up and ping; tincanctl status works", async () => {
    const [alice, bob] = nodes as [VpnNode, VpnNode];
    await Promise.all(nodes.map((n) => n.start()));
    const started = Date.now();
    await waitFor(
      "alice and bob to ping each other",
      async () =>
        (await alice.ping(bob.address, 1, 2)).code === 0 && (await bob.ping(alice.address, 1, 2)).code === 0,
      30_000,
    );
    console.log(`one-process: both directions ping ${Date.now() - started} ms after the controllers ran`);
    for (const n of nodes) {
      expect(n.tincan).toBe(n.controller);
      const status = await n.status();
      const controller = status.controller as { pid: number; datapathProcess: { pid: number } };
      expect(status.links.map((l) => l.state)).toContain("connected");
      // The datapath answering RPC is the controller's own process.
      expect(controller.datapathProcess.pid).toBe(controller.pid);
      expect(controller.pid).toBe(n.controller.pid);
    }
  });

  it("SIGUSR1 raises both parts to debug, once each", async () => {
    const alice = nodes[0] as VpnNode;
    const before = alice.controller.log();
    alice.controller.signal("SIGUSR1");
    await waitFor("both parts to log the new level", () => {
      const added = alice.controller.log().slice(before.length);
      return added.includes("[tincan] log level set") && added.includes("[groupvpn] log level set");
    });
    const added = alice.controller.log().slice(before.length);
    expect(count(added, /\[tincan\] log level set/)).toBe(1);
    expect(count(added, /\[groupvpn\] log level set/)).toBe(1);
  });

  it("a crash ends both parts; the restarted node is configured again and reaches its peer", async () => {
    const [alice, bob] = nodes as [VpnNode, VpnNode];
    alice.controller.signal("SIGKILL");
    await alice.controller.wait();
    expect((await alice.host.exec(["ip", "link", "show", "tincan0"])).code).not.toBe(0);
    const restarted = Date.now();
    await alice.start();
    await waitFor(
      "alice to reach bob again",
      async () => (await alice.ping(bob.address, 1, 2)).code === 0,
      30_000,
    );
    console.log(`one-process: restarted node reaches its peer ${Date.now() - restarted} ms after start`);
  });

  for (const [i, signal] of [
    [0, "SIGTERM"],
    [1, "SIGHUP"],
  ] as const) {
    it(`${signal} stops the controller and the datapath cleanly; the vNIC is gone`, async () => {
      const node = nodes[i] as VpnNode;
      expect((await node.host.exec(["ip", "link", "show", "tincan0"])).code).toBe(0);
      const before = node.controller.log().length;
      node.controller.signal(signal);
      const exit = await node.controller.wait();
      const log = node.controller.log().slice(before);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(count(log, new RegExp(`got ${signal}; shutting down`))).toBe(1);
      // The datapath's own shutdown (links closed, TUN released) ran, after the controller's stop.
      expect(count(log, new RegExp(`\\[tincan\\] shutting down \\{"signal":"${signal}"\\}`))).toBe(1);
      expect(log.indexOf("stopping: links and routes stay")).toBeLessThan(
        log.indexOf("[tincan] shutting down"),
      );
      expect((await node.host.exec(["ip", "link", "show", "tincan0"])).code).not.toBe(0);
    });
  }
});
