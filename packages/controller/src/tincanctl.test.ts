import type { LinkInfo, RouteInfo } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import type { ControllerStatus } from "./controller.js";
import { buildRows, formatTable, healthLine } from "./tincanctl.js";

const A = "a".repeat(32);
const B = "b".repeat(32);

const link: LinkInfo = {
  peerUid: A,
  state: "connected",
  path: "relay",
  local: null,
  remote: null,
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
      },
    ]);
    const text = formatTable(
      {
        name: "tincan0",
        uid: null,
        ipv4: "10.10.0.5/16",
        ipv6: null,
        mtu: 1280,
        translate: false,
        queued: 0,
        txBytes: 0,
        rxBytes: 0,
        txPackets: 0,
        rxPackets: 0,
        drops: { txQueue: 21, multicast: 3, unmappedExpired: 0 },
      },
      rows,
    );
    expect(text).toMatch(
      /Bob \(bob@lab\.local\)\s+aaaaaaaa\s+10\.10\.0\.7\s+connected\s+relay\s+1\.3 ms\s+1315\s+10 B\s+2\.0 KiB\s+5s/,
    );
    expect(text).toMatch(/^vnic drops: txQueue 21, multicast 3$/m);
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
