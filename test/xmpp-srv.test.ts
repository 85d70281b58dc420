// XMPP server discovery by DNS SRV (RFC 6120 3.2): nodes without `xmpp.service` find the lab's
// prosody through `_xmpp-client._tcp.lab.local`, served by a DNS server in the lab that is the only
// resolver of their namespaces. prosody listens on 5333, not 5222, so the port can only come from SRV.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DnsRecord,
  type DnsServerHandle,
  Lab,
  type ProsodyHandle,
  startDnsServer,
  useResolver,
} from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const PORT = 5333;

describe.skipIf(!can.ok)("XMPP server found through DNS SRV", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  let dns: DnsServerHandle;
  let records: DnsRecord[];
  const nodes: VpnNode[] = [];
  const undoResolvers: (() => void)[] = [];

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "srv" });
    prosody = await lab.startProsody({
      port: PORT,
      users: labUsers(["alice", "bob", "carol"]),
      groups: { lab: ["alice", "bob", "carol"] },
    });
    records = [
      {
        name: `_xmpp-client._tcp.${prosody.domain}`,
        type: "SRV",
        data: { priority: 10, weight: 1, port: PORT, target: `xmpp.${prosody.domain}` },
      },
      { name: `xmpp.${prosody.domain}`, type: "A", data: prosody.host },
    ];
    dns = await startDnsServer(lab, lab.internet, records);
    nodes.push(
      ...(await addGroupNodes(lab, prosody, ["alice", "bob", "carol"], "10.10.15", {
        xmpp: { service: undefined },
      })),
    );
    for (const n of nodes) undoResolvers.push(useResolver(n.host, dns.ip));
  });

  afterAll(async () => {
    for (const n of nodes) await n.stop().catch(() => {});
    for (const undo of undoResolvers) undo();
    await lab?.destroy();
  });

  it("nodes without xmpp.service log in to the SRV target and port and link to each other", async () => {
    const [alice, bob] = nodes as [VpnNode, VpnNode];
    const started = Date.now();
    await Promise.all([alice.start(), bob.start()]);
    await waitFor("alice pings bob", async () => (await alice.ping(bob.address, 1, 2)).code === 0, 30_000);
    const firstMs = Date.now() - started;
    const link = await alice.connectedTo(uidForIpv4(bob.address));
    console.log(`SRV: first ping alice->bob ${firstMs} ms after start; path ${link?.path}`);
    for (const n of [alice, bob]) {
      expect(n.controller.log()).toMatch(/xmpp server from DNS SRV.*xmpp:\/\/xmpp\.lab\.local:5333/);
    }
    expect(dns.process.log()).toMatch(/query SRV _xmpp-client\._tcp\.lab\.local: NOERROR, 1 answer/);
    expect(link).toBeDefined();
  });

  it("without the SRV record the controller falls back to lab.local:5222 and says why it cannot log in", async () => {
    const carol = nodes[2] as VpnNode;
    dns.setRecords(records.filter((r) => r.type !== "SRV"));
    carol.writeConfig();
    await carol.startDatapath();
    // Without a server it never reports "controller running"; its log is what this test reads.
    carol.opts.startTimeoutMs = 2000;
    await carol.startController().catch(() => {});
    const [line] = await carol.controller.waitForLog(/xmpp login failed.*/, 30_000);
    console.log(`SRV missing: ${line}`);
    expect(carol.controller.log()).toMatch(
      /no DNS SRV record for the domain; trying the domain itself.*xmpp:\/\/lab\.local:5222/,
    );
    expect(carol.controller.log()).not.toMatch(/xmpp server from DNS SRV/);
    expect(line).toMatch(/ENOTFOUND lab\.local/);
    expect(dns.process.log()).toMatch(/query SRV _xmpp-client\._tcp\.lab\.local: NXDOMAIN/);
    expect(await carol.links()).toEqual([]);
  });
});
