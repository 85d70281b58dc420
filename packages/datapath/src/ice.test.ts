import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { iceSocketConfig, toIceServers, turnRestCredentials } from "./ice.js";

describe("TURN REST credentials", () => {
  it("derives <expiry>:<user> and base64(HMAC-SHA1(secret, username))", () => {
    const c = turnRestCredentials("north", "alice", 3600, 1_700_000_000_500);
    expect(c.username).toBe("1700003600:alice");
    expect(c.password).toBe(createHmac("sha1", "north").update("1700003600:alice").digest("base64"));
    expect(c.password).toMatch(/^[A-Za-z0-9+/]{27}=$/);
  });

  it("derives fresh credentials per link, named after our UID unless a username is set", () => {
    const settings = {
      stun: ["stun:192.0.2.1:3478"],
      turn: [
        { urls: "turn:192.0.2.1:3478?transport=udp", secret: "s", ttlSec: 600 },
        { urls: "turn:192.0.2.2", username: "gw", secret: "s", ttlSec: 600 },
        { urls: "turn:192.0.2.3:3479", username: "u", credential: "p" },
      ],
    };
    const before = Math.floor(Date.now() / 1000) + 600;
    const servers = toIceServers(settings, true, "ab".repeat(16));
    expect(servers).toHaveLength(3); // relay-only: no STUN
    const [user, gw, fixed] = servers;
    const [expiry, uid] = String(user?.username).split(":");
    expect(Number(expiry)).toBeGreaterThanOrEqual(before);
    expect(uid).toBe("ab".repeat(16));
    expect(user?.password).toBe(createHmac("sha1", "s").update(String(user?.username)).digest("base64"));
    expect(gw?.username).toMatch(/^\d+:gw$/);
    expect(gw).toMatchObject({ hostname: "192.0.2.2", port: 3478, relayType: "TurnUdp" });
    expect(fixed).toMatchObject({ hostname: "192.0.2.3", port: 3479, username: "u", password: "p" });
  });
});

describe("iceSocketConfig", () => {
  it("maps the port range, UDP mux and bind address to node-datachannel's RtcConfig", () => {
    expect(iceSocketConfig({ stun: [], turn: [] })).toEqual({});
    expect(
      iceSocketConfig({
        stun: [],
        turn: [],
        portRange: [40000, 40010],
        udpMux: true,
        bindAddress: "192.0.2.9",
      }),
    ).toEqual({
      portRangeBegin: 40000,
      portRangeEnd: 40010,
      enableIceUdpMux: true,
      bindAddress: "192.0.2.9",
    });
  });
});
