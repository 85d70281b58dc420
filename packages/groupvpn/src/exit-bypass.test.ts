import { describe, expect, it } from "vitest";
import { bypassAddresses, bypassHosts } from "./exit-bypass.js";

describe("exit node bypass", () => {
  it("takes the hosts of the XMPP service and the STUN/TURN URLs, once each", () => {
    const hosts = bypassHosts({
      xmpp: { service: "xmpp://100.64.0.1:5222", domain: "lab.local" },
      ice: {
        stun: ["stun:100.64.0.1:3478", "stun:[fd00::9]:3478"],
        turn: [{ urls: "turn:turn.example.org:3478?transport=tcp", username: "u", credential: "c" }],
      },
    } as never);
    expect(hosts).toEqual(["100.64.0.1", "fd00::9", "turn.example.org"]);
  });

  it("falls back to the XMPP domain without a service; skips what is no host", () => {
    const hosts = bypassHosts({
      xmpp: { domain: "example.org" },
      ice: { stun: ["stun:bad host:1"], turn: [] },
    } as never);
    expect(hosts).toEqual(["example.org"]);
  });

  it("resolves names; one that does not resolve is reported and left out", async () => {
    const errors: string[] = [];
    const out = await bypassAddresses(["127.0.0.1", "no-such-host.invalid"], (h) => errors.push(h));
    expect(out).toEqual(["127.0.0.1"]);
    expect(errors).toEqual(["no-such-host.invalid"]);
  });
});
