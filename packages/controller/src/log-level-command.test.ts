import type { ControllerStatus, LogLevel } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import type { DatapathApi } from "./datapath-client.js";
import { logLevelCommand, UsageError } from "./log-level-command.js";

function fakeDatapath() {
  const state: { level: LogLevel; calls: unknown[] } = { level: "info", calls: [] };
  const datapath = {
    call: (async (_m: string, p: { level?: LogLevel }) => {
      state.calls.push(p);
      if (p.level) state.level = p.level;
      return { level: state.level };
    }) as DatapathApi["call"],
  };
  return { datapath, state };
}

const status = { controller: "groupvpn", pid: 4242 } as ControllerStatus;

describe("tincanctl log-level", () => {
  it("without LEVEL shows the datapath's level and signals nobody", async () => {
    const { datapath, state } = fakeDatapath();
    const kills: unknown[] = [];
    expect(await logLevelCommand(datapath, undefined, status, (...a) => kills.push(a))).toEqual([
      "tincan: info",
    ]);
    expect(state.calls).toEqual([{}]);
    expect(kills).toEqual([]);
  });

  it("debug: the datapath by RPC, the controller by SIGUSR1; another level: SIGUSR2", async () => {
    const { datapath, state } = fakeDatapath();
    const kills: unknown[] = [];
    const kill = (pid: number, sig: NodeJS.Signals) => void kills.push([pid, sig]);
    expect(await logLevelCommand(datapath, "debug", status, kill)).toEqual([
      "tincan: debug",
      "groupvpn (pid 4242): debug (SIGUSR1)",
    ]);
    expect(state.level).toBe("debug");
    await logLevelCommand(datapath, "warn", status, kill);
    expect(kills).toEqual([
      [4242, "SIGUSR1"],
      [4242, "SIGUSR2"],
    ]);
  });

  it("a bad level is a usage error and changes nothing", async () => {
    const { datapath, state } = fakeDatapath();
    await expect(logLevelCommand(datapath, "verbose", status, () => {})).rejects.toBeInstanceOf(UsageError);
    expect(state.calls).toEqual([]);
  });

  it("a controller that cannot be signalled is reported, the datapath still set", async () => {
    const { datapath } = fakeDatapath();
    const lines = await logLevelCommand(datapath, "debug", status, () => {
      throw new Error("EPERM");
    });
    expect(lines[1]).toContain("cannot send SIGUSR1: EPERM");
  });
});
