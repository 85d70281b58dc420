import type {
  LinkInfo,
  LinkState,
  OverlayEdge,
  OverlayMap,
  OverlayNode,
  OverlayRefused,
} from "@tincan/protocol";
import type { Member } from "../policy.js";

/** What the overlay map is drawn from: the controller's view at one moment. */
export interface OverlaySources {
  controller: string;
  self: { uid: string; jid: string | null; online: boolean; ipv4?: string; ipv6?: string };
  /** Online members. */
  online: Member[];
  /** Members known here that are offline (their link may still be up). */
  offline: Member[];
  /** This node's links (`link.query`). */
  links: LinkInfo[];
  /** What each neighbour announced it links to, by neighbour UID. */
  neighborLinks: ReadonlyMap<string, ReadonlySet<string>>;
  /** Roster contacts the policy refuses, with the reason. */
  refused: OverlayRefused[];
  now: number;
}

/** Links in these states are drawn; failed or closed ones are gone from the overlay. */
const DRAWN_STATES: ReadonlySet<LinkState> = new Set(["new", "connecting", "connected"]);

/**
 * Members become nodes; own links and the links neighbours announced become edges (one per pair:
 * our own link's facts win over an announcement of the same pair). A link to a peer that is no
 * known member (e.g. adopted at start) still gets its node, so that no edge dangles.
 */
export function buildOverlay(s: OverlaySources): OverlayMap {
  const nodes = new Map<string, OverlayNode>();
  nodes.set(s.self.uid, {
    uid: s.self.uid,
    jid: s.self.jid,
    self: true,
    online: s.self.online,
    ...(s.self.ipv4 ? { ipv4: s.self.ipv4 } : {}),
    ...(s.self.ipv6 ? { ipv6: s.self.ipv6 } : {}),
  });
  const addMember = (m: Member, online: boolean) => {
    if (nodes.has(m.tincan.uid)) return;
    nodes.set(m.tincan.uid, {
      uid: m.tincan.uid,
      jid: m.bareJid,
      self: false,
      online,
      ...(m.name ? { name: m.name } : {}),
      ...(m.tincan.ipv4 ? { ipv4: m.tincan.ipv4 } : {}),
      ...(m.tincan.ipv6 ? { ipv6: m.tincan.ipv6 } : {}),
    });
  };
  for (const m of s.online) addMember(m, true);
  for (const m of s.offline) addMember(m, false);
  const ensureNode = (uid: string) => {
    if (!nodes.has(uid)) nodes.set(uid, { uid, jid: null, self: false, online: false });
  };

  const edges = new Map<string, OverlayEdge>();
  for (const l of s.links) {
    if (!DRAWN_STATES.has(l.state) || l.peerUid === s.self.uid) continue;
    ensureNode(l.peerUid);
    edges.set(pairKey(s.self.uid, l.peerUid), {
      ...ordered(s.self.uid, l.peerUid),
      source: "link",
      path: l.path,
      state: l.state,
      rttMs: l.rttMs,
      bytes: l.txBytes + l.rxBytes,
    });
  }
  for (const [neighbor, uids] of s.neighborLinks) {
    // An announcement is only as current as our link to its sender.
    if (!edges.has(pairKey(s.self.uid, neighbor))) continue;
    for (const uid of uids) {
      if (uid === neighbor || uid === s.self.uid) continue;
      const key = pairKey(neighbor, uid);
      if (edges.has(key)) continue;
      ensureNode(uid);
      edges.set(key, {
        ...ordered(neighbor, uid),
        source: "neighbor",
        path: null,
        state: null,
        rttMs: null,
        bytes: 0,
      });
    }
  }
  return {
    self: s.self.uid,
    controller: s.controller,
    updatedAt: s.now,
    nodes: [...nodes.values()].sort((x, y) => x.uid.localeCompare(y.uid)),
    edges: [...edges.values()].sort((x, y) => pairKey(x.a, x.b).localeCompare(pairKey(y.a, y.b))),
    refused: [...s.refused].sort((x, y) => x.jid.localeCompare(y.jid)),
  };
}

function ordered(x: string, y: string): { a: string; b: string } {
  return x < y ? { a: x, b: y } : { a: y, b: x };
}

function pairKey(x: string, y: string): string {
  const { a, b } = ordered(x, y);
  return `${a}-${b}`;
}
