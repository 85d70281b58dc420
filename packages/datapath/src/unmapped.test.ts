import { describe, expect, it } from "vitest";
import { UnmappedPackets } from "./unmapped.js";

const options = { notifyIntervalMs: 1000, holdMs: 10_000, maxDestinations: 4, packetsPerDestination: 2 };
const packet = (n: number) => Buffer.from([n]);

describe("UnmappedPackets", () => {
  it("reports a destination at most once per interval and keeps a bounded number of packets", () => {
    const u = new UnmappedPackets(options);
    expect(u.hold("10.0.0.2", packet(1), 0, 1, 0)).toBe(true);
    expect(u.hold("10.0.0.2", packet(2), 0, 1, 500)).toBe(false);
    expect(u.hold("10.0.0.2", packet(3), 0, 1, 1000)).toBe(true);
    expect(u.heldPackets).toBe(2);
  });

  it("packets held again after a route change keep their first hold time", () => {
    const u = new UnmappedPackets(options);
    u.hold("10.0.0.2", packet(1), 0, 1, 0);
    // A route change at 9 s: the packet is routed again, still has no link, is held again.
    const [group] = u.takeAll();
    expect(group?.since).toBe(0);
    u.hold("10.0.0.2", group!.packets[0]!, 0, 1, 9000, group!.since);
    expect(u.expire(10_001)).toBe(1);
    expect(u.heldPackets).toBe(0);
  });

  it("a destination held anew starts a new hold time", () => {
    const u = new UnmappedPackets(options);
    u.hold("10.0.0.2", packet(1), 0, 1, 9000);
    expect(u.expire(10_001)).toBe(0);
    expect(u.expire(19_001)).toBe(1);
  });
});
