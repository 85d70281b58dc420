// Relays as a bridge, not a destination: a relay-only transport races the direct one, carries the
// first packets through two symmetric NATs, and a relayed link moves to a direct path once one works.
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Host, Lab, type LabProcess, sleep, tail } from "./lab/index.js";
import { waitFor } from "./support/datapath-driver.js";
import { blockUdp, labUsers, VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();

/** Replies of a `ping -i 0.1` run: seq -> reply time (ms). */
function replies(out: string): Map<number, number> {
  const got = new Map<number, number>();
  for (const m of out.matchAll(/icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms/g))
    got.set(Number(m[1]), Number(m[2]));
  return got;
}

describe.skipIf(!can.ok)("Relay as a bridge: race a relay-only transport, move to a direct path", () => {
  let lab: Lab;
  const nodes: VpnNode[] = [];
  let pinger: LabProcess | undefined;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "rb" });
    const names = ["sym1", "sym2", "flat1", "flat2"];
    const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    const coturn = await lab.startCoturn({ user: "turnuser", password: "turnpass" });
    const hosts = [
      await lab.addHost("sym1", { nat: "symmetric" }),
      await lab.addHost("sym2", { nat: "symmetric" }),
      await lab.addHost("flat1"),
      await lab.addHost("flat2"),
    ];
    await blockUdp(hosts[2] as Host, hosts[3] as Host, true);
    for (const [i, host] of hosts.entries()) {
      // Default link settings: the relay-only attempt starts relayFallbackSec (0.3 s) after the direct one.
      nodes.push(
        new VpnNode(lab, host, {
          user: names[i] as string,
          ipv4: `10.10.7.${i + 1}/16`,
          prosody,
          coturn,
          links: { policy: "on-demand" },
        }),
      );
    }
    await Promise.all(nodes.map((n) => n.start()));
    // Both controllers of a pair must have seen each other's presence before the first packet.
    await sleep(2000);
  }, 120_000);

  afterAll(async () => {
    if (pinger && !pinger.exited) await pinger.stop().catch(() => {});
    for (const n of nodes) await n.stop().catch(() => {});
    await lab?.destroy();
  });

  it("answers the first ping through two symmetric NATs within 1 s, over the relay", async () => {
    const [sym1, sym2] = nodes as [VpnNode, VpnNode];
    const r = await sym1.host.exec(["ping", "-i", "0.1", "-c", "30", "-W", "2", sym2.address]);
    const got = replies(r.stdout);
    expect(got.size, r.stdout).toBeGreaterThan(0);
    // Reply to seq n arrives (n - 1) * 100 ms after the first ping went out, plus its own time.
    const firstReplyMs = Math.min(...[...got].map(([seq, ms]) => (seq - 1) * 100 + ms));
    console.log(`symmetric NATs: first reply ${Math.round(firstReplyMs)} ms after the first ping`);
    const link = await waitFor("connected", () => sym1.connectedTo(uidForIpv4(sym2.address)));
    expect(link.path).toBe("relay");
    expect(firstReplyMs, tail(sym1.controller.log())).toBeLessThanOrEqual(1000);
  });

  it("moves a relayed link to a direct path once one works, losing no ping in the switch", async () => {
    const [, , flat1, flat2] = nodes as [VpnNode, VpnNode, VpnNode, VpnNode];
    const peer = uidForIpv4(flat2.address);
    // UDP between the two hosts is dropped: only the relay connects.
    await waitFor(
      "a first reply",
      async () => (await flat1.ping(flat2.address, 1, 1)).code === 0,
      30_000,
    ).catch((err: Error) => {
      // What each side did instead (a CI run timed out here once).
      const logs = [flat1, flat2].map(
        (n) =>
          `--- ${n.address} controller\n${tail(n.controller.log(), 40)}\n--- ${n.address} tincan\n${tail(n.tincan.log(), 40)}`,
      );
      throw new Error(`${err.message}\n${logs.join("\n")}`);
    });
    const relayed = await waitFor("connected", () => flat1.connectedTo(peer));
    expect(relayed.path).toBe("relay");

    pinger = flat1.host.spawn("ping", ["-D", "-i", "0.1", "-W", "2", flat2.address], { name: "ping" });
    const pingStart = Date.now();
    // Let the first direct attempt fail on the block (its setup times out after 10 s), then lift it.
    await sleep(12_000);
    expect((await flat1.connectedTo(peer))?.path).toBe("relay");
    // The direct re-attempts during the block took no TURN allocation: both ends made them direct-only
    // (no TURN servers), so none of them connected through the relay.
    // (The first re-attempt comes 5 s after the relay carried the link, or later when the full
    // transport had connected through the relay and is moved to a relay-only one first.)
    const directOnly = /link created .*"relayOnly":false,"directOnly":true/;
    await waitFor(
      "a direct-only re-attempt on both ends",
      () => [flat1, flat2].every((n) => directOnly.test(n.tincan.log())),
      30_000,
    );
    for (const n of [flat1, flat2]) {
      const log = n.tincan.log();
      expect(log.slice(log.search(directOnly))).not.toMatch(
        /link connected .*"relayOnly":false,"path":"relay"/,
      );
    }
    expect((await flat1.connectedTo(peer))?.path).toBe("relay");
    await blockUdp(flat1.host, flat2.host, false);
    const liftedAt = Date.now();
    const liftedSeq = Math.round((liftedAt - pingStart) / 100);
    await waitFor(
      "a direct path",
      async () => {
        const path = (await flat1.connectedTo(peer))?.path;
        return path && path !== "relay" ? path : undefined;
      },
      60_000,
    );
    const directSec = (Date.now() - liftedAt) / 1000;
    // Keep pinging past the relay's removal (2 s after the switch), then count the gaps.
    await sleep(5000);
    pinger.signal("SIGINT");
    await pinger.wait();
    const got = replies(pinger.log());
    const last = Math.max(...got.keys());
    const missing = [...Array(last).keys()].map((i) => i + 1).filter((seq) => !got.has(seq));
    // When each lost ping was sent: 0.1 s per seq after the last reply before it (ping -D times).
    const repliedAt = new Map(
      [...pinger.log().matchAll(/\[(\d+\.\d+)\] .*icmp_seq=(\d+) /g)].map((m) => [
        Number(m[2]),
        Number(m[1]) * 1000,
      ]),
    );
    const sentAt = (seq: number): number => {
      for (let prev = seq - 1; prev > 0; prev--) {
        const at = repliedAt.get(prev);
        if (at !== undefined) return at + (seq - prev) * 100;
      }
      return pingStart + (seq - 1) * 100;
    };
    // The switch: from 0.3 s before flat1's direct transport connected (its traffic moves at once; the margin
    // covers the estimate of when a lost ping was sent) until 1 s after the relay-only transports were removed on
    // both sides (or the other way round, if one was removed first). A ping lost earlier went while both sides
    // still sent on the relay, where this loaded machine drops one now and then (counted below, as elsewhere).
    const logged = (n: VpnNode, re: RegExp) =>
      n.tincan
        .log()
        .split("\n")
        .filter((l) => re.test(l))
        .map((l) => Date.parse(l.slice(0, 24)));
    const movedAt = Math.max(
      0,
      ...logged(flat1, /link connected .*"relayOnly":false,"path":"(host|srflx|prflx)"/),
    );
    const relayGone = [flat1, flat2].flatMap((n) => logged(n, /link removed .*"relayOnly":true/));
    const relayGoneAt = relayGone.length > 0 ? Math.max(...relayGone) : movedAt;
    const [from, to] = [Math.min(movedAt, relayGoneAt) - 300, Math.max(movedAt, relayGoneAt) + 1000];
    const inSwitch = missing.filter((seq) => sentAt(seq) >= from && sentAt(seq) <= to);
    const path = (await flat1.connectedTo(peer))?.path;
    console.log(
      `relayed -> ${path}: ${directSec.toFixed(1)} s after the block was lifted (ping seq ~${liftedSeq}); ` +
        `${inSwitch.length} pings lost in the switch (moved ${new Date(movedAt).toISOString()}, relay removed ` +
        `${((relayGoneAt - movedAt) / 1000).toFixed(1)} s later), ${missing.length} of ${last} lost in all ` +
        JSON.stringify(missing.map((seq) => `${seq}@${new Date(sentAt(seq)).toISOString().slice(11, 23)}`)),
    );
    for (const n of [flat1, flat2]) {
      const moves = n.tincan
        .log()
        .split("\n")
        .filter((l) => / link (connected|removed|traffic moved|disconnected|failed|closed)/.test(l));
      console.log(`${n.host.name} transports:\n${moves.slice(-10).join("\n")}`);
    }
    // Direct re-attempts back off 5, 10, 20 s (each up to a 10-s setup): the next one after the lift
    // may be that far off.
    expect(directSec).toBeLessThanOrEqual(45);
    expect(path).not.toBe("relay");
    expect(inSwitch, tail(flat1.controller.log(), 60)).toEqual([]);
    // The relayed transport carried the traffic until the direct one was up: neither side removed a
    // relay-only transport before (a direct re-attempt that replaced the relayed link would).
    const relayRemovedEarly = relayGone.filter((t) => t < movedAt).map((t) => new Date(t).toISOString());
    expect(relayRemovedEarly).toEqual([]);
    // Elsewhere a ping is lost now and then on this shared, loaded machine (relayed or direct alike).
    expect(missing.length).toBeLessThanOrEqual(Math.ceil(last * 0.03));
    // Only the direct transport is left.
    const links = (await flat1.links()).filter((l) => l.peerUid === peer);
    expect(links).toHaveLength(1);
  });
});
