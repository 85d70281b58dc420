import { createSocket, type Socket } from "node:dgram";
import type { Log } from "@tincan/controller";
import dnsPacket, { type Answer, type Question } from "dns-packet";

/** One device's addresses: a buddy's device (local IPv4 in our numbering, overlay IPv6), or our own. */
export interface NameEntry {
  /** Bare JID, e.g. "bob@lab.local". */
  jid: string;
  /** The device (its XMPP resource); none for an account known only by its address of before devices. */
  device?: string | undefined;
  ipv4?: string | undefined;
  ipv6?: string | undefined;
  /** The device is online now. */
  online?: boolean | undefined;
  /** This node itself: the own account's name answers with this device alone. */
  self?: boolean | undefined;
}

/** What a name answers with: one device, or the devices of an account. */
export interface NameAnswer {
  jid: string;
  /** Set for a device's name. */
  device?: string;
  ipv4: string[];
  ipv6: string[];
}

export const DNS_TTL = 60;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

/** A DNS label from a JID part or resource: lowercase, anything but [a-z0-9-] becomes "-". */
function label(s: string): string {
  return (
    s
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "-")
      .slice(0, 63) || "-"
  );
}

/** The devices an account's name answers with: ourselves; else the online ones; else all known. */
function accountDevices(entries: NameEntry[]): NameEntry[] {
  const self = entries.filter((e) => e.self);
  if (self.length > 0) return self;
  const online = entries.filter((e) => e.online);
  return online.length > 0 ? online : entries;
}

function answerOf(jid: string, entries: NameEntry[], device?: string): NameAnswer {
  const pick = (f: (e: NameEntry) => string | undefined) =>
    entries.map(f).filter((a): a is string => a !== undefined);
  return {
    jid,
    ...(device !== undefined ? { device } : {}),
    ipv4: pick((e) => e.ipv4),
    ipv6: pick((e) => e.ipv6),
  };
}

/**
 * Names of accounts and their devices under the suffix (default "svpn"):
 * - `<localpart>.<suffix>` (bob.svpn) when exactly one account (buddies and ourselves) has that local
 *   part, and `<localpart>.<domain with dots as dashes>.<suffix>` (bob.lab-local.svpn) always, so two
 *   buddies with the same local part on different servers both have a name. An account's name
 *   answers with all its online devices (all it has known ones while none is online); our own
 *   account's name answers with this device alone;
 * - `<device>.<account name>` (phone.bob.svpn, phone.bob.lab-local.svpn) for each device.
 * Names are case-insensitive; a name two accounts or devices would share is given to neither.
 */
export class NameTable {
  private names = new Map<string, NameAnswer>();

  constructor(readonly suffix: string) {}

  /** Replaces the table. */
  set(entries: NameEntry[]): void {
    const byJid = new Map<string, NameEntry[]>();
    for (const e of entries) byJid.set(e.jid, [...(byJid.get(e.jid) ?? []), e]);
    const candidates = new Map<string, Array<{ target: string; answer: NameAnswer }>>();
    const add = (name: string, target: string, answer: NameAnswer) =>
      candidates.set(name, [...(candidates.get(name) ?? []), { target, answer }]);
    for (const [jid, list] of byJid) {
      const at = jid.indexOf("@");
      const local = label(at > 0 ? jid.slice(0, at) : jid);
      const domain = at > 0 ? label(jid.slice(at + 1).replace(/\./g, "-")) : "-";
      const accountNames = [`${local}.${this.suffix}`, `${local}.${domain}.${this.suffix}`];
      const account = answerOf(jid, accountDevices(list));
      for (const name of accountNames) add(name, jid, account);
      for (const e of list) {
        if (e.device === undefined) continue;
        const device = answerOf(jid, [e], e.device);
        for (const name of accountNames) add(`${label(e.device)}.${name}`, `${jid}/${e.device}`, device);
      }
    }
    this.names = new Map();
    for (const [name, list] of candidates) {
      if (new Set(list.map((c) => c.target)).size === 1)
        this.names.set(name, (list[0] as { answer: NameAnswer }).answer);
    }
  }

  lookup(name: string): NameAnswer | undefined {
    return this.names.get(name.toLowerCase().replace(/\.$/, ""));
  }

  /** Every name (for logs and docs). */
  all(): Array<[string, NameAnswer]> {
    return [...this.names];
  }
}

