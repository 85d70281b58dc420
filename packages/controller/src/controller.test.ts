import { readFileSync } from "node:fs";
import { GroupVpnConfig, type RpcParamsOf } from "@tincan/protocol";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { CoreConfig, Policy } from "./controller.js";
import { Controller } from "./controller.js";
import { RPC_TIMEOUT, RpcError } from "./datapath-client.js";
import { createLogger } from "./logger.js";

const sample = GroupVpnConfig.parse(
  JSON.parse(readFileSync(new URL("../../../configs/groupvpn.json", import.meta.url), "utf8")),
);
const config = {
  ...sample,
  xmpp: { ...sample.xmpp, password: "x", caFile: undefined },
} as unknown as CoreConfig;
const policy = { uid: "a".repeat(32), presence: () => ({}), vnic: () => ({}) } as unknown as Policy;

/** A controller whose datapath answers route.set per `answer` (nothing is started: no sockets, no XMPP). */
function controllerWith(answer: () => boolean) {
  const ctl = new Controller({
    name: "test",
    config,
    logger: createLogger("error", { silent: true }),
    policy,
    statusFile: null,
  });
  const calls: RpcParamsOf<"route.set">[] = [];
  const call = async (_method: string, params: RpcParamsOf<"route.set">) => {
    calls.push(params);
    if (!answer()) throw new RpcError("route.set", RPC_TIMEOUT, "no answer from the datapath");
    return {};
  };
  Object.defineProperty(ctl, "datapath", { value: { call } });
  return { ctl, calls };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("Controller.setRoute", () => {
  it("keeps a route the datapath did not answer for, and sets it again until it answers", async () => {
    vi.useFakeTimers();
    let answering = false;
    const { ctl, calls } = controllerWith(() => answering);
    const route = { prefix: "10.10.0.2/32", peerUid: "b".repeat(32) };
    await ctl.setRoute(route);
    expect(ctl.routes()).toEqual([route]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toHaveLength(2);
    answering = true;
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toHaveLength(3);
  });

  it("stops setting a route again once it was replaced", async () => {
    vi.useFakeTimers();
    const { ctl, calls } = controllerWith(() => false);
    await ctl.setRoute({ prefix: "10.10.0.2/32", peerUid: "b".repeat(32) });
    await ctl.setRoute({ prefix: "10.10.0.2/32", peerUid: "c".repeat(32) });
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls.map((c) => c.peerUid[0])).toEqual(["b", "c", "c"]);
  });

  it("still fails on an error the datapath reported", async () => {
    const ctl = new Controller({
      name: "test",
      config,
      logger: createLogger("error", { silent: true }),
      policy,
      statusFile: null,
    });
    const refuse = async () => {
      throw new RpcError("route.set", -32602, "invalid params");
    };
    Object.defineProperty(ctl, "datapath", { value: { call: refuse } });
    await expect(ctl.setRoute({ prefix: "10.10.0.2/32", peerUid: "b".repeat(32) })).rejects.toThrow(
      /invalid params/,
    );
    expect(ctl.routes()).toEqual([]);
  });
});
