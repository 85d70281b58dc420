// Many devices per user, GroupVPN (#20): alice logs in from two devices (two resources of one
// account), bob from one. Every device reaches every other, own devices included, over IPv4 and
// IPv6; one device going offline leaves the other links as they were; a restarted device comes back
// with its UID and address.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { labUsers, VpnNode, waitAllPairsPing } from "./support/vpn-node.js";

const can = Lab.canRun();

const ipv6Of = (n: VpnNode) => (n.opts.ipv6 as string).split("/")[0] as string;

const bothFamilies = (_from: VpnNode, to: VpnNode) => [to.address, ipv6Of(to)];

/** The controller's view of its links: upSince per peer UID (null while not connected). */
async function upSince(n: VpnNode): Promise<Record<string, number | null>> {
  const links = ((await n.status()).controller as { links?: Record<string, { upSince: number | null }> })
    .links;
  return Object.fromEntries(Object.entries(links ?? {}).map(([uid, l]) => [uid, l.upSince]));
}

describe.skipIf(!can.ok)("GroupVPN, alice on two devices and bob on one", () => {
  let lab: Lab;
  let laptop: VpnNode;
  let phone: VpnNode;
  let bob: VpnNode;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "dev" });
    const prosody = await lab.startProsody({
      users: labUsers(["alice", "bob"]),
      groups: { lab: ["alice", "bob"] },
    });
    const node = async (hostName: string, user: string, device: string, i: number) =>
      new VpnNode(lab, await lab.addHost(hostName), {
        user,
        device,
        ipv4: `10.80.0.${i}/16`,
        ipv6: `fd80::${i}/64`,
        prosody,
        links: { policy: "proactive" },
      });
    laptop = await node("alaptop", "alice", "laptop", 1);
    phone = await node("aphone", "alice", "phone", 11);
    bob = await node("bob", "bob", "desk", 2);
    await Promise.all([laptop, phone, bob].map((n) => n.start()));
  });

  afterAll(async () => {
    for (const n of [laptop, phone, bob]) await n?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("every device pings every other over IPv4 and IPv6, alice's two devices included", async () => {
    const t0 = Date.now();
    await waitAllPairsPing([laptop, phone, bob], bothFamilies, 45_000);
    console.log(`devices: all 12 pings (6 pairs x IPv4/IPv6) answered ${Date.now() - t0} ms after start`);
    // Direct links between alice's own devices, each with its own UID.
    await waitFor("laptop's 2 links connected", async () => (await laptop.connectedLinks()).length === 2);
    expect((await laptop.connectedTo(uidForIpv4(phone.address)))?.state).toBe("connected");
  });

  it("the phone going offline leaves the laptop-bob link untouched", async () => {
    await waitFor("bob's links connected", async () => (await bob.connectedLinks()).length === 2);
    const laptopUid = uidForIpv4(laptop.address);
    const bobUid = uidForIpv4(bob.address);
    const before = { laptop: (await upSince(laptop))[bobUid], bob: (await upSince(bob))[laptopUid] };
    expect(before.laptop).toEqual(expect.any(Number));
    await phone.stop();
    // The phone is gone for the others: its link disappears from the laptop's datapath.
    const phoneUid = uidForIpv4(phone.address);
    const t0 = Date.now();
    await waitFor(
      "the laptop drops its link to the phone",
      async () => !(await laptop.links()).some((l) => l.peerUid === phoneUid),
      90_000,
    );
    console.log(`devices: the laptop removed the phone's link ${Date.now() - t0} ms after it stopped`);
    expect((await upSince(laptop))[bobUid]).toBe(before.laptop);
    expect((await upSince(bob))[laptopUid]).toBe(before.bob);
    expect((await laptop.ping(bob.address, 3, 2)).code).toBe(0);
    expect((await bob.ping(ipv6Of(laptop), 3, 2)).code).toBe(0);
  });

  it("a restarted device comes back with its UID and address, and reaches everyone again", async () => {
    const uidBefore = uidForIpv4(phone.address);
    await phone.start();
    const controller = (await phone.status()).controller as { uid: string; jid: string };
    expect(controller.uid).toBe(uidBefore);
    expect(controller.jid).toBe("alice@lab.local/phone");
    await waitAllPairsPing([laptop, phone, bob], bothFamilies, 45_000);
  });
});
