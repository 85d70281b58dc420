import { resolve } from "node:path";
import type { RunningDatapath } from "@tincan/datapath";
import { ConfigError } from "./config.js";

/**
 * The datapath of a one-process node (`--with-datapath TINCAN_JSON`): `tincan`'s code run in the
 * controller's process, one Node runtime instead of two. The contract is unchanged: the controller
 * still reaches it over JSON-RPC on loopback UDP with the token from the token file.
 */
export interface InProcessDatapath {
  /** Starts the datapath (writes the token, serves RPC). Throws DatapathStartError. */
  start(): Promise<RunningDatapath>;
}

/**
 * Loads and checks the datapath's config. @tincan/datapath (node-datachannel, the TUN addon) is
 * imported only here, so a controller beside a separate `tincan` never loads it. The controller
 * config's `datapath.rpc` and `datapath.tokenFile` must name the same address and file as the
 * datapath's `rpc` and `tokenFile`. Throws ConfigError naming the file and the field.
 */
export async function loadInProcessDatapath(
  file: string,
  controller: { rpc: string; tokenFile: string },
): Promise<InProcessDatapath> {
  const dp = await import("@tincan/datapath");
  let loaded: ReturnType<typeof dp.loadDatapathConfig>;
  try {
    loaded = dp.loadDatapathConfig(file);
  } catch (err) {
    // TincanConfigError messages start with the file name already.
    const message = (err as Error).message;
    throw new ConfigError(file, message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message);
  }
  const { config, group } = loaded;
  if (config.rpc !== controller.rpc)
    throw new ConfigError(
      file,
      `rpc: "${config.rpc}" is not the controller's datapath.rpc "${controller.rpc}" (a one-process node needs both the same)`,
    );
  if (resolve(config.tokenFile) !== resolve(controller.tokenFile))
    throw new ConfigError(
      file,
      `tokenFile: "${config.tokenFile}" is not the controller's datapath.tokenFile "${controller.tokenFile}" (a one-process node needs both the same)`,
    );
  return { start: () => dp.startDatapath(config, { group }) };
}
