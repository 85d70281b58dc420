// The command-line conventions every binary shares (tincan, tincanctl, groupvpn, socialvpn):
// `-h/--help`, `-V/--version`, `--check-config` where there is a config, exit 2 on bad input.
import { type ParseArgsConfig, parseArgs } from "node:util";

/** The release version: what `--version` prints and the datapath reports in `hello`. */
export const VERSION = "0.1.0";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Values<O extends Options> = {
  [K in keyof O]?: O[K]["type"] extends "string" ? string : boolean;
};

export interface CliSpec<O extends Options> {
  prog: string;
  /** What follows `Usage: PROG ` on the first line of the help. */
  usage: string;
  /** Paragraph(s) after the usage line. */
  description: string;
  /** The binary's own flags (the common ones are added). */
  options: O;
  /** One line per own flag, already indented, for the help. */
  optionHelp: string;
  /** The binary reads a config file: it takes `--check-config`. */
  checkConfig?: boolean;
  allowPositionals?: boolean;
}

export interface ParsedCli<O extends Options> {
  values: Values<O>;
  positionals: string[];
  /** `--check-config` was given: validate, print the effective config (printEffectiveConfig), exit. */
  checkConfig: boolean;
}

/** Exits 2 with `prog: message` and a hint (bad flags, bad config). */
export function usageError(prog: string, message: string): never {
  process.stderr.write(`${prog}: ${message}\nTry '${prog} --help'.\n`);
  process.exit(2);
}

export function helpText(spec: CliSpec<Options>): string {
  const common = [
    spec.checkConfig
      ? "      --check-config    validate the config, print it with every default as JSON, exit (0 ok, 2 bad)"
      : "",
    "  -V, --version         print the version",
    "  -h, --help            this text",
  ].filter(Boolean);
  return `Usage: ${spec.prog} ${spec.usage}\n\n${spec.description}\n\n${spec.optionHelp}\n${common.join("\n")}\n`;
}

/**
 * Parses argv with the binary's own flags plus the common ones. Answers `--help` and `--version`
 * itself (exit 0) and bad flags (exit 2).
 */
export function parseCli<O extends Options>(
  spec: CliSpec<O>,
  argv: string[] = process.argv.slice(2),
): ParsedCli<O> {
  const common: Options = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "V" },
    ...(spec.checkConfig ? { "check-config": { type: "boolean" } } : {}),
  };
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...spec.options, ...common },
      strict: true,
      allowPositionals: spec.allowPositionals ?? false,
    });
  } catch (err) {
    usageError(spec.prog, (err as Error).message);
  }
  if (parsed.values.help) {
    process.stdout.write(helpText(spec));
    process.exit(0);
  }
  if (parsed.values.version) {
    process.stdout.write(`${spec.prog} ${VERSION}\n`);
    process.exit(0);
  }
  return {
    values: parsed.values as Values<O>,
    positionals: parsed.positionals,
    checkConfig: parsed.values["check-config"] === true,
  };
}

const SECRET_KEYS = new Set(["password", "credential"]);

/** The config as JSON with secrets (read from `*File` keys or inline) replaced by "(hidden)". */
export function effectiveConfigJson(config: unknown): string {
  return JSON.stringify(
    config,
    (key, value) => (SECRET_KEYS.has(key) && typeof value === "string" ? "(hidden)" : value),
    2,
  );
}

/** `--check-config`: prints the validated config with its defaults and exits 0. */
export function printEffectiveConfig(config: unknown): never {
  process.stdout.write(`${effectiveConfigJson(config)}\n`);
  process.exit(0);
}
