import type { LinkEvent, Member, PolicyContext } from "@tincan/controller";
import { uidForIpv4 } from "@tincan/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ANNOUNCE_EVERY_MS, GroupPolicy } from "./policy.js";

const ADDRESSES = ["10.10.0.2", "10.10.0.3", "10.10.0.4", "10.10.0.5", "10.10.0.6", "10.10.0.7"];

function member(ipv4: string): Member {
  return {
    bareJid: `${ipv4}@lab`,
    fullJid: `${ipv4}@lab/r`,
    tincan: { uid: uidForIpv4(ipv4), ipv4 },
  } as unknown as Member;
}

/** A controller context that records the RPCs its policy makes. */
function fakeContext() {
  const members = ADDRESSES.map(member);
  const calls: { method: string; params: Record<string, unknown> }[] = [];
  const routes: { prefix: string; peerUid: string; via?: string }[] = [];
  const log = { info: () => {}, warn: () => {}, debug: () => {}, error: () => {} };
  const ctx: PolicyContext = {
    log,
    peers: () => members,
    peer: (uid: string) => members.find((m) => m.tincan.uid === uid),
    routes: () => routes,
    setRoute: async (r: { prefix: string; peerUid: string; via?: string }) => {
      calls.push({ method: "route.set", params: r });
      const i = routes.findIndex((x) => x.prefix === r.prefix);
      if (i >= 0) routes.splice(i, 1);
      routes.push(r);
    },
    removeRoute: async () => {},
    datapath: {
      call: (async (method: string, params: Record<string, unknown>) => {
        calls.push({ method, params });
        return {};
      }) as PolicyContext["datapath"]["call"],
    },
  };
  return { ctx, calls, members };
}

function policy() {
  const p = new GroupPolicy({
    group: "lab",
    vnic: { name: "tincan0", ipv4: "10.10.0.1/16", mtu: 1280 },
    links: {
      policy: "on-demand",
      maxLinks: 64,
      idleTimeoutSec: 300,
      relayFallbackSec: 2,
      setupTimeoutSec: 10,
    },
    routes: { advertise: [], accept: false },
  } as ConstructorParameters<typeof GroupPolicy>[0]);
  return { p, ...fakeContext() };
}

const event = (m: Member): LinkEvent => ({
  peer: { uid: m.tincan.uid, bareJid: m.bareJid, fullJid: m.fullJid },
  path: null,
  relayOnly: false,
});
const iccSends = (calls: { method: string }[]) => calls.filter((c) => c.method === "icc.send").length;
const flush = () => vi.advanceTimersByTimeAsync(0);

describe("GroupPolicy link announcements", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("announces the first link change at once and coalesces a burst into one more round", async () => {
    const { p, ctx, calls, members } = policy();
    for (const m of members.slice(0, 5)) await p.onLinkUp(event(m), ctx);
    await flush();
    expect(iccSends(calls)).toBe(1); // the first link, to its one neighbour
    await vi.advanceTimersByTimeAsync(ANNOUNCE_EVERY_MS);
    expect(iccSends(calls)).toBe(1 + 5); // then all five links to all five neighbours (was 1+2+3+4+5)
    const last = calls.filter((c) => c.method === "icc.send").at(-1)?.params.data as { uids: string[] };
    expect(last.uids).toHaveLength(5);
    await vi.advanceTimersByTimeAsync(10 * ANNOUNCE_EVERY_MS);
    expect(iccSends(calls)).toBe(6); // nothing changed: nothing more
  });

  it("routes a setup via a neighbour whose announcement arrives after the setup started", async () => {
    const { p, ctx, calls, members } = policy();
    const [n, target] = members as [Member, Member];
    await p.onLinkUp(event(n), ctx);
    await p.onLinkSetup(event(target), ctx); // nobody has announced the target yet
    const via = () => calls.filter((c) => c.method === "route.set" && c.params.via === n.tincan.uid);
    expect(via()).toHaveLength(0);
    p.onIccMessage(
      { peerUid: n.tincan.uid, data: { type: "groupvpn.links", uids: [target.tincan.uid] } },
      ctx,
    );
    await flush();
    expect(via()).toHaveLength(1);
    expect(via()[0]?.params.peerUid).toBe(target.tincan.uid);
  });

  it("does not route via for a setup that is over", async () => {
    const { p, ctx, calls, members } = policy();
    const [n, target, other] = members as [Member, Member, Member];
    await p.onLinkUp(event(n), ctx);
    await p.onLinkSetup(event(target), ctx);
    await p.onLinkSetup(event(other), ctx);
    await p.onLinkUp(event(other), ctx); // this one connected directly
    await vi.advanceTimersByTimeAsync(11_000); // and the target's setup timed out
    p.onIccMessage(
      {
        peerUid: n.tincan.uid,
        data: { type: "groupvpn.links", uids: [target.tincan.uid, other.tincan.uid] },
      },
      ctx,
    );
    await flush();
    expect(calls.filter((c) => c.method === "route.set" && c.params.via)).toEqual([]);
  });
});

describe("GroupPolicy membership", () => {
  it("refuses roster items outside its group (the core's admission asks)", () => {
    const { p } = policy();
    expect(p.refuse({ jid: "a@lab", subscription: "both", groups: ["lab", "x"] })).toBeNull();
    expect(p.refuse({ jid: "b@lab", subscription: "both", groups: ["other"] })).toBe(
      'not in roster group "lab"',
    );
  });

  it("verifies a member by its address: in our subnet, not ours, UID of the address", () => {
    const { p } = policy();
    const ok = (ipv4: string | undefined, uid = ipv4 ? uidForIpv4(ipv4) : "") =>
      p.verifyPeer({ tincan: { uid, ipv4 } });
    expect(ok("10.10.3.4")).toBe(true);
    expect(ok("10.11.0.1")).toBe(false); // outside 10.10.0.0/16
    expect(ok("10.10.0.1")).toBe(false); // our own
    expect(ok("10.10.3.4", uidForIpv4("10.10.3.5"))).toBe(false);
    expect(ok("not an address")).toBe(false);
    expect(ok(undefined)).toBe(false);
  });

  it("sets host routes for a member's addresses while it is online", async () => {
    const { p, ctx, calls } = policy();
    const m = member("10.10.0.9");
    m.tincan.ipv6 = "fd00::9";
    await p.onPeerOnline(m, ctx);
    expect(calls.map((c) => c.params.prefix)).toEqual(["10.10.0.9/32", "fd00::9/128"]);
  });
});
