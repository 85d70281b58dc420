import { parseCli, usageError } from "@tincan/protocol";

export { usageError };

/**
 * The command line every controller takes: `PROG --config FILE [--log-level LEVEL] [--check-config]`
 * and the common `--help` / `--version` (@tincan/protocol parseCli). Bad flags exit 2 with a clear message.
 */
export function parseControllerArgs(
  prog: string,
  description: string,
  argv: string[] = process.argv.slice(2),
): { config: string; logLevel?: "error" | "warn" | "info" | "debug"; checkConfig: boolean } {
  const { values, checkConfig } = parseCli(
    {
      prog,
      usage: "--config FILE [--log-level error|warn|info|debug] [--check-config]",
      description,
      options: { config: { type: "string", short: "c" }, "log-level": { type: "string" } },
      optionHelp: [
        "  -c, --config FILE     JSON config file (see configs/ and the README)",
        "      --log-level LEVEL override log.level of the config",
      ].join("\n"),
      checkConfig: true,
    },
    argv,
  );
  if (!values.config) usageError(prog, "missing --config FILE");
  const level = values["log-level"];
  if (level !== undefined && !["error", "warn", "info", "debug"].includes(level)) {
    usageError(prog, `--log-level must be one of error, warn, info, debug (got "${level}")`);
  }
  return {
    config: values.config,
    checkConfig,
    ...(level ? { logLevel: level as "error" | "warn" | "info" | "debug" } : {}),
  };
}
