#!/usr/bin/env node
import {
  createWinston,
  handleLogLevelSignals,
  parseCli,
  printEffectiveConfig,
  type TincanConfig,
  writeFileAtomic,
} from "@tincan/protocol";
import { FastSocket } from "@tincan/tuntap";
import { loadTincanConfig, TincanConfigError } from "./config.js";
import { Datapath, VERSION } from "./datapath.js";
import { systemExitKernel } from "./exit-kernel.js";
import { reportTurnRefusals } from "./ice.js";
import { ipKernelRoutes } from "./kernel-routes.js";
import { configureSctp } from "./link.js";
import { type Endpoint, RpcServer } from "./rpc-server.js";
import { readEndpointFile, UnsafeDirectoryError } from "./secure-files.js";
import { resolveTokenGroup, type TokenGroup, writeToken } from "./token.js";
import { tunFactory } from "./vnic-tun.js";

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

function envJson(name: string): Record<string, unknown> | null {
  const text = process.env[name];
  if (!text) return null;
  try {
    const value = JSON.parse(text) as unknown;
    if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  return fail(`${name}: must be a JSON object`);
}

function loadConfig(): { config: TincanConfig; group: TokenGroup | undefined } {
  const { values: args, checkConfig } = parseCli(CLI);
  let config: TincanConfig;
  let group: TokenGroup | undefined;
  try {
    config = loadTincanConfig(args.config, {
      rpc: args.rpc,
      tokenFile: args["token-file"],
      logLevel: args["log-level"],
      tune: process.env.TINCAN_TUNE,
    });
    group = config.tokenGroup === undefined ? undefined : resolveTokenGroup(config.tokenGroup);
  } catch (err) {
    fail(
      err instanceof TincanConfigError ? err.message : `${args.config ?? "flags"}: ${(err as Error).message}`,
    );
  }
  if (checkConfig) printEffectiveConfig(config);
  return { config, group };
}

async function main(): Promise<void> {
  const { config, group } = loadConfig();
  const log = createWinston({ level: config.log.level, format: config.log.format, component: "tincan" });
  handleLogLevelSignals((level) => {
    log.level = level;
    log.warn("log level set", { level, by: "signal" });
  }, config.log.level);
  reportTurnRefusals(log);
  const endpointFile = `${config.tokenFile}.controller`;
  // Benchmark knobs, not configuration: TINCAN_SCTP = libdatachannel SctpSettings (JSON). TINCAN_TUNE
  // (JSON, e.g. {"rtp":false,"offload":false}) overrides the config's `tune` in loadTincanConfig.
  const sctp = envJson("TINCAN_SCTP");
  if (sctp) configureSctp(sctp as Parameters<typeof configureSctp>[0]);
  let rpc: RpcServer | null = null;
  const datapath = new Datapath({
    vnicFactory: tunFactory,
    kernelRoutes: ipKernelRoutes,
    exitKernel: systemExitKernel,
    fastSocket: (options) => new FastSocket(options),
    logger: log,
    notify: (method, params) => rpc?.notify(method, params),
    maxLinks: config.maxLinks,
    ...config.tune,
  });
  let token: string;
  try {
    const written = await writeToken(config.tokenFile, group);
    token = written.token;
    if (written.warning) log.warn(written.warning);
  } catch (err) {
    if (err instanceof UnsafeDirectoryError) fail(`refusing to write the token: ${err.message}`);
    fail(`cannot write the token file ${config.tokenFile}: ${(err as Error).message}`);
  }
  rpc = new RpcServer(datapath, token, log, (endpoint) => {
    writeFileAtomic(endpointFile, JSON.stringify(endpoint), 0o600).catch((err: Error) =>
      log.warn("cannot write the endpoint file", { file: endpointFile, error: err.message }),
    );
  });
  let address: Endpoint;
  try {
    address = await rpc.listen(config.rpc);
  } catch (err) {
    log.error(`cannot listen on ${config.rpc}: ${(err as Error).message}`);
    process.exit(1);
  }
  // A controller that talked to our previous incarnation learns that it must re-sync.
  const previous = await readEndpointFile(endpointFile);
  if ("endpoint" in previous) {
    rpc.notify("datapath.started", { version: VERSION, startedAt: datapath.startedAt }, previous.endpoint);
  } else if ("problem" in previous) {
    log.warn(`ignoring the endpoint file ${endpointFile}: it ${previous.problem}; datapath.started not sent`);
  }
  log.info("ready", {
    rpc: `${address.host}:${address.port}`,
    tokenFile: config.tokenFile,
    ...(group ? { tokenGroup: group.name } : {}),
    version: VERSION,
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    datapath.close();
    rpc?.close();
    setTimeout(() => process.exit(0), 100).unref();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((err) => {
  process.stderr.write(`tincan: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
