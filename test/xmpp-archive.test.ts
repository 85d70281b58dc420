// Signalling stays between the two controllers: a server that archives messages (prosody mod_mam,
// XEP-0313, archiving every chat by default) keeps none of TinCan-TS's session descriptions, and
// the user's other client (a phone with message carbons, XEP-0280) gets no copy of them. Ordinary
// chat still lands in the archive: the control that shows the archive works. (prosody 0.12 keeps
// only messages with a <body>; signals have none, and with one added they were archived without the
// <no-store/> hint and not with it. Without <private/> and <no-copy/>, the phone got 4 signals.)
import { join } from "node:path";
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab, type ProsodyHandle } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, PASSWORD, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const ARCHIVE_TOOL = join(REPO, "test/lab/tools/xmpp-archive.mjs");

interface Seen {
  messages: number;
  signals: number;
  bodies?: string[];
}

describe.skipIf(!can.ok)("signalling on a server with message archive and carbons", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  const nodes: VpnNode[] = [];

  const tool = async (user: string, ...args: string[]): Promise<Seen> => {
    const r = await lab.internet.exec(
      [
        process.execPath,
        ARCHIVE_TOOL,
        prosody.service,
        prosody.domain,
        prosody.caFile,
        user,
        PASSWORD,
        ...args,
      ],
      { timeoutMs: 60_000 },
    );
    if (r.code !== 0) throw new Error(`xmpp-archive ${args.join(" ")}: ${r.stderr}${r.stdout}`);
    return JSON.parse(r.stdout.trim()) as Seen;
  };

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "mam" });
    prosody = await lab.startProsody({
      users: labUsers(["alice", "bob"]),
      groups: { lab: ["alice", "bob"] },
      modules: ["mam", "carbons"],
    });
    nodes.push(...(await addGroupNodes(lab, prosody, ["alice", "bob"], "10.10.16")));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("keeps no signal in the archive and copies none to the user's phone", async () => {
    const [alice, bob] = nodes as [VpnNode, VpnNode];
    // alice's phone is online with carbons on before the nodes start signalling.
    const phone = tool("alice", "watch", "25");
    await new Promise((r) => setTimeout(r, 3000));
    await Promise.all([alice.start(), bob.start()]);
    // On demand: the first pings make alice's controller offer bob a link over XMPP.
    await waitFor(
      "a ping from alice to bob through the VPN",
      async () => (await alice.ping("10.10.16.2")).code === 0,
      30_000,
    );
    expect(await alice.connectedTo(uidForIpv4("10.10.16.2"))).toBeDefined();

    const carbons = await phone;
    console.log(`alice's phone during link setup: ${JSON.stringify(carbons)}`);
    expect(carbons.signals).toBe(0);

    await tool("alice", "chat", prosody.jid("bob"), "hello bob");
    const archive = await tool("alice", "archive");
    console.log(`alice's archive: ${JSON.stringify(archive)}`);
    expect(archive.bodies).toContain("hello bob");
    expect(archive.signals).toBe(0);
  });
});
