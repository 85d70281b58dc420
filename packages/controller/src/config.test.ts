import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GroupVpnConfig, TincanConfig } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.js";

const dir = mkdtempSync(join(tmpdir(), "tincan-config-"));

function write(name: string, content: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

const good = {
  group: "lab",
  xmpp: { service: "xmpp://10.0.0.1:5222", domain: "lab.local", username: "alice", password: "secret" },
  vnic: { ipv4: "10.10.0.5/16" },
};

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("no error thrown");
}

describe("loadConfig", () => {
  it("loads a good config with defaults", () => {
    const c = loadConfig(write("good.json", good), GroupVpnConfig);
    expect(c.links).toEqual({
      policy: "on-demand",
      maxLinks: 64,
      idleTimeoutSec: 300,
      relayFallbackSec: 0.3,
      setupTimeoutSec: 10,
      retryMaxSec: 60,
      directRetryMaxSec: 300,
      signalBurst: 24,
      signalsPerSec: 4,
      successors: 2,
      longDistance: "auto",
      shortcutBytesPerSec: 8192,
    });
    expect(c.vnic.mtu).toBe(1280);
    expect(c.datapath.rpc).toBe("127.0.0.1:5800");
    expect(c.xmpp.password).toBe("secret");
    expect(c.xmpp.pingIntervalSec).toBe(60);
  });

  it("takes the retry caps and signal limits from links.* and names a bad field", () => {
    const links = { retryMaxSec: 10, directRetryMaxSec: 30, signalBurst: 8, signalsPerSec: 0.5 };
    const ok = loadConfig(write("limits.json", { ...good, links }), GroupVpnConfig);
    expect(ok.links).toMatchObject(links);
    for (const [key, bad] of [
      ["retryMaxSec", 0],
      ["directRetryMaxSec", 4],
      ["signalBurst", 2.5],
      ["signalsPerSec", 0],
    ] as const) {
      const file = write("limits-bad.json", { ...good, links: { [key]: bad } });
      expect(errorOf(() => loadConfig(file, GroupVpnConfig)).message).toContain(`links.${key}`);
    }
  });

  it("takes xmpp.pingIntervalSec from 1 to 3600 s and names the field otherwise", () => {
    const ok = loadConfig(
      write("ping.json", { ...good, xmpp: { ...good.xmpp, pingIntervalSec: 5 } }),
      GroupVpnConfig,
    );
    expect(ok.xmpp.pingIntervalSec).toBe(5);
    for (const bad of [0, -1, 3601, "60"]) {
      const file = write("ping-bad.json", { ...good, xmpp: { ...good.xmpp, pingIntervalSec: bad } });
      expect(errorOf(() => loadConfig(file, GroupVpnConfig)).message).toMatch(/xmpp\.pingIntervalSec/);
    }
  });

  it("names the file and field path of an unknown key", () => {
    const file = write("typo.json", { ...good, xmpp: { ...good.xmpp, passwrd: "x" } });
    const err = errorOf(() => loadConfig(file, GroupVpnConfig));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/xmpp: .*passwrd/);
  });

  it("names the field path of a wrong type", () => {
    const file = write("type.json", { ...good, links: { maxLinks: "many" } });
    const err = errorOf(() => loadConfig(file, GroupVpnConfig));
    expect(err.message).toMatch(new RegExp(`^${file}: links\\.maxLinks: `));
  });

  it("requires a password or passwordFile", () => {
    const { password: _p, ...xmpp } = good.xmpp;
    const file = write("nopw.json", { ...good, xmpp });
    const err = errorOf(() => loadConfig(file, GroupVpnConfig));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/xmpp: .*password/);
  });

  it("reads passwordFile and credentialFile relative to the config file", () => {
    writeFileSync(join(dir, "pw.txt"), "from-file\n");
    writeFileSync(join(dir, "turn.txt"), "turn-secret");
    const { password: _p, ...xmpp } = good.xmpp;
    const file = write("pwfile.json", {
      ...good,
      xmpp: { ...xmpp, passwordFile: "pw.txt" },
      ice: { turn: [{ urls: "turn:10.0.0.1:3478", username: "u", credentialFile: "turn.txt" }] },
    });
    const c = loadConfig(file, GroupVpnConfig);
    expect(c.xmpp.password).toBe("from-file");
    expect(c.ice.turn[0]?.credential).toBe("turn-secret");
  });

  it("reports a missing password file, an unreadable config and invalid JSON clearly", () => {
    const { password: _p, ...xmpp } = good.xmpp;
    const file = write("pwmissing.json", { ...good, xmpp: { ...xmpp, passwordFile: "nope.txt" } });
    expect(errorOf(() => loadConfig(file, GroupVpnConfig)).message).toMatch(
      /xmpp\.passwordFile: cannot read .*nope\.txt.*ENOENT/,
    );
    expect(errorOf(() => loadConfig(join(dir, "absent.json"), TincanConfig)).message).toMatch(
      /absent\.json: cannot read the file: ENOENT/,
    );
    expect(errorOf(() => loadConfig(write("bad.json", "{ rpc: "), TincanConfig)).message).toMatch(
      /bad\.json: not valid JSON/,
    );
  });
});
