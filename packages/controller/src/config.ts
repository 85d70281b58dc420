import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { describeIssues } from "@tincan/protocol";
import type { z } from "zod";

/** A config file that cannot be used. The message names the file, the field path and what is wrong. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = "ConfigError";
  }
}

/** A loaded TURN entry has its secret in `credential` (with `username`) or in `secret`. */
type TurnOut<T> = T extends { turn: Array<infer U> }
  ? Omit<T, "turn"> & {
      turn: Array<
        Omit<U, "username" | "credential" | "secret"> &
          (
            | { username: string; credential: string; secret?: undefined }
            | { username?: string; secret: string }
          )
      >;
    }
  : T;

/**
 * A loaded config: secrets given as `passwordFile` / `credentialFile` / `secretFile` have been read
 * into `password` / `credential` / `secret`.
 */
export type Loaded<T> = {
  [K in keyof T]: K extends "xmpp" ? T[K] & { password: string } : K extends "ice" ? TurnOut<T[K]> : T[K];
};

/**
 * Reads a JSON config, validates it with `schema` (strict: unknown keys are errors), and resolves
 * secret files and relative paths (`passwordFile`, `credentialFile`, `caFile`, `tokenFile`, `stateFile`)
 * against the config file's directory. Throws ConfigError on any problem.
 */
export function loadConfig<S extends z.ZodType>(file: string, schema: S): Loaded<z.output<S>> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, `cannot read the file: ${errText(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(file, `not valid JSON: ${errText(err)}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ConfigError(file, describeIssues(parsed.error));
  return resolveFiles(file, parsed.data) as Loaded<z.output<S>>;
}

function resolveFiles(file: string, data: unknown): unknown {
  if (typeof data !== "object" || data === null) return data;
  const dir = dirname(resolve(file));
  const abs = (p: string) => resolve(dir, p);
  const cfg = structuredClone(data) as Record<string, unknown>;
  const readSecret = (path: string, secretFile: string): string => {
    let s: string;
    try {
      s = readFileSync(abs(secretFile), "utf8");
    } catch (err) {
      throw new ConfigError(file, `${path}: cannot read ${abs(secretFile)}: ${errText(err)}`);
    }
    s = s.replace(/\r?\n$/, "");
    if (s.length === 0) throw new ConfigError(file, `${path}: ${abs(secretFile)} is empty`);
    return s;
  };

  const xmpp = cfg.xmpp as Record<string, unknown> | undefined;
  if (xmpp) {
    if (typeof xmpp.passwordFile === "string") {
      const f = abs(xmpp.passwordFile);
      xmpp.passwordFile = f;
      xmpp.password = readSecret("xmpp.passwordFile", f);
    }
    if (typeof xmpp.caFile === "string") {
      const f = abs(xmpp.caFile);
      xmpp.caFile = f;
      try {
        readFileSync(f);
      } catch (err) {
        throw new ConfigError(file, `xmpp.caFile: cannot read ${f}: ${errText(err)}`);
      }
    }
  }
  const ice = cfg.ice as { turn?: Array<Record<string, unknown>> } | undefined;
  ice?.turn?.forEach((t, i) => {
    if (typeof t.credentialFile === "string") {
      const f = abs(t.credentialFile);
      t.credentialFile = f;
      t.credential = readSecret(`ice.turn.${i}.credentialFile`, f);
    }
    if (typeof t.secretFile === "string") {
      const f = abs(t.secretFile);
      t.secretFile = f;
      t.secret = readSecret(`ice.turn.${i}.secretFile`, f);
    }
  });
  const datapath = cfg.datapath as Record<string, unknown> | undefined;
  if (datapath && typeof datapath.tokenFile === "string") datapath.tokenFile = abs(datapath.tokenFile);
  if (typeof cfg.tokenFile === "string") cfg.tokenFile = abs(cfg.tokenFile);
  if (typeof cfg.stateFile === "string") cfg.stateFile = abs(cfg.stateFile);
  return cfg;
}

function errText(err: unknown): string {
  if (err instanceof Error && "code" in err && typeof err.code === "string") {
    return err.message.startsWith(`${err.code}:`) ? err.message : `${err.code}: ${err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * For CLIs: prints a ConfigError as one line (`prog: file: field: problem`) and exits with code 2.
 * Anything else is rethrown.
 */
export function exitOnConfigError(err: unknown, prog = "tincan"): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${prog}: ${err.message.replace(/\s*\n\s*/g, " ")}\n`);
    process.exit(2);
  }
  throw err;
}
