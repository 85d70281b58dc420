import { promises as dns, type SrvRecord } from "node:dns";
import { isIPv6 } from "node:net";

export type SrvResolver = (name: string) => Promise<SrvRecord[]>;

/** Where to connect, in order, and whether the list came from SRV records or is the fallback. */
export interface XmppClientServices {
  services: string[];
  fromSrv: boolean;
}

/**
 * The client services of an XMPP domain, in the order to try them (RFC 6120 3.2): the targets of
 * `_xmpp-client._tcp.<domain>` by priority, weighted-random within a priority (RFC 2782); when the
 * lookup fails or finds nothing, the domain itself on port 5222. Throws when the domain publishes
 * the target "." (it offers no client service).
 */
export async function xmppClientServices(
  domain: string,
  resolveSrv: SrvResolver = (name) => dns.resolveSrv(name),
  random: () => number = Math.random,
): Promise<XmppClientServices> {
  let records: SrvRecord[];
  try {
    records = await resolveSrv(`_xmpp-client._tcp.${domain}`);
  } catch {
    records = [];
  }
  if (records.length === 0) return { services: [service(domain, 5222)], fromSrv: false };
  if (records.length === 1 && records[0]?.name === ".")
    throw new Error(`${domain} publishes no XMPP client service (SRV target ".")`);
  const services = byPriorityAndWeight(
    records.filter((r) => r.name !== "."),
    random,
  ).map((r) => service(r.name.replace(/\.$/, ""), r.port));
  return { services, fromSrv: true };
}

function service(host: string, port: number): string {
  return `xmpp://${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

function byPriorityAndWeight(records: SrvRecord[], random: () => number): SrvRecord[] {
  const out: SrvRecord[] = [];
  const priorities = [...new Set(records.map((r) => r.priority))].sort((a, b) => a - b);
  for (const p of priorities) {
    const left = records.filter((r) => r.priority === p);
    while (left.length > 0) {
      const total = left.reduce((sum, r) => sum + r.weight, 0);
      const pick = random() * total;
      let i = 0;
      for (let sum = 0; i < left.length - 1; i++) {
        sum += (left[i] as SrvRecord).weight;
        if (pick < sum) break;
      }
      out.push(...left.splice(i, 1));
    }
  }
  return out;
}
