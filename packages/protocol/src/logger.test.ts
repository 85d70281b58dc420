import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import type { LogLevel } from "./common.js";
import { createWinston, handleLogLevelSignals } from "./logger.js";

function capture(format: "text" | "json", level: LogLevel = "debug") {
  const stream = new PassThrough();
  const lines: string[] = [];
  let buf = "";
  stream.on("data", (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split("\n");
    buf = parts.pop() ?? "";
    lines.push(...parts);
  });
  const log = createWinston({ level, format, stream });
  return { log, lines };
}

const flush = () => new Promise((r) => setImmediate(r));

describe("createWinston json format", () => {
  it("writes one object per line with timestamp, level, component, message and the fields", async () => {
    const { log, lines } = capture("json");
    const child = log.child({ component: "links" });
    child.info("link up", { peer: "bob@lab.local", path: "host", rttMs: 1.5 });
    child.warn('quotes " and\nnewlines', { error: new Error("boom"), big: 10n });
    log.debug("no component");
    await flush();
    expect(lines).toHaveLength(3);
    const objs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs[0]).toMatchObject({
      level: "info",
      component: "links",
      message: "link up",
      peer: "bob@lab.local",
      path: "host",
      rttMs: 1.5,
    });
    expect(Number.isNaN(Date.parse(String(objs[0]?.timestamp)))).toBe(false);
    expect(objs[1]).toMatchObject({
      level: "warn",
      message: 'quotes " and\nnewlines',
      error: { name: "Error", message: "boom" },
      big: "10",
    });
    expect(objs[2]).toMatchObject({ level: "debug", message: "no component" });
  });

  it("text format keeps the one-line shape", async () => {
    const { log, lines } = capture("text");
    log.child({ component: "xmpp" }).info("online", { jid: "a@b/c" });
    await flush();
    expect(lines[0]).toMatch(/^\S+Z info \[xmpp\] online \{"jid":"a@b\/c"\}$/);
  });
});

describe("handleLogLevelSignals", () => {
  it("SIGUSR1 raises to debug, SIGUSR2 restores the configured level, and it can be removed", async () => {
    const { log, lines } = capture("json", "warn");
    const proc = new EventEmitter();
    const off = handleLogLevelSignals(
      (l) => {
        log.level = l;
      },
      "warn",
      proc as unknown as NodeJS.Process,
    );
    log.debug("hidden");
    proc.emit("SIGUSR1");
    log.debug("shown");
    proc.emit("SIGUSR2");
    log.debug("hidden again");
    off();
    proc.emit("SIGUSR1");
    expect(log.level).toBe("warn");
    await flush();
    expect(lines.map((l) => (JSON.parse(l) as { message: string }).message)).toEqual(["shown"]);
  });
});
