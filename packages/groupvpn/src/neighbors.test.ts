import { uidForIpv4 } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { NeighborLinks } from "./neighbors.js";

const [a, b, c, d] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].map(uidForIpv4) as [
  string,
  string,
  string,
  string,
];

describe("NeighborLinks", () => {
  it("finds a connected neighbour that has a link to the target", () => {
    const n = new NeighborLinks();
    expect(n.update(b, { type: "groupvpn.links", uids: [c] })).toBe(true);
    expect(n.relayFor(c, [a, b])).toBe(b);
    expect(n.relayFor(c, [a])).toBeUndefined(); // b is not connected to us
    expect(n.relayFor(d, [a, b])).toBeUndefined();
  });

  it("ignores malformed announcements and forgets neighbours", () => {
    const n = new NeighborLinks();
    expect(n.update(b, { type: "groupvpn.links", uids: ["not-a-uid"] })).toBe(false);
    expect(n.update(b, "garbage")).toBe(false);
    expect(n.relayFor(c, [b])).toBeUndefined();
    n.update(b, { type: "groupvpn.links", uids: [c] });
    n.forget(b);
    expect(n.relayFor(c, [b])).toBeUndefined();
  });
});
