// tincanctl status / ping / netcheck against a real pair: alice behind a plain NAT, bob behind a
// symmetric one, so their link can only be relayed (coturn); carol is a member that never comes online.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StatusReport } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CoturnHandle, Lab, type ProsodyHandle } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";
import { labUsers, VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const TINCANCTL = join(REPO, "packages/controller/dist/tincanctl.js");

describe.skipIf(!can.ok)("tincanctl status, ping and netcheck (alice and bob behind NATs, relayed)", () => {
  let lab: Lab;
  let prosody: ProsodyHandle;
  let coturn: CoturnHandle;
  let alice: VpnNode;
  let bob: VpnNode;

  const ctl = (node: VpnNode, args: string[]) =>
    node.host.exec(["node", TINCANCTL, ...args], { timeoutMs: 30_000 });

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "ocli" });
    prosody = await lab.startProsody({
      users: labUsers(["alice", "bob", "carol"]),
      groups: { lab: ["alice", "bob", "carol"] },
    });
    coturn = await lab.startCoturn({ user: "u", password: "p" });
    // A second STUN server (another port), so netcheck can compare the mapping per destination.
    const stun2 = await lab.startCoturn({
      user: "u",
      password: "p",
      port: 3490,
      dirName: "coturn2",
      minPort: 40000,
      maxPort: 40100,
    });
    const ice = { stun: [coturn.stunUrl, stun2.stunUrl] };
    const links = { policy: "proactive" as const, relayFallbackSec: 1 };
    alice = new VpnNode(lab, await lab.addHost("alice", { nat: "masquerade" }), {
      user: "alice",
      ipv4: "10.10.0.1/16",
      prosody,
      coturn,
      ice,
      links,
    });
    bob = new VpnNode(lab, await lab.addHost("bob", { nat: "symmetric" }), {
      user: "bob",
      ipv4: "10.10.0.2/16",
      prosody,
      coturn,
      ice,
      links,
    });
    await Promise.all([alice.start(), bob.start()]);
    await waitFor(
      "alice's link to bob connected",
      async () => (await alice.connectedLinks()).length === 1,
      60_000,
    );
  }, 180_000);

  afterAll(async () => {
    await alice?.stop().catch(() => {});
    await bob?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("status --json follows the StatusReport schema and says how and why the link is relayed", async () => {
    // The status file is rewritten every 5 s: wait for one that knows the link's setup.
    let report!: StatusReport;
    await waitFor(
      "the controller's view of the link",
      async () => {
        const out = await ctl(alice, ["status", "--json", "--token-file", alice.tokenFile]);
        report = StatusReport.parse(JSON.parse(out.stdout));
        return report.peers[0]?.setupMs != null && report.peers[0]?.why != null;
      },
      20_000,
    );
    const c = report.controller;
    expect(c?.xmpp).toMatchObject({ server: prosody.service, online: true, reconnects: 0 });
    expect(c?.xmpp?.jid).toMatch(/^alice@lab\.local\//);
    expect(c?.version).toBe(report.tincanctl.version);
    expect(c?.datapathProcess?.version).toBe(report.tincanctl.version);
    expect(c?.members).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ jid: "bob@lab.local", state: "online" }),
        expect.objectContaining({ jid: "carol@lab.local", state: "offline" }),
      ]),
    );
    const peer = report.peers[0];
    expect(peer).toMatchObject({ peer: "bob@lab.local", state: "connected", path: "relay" });
    expect(`${peer?.local} ${peer?.remote}`).toMatch(/relay 100\.64\.0\.1:\d+/);
    expect(peer?.ageSec).toBeGreaterThanOrEqual(0);
    expect(peer?.why).toMatch(/relay since \d\d:\d\d:\d\d/);
    console.log(
      `alice -> bob: ${peer?.local} <-> ${peer?.remote}, setup ${peer?.setupMs} ms, why: ${peer?.why}`,
    );
    const text = (await ctl(alice, ["status", "--token-file", alice.tokenFile])).stdout;
    console.log(`tincanctl status (alice):\n${text}`);
    expect(text).toMatch(/^xmpp alice@lab\.local\/\S+ via xmpp:\/\/100\.64\.0\.1:5222 online since/m);
    expect(text).toMatch(/^members: 1 online; carol@lab\.local offline$/m);
    expect(text).toMatch(/^ {2}why: .*relay since/m);
  });

  it("ping answers over the link with its path and RTT, by JID or virtual address", async () => {
    const r = await ctl(alice, ["ping", "bob@lab.local", "--count", "3", "--token-file", alice.tokenFile]);
    console.log(`tincanctl ping (alice):\n${r.stdout}${r.stderr}`);
    expect(r.code).toBe(0);
    const pongs = r.stdout.match(
      /^pong from bob@lab\.local \(10\.10\.0\.2\) via relay 100\.64\.0\.1:\d+ in [\d.]+ ms$/gm,
    );
    expect(pongs).toHaveLength(3);
    expect(r.stdout).toMatch(/^3 probes, 3 replies, 0 lost$/m);
    const byAddress = await ctl(bob, ["ping", "10.10.0.1", "-c", "1", "--token-file", bob.tokenFile]);
    expect(byAddress.code).toBe(0);
    expect(byAddress.stdout).toMatch(/^pong from alice@lab\.local \(10\.10\.0\.1\) via relay/m);
  });

  it("ping exits 1 for an offline member, an unknown peer, and a peer that does not answer", async () => {
    const offline = await ctl(alice, ["ping", "carol@lab.local", "--token-file", alice.tokenFile]);
    expect(offline.code).toBe(1);
    expect(offline.stderr).toMatch(/carol@lab\.local is offline/);
    const unknown = await ctl(alice, ["ping", "10.10.9.9", "--token-file", alice.tokenFile]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/unknown peer "10\.10\.9\.9"/);
    bob.tincan.signal("SIGSTOP"); // the link stays up in alice's datapath for a while, but nobody answers
    try {
      const silent = await ctl(alice, [
        "ping",
        "bob@lab.local",
        "-c",
        "2",
        "--timeout",
        "1",
        "--token-file",
        alice.tokenFile,
      ]);
      console.log(`ping of a stopped peer: code ${silent.code}\n${silent.stdout}${silent.stderr}`);
      expect(silent.code).toBe(1);
      // Unanswered probes, or the link already reported disconnected (silenceMs): no pong either way.
      expect(`${silent.stdout}${silent.stderr}`).toMatch(/no reply from bob@lab\.local|not connected/);
      expect(silent.stdout).not.toMatch(/^pong/m);
    } finally {
      bob.tincan.signal("SIGCONT");
    }
  });

  it("netcheck: UDP, the NAT kind (plain vs symmetric), TURN auth and XMPP STARTTLS", async () => {
    const a = await ctl(alice, ["netcheck", "--config", alice.configFile]);
    console.log(`tincanctl netcheck (alice, plain NAT):\n${a.stdout}${a.stderr}`);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^udp\s+ok\s+UDP works: 2 of 2 STUN servers answered$/m);
    expect(a.stdout).toMatch(
      /^mapping\s+ok\s+NAT, endpoint-independent mapping \(not symmetric\): 100\.64\.0\.\d+:\d+/m,
    );
    expect(a.stdout).toMatch(
      /^turn\s+ok\s+turn:100\.64\.0\.1:3478\?transport=udp: authenticated as u, relay address 100\.64\.0\.1:\d+$/m,
    );
    expect(a.stdout).toMatch(
      /^xmpp\s+ok\s+xmpp:\/\/100\.64\.0\.1:5222: STARTTLS ok, certificate valid for lab\.local/m,
    );

    const b = await ctl(bob, ["netcheck", "--config", bob.configFile, "--json"]);
    console.log(`tincanctl netcheck --json (bob, symmetric NAT):\n${b.stdout}`);
    const checks = JSON.parse(b.stdout) as Array<{
      check: string;
      status: string;
      data: Record<string, unknown>;
    }>;
    expect(checks.find((c) => c.check === "mapping")).toMatchObject({
      status: "warn",
      data: { symmetric: true },
    });

    // A wrong TURN password is a failed check (exit 1).
    const config = JSON.parse(readFileSync(bob.configFile, "utf8"));
    config.ice.turn[0].credential = "wrong";
    const badFile = join(lab.dir, "bob-bad-turn.json");
    writeFileSync(badFile, JSON.stringify(config));
    const bad = await ctl(bob, ["netcheck", "--config", badFile]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^turn\s+fail\s+.*401/m);
  });

  it("every tincanctl command answers --help and --version", async () => {
    for (const cmd of [[], ["status"], ["ping"], ["netcheck"]]) {
      const help = await ctl(alice, [...cmd, "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`^Usage: tincanctl ${cmd.join(" ")}`));
      const version = await ctl(alice, [...cmd, "--version"]);
      expect(version.stdout).toMatch(/^tincanctl \d+\.\d+\.\d+\n$/);
    }
  });
});
