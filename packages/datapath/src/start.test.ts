import dgram from "node:dgram";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TincanConfig, uidForIpv4 } from "@tincan/protocol";
import { afterAll, describe, expect, it } from "vitest";
import winston from "winston";
import { DatapathStartError, type RunningDatapath, startDatapath } from "./start.js";
import { fakeVnicFactory } from "./testing.js";

const dir = mkdtempSync(join(tmpdir(), "tincan-start-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const silent = winston.createLogger({ silent: true });

/** A config whose RPC port is any free one (the schema takes 1..65535; listen takes 0). */
function configIn(sub: string, rpc = "127.0.0.1:0") {
  return { ...TincanConfig.parse({ tokenFile: join(dir, sub, "tincan.token") }), rpc };
}

/** One JSON-RPC request from a fresh socket; resolves null when nothing answers within `ms`. */
async function call(port: number, method: string, params: unknown, ms = 1000): Promise<any> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), ms);
      socket.once("message", (msg) => {
        clearTimeout(timer);
        resolve(JSON.parse(msg.toString()));
      });
      socket.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }), port, "127.0.0.1");
    });
  } finally {
    socket.close();
  }
}

describe("startDatapath", () => {
  it("serves RPC with the token it wrote, and stop() removes the vNIC and ends the RPC service", async () => {
    const vnics = fakeVnicFactory();
    const config = configIn("a");
    const running: RunningDatapath = await startDatapath(config, {
      log: silent,
      system: { vnicFactory: vnics },
    });
    const auth = readFileSync(config.tokenFile, "utf8").trim();
    const { port } = running.address;
    const configured = await call(port, "vnic.configure", {
      auth,
      uid: uidForIpv4("10.9.0.1"),
      ipv4: "10.9.0.1/24",
    });
    expect(configured.result.name).toBe("tincan0");
    expect(vnics.devices).toHaveLength(1);
    expect((await call(port, "route.query", { auth })).result).toEqual([]);

    running.stop();
    running.stop(); // idempotent
    expect(vnics.devices[0]?.closed).toBe(true);
    expect(await call(port, "route.query", { auth }, 300)).toBeNull();
  });

  it("refuses an unsafe token directory (exit code 2) and a taken RPC port (exit code 1)", async () => {
    const start = (config: ReturnType<typeof configIn>) =>
      startDatapath(config, { log: silent, system: { vnicFactory: fakeVnicFactory() } });
    const failure = (config: ReturnType<typeof configIn>) =>
      start(config).then(
        () => expect.fail("started"),
        (e: unknown) => e as DatapathStartError,
      );
    mkdirSync(join(dir, "unsafe"));
    chmodSync(join(dir, "unsafe"), 0o777);
    const refused = await failure(configIn("unsafe"));
    expect(refused).toBeInstanceOf(DatapathStartError);
    expect(refused.exitCode).toBe(2);

    const first = await start(configIn("b"));
    try {
      const taken = await failure(configIn("c", `127.0.0.1:${first.address.port}`));
      expect(taken).toBeInstanceOf(DatapathStartError);
      expect(taken.exitCode).toBe(1);
      expect(taken.message).toContain("cannot listen");
    } finally {
      first.stop();
    }
  });
});
