import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GroupVpnConfig } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.js";

const dir = mkdtempSync(join(tmpdir(), "tincan-ice-config-"));
const base = {
  group: "lab",
  xmpp: { domain: "lab.local", username: "alice", password: "secret" },
  vnic: { ipv4: "10.10.0.5/16" },
};

function load(ice: unknown) {
  const file = join(dir, "c.json");
  writeFileSync(file, JSON.stringify({ ...base, ice }));
  return loadConfig(file, GroupVpnConfig);
}

function errorOf(ice: unknown): string {
  try {
    load(ice);
  } catch (err) {
    if (err instanceof ConfigError) return err.detail;
    throw err;
  }
  throw new Error("no error thrown");
}

describe("ice socket settings", () => {
  it("takes a port range, UDP mux and a literal bind address; xmpp.service may be left out", () => {
    const c = load({ portRange: [40000, 40099], udpMux: true, bindAddress: "192.0.2.7" });
    expect(c.ice).toMatchObject({ portRange: [40000, 40099], udpMux: true, bindAddress: "192.0.2.7" });
    expect(c.xmpp.service).toBeUndefined();
    expect(load(undefined).ice).toEqual({ stun: [], turn: [], udpMux: false });
  });

  it("refuses ranges that are reversed, privileged or out of range, and host names", () => {
    expect(errorOf({ portRange: [40100, 40000] })).toMatch(/ice\.portRange: min must not be greater/);
    expect(errorOf({ portRange: [80, 40000] })).toMatch(/ice\.portRange\.0: ports below 1024/);
    expect(errorOf({ portRange: [40000, 70000] })).toMatch(/ice\.portRange\.1/);
    expect(errorOf({ portRange: [40000] })).toMatch(/ice\.portRange/);
    expect(errorOf({ bindAddress: "example.org" })).toMatch(/ice\.bindAddress/);
    expect(errorOf({ udpMux: "yes" })).toMatch(/ice\.udpMux/);
  });
});

describe("TURN REST secrets", () => {
  it("reads secretFile, defaults ttlSec to a day, keeps username optional", () => {
    const secretFile = join(dir, "turn.secret");
    writeFileSync(secretFile, "s3cret\n");
    const c = load({ turn: [{ urls: "turn:192.0.2.1:3478", secretFile: "turn.secret" }] });
    expect(c.ice.turn[0]).toMatchObject({ secret: "s3cret", ttlSec: 86_400, secretFile });
    expect(c.ice.turn[0]?.username).toBeUndefined();
  });

  it("wants exactly one kind of secret, and a username with a static credential", () => {
    const urls = "turn:192.0.2.1:3478";
    expect(errorOf({ turn: [{ urls, secret: "a", credential: "b", username: "u" }] })).toMatch(
      /exactly one of/,
    );
    expect(errorOf({ turn: [{ urls }] })).toMatch(/exactly one of/);
    expect(errorOf({ turn: [{ urls, credential: "b" }] })).toMatch(/"credential" needs a "username"/);
    expect(errorOf({ turn: [{ urls, secret: "a", ttlSec: 10 }] })).toMatch(/ice\.turn\.0\.ttlSec/);
    expect(errorOf({ turn: [{ urls, secretFile: "missing.secret" }] })).toMatch(
      /ice\.turn\.0\.secretFile: cannot read/,
    );
  });
});
