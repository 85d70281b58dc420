// Many devices per user, SocialVPN (#20): alice on a laptop and a phone (two resources of one
// account, both numbering in 172.31.0.0/16), her buddy bob on one desk in 172.16.5.0/24. Every device
// reaches every other at its own address (own devices included), IPv4 translated per device, IPv6 per
// device; names per device and per account; the laptop's state file is of before devices (bob had
// 172.31.0.9) and bob's first device keeps that address.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { uidForDevice } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ulaForUid } from "../packages/socialvpn/src/ula.js";
import { Lab, type ProsodyHandle } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { buddyOp, dig, stateOf } from "./support/social.js";
import { blockUdp, labUsers, VpnNode, waitAllPairsPing } from "./support/vpn-node.js";

const can = Lab.canRun();

const keyOf = (n: VpnNode) => `${n.opts.user}@lab.local/${n.opts.device}`;
const uidOf = (n: VpnNode) => uidForDevice(`${n.opts.user}@lab.local`, n.opts.device as string);
const ulaOf = (n: VpnNode) => ulaForUid(uidOf(n));

/** `to`'s IPv4 address in `from`'s numbering (its state file) and its overlay IPv6. */
const addressesAt = (from: VpnNode, to: VpnNode) => {
  const ipv4 = stateOrEmpty(from)[keyOf(to)];
  return [ipv4 ?? "192.0.2.1", ulaOf(to)]; // not assigned yet: TEST-NET-1, which nothing answers
};

/** Before the first save the file may be missing, or still of version 1 (no `devices`). */
function stateOrEmpty(n: VpnNode): Record<string, string> {
  try {
    return stateOf(n) ?? {};
  } catch {
    return {};
  }
}

async function upSince(n: VpnNode, peer: VpnNode): Promise<number | null | undefined> {
  const links = ((await n.status()).controller as { links?: Record<string, { upSince: number | null }> })
    .links;
  return links?.[uidOf(peer)]?.upSince;
}

