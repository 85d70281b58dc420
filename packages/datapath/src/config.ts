import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { describeIssues, LogLevel, TincanConfig } from "@tincan/protocol";

/** A tincan config that cannot be used; the message names the file (or "flags") and the field. */
export class TincanConfigError extends Error {
  override name = "TincanConfigError";
}

export interface TincanFlags {
  rpc?: string | undefined;
  tokenFile?: string | undefined;
  logLevel?: string | undefined;
}

/** Reads the config file (a JSON object), lays the flags over it and validates the result. */
export function loadTincanConfig(file: string | undefined, flags: TincanFlags = {}): TincanConfig {
  let fromFile: Record<string, unknown> = {};
  if (file) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new TincanConfigError(`${file}: ${(err as Error).message}`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json))
      throw new TincanConfigError(`${file}: must be a JSON object`);
    fromFile = json as Record<string, unknown>;
  }
  const merged: Record<string, unknown> = { ...fromFile };
  // As in every binary: a relative path in a config file is relative to that file's directory
  // (a relative --token-file flag, like any command-line path, to the working directory).
  if (file && typeof merged.tokenFile === "string")
    merged.tokenFile = resolve(dirname(resolve(file)), merged.tokenFile);
  if (flags.rpc) merged.rpc = flags.rpc;
  if (flags.tokenFile) merged.tokenFile = flags.tokenFile;
  if (flags.logLevel) {
    const level = LogLevel.safeParse(flags.logLevel);
    if (!level.success)
      throw new TincanConfigError(`--log-level: must be one of ${LogLevel.options.join(", ")}`);
    const log = merged.log;
    merged.log = { ...(typeof log === "object" && log !== null ? log : {}), level: level.data };
  }
  const parsed = TincanConfig.safeParse(merged);
  if (!parsed.success) throw new TincanConfigError(`${file ?? "flags"}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
