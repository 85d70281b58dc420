// The README's demo: a 3-node GroupVPN in network namespaces, with a bundled XMPP server
// (prosody) and STUN/TURN server (coturn) on a virtual "internet". One node sits behind a NAT
// router. Pings every pair through the VPN, prints `tincanctl status` of one node, cleans up.
import { join } from "node:path";
import { Lab } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";
import { PASSWORD, VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
if (!can.ok) {
  console.error(`demo: ${can.reason}`);
  process.exit(1);
}

const say = (s: string) => console.log(`\n== ${s}`);
const lab = await Lab.create({ prefix: "demo" });
let failed = false;
try {
  const names = ["alice", "bob", "carol"];
  say("starting prosody (XMPP, shared roster group 'lab') and coturn (STUN/TURN) on 100.64.0.1");
  const prosody = await lab.startProsody({
    users: names.map((name) => ({ name, password: PASSWORD })),
    groups: { lab: names },
  });
  const coturn = await lab.startCoturn({ user: "demo", password: "demo-turn-secret" });
  const nodes: VpnNode[] = [];
  for (const [i, user] of names.entries()) {
    const host = await lab.addHost(user, user === "carol" ? { nat: "masquerade" } : {});
    nodes.push(
      new VpnNode(lab, host, {
        user,
        ipv4: `10.10.0.${i + 1}/16`,
        prosody,
        coturn,
        links: { policy: "proactive" },
        logLevel: "info",
      }),
    );
    console.log(
      `   ${user}@lab.local: namespace ${host.ns}, underlay ${host.ip}${host.router ? ` (behind NAT ${host.publicIp})` : ""}, VPN 10.10.0.${i + 1}`,
    );
  }
  say("starting tincan (datapath) + groupvpn (controller) on each node");
  await Promise.all(nodes.map((n) => n.start()));

  say("pinging every pair through the VPN");
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b) continue;
      const r = await waitFor(
        `${a.opts.user} -> ${b.opts.user}`,
        async () => {
          const p = await a.ping(b.address, 1, 2);
          return p.code === 0 ? p : undefined;
        },
        20_000,
      ).catch(() => undefined);
      const rtt = r?.stdout.match(/time=([\d.]+ ms)/)?.[1];
      console.log(
        `   ${a.opts.user.padEnd(5)} -> ${b.opts.user.padEnd(5)} ${b.address.padEnd(10)} ${r ? `ok  ${rtt}` : "FAILED"}`,
      );
      if (!r) failed = true;
    }
  }

  say("tincanctl status on alice");
  const alice = nodes[0] as VpnNode;
  console.log(
    await alice.host.run([
      "node",
      join(REPO, "packages/controller/dist/tincanctl.js"),
      "status",
      "--token-file",
      alice.tokenFile,
    ]),
  );
  for (const n of nodes) await n.stop();
} catch (err) {
  failed = true;
  console.error(`demo failed: ${(err as Error).message}`);
  console.error(`logs were in ${lab.logDir} (run with KEEP_LAB=1 to keep them)`);
} finally {
  say("cleaning up namespaces and processes");
  await lab.destroy();
}
console.log(failed ? "\ndemo: FAILED" : "\ndemo: all pairs reached each other through the VPN");
process.exit(failed ? 1 : 0);
