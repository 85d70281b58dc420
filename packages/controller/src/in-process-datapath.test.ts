import { createSocket } from "node:dgram";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "./config.js";
import { DatapathClient } from "./datapath-client.js";
import { loadInProcessDatapath } from "./in-process-datapath.js";
import { nullLog } from "./logger.js";

const dir = mkdtempSync(join(tmpdir(), "tincan-in-process-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
  const { port } = s.address();
  s.close();
  return port;
}

function tincanJson(name: string, config: Record<string, unknown>): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

describe("loadInProcessDatapath", () => {
  it("starts a datapath in this process that the controller reaches over RPC, and stops it", async () => {
    const rpc = `127.0.0.1:${await freePort()}`;
    const tokenFile = join(dir, "run", "tincan.token");
    // A relative tokenFile is relative to tincan.json's directory, as with `tincan --config`.
    const file = tincanJson("tincan.json", { rpc, tokenFile: "run/tincan.token", log: { level: "error" } });
    const running = await (await loadInProcessDatapath(file, { rpc, tokenFile })).start();
    const client = new DatapathClient({ rpc, tokenFile, log: nullLog, timeoutMs: 300, retries: 0 });
    try {
      const hello = await client.start();
      expect(hello.pid).toBe(process.pid);
      expect(await client.call("route.query", {})).toEqual([]);
      running.stop();
      running.stop();
      await expect(client.call("route.query", {})).rejects.toThrow();
    } finally {
      client.close();
      running.stop();
    }
  });

  it("refuses a datapath config that does not match the controller's datapath section", async () => {
    const tokenFile = join(dir, "t.token");
    const file = tincanJson("other.json", { rpc: "127.0.0.1:5801", tokenFile });
    const mismatch = loadInProcessDatapath(file, { rpc: "127.0.0.1:5800", tokenFile });
    await expect(mismatch).rejects.toBeInstanceOf(ConfigError);
    await expect(mismatch).rejects.toThrow(/rpc: "127.0.0.1:5801" is not the controller's datapath.rpc/);
    await expect(
      loadInProcessDatapath(file, { rpc: "127.0.0.1:5801", tokenFile: join(dir, "u.token") }),
    ).rejects.toThrow(/tokenFile: .* is not the controller's datapath.tokenFile/);
    const bad = tincanJson("bad.json", { rpc: "10.0.0.1:5800" });
    await expect(loadInProcessDatapath(bad, { rpc: "127.0.0.1:5800", tokenFile })).rejects.toThrow(
      new RegExp(`^${bad}: rpc`),
    );
    await expect(
      loadInProcessDatapath(join(dir, "missing.json"), { rpc: "127.0.0.1:5800", tokenFile }),
    ).rejects.toBeInstanceOf(ConfigError);
  });
});

describe("the daemons' Node flags", () => {
  it("are the same for tincan and the controllers: a one-process node runs with the datapath's", () => {
    const packages = join(dirname(fileURLToPath(import.meta.url)), "../..");
    const shebang = (bin: string) => readFileSync(join(packages, bin), "utf8").split("\n", 1)[0];
    const tincan = shebang("datapath/bin/tincan.js");
    expect(tincan).toMatch(/^#!\/usr\/bin\/env -S node --/);
    expect(shebang("groupvpn/bin/groupvpn.js")).toBe(tincan);
    expect(shebang("socialvpn/bin/socialvpn.js")).toBe(tincan);
  });
});
