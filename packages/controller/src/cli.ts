import { parseArgs } from "node:util";

/** Exits 2 with `prog: message` and a hint (bad flags, bad config). */
export function usageError(prog: string, message: string): never {
  process.stderr.write(`${prog}: ${message}\nTry '${prog} --help'.\n`);
  process.exit(2);
}

/**
 * The command line every controller takes: `PROG --config FILE [--log-level LEVEL]`, `--help`.
 * Bad flags exit 2 with a clear message.
 */
export function parseControllerArgs(
  prog: string,
  description: string,
  argv: string[] = process.argv.slice(2),
): { config: string; logLevel?: "error" | "warn" | "info" | "debug" } {
  let values: { config?: string | undefined; help?: boolean | undefined; "log-level"?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: "string", short: "c" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usageError(prog, (err as Error).message);
  }
  if (values.help) {
    process.stdout.write(
      `Usage: ${prog} --config FILE [--log-level error|warn|info|debug]\n\n${description}\n\n` +
        "  -c, --config FILE     JSON config file (see configs/ and the README)\n" +
        "      --log-level LEVEL override log.level of the config\n" +
        "  -h, --help            this text\n",
    );
    process.exit(0);
  }
  if (!values.config) usageError(prog, "missing --config FILE");
  const level = values["log-level"];
  if (level !== undefined && !["error", "warn", "info", "debug"].includes(level)) {
    usageError(prog, `--log-level must be one of error, warn, info, debug (got "${level}")`);
  }
  return {
    config: values.config,
    ...(level ? { logLevel: level as "error" | "warn" | "info" | "debug" } : {}),
  };
}
