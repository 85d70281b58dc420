#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { describeIssues, LogLevel, TincanConfig } from "@tincan/protocol";
import { Datapath, VERSION } from "./datapath.js";
import { configureSctp } from "./link.js";
import { createLogger } from "./logger.js";
import { type Endpoint, RpcServer } from "./rpc-server.js";
import { writeToken } from "./token.js";
import { tunFactory } from "./vnic-tun.js";

const HELP = `Usage: tincan [--config FILE] [--rpc 127.0.0.1:5800] [--token-file FILE] [--log-level LEVEL]

Runs the TinCan datapath in the foreground: owns the vNIC (TUN) and the peer links, and takes
orders from a controller over JSON-RPC on a loopback UDP port.

  --config FILE       JSON config ({ "rpc", "tokenFile", "log": { "level" } }); flags override it
  --rpc HOST:PORT     RPC address on 127.0.0.0/8 (default 127.0.0.1:5800)
  --token-file FILE   where the secret RPC token is written, mode 0600 (default /run/tincan/tincan.token)
  --log-level LEVEL   error | warn | info | debug (default info)
  --version, --help`;

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

function loadConfig(): TincanConfig {
  let args: ReturnType<typeof parseArgs>["values"];
  try {
    ({ values: args } = parseArgs({
      options: {
        config: { type: "string" },
        rpc: { type: "string" },
        "token-file": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean" },
        version: { type: "boolean" },
      },
      strict: true,
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n\n${HELP}`);
  }
  if (args.help) {
    process.stdout.write(`${HELP}\n`);
    process.exit(0);
  }
  if (args.version) {
    process.stdout.write(`${VERSION}\n`);
    process.exit(0);
  }
  let fromFile: Record<string, unknown> = {};
  const file = args.config as string | undefined;
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      fail(`${file}: ${(err as Error).message}`);
    }
  }
  const merged = { ...fromFile } as Record<string, unknown>;
  if (args.rpc) merged.rpc = args.rpc;
  if (args["token-file"]) merged.tokenFile = args["token-file"];
  if (args["log-level"]) {
    const level = LogLevel.safeParse(args["log-level"]);
    if (!level.success) fail(`--log-level: must be one of ${LogLevel.options.join(", ")}`);
    merged.log = { ...((merged.log as object) ?? {}), level: level.data };
  }
  const parsed = TincanConfig.safeParse(merged);
  if (!parsed.success) fail(`${file ?? "flags"}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.log.level, "tincan");
  const endpointFile = `${config.tokenFile}.controller`;
  // Benchmark knobs, not configuration: TINCAN_SCTP = libdatachannel SctpSettings (JSON),
  // TINCAN_TUNE = DatapathOptions overrides (JSON), e.g. {"rtp":false,"offload":false}.
  const sctp = envJson("TINCAN_SCTP");
  if (sctp) configureSctp(sctp as Parameters<typeof configureSctp>[0]);
  let rpc: RpcServer | null = null;
  const datapath = new Datapath({
    vnicFactory: tunFactory,
    logger: log,
    notify: (method, params) => rpc?.notify(method, params),
    ...(envJson("TINCAN_TUNE") ?? {}),
  });
  const token = await writeToken(config.tokenFile);
  rpc = new RpcServer(datapath, token, log, (endpoint) => {
    writeFile(endpointFile, JSON.stringify(endpoint), { mode: 0o600 }).catch(() => {});
  });
  let address: Endpoint;
  try {
    address = await rpc.listen(config.rpc);
  } catch (err) {
    log.error(`cannot listen on ${config.rpc}: ${(err as Error).message}`);
    process.exit(1);
  }
  // A controller that talked to our previous incarnation learns that it must re-sync.
  const previous = await readFile(endpointFile, "utf8").then(
    (t) => JSON.parse(t) as Endpoint,
    () => null,
  );
  if (previous?.host?.startsWith("127.")) {
    rpc.notify("datapath.started", { version: VERSION, startedAt: datapath.startedAt }, previous);
  }
  log.info("ready", {
    rpc: `${address.host}:${address.port}`,
    tokenFile: config.tokenFile,
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
