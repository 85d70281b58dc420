import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadTincanConfig, TincanConfigError } from "./config.js";

const dir = mkdtempSync(join(tmpdir(), "tincan-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configFile(json: unknown): string {
  const file = join(dir, "tincan.json");
  writeFileSync(file, JSON.stringify(json));
  return file;
}

describe("loadTincanConfig", () => {
  it("resolves a relative tokenFile against the config file's directory, as the controllers do", () => {
    const config = loadTincanConfig(configFile({ tokenFile: "run/tincan.token" }));
    expect(config.tokenFile).toBe(join(dir, "run/tincan.token"));
  });

  it("takes a relative --token-file flag as given (relative to the working directory)", () => {
    expect(loadTincanConfig(configFile({}), { tokenFile: "x.token" }).tokenFile).toBe("x.token");
  });

  it("takes tokenGroup as a name or number, refuses anything else, and has no default", () => {
    expect(loadTincanConfig(configFile({})).tokenGroup).toBeUndefined();
    expect(loadTincanConfig(configFile({ tokenGroup: "tincan" })).tokenGroup).toBe("tincan");
    expect(loadTincanConfig(configFile({ tokenGroup: "998" })).tokenGroup).toBe("998");
    expect(() => loadTincanConfig(configFile({ tokenGroup: "a b" }))).toThrow(TincanConfigError);
    expect(() => loadTincanConfig(configFile({ tokenGroup: "a b" }))).toThrow(
      /tokenGroup: must be a group name/,
    );
  });

  it("refuses a host name as the RPC address", () => {
    expect(() => loadTincanConfig(configFile({ rpc: "127.example.org:5800" }))).toThrow(
      /rpc: must be "ip:port" with an IPv4 address, not a host name/,
    );
  });
});