/**
 * Answers one DNS query message (UDP payload) from the table; returns the response, or null when
 * nothing should be sent (not a query, or too short to carry an id). Never throws.
 *
 * A/AAAA (and ANY) for names under the suffix; NXDOMAIN for unknown names there; NOERROR with no
 * answer (NODATA) for other types; REFUSED for names outside the suffix (not a recursive resolver) and
 * classes other than IN; NOTIMP for opcodes other than QUERY; FORMERR for messages that do not decode
 * or do not carry exactly one question.
 */
export function answerQuery(table: NameTable, msg: Buffer): Buffer | null {
  try {
    return answer(table, msg);
  } catch {
    return null;
  }
}

function answer(table: NameTable, msg: Buffer): Buffer | null {
  if (msg.length < 12) return null; // no header: no id to answer to
  let query: dnsPacket.DecodedPacket;
  try {
    query = dnsPacket.decode(msg);
  } catch {
    // Undecodable. Answer FORMERR to what looks like a query (QR bit clear), with its id.
    if ((msg.readUInt8(2) & 0x80) !== 0) return null;
    return dnsPacket.encode({ type: "response", id: msg.readUInt16BE(0), flags: RCODE.FORMERR });
  }
  if (query.type !== "query") return null; // never answer responses (no loops)
  const rd = (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  const reply = (rcode: number, extra: { answers?: Answer[]; authorities?: Answer[]; aa?: boolean } = {}) =>
    dnsPacket.encode({
      type: "response",
      id: query.id ?? 0,
      flags: rd | rcode | (extra.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0),
      questions: query.questions ?? [],
      answers: extra.answers ?? [],
      authorities: extra.authorities ?? [],
    });
  // dns-packet decodes the opcode but its types do not declare it.
  if ((query as { opcode?: string }).opcode !== "QUERY") return reply(RCODE.NOTIMP);
  const questions = query.questions ?? [];
  if (questions.length !== 1) return reply(RCODE.FORMERR);
  const q = questions[0] as Question;
  if (q.class !== undefined && q.class !== "IN") return reply(RCODE.REFUSED);
  const name = q.name.toLowerCase().replace(/\.$/, "");
  const suffix = table.suffix;
  if (name !== suffix && !name.endsWith(`.${suffix}`)) return reply(RCODE.REFUSED);
  const soa: Answer = {
    name: suffix,
    type: "SOA",
    ttl: DNS_TTL,
    data: {
      mname: `ns.${suffix}`,
      rname: `hostmaster.${suffix}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: DNS_TTL,
    },
  };
  if (name === suffix) {
    if (q.type === "SOA") return reply(RCODE.NOERROR, { aa: true, answers: [soa] });
    return reply(RCODE.NOERROR, { aa: true, authorities: [soa] });
  }
  const entry = table.lookup(name);
  if (!entry) return reply(RCODE.NXDOMAIN, { aa: true, authorities: [soa] });
  const answers: Answer[] = [];
  const wantA = q.type === "A" || (q.type as string) === "ANY";
  const wantAAAA = q.type === "AAAA" || (q.type as string) === "ANY";
  if (wantA) for (const data of entry.ipv4) answers.push({ name: q.name, type: "A", ttl: DNS_TTL, data });
  if (wantAAAA)
    for (const data of entry.ipv6) answers.push({ name: q.name, type: "AAAA", ttl: DNS_TTL, data });
  return reply(RCODE.NOERROR, answers.length > 0 ? { aa: true, answers } : { aa: true, authorities: [soa] });
}

/**
 * The UDP DNS responder for buddy names. Each datagram is answered on its own; a bad one is answered
 * with an error code or dropped, never a reason to stop. UDP only (answers are small).
 */
export class DnsResponder {
  private socket: Socket | null = null;

  constructor(private readonly opts: { host: string; port: number; table: NameTable; log: Log }) {}

  /** Binds; resolves with the bound address (port 0 picks one, for tests). */
  start(): Promise<{ address: string; port: number }> {
    const { host, port, table, log } = this.opts;
    const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
    this.socket = socket;
    socket.on("message", (msg, rinfo) => {
      const out = answerQuery(table, msg);
      if (out) socket.send(out, rinfo.port, rinfo.address, () => {});
    });
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.socket = null;
        socket.close();
        reject(err);
      };
      socket.once("error", onError);
      socket.bind(port, host, () => {
        socket.off("error", onError);
        socket.on("error", (err) => log.warn("dns socket error", { error: err.message }));
        const a = socket.address();
        resolve({ address: a.address, port: a.port });
      });
    });
  }

  stop(): void {
    this.socket?.close();
    this.socket = null;
  }
}
