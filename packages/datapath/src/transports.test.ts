import { describe, expect, it } from "vitest";
import type { Link } from "./link.js";
import { bestTransport, transportOf } from "./transports.js";

const link = (relayOnly: boolean, state: Link["state"], path: Link["path"] = null): Link =>
  ({ relayOnly, state, path }) as Link;

describe("bestTransport", () => {
  it("prefers connected direct over connected relayed over setting up over failed", () => {
    const direct = link(false, "connected", "srflx");
    const viaRelay = link(true, "connected", "relay");
    const checking = link(false, "connecting");
    expect(bestTransport(viaRelay, { full: direct, relay: viaRelay })).toBe(direct);
    expect(bestTransport(checking, { full: checking, relay: viaRelay })).toBe(viaRelay);
    expect(bestTransport(undefined, { full: link(false, "failed"), relay: checking })).toBe(checking);
    // A full-candidate link whose ICE chose a relay ranks below the relay-only one.
    const fullRelayed = link(false, "connected", "relay");
    expect(bestTransport(fullRelayed, { full: fullRelayed, relay: viaRelay })).toBe(viaRelay);
    expect(bestTransport(checking, { full: fullRelayed, relay: checking })).toBe(fullRelayed);
  });

  it("keeps the current transport on a tie (the one set up first keeps its waiting packets)", () => {
    const first = link(true, "connecting");
    const second = link(false, "new");
    expect(bestTransport(first, { full: second, relay: first })).toBe(first);
    expect(bestTransport(second, { full: second, relay: first })).toBe(second);
  });

  it("leaves a connected relay that went silent for a connected direct one and back", () => {
    const viaRelay = link(true, "disconnected", "relay");
    const direct = link(false, "connected", "host");
    expect(bestTransport(viaRelay, { full: direct, relay: viaRelay })).toBe(direct);
    expect(bestTransport(direct, { relay: viaRelay })).toBe(viaRelay); // the current one was removed
    expect(bestTransport(undefined, {})).toBeUndefined();
  });
});

describe("transportOf", () => {
  it("addresses a transport by kind, or the only one (full first) without a kind", () => {
    const full = link(false, "new");
    const relay = link(true, "new");
    expect(transportOf({ full, relay }, true)).toBe(relay);
    expect(transportOf({ full, relay })).toBe(full);
    expect(transportOf({ relay })).toBe(relay);
    expect(transportOf({ relay }, false)).toBeUndefined();
    expect(transportOf(undefined)).toBeUndefined();
  });
});
