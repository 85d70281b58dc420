import type { ControllerStatus, PingResult, RouteInfo } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { pongLine, resolvePeer } from "./ctl-ping.js";

const BOB = "b".repeat(32);
const CAROL = "c".repeat(32);
const routes: RouteInfo[] = [{ prefix: "10.10.0.2/32", peerUid: BOB, via: null, mapTo: null }];
const status: ControllerStatus = {
  controller: "groupvpn",
  pid: 1,
  jid: "alice@lab.local/x",
  uid: "a".repeat(32),
  updatedAt: 0,
  peers: { [BOB]: { jid: "bob@lab.local", ipv4: "10.10.0.2" } },
  members: [
    { jid: "bob@lab.local", state: "online" },
    { jid: "carol@lab.local", state: "offline" },
  ],
};
const result = (r: Partial<PingResult>): PingResult => ({
  rttMs: 1.234,
  path: "host",
  relayOnly: false,
  local: "100.64.0.10:40000",
  remote: "100.64.0.11:40001",
  localType: "host",
  remoteType: "srflx",
  ...r,
});

describe("tincanctl ping", () => {
  it("a full JID picks one device of the account", () => {
    const devices: ControllerStatus = {
      ...status,
      peers: {
        [BOB]: { jid: "bob@lab.local", device: "desk", ipv4: "10.10.0.2" },
        [CAROL]: { jid: "bob@lab.local", device: "phone", ipv4: "10.10.0.3" },
      },
    };
    expect(resolvePeer("bob@lab.local/phone", routes, devices)).toMatchObject({
      uid: CAROL,
      address: "10.10.0.3",
    });
    expect(resolvePeer("bob@lab.local/desk", routes, devices)).toMatchObject({ uid: BOB });
    expect(resolvePeer("bob@lab.local/tv", routes, devices)).toBe(
      'bob@lab.local has no device "tv" online (its devices: desk, phone)',
    );
  });

  it("finds the peer by JID (bare or full), UID or virtual address", () => {
    const bob = { uid: BOB, label: "bob@lab.local", address: "10.10.0.2" };
    expect(resolvePeer("bob@lab.local", routes, status)).toEqual(bob);
    expect(resolvePeer("Bob@lab.local/tincan-x", routes, status)).toEqual(bob);
    expect(resolvePeer(BOB, routes, status)).toEqual(bob);
    expect(resolvePeer("10.10.0.2", routes, null)).toEqual({
      uid: BOB,
      label: "bbbbbbbb",
      address: "10.10.0.2",
    });
  });

  it("says why it cannot ping an offline, unknown or unnamed peer", () => {
    expect(resolvePeer("carol@lab.local", routes, status)).toBe("carol@lab.local is offline");
    expect(resolvePeer("mallory@lab.local", routes, status)).toBe("mallory@lab.local is not a member");
    expect(resolvePeer("10.10.0.99", routes, status)).toMatch(/^unknown peer "10\.10\.0\.99"/);
    expect(resolvePeer(CAROL, routes, status)).toMatchObject({ uid: CAROL, address: null });
  });

  it("prints the path and round trip of each reply like tailscale ping", () => {
    const bob = { uid: BOB, label: "bob@lab.local", address: "10.10.0.2" };
    expect(pongLine(bob, result({}))).toBe(
      "pong from bob@lab.local (10.10.0.2) via host 100.64.0.11:40001 in 1.2 ms",
    );
    expect(
      pongLine(
        bob,
        result({ path: "relay", relayOnly: true, localType: "relay", local: "100.64.0.1:50123", rttMs: 12 }),
      ),
    ).toBe("pong from bob@lab.local (10.10.0.2) via relay 100.64.0.1:50123 in 12.0 ms");
    expect(pongLine(bob, result({ rttMs: null }))).toBe("no reply from bob@lab.local (10.10.0.2)");
  });
});
