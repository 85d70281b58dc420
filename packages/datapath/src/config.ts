import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { DatapathTune, describeIssues, LogLevel, TincanConfig } from "@tincan/protocol";

/** A tincan config that cannot be used; the message names the file (or "flags") and the field. */
export class TincanConfigError extends Error {
  override name = "TincanConfigError";
}

export interface TincanFlags {
  rpc?: string | undefined;
  tokenFile?: string | undefined;
  logLevel?: string | undefined;
  /** TINCAN_TUNE: a JSON object of `tune` keys laid over the file's `tune` section (for experiments). */
  tune?: string | undefined;
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
    if (!isObject(json)) throw new TincanConfigError(`${file}: must be a JSON object`);
    fromFile = json;
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
    merged.log = { ...(isObject(log) ? log : {}), level: level.data };
  }
  if (flags.tune) {
    const override = tuneOverride(flags.tune);
    const tune = merged.tune ?? {};
    // A `tune` of the wrong type stays, so that the file gets the blame for it.
    if (isObject(tune)) merged.tune = { ...tune, ...override };
  }
  const parsed = TincanConfig.safeParse(merged);
  if (!parsed.success) throw new TincanConfigError(`${file ?? "flags"}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/** The keys TINCAN_TUNE sets, checked against the schema (as given: the file's keys it omits stay). */
function tuneOverride(text: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // reported below
  }
  if (!isObject(json)) throw new TincanConfigError("TINCAN_TUNE: must be a JSON object");
  const checked = DatapathTune.partial().safeParse(json);
  if (!checked.success) throw new TincanConfigError(`TINCAN_TUNE: ${describeIssues(checked.error)}`);
  return json;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
