import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatapathTune } from "@tincan/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { loadTincanConfig, TincanConfigError } from "./config.js";

const TINCAN_BIN = new URL("../bin/tincan.js", import.meta.url).pathname;
const DEFAULTS = DatapathTune.parse({});

const dir = mkdtempSync(join(tmpdir(), "tincan-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configFile(config: unknown): string {
  const file = join(dir, `tincan-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

describe("tincan.json tune section and TINCAN_TUNE", () => {
  function errorOf(load: () => unknown): string {
    try {
      load();
    } catch (err) {
      if (err instanceof TincanConfigError) return err.message;
      throw err;
    }
    throw new Error("loaded without an error");
  }

  it("defaults every knob in one place, the schema", () => {
    expect(loadTincanConfig(undefined).tune).toEqual(DEFAULTS);
    expect(DEFAULTS).toMatchObject({
      underlayMtu: 1400,
      rxQueueMs: 2,
      txQueueMs: 5,
      turnBytes: 32 << 10,
      rtp: true,
      rxRssLimitMb: 256,
      fastPcCloseMs: 20_000,
      nativeForward: true,
    });
    expect(Object.keys(DEFAULTS)).toHaveLength(20);
  });

  it("takes the knobs of the file's tune section, the rest at their defaults", () => {
    const file = configFile({ tune: { rtp: false, rxQueueMs: 0 } });
    expect(loadTincanConfig(file).tune).toEqual({ ...DEFAULTS, rtp: false, rxQueueMs: 0 });
  });

  it("lays TINCAN_TUNE over the file's section, key by key", () => {
    const file = configFile({ tune: { rtp: false, rxQueueMs: 0, txQueueMs: 7 } });
    const tune = loadTincanConfig(file, { tune: '{"txQueueMs":0,"turnBytes":1e9}' }).tune;
    expect(tune).toEqual({ ...DEFAULTS, rtp: false, rxQueueMs: 0, txQueueMs: 0, turnBytes: 1e9 });
    expect(loadTincanConfig(undefined, { tune: '{"offload":false}' }).tune).toEqual({
      ...DEFAULTS,
      offload: false,
    });
  });

  it("refuses a bad value in the file, naming the file and the field", () => {
    const file = configFile({ tune: { rxQueueMs: -1 } });
    expect(errorOf(() => loadTincanConfig(file))).toMatch(new RegExp(`^${file}: tune\\.rxQueueMs: `));
    const typo = configFile({ tune: { rxQueueMS: 1 } });
    expect(errorOf(() => loadTincanConfig(typo))).toMatch(/tune: Unrecognized key: "rxQueueMS"/);
    const notObject = configFile({ tune: 5 });
    expect(errorOf(() => loadTincanConfig(notObject, { tune: '{"rtp":false}' }))).toMatch(
      new RegExp(`^${notObject}: tune: `),
    );
  });

  it("refuses a bad TINCAN_TUNE, naming it and the field", () => {
    expect(errorOf(() => loadTincanConfig(undefined, { tune: '{"turnBytes":0}' }))).toMatch(
      /^TINCAN_TUNE: turnBytes: /,
    );
    expect(errorOf(() => loadTincanConfig(undefined, { tune: '{"rtp":"no"}' }))).toMatch(
      /^TINCAN_TUNE: rtp: /,
    );
    expect(errorOf(() => loadTincanConfig(undefined, { tune: '{"vnicFactory":null}' }))).toMatch(
      /^TINCAN_TUNE: \(root\): Unrecognized key: "vnicFactory"/,
    );
    expect(errorOf(() => loadTincanConfig(undefined, { tune: "rtp=false" }))).toBe(
      "TINCAN_TUNE: must be a JSON object",
    );
  });

  it("tincan exits 2 with the message for a bad value in either place", () => {
    const run = (args: string[], tune?: string) => {
      const env = { ...process.env };
      delete env.TINCAN_TUNE;
      if (tune !== undefined) env.TINCAN_TUNE = tune;
      const r = spawnSync(process.execPath, [TINCAN_BIN, ...args], {
        env,
        encoding: "utf8",
        timeout: 15_000,
      });
      return { status: r.status, stderr: r.stderr.trim() };
    };
    const fromEnv = run(["--token-file", join(dir, "t.token")], '{"hopLimit":0}');
    expect(fromEnv.status).toBe(2);
    expect(fromEnv.stderr).toMatch(/^tincan: TINCAN_TUNE: hopLimit: /);
    const file = configFile({ tune: { silenceMs: 10 } });
    const fromFile = run(["--config", file, "--token-file", join(dir, "t.token")]);
    expect(fromFile.status).toBe(2);
    expect(fromFile.stderr).toMatch(new RegExp(`^tincan: ${file}: tune\\.silenceMs: `));
  });
});

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
