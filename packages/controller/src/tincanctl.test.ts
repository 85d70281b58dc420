import { type LinkInfo, type RouteInfo, StatusReport, VERSION, type VnicInfo } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import type { ControllerStatus } from "./controller.js";
import { buildRows, formatController, formatLinkDetails, formatTable, healthLine } from "./tincanctl.js";

const A = "a".repeat(32);
const B = "b".repeat(32);

const link: LinkInfo = {
  peerUid: A,
  state: "connected",
  path: "relay",
  local: "100.64.0.1:50000",
  remote: "192.168.1.2:40000",
  localType: "relay",
  remoteType: "host",
  rttMs: 1.25,
  pathMtu: 1315,
  relayOnly: true,
  createdAt: 0,
  lastRxAt: 95_000,
  lastTxAt: 90_000,
  txBytes: 2048,
  rxBytes: 10,
  txPackets: 2,
  rxPackets: 1,
  drops: {},
};
const vnic: VnicInfo = {
  name: "tincan0",
  uid: null,
  ipv4: "10.10.0.5/16",
  ipv6: null,
  mtu: 1280,
  translate: false,
  queued: 0,
  txQueue: null,
  txBytes: 0,
  rxBytes: 0,
  txPackets: 0,
  rxPackets: 0,
  drops: {},
};
const routes: RouteInfo[] = [
  { prefix: "10.10.0.7/32", peerUid: A, via: null, mapTo: null },
  { prefix: "10.10.0.9/32", peerUid: B, via: null, mapTo: "172.31.0.9" },
];

describe("tincanctl status rows", () => {
  it("joins links, routes and controller names per peer", () => {
    const rows = buildRows(
      [link],
      routes,
      {
        controller: "groupvpn",
        pid: 1,
        jid: null,
        uid: "c".repeat(32),
        updatedAt: 0,
        peers: { [A]: { jid: "bob@lab.local", name: "Bob" } },
      },
      100_000,
    );
    expect(rows).toEqual([
      {
        peer: "-",
        uid: B,
        virtualIp: ["172.31.0.9"],
        state: "no link",
        path: null,
        rttMs: null,
        pathMtu: null,
        rxBytes: 0,
        txBytes: 0,
        idleSec: null,
        relayOnly: false,
        local: null,
        remote: null,
        ageSec: null,
        setupMs: null,
        why: null,
        drops: {},
      },
      {
        peer: "Bob (bob@lab.local)",
        uid: A,
        virtualIp: ["10.10.0.7"],
        state: "connected",
        path: "relay",
        rttMs: 1.25,
        pathMtu: 1315,
        rxBytes: 10,
        txBytes: 2048,
        idleSec: 5,
        relayOnly: true,
        local: "relay 100.64.0.1:50000",
        remote: "host 192.168.1.2:40000",
        ageSec: 100,
        setupMs: null,
        why: null,
        drops: {},
      },
    ]);
    const text = formatTable({ ...vnic, drops: { txQueue: 21, multicast: 3, unmappedExpired: 0 } }, rows);
    expect(text).toMatch(
      /Bob \(bob@lab\.local\)\s+aaaaaaaa\s+10\.10\.0\.7\s+connected\s+relay\s+1\.3 ms\s+1315\s+10 B\s+2\.0 KiB\s+5s/,
    );
    expect(text).toMatch(/^vnic drops: txQueue 21, multicast 3$/m);
  });

  it("groups the devices of one account, with a DEVICE column", () => {
    const C = "c".repeat(32);
    const rows = buildRows(
      [link],
      [...routes, { prefix: "10.10.0.8/32", peerUid: C, via: null, mapTo: null }],
      {
        controller: "groupvpn",
        pid: 1,
        jid: "alice@lab.local/laptop",
        uid: "d".repeat(32),
        updatedAt: 0,
        peers: {
          [A]: { jid: "bob@lab.local", device: "phone" },
          [B]: { jid: "alice@lab.local", device: "desk" },
          [C]: { jid: "bob@lab.local", device: "desk" },
        },
      },
      100_000,
    );
    expect(rows.map((r) => [r.peer, r.device])).toEqual([
      ["alice@lab.local", "desk"],
      ["bob@lab.local", "desk"],
      ["bob@lab.local", "phone"],
    ]);
    const text = formatTable(vnic, rows);
    expect(text).toMatch(/^PEER\s+DEVICE\s+UID\s+VIRTUAL IP/m);
    expect(text).toMatch(/^bob@lab\.local\s+phone\s+aaaaaaaa\s+10\.10\.0\.7\s+connected/m);
    expect(StatusReport.shape.peers.element.safeParse(rows[0]).error).toBeUndefined();
  });
});

