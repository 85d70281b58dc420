#!/usr/bin/env node
import { createWinston, parseCli, printEffectiveConfig, type TincanConfig } from "@tincan/protocol";
import { TincanConfigError } from "./config.js";
import { DatapathStartError, loadDatapathConfig, type RunningDatapath, startDatapath } from "./start.js";
import type { TokenGroup } from "./token.js";

const CLI = {
  prog: "tincan",
  usage: "[--config FILE] [--rpc 127.0.0.1:5800] [--token-file FILE] [--log-level LEVEL]",
  description:
    "Runs the TinCan datapath in the foreground: owns the vNIC (TUN) and the peer links, and takes\n" +
    "orders from a controller over JSON-RPC on a loopback UDP port.",
  options: {
    config: { type: "string", short: "c" },
    rpc: { type: "string" },
    "token-file": { type: "string" },
    "log-level": { type: "string" },
  },
  optionHelp: [
    '  -c, --config FILE     JSON config ({ "rpc", "tokenFile", "tokenGroup", "maxLinks", "log", "tune" }); flags override it',
    "      --rpc HOST:PORT   RPC address on 127.0.0.0/8 (default 127.0.0.1:5800)",
    "      --token-file FILE where the secret RPC token is written (default /run/tincan/tincan.token)",
    "      --log-level LEVEL error | warn | info | debug (default info)",
  ].join("\n"),
  checkConfig: true,
} as const;

function fail(message: string): never {
  process.stderr.write(`tincan: ${message}\n`);
  process.exit(2);
}

function loadConfig(): { config: TincanConfig; group: TokenGroup | undefined } {
  const { values: args, checkConfig } = parseCli(CLI);
  let loaded: { config: TincanConfig; group: TokenGroup | undefined };
  try {
    loaded = loadDatapathConfig(args.config, {
      rpc: args.rpc,
      tokenFile: args["token-file"],
      logLevel: args["log-level"],
      tune: process.env.TINCAN_TUNE,
    });
  } catch (err) {
    fail(
      err instanceof TincanConfigError ? err.message : `${args.config ?? "flags"}: ${(err as Error).message}`,
    );
  }
  if (checkConfig) printEffectiveConfig(loaded.config);
  return loaded;
}

async function main(): Promise<void> {
  const { config, group } = loadConfig();
  const log = createWinston({ level: config.log.level, format: config.log.format, component: "tincan" });
  let running: RunningDatapath;
  try {
    running = await startDatapath(config, { log, group });
  } catch (err) {
    if (!(err instanceof DatapathStartError)) throw err;
    if (err.exitCode === 2) fail(err.message);
    log.error(err.message);
    process.exit(1);
  }
  running.followLogLevelSignals();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    running.stop();
    setTimeout(() => process.exit(0), 100).unref();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((err) => {
  process.stderr.write(`tincan: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