describe.skipIf(!can.ok)("SocialVPN, alice on two devices and her buddy bob on one", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  let laptop: VpnNode;
  let phone: VpnNode;
  let bob: VpnNode;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "dvs" });
    prosody = await lab.startProsody({ users: labUsers(["alice", "bob"]) });
    await buddyOp(lab, prosody, "befriend", "alice", "bob");
    const node = async (hostName: string, user: string, device: string, ipv4: string) =>
      new VpnNode(lab, await lab.addHost(hostName), { kind: "socialvpn", user, device, ipv4, prosody });
    laptop = await node("laptop", "alice", "laptop", "172.31.0.1/16");
    phone = await node("phone", "alice", "phone", "172.31.0.1/16");
    bob = await node("bob", "bob", "desk", "172.16.5.1/24");
    // The laptop ran SocialVPN before devices: its state file gave bob (the account) 172.31.0.9.
    writeFileSync(
      join(laptop.configFile, "..", "socialvpn-state.json"),
      JSON.stringify({ version: 1, buddies: { "bob@lab.local": "172.31.0.9" } }),
    );
    await Promise.all([laptop, phone, bob].map((n) => n.start()));
  });

  afterAll(async () => {
    for (const n of [laptop, phone, bob]) await n?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("every device pings every other at its own addresses, own devices included (IPv4 + IPv6)", async () => {
    const t0 = Date.now();
    await waitAllPairsPing([laptop, phone, bob], addressesAt, 60_000);
    console.log(
      `devices-social: all 12 pings (6 pairs x IPv4/IPv6) answered ${Date.now() - t0} ms after start`,
    );
    // The first device of bob took over his address of before devices.
    expect(stateOf(laptop)[keyOf(bob)]).toBe("172.31.0.9");
    expect(stateOf(laptop)).not.toHaveProperty(["bob@lab.local"]);
    // Bob numbers alice's two devices apart; each device has its own UID and IPv6 address.
    const atBob = [stateOf(bob)[keyOf(laptop)], stateOf(bob)[keyOf(phone)]];
    expect(new Set(atBob).size).toBe(2);
    expect((await laptop.status()).controller).toMatchObject({ uid: uidOf(laptop) });
  });

  it("tincanctl status lists bob's peers grouped by account, one row per device", async () => {
    const rows = (await bob.status()).peers as Array<{ peer: string; device?: string; virtualIp: string[] }>;
    expect(rows.map((r) => [r.peer, r.device, r.virtualIp[0]])).toEqual([
      ["alice@lab.local", "laptop", stateOf(bob)[keyOf(laptop)]],
      ["alice@lab.local", "phone", stateOf(bob)[keyOf(phone)]],
    ]);
  });

  it("resolves <device>.<account>.svpn per device and <account>.svpn to the account's online devices", async () => {
    const laptopAtBob = stateOf(bob)[keyOf(laptop)] as string;
    const phoneAtBob = stateOf(bob)[keyOf(phone)] as string;
    expect(await dig(bob, "laptop.alice.svpn")).toEqual({ status: "NOERROR", answers: [laptopAtBob] });
    expect(await dig(bob, "phone.alice.svpn", "AAAA")).toEqual({
      status: "NOERROR",
      answers: [ulaOf(phone)],
    });
    expect((await dig(bob, "alice.svpn")).answers.sort()).toEqual([laptopAtBob, phoneAtBob].sort());
    expect(await dig(laptop, "desk.bob.svpn")).toEqual({ status: "NOERROR", answers: ["172.31.0.9"] });
    expect(await dig(laptop, "bob.svpn")).toEqual({ status: "NOERROR", answers: ["172.31.0.9"] });
    // Own devices: the account's name is this device, the others are named under it.
    expect(await dig(laptop, "alice.svpn")).toEqual({ status: "NOERROR", answers: ["172.31.0.1"] });
    expect(await dig(laptop, "phone.alice.svpn")).toEqual({
      status: "NOERROR",
      answers: [stateOf(laptop)[keyOf(phone)] as string],
    });
  });

  it("the phone going offline leaves the laptop-bob link untouched; alice.svpn then answers the laptop", async () => {
    await waitFor("laptop-bob link connected", async () => (await upSince(laptop, bob)) ?? false);
    const before = [await upSince(laptop, bob), await upSince(bob, laptop)];
    await phone.stop();
    const t0 = Date.now();
    await waitFor(
      "bob drops the phone's link",
      async () => !(await bob.links()).some((l) => l.peerUid === uidOf(phone)),
      90_000,
    );
    console.log(`devices-social: bob removed the phone's link ${Date.now() - t0} ms after it stopped`);
    expect([await upSince(laptop, bob), await upSince(bob, laptop)]).toEqual(before);
    expect((await laptop.ping("172.31.0.9", 3, 2)).code).toBe(0);
    expect(await dig(bob, "alice.svpn")).toEqual({
      status: "NOERROR",
      answers: [stateOf(bob)[keyOf(laptop)] as string],
    });
  });

  it("a restarted device keeps its UID and its addresses at the others", async () => {
    const before = { atBob: stateOf(bob)[keyOf(phone)], atLaptop: stateOf(laptop)[keyOf(phone)] };
    await phone.start();
    expect((await phone.status()).controller).toMatchObject({ uid: uidOf(phone) });
    await waitAllPairsPing([laptop, phone, bob], addressesAt, 60_000);
    expect({ atBob: stateOf(bob)[keyOf(phone)], atLaptop: stateOf(laptop)[keyOf(phone)] }).toEqual(before);
  });

  it("social profile: after traffic, the often-used buddy device is linked at once on the next start", async () => {
    // ~3 MB over the laptop-bob link (on demand: no link to anyone without traffic).
    const r = await laptop.host.exec(["ping", "-q", "-c", "200", "-s", "8000", "-i", "0.02", "172.31.0.9"]);
    expect(r.code, r.stdout).toBe(0);
    await laptop.stop(); // the controller adds the last traffic to the scores and saves them
    const scores = JSON.parse(readFileSync(join(laptop.configFile, "..", "socialvpn-state.json"), "utf8"))
      .scores as Record<string, { score: number }>;
    console.log(
      `devices-social: laptop's scores after the traffic: ${JSON.stringify(Object.fromEntries(Object.entries(scores).map(([k, v]) => [k, Math.round(v.score)])))}`,
    );
    expect(scores[keyOf(bob)]?.score).toBeGreaterThan(1024 * 1024);
    expect(scores[keyOf(phone)]?.score ?? 0).toBeLessThan(1024 * 1024);
    await laptop.start();
    const t0 = Date.now();
    await waitFor(
      "the laptop links to bob's desk without traffic",
      () => laptop.connectedTo(uidOf(bob)),
      30_000,
    );
    console.log(
      `devices-social: proactive link to bob's desk ${Date.now() - t0} ms after the laptop started`,
    );
    // The phone (little traffic) stays on demand.
    expect((await laptop.links()).map((l) => l.peerUid)).not.toContain(uidOf(phone));
  });

  it("relays IPv6 between alice's devices through bob's desk, only once bob opted in", async () => {
    // No direct path between the laptop and the phone (UDP dropped both ways, no TURN here).
    await blockUdp(laptop.host, phone.host, true);
    const bobLinks = async () =>
      (await bob.ping(ulaOf(laptop), 1, 2)).code === 0 && (await bob.ping(ulaOf(phone), 1, 2)).code === 0;
    await waitFor("bob's links to both of alice's devices", bobLinks, 30_000);
    // Bob did not opt in: nothing gets through.
    const notOptedIn = await laptop.host.exec(["ping", "-6", "-c", "8", "-i", "1", "-W", "1", ulaOf(phone)]);
    expect(notOptedIn.stdout).toMatch(/ 0 received/);
    // Bob opts in (links.relayForBuddies) and comes back.
    await bob.stop();
    bob.opts.links = { ...bob.opts.links, relayForBuddies: true };
    await bob.start();
    await waitFor("bob's links to both of alice's devices again", bobLinks, 30_000);
    const t0 = Date.now();
    await waitFor(
      "the laptop reaches the phone through bob",
      async () => (await laptop.ping(ulaOf(phone), 1, 2)).code === 0,
      60_000,
    );
    const via = ((await laptop.status()).routes as Array<{ prefix: string; via: string | null }>).find(
      (r) => r.prefix === `${ulaOf(phone)}/128`,
    )?.via;
    console.log(
      `devices-social: laptop -> phone (IPv6) through bob answered ${Date.now() - t0} ms after bob's links were up; route via ${via}`,
    );
    expect(/routing IPv6 through a relaying device/.test(laptop.controller.log())).toBe(true);
    expect((await laptop.connectedTo(uidOf(phone)))?.state).toBeUndefined();
  });
});