describe("tincanctl status: the fast path", () => {
  const fastLink = (fast: LinkInfo["fast"], transport: LinkInfo["transport"] = "fast"): LinkInfo => ({
    ...link,
    transport,
    ...(fast ? { fast } : {}),
  });
  const pathOf = (l: LinkInfo): string => {
    const text = formatTable(vnic, buildRows([l], routes.slice(0, 1), null, 100_000));
    return text.match(/connected\s+(\S+)/)?.[1] ?? "";
  };
  const up = { phase: "up", endpoint: "100.64.0.1:3478", fallbacks: 0, rekeys: 1 } as const;

  it("shows in PATH whether native code forwards the link's packets and whether they go through TURN", () => {
    expect(pathOf(fastLink({ ...up, nativeForward: false, relayed: false }))).toBe("relay+fast");
    expect(pathOf(fastLink({ ...up, nativeForward: true, relayed: false }))).toBe("relay+fast(native)");
    expect(pathOf(fastLink({ ...up, nativeForward: false, relayed: true }))).toBe("relay+fast(turn)");
    expect(pathOf(fastLink({ ...up, nativeForward: true, relayed: true }))).toBe("relay+fast(turn,native)");
    // An older datapath without the fields, and a link the fast path does not carry.
    expect(pathOf(fastLink(up))).toBe("relay+fast");
    expect(pathOf(fastLink({ ...up, phase: "down", relayed: true }, "datachannel"))).toBe("relay");
  });

  it("puts both in --json's rows while the fast path carries the link, and nothing otherwise", () => {
    const [fast] = buildRows([fastLink({ ...up, nativeForward: true, relayed: true })], [], null);
    expect(fast?.fast).toEqual({ nativeForward: true, relayed: true });
    expect(StatusReport.shape.peers.element.safeParse(fast).error).toBeUndefined();
    const [old] = buildRows([fastLink(up)], [], null);
    expect(old?.fast).toEqual({ nativeForward: false, relayed: false });
    const [slow] = buildRows([fastLink({ ...up, phase: "probing" }, "datachannel")], [], null);
    expect(slow).not.toHaveProperty("fast");
    const bad = { ...fast, fast: { nativeForward: "yes", relayed: true } };
    expect(StatusReport.shape.peers.element.safeParse(bad).success).toBe(false);
  });
});

describe("tincanctl status: the controller's watchdog", () => {
  const status = (datapath?: ControllerStatus["datapath"]): ControllerStatus => ({
    controller: "groupvpn",
    pid: 1,
    jid: null,
    uid: A,
    updatedAt: 0,
    peers: {},
    ...(datapath ? { datapath } : {}),
  });

  it("says nothing while the datapath answers, or for an older controller's file", () => {
    expect(healthLine(status({ responsive: true, unansweredSinceMs: null }))).toBeNull();
    expect(healthLine(status())).toBeNull();
    expect(healthLine(null)).toBeNull();
  });

  it("says for how long the datapath has not answered", () => {
    expect(healthLine(status({ responsive: false, unansweredSinceMs: 1000 }), 43_000)).toBe(
      "datapath UNRESPONSIVE: groupvpn got no answer to its RPCs for 42 s",
    );
  });
});

describe("tincanctl status: the controller's view", () => {
  const status: ControllerStatus = {
    controller: "groupvpn",
    pid: 42,
    jid: "alice@lab.local/tincan-1",
    uid: "c".repeat(32),
    updatedAt: 100_000,
    peers: { [A]: { jid: "bob@lab.local", ipv4: "10.10.0.7" } },
    version: VERSION,
    startedAt: 40_000,
    datapathProcess: { version: VERSION, startedAt: 10_000, pid: 41 },
    xmpp: {
      server: "xmpp://100.64.0.1:5222",
      jid: "alice@lab.local/tincan-1",
      online: true,
      onlineSince: 50_000,
      reconnects: 2,
    },
    members: [
      { jid: "bob@lab.local", state: "online" },
      { jid: "carol@lab.local", state: "offline" },
      { jid: "eve@lab.local", state: "refused", reason: 'not in group "lab"' },
    ],
    links: {
      [A]: {
        phase: "connected",
        why: "direct attempt found no path after 2 s; relay since 14:02:11",
        upSince: 60_000,
        setupMs: 2300,
        relayedSince: 60_000,
        failures: 0,
        nextAttemptAt: null,
      },
    },
  };

  it("builds a StatusReport that the documented schema accepts, and the schema rejects a broken one", () => {
    const rows = buildRows([{ ...link, drops: { txQueue: 4 } }], routes, status, 100_000);
    const report = {
      tincanctl: { version: VERSION },
      vnic,
      peers: rows,
      links: [link],
      routes,
      controller: status,
    };
    expect(StatusReport.safeParse(report).success).toBe(true);
    expect(rows.find((r) => r.uid === A)).toMatchObject({ setupMs: 2300, why: status.links?.[A]?.why });
    const broken = { ...report, peers: [{ ...rows[0], path: "carrier-pigeon" }] };
    expect(StatusReport.safeParse(broken).success).toBe(false);
    const badDrop = { ...report, links: [{ ...link, drops: { gremlins: 1 } }] };
    expect(StatusReport.safeParse(badDrop).success).toBe(false);
  });

  it("prints versions, uptimes, the XMPP session, members not online, and per link why and drops", () => {
    const text = formatController(status, 100_000);
    expect(text).toMatch(/^groupvpn \S+ up 1m0s \(pid 42\)\s+tincan \S+ up 1m30s \(pid 41\)$/m);
    expect(text).toMatch(
      /^xmpp alice@lab\.local\/tincan-1 via xmpp:\/\/100\.64\.0\.1:5222 online since \d\d:\d\d:\d\d, 2 reconnects$/m,
    );
    expect(text).toContain(
      'members: 1 online; carol@lab.local offline; eve@lab.local refused (not in group "lab")',
    );
    const details = formatLinkDetails(
      buildRows([{ ...link, drops: { txQueue: 4 } }], routes, status, 100_000),
    );
    expect(details).toContain(
      "bob@lab.local: relay 100.64.0.1:50000 <-> host 192.168.1.2:40000, age 1m40s, setup 2300 ms",
    );
    expect(details).toContain("  why: direct attempt found no path after 2 s; relay since 14:02:11");
    expect(details).toContain("  drops: txQueue 4");
    expect(formatController(null)).toMatch(/none running/);
  });
});
