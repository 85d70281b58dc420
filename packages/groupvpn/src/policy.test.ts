import type { Controller, LinkEvent } from "@tincan/controller";
import { uidForIpv4 } from "@tincan/protocol";
import { afterEach, describe, expect, it, vi } from "vitest";
import { GroupPolicy } from "./policy.js";

function policyWithFakeController() {
  const calls: { method: string; params: any }[] = [];
  const policy = new GroupPolicy({
    vnic: { name: "tincan0", ipv4: "10.10.0.1/16", mtu: 1280 },
    links: { policy: "proactive" },
  } as ConstructorParameters<typeof GroupPolicy>[0]);
  const ctl = {
    peer: () => undefined,
    routes: () => [],
    log: { debug() {}, info() {}, warn() {} },
    datapath: {
      call: async (method: string, params: unknown) => {
        calls.push({ method, params });
        return {};
      },
    },
  };
  policy.attach(ctl as unknown as Controller);
  return { policy, calls };
}

const linkEvent = (ip: string) => ({ peer: { uid: uidForIpv4(ip) } }) as unknown as LinkEvent;

afterEach(() => {
  vi.useRealTimers();
});

describe("GroupPolicy link announcements", () => {
  it("sends each neighbour one list for a burst of link changes, not one per change", async () => {
    vi.useFakeTimers();
    const { policy, calls } = policyWithFakeController();
    const peers = Array.from({ length: 10 }, (_, i) => `10.10.0.${i + 2}`);
    for (const ip of peers) await policy.onLinkUp(linkEvent(ip));
    await policy.onLinkDown(linkEvent("10.10.0.11"));
    expect(calls.filter((c) => c.method === "icc.send")).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1100);
    const sent = calls.filter((c) => c.method === "icc.send");
    expect(sent).toHaveLength(9);
    expect(sent[0]?.params.data.uids).toHaveLength(9);
    expect(sent[0]?.params.data.uids).not.toContain(uidForIpv4("10.10.0.11"));
    // A later change is announced again.
    await policy.onLinkUp(linkEvent("10.10.0.11"));
    await vi.advanceTimersByTimeAsync(1100);
    expect(calls.filter((c) => c.method === "icc.send")).toHaveLength(19);
  });
});
