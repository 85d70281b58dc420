// A DNS server inside the lab (tools/dns-server.mjs) and per-namespace resolvers: `ip netns exec`
// bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf for the commands it runs, so a
// process spawned in the namespace asks the lab's server and nothing outside.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab, Netns } from "./lab.js";
import { tool } from "./probes.js";
import type { LabProcess } from "./proc.js";
import type { ServerPlace } from "./servers.js";

export type DnsRecord =
  | { name: string; type: "A"; data: string }
  | { name: string; type: "SRV"; data: { priority: number; weight: number; port: number; target: string } };

export interface DnsServerHandle {
  ip: string;
  process: LabProcess;
  /** Replaces the records; the server reads them for every query (TTL 0), so no restart. */
  setRecords(records: DnsRecord[]): void;
}

export async function startDnsServer(
  lab: Lab,
  where: ServerPlace,
  records: DnsRecord[],
): Promise<DnsServerHandle> {
  const zoneFile = join(lab.dir, `dns-zone-${where.name}.json`);
  const setRecords = (r: DnsRecord[]) => writeFileSync(zoneFile, JSON.stringify(r, null, 2));
  setRecords(records);
  const p = where.spawn(process.execPath, [tool("dns-server.mjs"), zoneFile, where.ip], { name: "dns" });
  await p.waitForLog(/listening/, 5000);
  return { ip: where.ip, process: p, setRecords };
}

/**
 * Makes processes started in `netns` from now on resolve names through `server` only. Returns the
 * undo (removes /etc/netns/<ns>); call it in the test's cleanup, as the lab does not know of it.
 */
export function useResolver(netns: Netns, server: string): () => void {
  const dir = join("/etc/netns", netns.ns);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "resolv.conf"), `nameserver ${server}\noptions timeout:1 attempts:2\n`);
  return () => rmSync(dir, { recursive: true, force: true });
}
