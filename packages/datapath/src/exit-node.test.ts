import { describe, expect, it } from "vitest";
import { createLogger, transports } from "winston";
import type { ExitKernel, ExitRoutingState, Family, MasqueradeState } from "./exit-kernel.js";
import { ExitNode, type ExitView } from "./exit-node.js";

const silent = createLogger({ transports: [new transports.Console({ silent: true })] });
const EXIT = "1".repeat(32);

function describeRouting(s: ExitRoutingState | null): string {
  return s
    ? `${s.device} v${[...s.families].sort().join("+v")} bypass ${[...s.bypass].sort().join(",")}`
    : "none";
}

function setup(failRouting = false) {
  const state = {
    connected: false,
    families: new Set<Family>(),
    remotes: [] as string[],
    routing: "none",
    nat: null as MasqueradeState | null,
    cleared: false,
    staleChecks: 0,
  };
  const kernel: ExitKernel = {
    route: async (_from, to) => {
      if (failRouting) throw new Error("ip rule add: Operation not permitted");
      state.routing = describeRouting(to);
    },
    masquerade: async (_from, to) => {
      state.nat = to;
    },
    clearSync: () => {
      state.cleared = true;
    },
    clearStale: async () => {
      state.staleChecks++;
      return 0;
    },
  };
  const view: ExitView = {
    device: () => "tincan0",
    overlayPrefixes: () => ["10.10.0.0/16", "fd50::/64"],
    defaultFamilies: () => state.families,
    isConnected: () => state.connected,
    linkRemotes: () => state.remotes,
  };
  return { exit: new ExitNode(kernel, view, silent), state };
}

/** sync() is queued: wait for it. */
const settle = () => new Promise((r) => setTimeout(r, 10));

describe("ExitNode", () => {
  it("routes all traffic to the vNIC only while the exit's link is connected and its default route set", async () => {
    const { exit, state } = setup();
    await exit.setUse({ peerUid: EXIT, bypass: ["100.64.0.1"] });
    expect(state.routing).toBe("none"); // no link, no default route yet
    state.families.add(4);
    exit.sync();
    await settle();
    expect(state.routing).toBe("none");
    state.connected = true;
    state.remotes = ["100.64.0.10"];
    exit.sync();
    await settle();
    expect(state.routing).toBe("tincan0 v4 bypass 100.64.0.1,100.64.0.10");
    expect(exit.inUse).toBe(EXIT);
    state.families.add(6);
    exit.sync();
    await settle();
    expect(state.routing).toBe("tincan0 v4+v6 bypass 100.64.0.1,100.64.0.10");
    // The link fails (the exit died): normal routing at once, back when it reconnects.
    state.connected = false;
    exit.sync();
    await settle();
    expect(state.routing).toBe("none");
    expect(exit.inUse).toBeNull();
    state.connected = true;
    exit.sync();
    await settle();
    expect(state.routing).not.toBe("none");
    await exit.setUse(null);
    expect(state.routing).toBe("none");
    expect(state.staleChecks).toBe(1); // leftovers of a killed datapath: looked for once
  });

  it("a kernel refusal fails exit.use and leaves nothing recorded as installed", async () => {
    const { exit, state } = setup(true);
    state.connected = true;
    state.families.add(4);
    await expect(exit.setUse({ peerUid: EXIT, bypass: [] })).rejects.toThrow(/Operation not permitted/);
    expect(exit.inUse).toBeNull();
  });

  it("masquerades the overlay prefixes when serving, stops on request, clears everything on close", async () => {
    const { exit, state } = setup();
    await exit.setServe(true);
    expect(state.nat).toMatchObject({ device: "tincan0", prefixes: ["10.10.0.0/16", "fd50::/64"] });
    expect(exit.isServing).toBe(true);
    await exit.setServe(false);
    expect(state.nat).toBeNull();
    await exit.setServe(true);
    exit.close();
    expect(state.cleared).toBe(true);
    expect(exit.isServing).toBe(false);
  });
});
