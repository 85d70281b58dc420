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

  it("reports at once when a destination held without a route is held again with one", () => {
    const u = new UnmappedPackets(options);
    expect(u.hold("10.0.0.2", packet(1), 0, 1, 0, 0, false)).toBe(true);
    // The controller could not place it; its member's route came 200 ms later.
    expect(u.hold("10.0.0.2", packet(1), 0, 1, 200, 0, true)).toBe(true);
    expect(u.hold("10.0.0.2", packet(2), 0, 1, 300, 300, true)).toBe(false);
    expect(u.hold("10.0.0.3", packet(3), 0, 1, 0, 0, true)).toBe(true);
    expect(u.hold("10.0.0.3", packet(3), 0, 1, 200, 0, true)).toBe(false);
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
