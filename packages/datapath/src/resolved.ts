import { execFile } from "node:child_process";

/** Runs `resolvectl ARGS...`; rejects with its stderr (or why it did not run). */
export type Resolvectl = (args: string[]) => Promise<void>;

const TIMEOUT_MS = 5000;

export const runResolvectl: Resolvectl = (args) =>
  new Promise((resolve, reject) => {
    execFile("resolvectl", args, { timeout: TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = stderr.trim() || (err.killed ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message);
      reject(new Error(`resolvectl ${args.join(" ")}: ${why}`));
    });
  });

export interface LinkDns {
  /** `ip:port` of the DNS server for the link. */
  server: string;
  /** Search or routing (`~suffix`) domains. */
  domains: string[];
}

/**
 * The vNIC's DNS settings in systemd-resolved. The datapath does it because resolved lets a caller
 * with CAP_NET_ADMIN change a link's settings (no polkit rule needed) and the datapath owns the vNIC:
 * resolved forgets a link's settings when the link goes, so each new vNIC is registered again, and the
 * datapath's exit withdraws them.
 */
export async function registerLinkDns(
  ifname: string,
  dns: LinkDns | null,
  resolvectl: Resolvectl = runResolvectl,
): Promise<{ registered: boolean; error?: string }> {
  try {
    if (dns === null) {
      await resolvectl(["revert", ifname]);
      return { registered: false };
    }
    await resolvectl(["dns", ifname, dns.server]);
    await resolvectl(["domain", ifname, ...dns.domains]);
    // Only the link's own domains go to its server, whatever else the host resolves.
    await resolvectl(["default-route", ifname, "false"]);
    return { registered: true };
  } catch (err) {
    return { registered: false, error: (err as Error).message };
  }
}
