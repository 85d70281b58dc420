import { describe, expect, it } from "vitest";
import { createLogger, transports } from "winston";
import { Datapath } from "./datapath.js";
import type { KernelRoutes } from "./kernel-routes.js";
import { fakeVnicFactory } from "./testing.js";

const silent = createLogger({ transports: [new transports.Console({ silent: true })] });
const OWN = "0".repeat(32);
const PEER = "1".repeat(32);

function datapath(failing = false) {
  const calls: string[] = [];
  const kernelRoutes: KernelRoutes = {
    add: async (dev, prefix) => {
      if (failing) throw new Error("RTNETLINK answers: Operation not permitted");
      calls.push(`add ${prefix} ${dev}`);
    },
    remove: async (dev, prefix) => void calls.push(`del ${prefix} ${dev}`),
    removeAllSync: (dev, prefixes) => {
      for (const p of prefixes) calls.push(`exit del ${p} ${dev}`);
    },
  };
  const dp = new Datapath({ vnicFactory: fakeVnicFactory(), logger: silent, notify: () => {}, kernelRoutes });
  dp.methods["vnic.configure"]({ uid: OWN, name: "tincan0", ipv4: "10.10.0.1/16", mtu: 1280 });
  return { dp, calls };
}

describe("route.set with kernel, and routes to our own UID", () => {
  it("adds the kernel route with the route, removes it with route.remove, a plain route.set and on exit", async () => {
    const { dp, calls } = datapath();
    await dp.methods["route.set"]({ prefix: "192.168.50.0/24", peerUid: PEER, kernel: true });
    await dp.methods["route.set"]({ prefix: "fd00:50::/64", peerUid: PEER, kernel: true });
    expect(dp.methods["route.query"]({}).map((r) => [r.prefix, r.kernel])).toEqual(
      expect.arrayContaining([
        ["192.168.50.0/24", true],
        ["fd00:50::/64", true],
      ]),
    );
    await dp.methods["route.set"]({ prefix: "192.168.50.0/24", peerUid: PEER });
    await dp.methods["route.remove"]({ prefix: "192.168.50.0/24" });
    dp.close();
    expect(calls).toEqual([
      "add 192.168.50.0/24 tincan0",
      "add fd00:50::/64 tincan0",
      "del 192.168.50.0/24 tincan0",
      "exit del fd00:50::/64 tincan0",
    ]);
  });

  it("a kernel refusal fails the route.set and sets no route", async () => {
    const { dp } = datapath(true);
    await expect(
      dp.methods["route.set"]({ prefix: "192.168.50.0/24", peerUid: PEER, kernel: true }),
    ).rejects.toThrow(/kernel: RTNETLINK answers: Operation not permitted/);
    expect(dp.methods["route.query"]({})).toEqual([]);
    dp.close();
  });

  it("a route to our own UID takes no via, mapTo or kernel", async () => {
    const { dp } = datapath();
    await dp.methods["route.set"]({ prefix: "192.168.7.0/24", peerUid: OWN });
    await expect(
      dp.methods["route.set"]({ prefix: "192.168.8.0/24", peerUid: OWN, kernel: true }),
    ).rejects.toThrow(/own uid/);
    expect(dp.methods["route.query"]({}).map((r) => r.prefix)).toEqual(["192.168.7.0/24"]);
    dp.close();
  });

  it("a transit-only route goes to another member and takes no mapTo or kernel; route.query shows it", async () => {
    const { dp } = datapath();
    for (const bad of [
      { prefix: "192.168.8.0/24", peerUid: OWN, transit: true },
      { prefix: "192.168.8.0/24", peerUid: PEER, transit: true, kernel: true },
      { prefix: "192.168.8.9/32", peerUid: PEER, transit: true, mapTo: "172.31.0.9" },
      { prefix: "0.0.0.0/0", peerUid: PEER, transit: true },
    ])
      await expect(dp.methods["route.set"](bad)).rejects.toThrow(/transit/);
    await dp.methods["route.set"]({
      prefix: "192.168.8.0/24",
      peerUid: PEER,
      via: "2".repeat(32),
      transit: true,
    });
    await dp.methods["route.set"]({ prefix: "192.168.9.0/24", peerUid: PEER });
    expect(dp.methods["route.query"]({}).map((r) => [r.prefix, r.transit])).toEqual(
      expect.arrayContaining([
        ["192.168.8.0/24", true],
        ["192.168.9.0/24", undefined],
      ]),
    );
    dp.close();
  });
});
