import { type ControllerStatus, LogLevel } from "@tincan/protocol";
import type { DatapathApi } from "./datapath-client.js";

/**
 * `tincanctl log-level [LEVEL]`: the datapath's level is set (or shown) with the `log.level` RPC. A
 * running controller (its status file names its PID) has no RPC of its own: it gets SIGUSR1 for
 * `debug` and SIGUSR2 (back to its configured level) for any other level. Returns the lines to print.
 */
export async function logLevelCommand(
  datapath: Pick<DatapathApi, "call">,
  level: string | undefined,
  controller: ControllerStatus | null,
  kill: (pid: number, signal: NodeJS.Signals) => void = process.kill,
): Promise<string[]> {
  if (level === undefined) {
    const now = await datapath.call("log.level", {});
    return [`tincan: ${now.level}`];
  }
  const parsed = LogLevel.safeParse(level);
  if (!parsed.success) throw new UsageError(`LEVEL must be one of ${LogLevel.options.join(", ")}`);
  const set = await datapath.call("log.level", { level: parsed.data });
  const lines = [`tincan: ${set.level}`];
  if (controller) {
    const signal = parsed.data === "debug" ? "SIGUSR1" : "SIGUSR2";
    const what = signal === "SIGUSR1" ? "debug" : "its configured level";
    try {
      kill(controller.pid, signal);
      lines.push(`${controller.controller} (pid ${controller.pid}): ${what} (${signal})`);
    } catch (err) {
      lines.push(
        `${controller.controller} (pid ${controller.pid}): cannot send ${signal}: ${(err as Error).message}`,
      );
    }
  }
  return lines;
}

export class UsageError extends Error {}
