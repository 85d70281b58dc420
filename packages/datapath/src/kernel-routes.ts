import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Routes in the kernel's main table that send a prefix to the vNIC (router mode). */
export interface KernelRoutes {
  add(device: string, prefix: string): Promise<void>;
  remove(device: string, prefix: string): Promise<void>;
  /** At exit: synchronous, errors ignored (a route the device took with it is gone already). */
  removeAllSync(device: string, prefixes: Iterable<string>): void;
}

/** `ip route replace|del <prefix> dev <vnic>`, with the datapath's CAP_NET_ADMIN. */
export const ipKernelRoutes: KernelRoutes = {
  async add(device, prefix) {
    await ip(["route", "replace", prefix, "dev", device]);
  },
  async remove(device, prefix) {
    try {
      await ip(["route", "del", prefix, "dev", device]);
    } catch (err) {
      // Already gone (e.g. the device went down): what was asked for.
      if (!/No such process|Cannot find device/.test((err as Error).message)) throw err;
    }
  },
  removeAllSync(device, prefixes) {
    for (const prefix of prefixes) {
      try {
        execFileSync("ip", ["route", "del", prefix, "dev", device], { stdio: "ignore", timeout: 2000 });
      } catch {
        // gone with the device
      }
    }
  },
};

async function ip(args: string[]): Promise<void> {
  try {
    await run("ip", args, { timeout: 5000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`ip ${args.join(" ")}: ${stderr || (err as Error).message}`);
  }
}
