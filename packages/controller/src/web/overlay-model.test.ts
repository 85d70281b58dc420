import { type LinkInfo, OverlayMap, uidForIpv4 } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import type { Member } from "../policy.js";
import { linkInfo } from "../testing.js";
import { buildOverlay, type OverlaySources } from "./overlay-model.js";

const [a, b, c, d] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].map(uidForIpv4) as [
  string,
  string,
  string,
  string,
];

function member(uid: string, user: string): Member {
  return { bareJid: `${user}@lab`, fullJid: `${user}@lab/x`, tincan: { uid } };
}

function link(peerUid: string, over: Partial<LinkInfo> = {}): LinkInfo {
  return linkInfo(peerUid, { txBytes: 100, rxBytes: 50, ...over });
}

function sources(over: Partial<OverlaySources>): OverlaySources {
  return {
    controller: "groupvpn",
    self: { uid: a, jid: "alice@lab", online: true, ipv4: "10.0.0.1" },
    online: [],
    offline: [],
    links: [],
    neighborLinks: new Map(),
    refused: [],
    now: 1,
    ...over,
  };
}

describe("buildOverlay", () => {
  it("draws members, own links with their path and traffic, and the links neighbours announced", () => {
    const map = buildOverlay(
      sources({
        online: [member(b, "bob"), member(c, "carol")],
        offline: [member(d, "dave")],
        links: [link(b), link(c, { path: "relay" })],
        // b says it links to a (us), c (drawn once, as b-c) and c says it links to b.
        neighborLinks: new Map([
          [b, new Set([a, c])],
          [c, new Set([b])],
        ]),
      }),
    );
    expect(OverlayMap.parse(map)).toEqual(map);
    expect(map.nodes.map((n) => [n.uid, n.online, n.self])).toEqual(
      expect.arrayContaining([
        [a, true, true],
        [b, true, false],
        [c, true, false],
        [d, false, false],
      ]),
    );
    const byPair = new Map(map.edges.map((e) => [[e.a, e.b].sort().join(), e]));
    expect(map.edges).toHaveLength(3);
    expect(byPair.get([a, b].sort().join())).toMatchObject({ source: "link", path: "host", bytes: 150 });
    expect(byPair.get([a, c].sort().join())).toMatchObject({ source: "link", path: "relay" });
    expect(byPair.get([b, c].sort().join())).toMatchObject({ source: "neighbor", path: null, bytes: 0 });
  });

  it("drops failed links, and announcements of neighbours we have no link to", () => {
    const map = buildOverlay(
      sources({
        online: [member(b, "bob"), member(c, "carol")],
        links: [link(b, { state: "failed" })],
        neighborLinks: new Map([[b, new Set([c])]]),
      }),
    );
    expect(map.edges).toEqual([]);
  });

  it("gives a linked peer that is no known member a node (no dangling edge)", () => {
    const map = buildOverlay(sources({ links: [link(d, { state: "connecting", path: null })] }));
    expect(map.nodes.find((n) => n.uid === d)).toMatchObject({ online: false, jid: null });
    expect(map.edges).toEqual([expect.objectContaining({ state: "connecting", path: null })]);
  });

  it("lists refused roster contacts by JID, with the reason, and draws no node for them", () => {
    const map = buildOverlay(
      sources({
        refused: [
          { jid: "zed@lab", reason: 'not in roster group "lab"' },
          { jid: "mallory@lab", name: "M", reason: 'not in roster group "lab"' },
        ],
      }),
    );
    expect(map.refused.map((r) => r.jid)).toEqual(["mallory@lab", "zed@lab"]);
    expect(map.refused[0]).toEqual({ jid: "mallory@lab", name: "M", reason: 'not in roster group "lab"' });
    expect(map.nodes).toHaveLength(1);
  });
});
