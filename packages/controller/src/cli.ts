import { parseCli, usageError } from "@tincan/protocol";

export { usageError };

/**
 * The command line every controller takes: `PROG --config FILE [--with-datapath FILE]
 * [--log-level LEVEL] [--check-config]` and the common `--help` / `--version` (@tincan/protocol
 * parseCli). Bad flags exit 2 with a clear message.
 */
export function parseControllerArgs(
  prog: string,
  description: string,
  argv: string[] = process.argv.slice(2),
): {
  config: string;
  logLevel?: "error" | "warn" | "info" | "debug";
  /** One-process node: the datapath runs in this process with this tincan config (in-process-datapath.ts). */
  withDatapath?: string;
  checkConfig: boolean;
} {
  const { values, checkConfig } = parseCli(
    {
      prog,
      usage:
        "--config FILE [--with-datapath TINCAN_JSON] [--log-level error|warn|info|debug] [--check-config]",
      description,
      options: {
        config: { type: "string", short: "c" },
        "with-datapath": { type: "string" },
        "log-level": { type: "string" },
      },
      optionHelp: [
        "  -c, --config FILE     JSON config file (see configs/ and the README)",
        "      --with-datapath TINCAN_JSON",
        "                        one-process node: run the datapath in this process, configured by",
        "                        TINCAN_JSON (as `tincan --config`); needs tincan's rights (CAP_NET_ADMIN)",
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
  const withDatapath = values["with-datapath"];
  if (withDatapath === "") usageError(prog, "--with-datapath needs the datapath's config file");
  return {
    config: values.config,
    checkConfig,
    ...(withDatapath ? { withDatapath } : {}),
    ...(level ? { logLevel: level as "error" | "warn" | "info" | "debug" } : {}),
  };
}
