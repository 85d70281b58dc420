import { createWinston, handleLogLevelSignals, type TincanConfig, writeFileAtomic } from "@tincan/protocol";
import { FastSocket } from "@tincan/tuntap";
import type winston from "winston";
import { loadTincanConfig, type TincanFlags } from "./config.js";
import { Datapath, type DatapathOptions, VERSION } from "./datapath.js";
import { systemExitKernel } from "./exit-kernel.js";
import { reportTurnRefusals } from "./ice.js";
import { ipKernelRoutes } from "./kernel-routes.js";
import { configureSctp } from "./link.js";
import { type Endpoint, RpcServer } from "./rpc-server.js";
import { readEndpointFile, UnsafeDirectoryError } from "./secure-files.js";
import { resolveTokenGroup, type TokenGroup, writeToken } from "./token.js";
import { tunFactory } from "./vnic-tun.js";

/** A datapath that cannot start; `exitCode` is what `tincan` exits with (2: configuration, 1: run time). */
export class DatapathStartError extends Error {
  override name = "DatapathStartError";
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}

/** A tincan config with its token group looked up (throws TincanConfigError or Error on a bad one). */
export function loadDatapathConfig(
  file: string | undefined,
  flags: TincanFlags = {},
): { config: TincanConfig; group: TokenGroup | undefined } {
  const config = loadTincanConfig(file, flags);
  return {
    config,
    group: config.tokenGroup === undefined ? undefined : resolveTokenGroup(config.tokenGroup),
  };
}

export interface StartDatapathOptions {
  /** The datapath's logger (default: stderr, the config's level and format, component `tincan`). */
  log?: winston.Logger;
  /** The config's `tokenGroup`, looked up (loadDatapathConfig). */
  group?: TokenGroup | undefined;
  /** The kernel-facing parts (tests replace them); default the system's TUN, routes, exit NAT, fast socket. */
  system?: Partial<Pick<DatapathOptions, "vnicFactory" | "kernelRoutes" | "exitKernel" | "fastSocket">>;
}

export interface RunningDatapath {
  readonly datapath: Datapath;
  readonly log: winston.Logger;
  /** Where its RPC server listens. */
  readonly address: Endpoint;
  /** SIGUSR1 / SIGUSR2 set its level (debug / configured); returns a function that stops that. */
  followLogLevelSignals(): () => void;
  /** Closes the links, removes the vNIC and stops serving RPC. Idempotent. */
  stop(): void;
}

/**
 * Starts a datapath in this process, as `tincan` runs it: writes the token, serves JSON-RPC on
 * `config.rpc` and tells a controller that talked to a previous incarnation (`datapath.started`).
 * Installs no signal handlers and never exits the process: the caller decides (cli.ts, or a
 * controller's one-process node). Throws DatapathStartError.
 */
export async function startDatapath(
  config: TincanConfig,
  opts: StartDatapathOptions = {},
): Promise<RunningDatapath> {
  const log =
    opts.log ?? createWinston({ level: config.log.level, format: config.log.format, component: "tincan" });
  reportTurnRefusals(log);
  const endpointFile = `${config.tokenFile}.controller`;
  // Benchmark knob, not configuration: TINCAN_SCTP = libdatachannel SctpSettings (JSON). TINCAN_TUNE
  // (JSON, e.g. {"rtp":false,"offload":false}) overrides the config's `tune` in loadTincanConfig.
  const sctp = envJson("TINCAN_SCTP");
  if (sctp) configureSctp(sctp as Parameters<typeof configureSctp>[0]);
  let rpc: RpcServer | null = null;
  const datapath = new Datapath({
    vnicFactory: tunFactory,
    kernelRoutes: ipKernelRoutes,
    exitKernel: systemExitKernel,
    fastSocket: (options) => new FastSocket(options),
    ...opts.system,
    logger: log,
    notify: (method, params) => rpc?.notify(method, params),
    maxLinks: config.maxLinks,
    ...config.tune,
  });
  let token: string;
  try {
    const written = await writeToken(config.tokenFile, opts.group);
    token = written.token;
    if (written.warning) log.warn(written.warning);
  } catch (err) {
    datapath.close();
    if (err instanceof UnsafeDirectoryError)
      throw new DatapathStartError(`refusing to write the token: ${err.message}`, 2);
    throw new DatapathStartError(
      `cannot write the token file ${config.tokenFile}: ${(err as Error).message}`,
      2,
    );
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
    datapath.close();
    rpc.close();
    throw new DatapathStartError(`cannot listen on ${config.rpc}: ${(err as Error).message}`, 1);
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
    ...(opts.group ? { tokenGroup: opts.group.name } : {}),
    version: VERSION,
  });
  const server = rpc;
  let stopped = false;
  return {
    datapath,
    log,
    address,
    followLogLevelSignals: () =>
      handleLogLevelSignals((level) => {
        log.level = level;
        log.warn("log level set", { level, by: "signal" });
      }, config.log.level),
    stop() {
      if (stopped) return;
      stopped = true;
      datapath.close();
      server.close();
    },
  };
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
  throw new DatapathStartError(`${name}: must be a JSON object`, 2);
}
