#!/usr/bin/env node
import { readFileSync } from "node:fs";
import {
  ControllerConfig,
  ControllerStatus,
  DEFAULT_RPC,
  DEFAULT_TOKEN_FILE,
  HostPort,
  type LinkInfo,
  MAX_PING_TIMEOUT_MS,
  type PeerRow,
  parseCli,
  type RouteInfo,
  RpcErrorCode,
  type StatusReport,
  usageError,
  VERSION,
  type VnicInfo,
} from "@tincan/protocol";
import { z } from "zod";
import { exitOnConfigError, loadConfig } from "./config.js";
import { defaultStatusFile } from "./controller.js";
import { pongLine, resolvePeer } from "./ctl-ping.js";
import { DatapathClient, queryAll, RPC_TIMEOUT, RpcError } from "./datapath-client.js";
import { logLevelCommand, UsageError } from "./log-level-command.js";
import { nullLog } from "./logger.js";
import { formatChecks, netcheck } from "./netcheck.js";

const PROG = "tincanctl";
const DATAPATH_OPTIONS = {
  rpc: { type: "string" },
  "token-file": { type: "string" },
} as const;
const DATAPATH_HELP = [
  `      --rpc ADDR        datapath RPC address (default ${DEFAULT_RPC})`,
  `      --token-file FILE datapath token file (default ${DEFAULT_TOKEN_FILE})`,
];
const TOKEN_NOTE = "Needs read access to the token file: its owner, or a member of tincan's tokenGroup.";

/** One spec per command; `tincanctl COMMAND --help` prints its own (`--version` is the same for all). */
const COMMANDS = {
  status: {
    prog: PROG,
    usage: "status [--rpc ADDR] [--token-file FILE] [--json]",
    description:
      "Shows the links and routes of a running tincan datapath and, when a controller runs, its XMPP\n" +
      "session, the roster members that are offline or refused, and why a link is relayed or not up.\n" +
      `--json prints the StatusReport of @tincan/protocol (status.ts). ${TOKEN_NOTE}`,
    options: { ...DATAPATH_OPTIONS, json: { type: "boolean" } },
    optionHelp: [...DATAPATH_HELP, "      --json            machine-readable output (StatusReport)"].join(
      "\n",
    ),
  },
  ping: {
    prog: PROG,
    usage: "ping PEER [--count N] [--timeout S] [--rpc ADDR] [--token-file FILE]",
    description:
      "Sends probes over the link to PEER (a JID, a UID or a virtual address) once a second and prints\n" +
      "the path and round-trip time of each reply. Exits 1 when no reply came back.",
    options: { ...DATAPATH_OPTIONS, count: { type: "string", short: "c" }, timeout: { type: "string" } },
    optionHelp: [
      "  -c, --count N         probes to send (default 3)",
      "      --timeout S       seconds to wait for each reply (default 2)",
      ...DATAPATH_HELP,
    ].join("\n"),
    allowPositionals: true,
  },
  netcheck: {
    prog: PROG,
    usage: "netcheck --config FILE [--json]",
    description:
      "Checks what this host's network allows, with the servers of a controller config: UDP out, the NAT's\n" +
      "mapping (symmetric or not, from STUN answers of several servers to one socket), a TURN allocation\n" +
      "with the configured credentials, and the XMPP server over STARTTLS. Exits 1 when a check fails.",
    options: { config: { type: "string" }, json: { type: "boolean" } },
    optionHelp: [
      "      --config FILE     the controller's config (groupvpn.json / socialvpn.json)",
      "      --json            machine-readable output",
    ].join("\n"),
  },
  "log-level": {
    prog: PROG,
    usage: "log-level [error|warn|info|debug] [--rpc ADDR] [--token-file FILE]",
    description:
      "Shows the datapath's log level, or sets it (RPC log.level) and sends a running controller SIGUSR1\n" +
      `(debug) or SIGUSR2 (back to its configured level). ${TOKEN_NOTE}`,
    options: { ...DATAPATH_OPTIONS },
    optionHelp: DATAPATH_HELP.join("\n"),
    allowPositionals: true,
  },
} as const;

const TOP = {
  prog: PROG,
  usage: "COMMAND [options]",
  description: [
    "Commands:",
    "  status     links, paths and why, XMPP session, members (--json)",
    "  ping PEER  round trips over the link to PEER, with the path",
    "  netcheck   UDP, NAT mapping, TURN and XMPP reachability from this host",
    "  log-level  show or set the log level at run time (datapath and controller)",
    `'${PROG} COMMAND --help' describes each.`,
  ].join("\n"),
  options: {},
  optionHelp: "",
  allowPositionals: true,
} as const;

export type { PeerRow };

/** "bob@lab.local", or "Bob (bob@lab.local)" when the roster gives another name. */
function peerLabel(named: { jid: string; name?: string } | undefined): string {
  if (!named) return "-";
  const local = named.jid.split("@")[0];
  return named.name && named.name !== local && named.name !== named.jid
    ? `${named.name} (${named.jid})`
    : named.jid;
}

/** Joins links, routes and the controller's names into one row per peer UID. */
export function buildRows(
  links: LinkInfo[],
  routes: RouteInfo[],
  status: ControllerStatus | null,
  now = Date.now(),
): PeerRow[] {
  const uids = new Set<string>([...links.map((l) => l.peerUid), ...routes.map((r) => r.peerUid)]);
  const rows: PeerRow[] = [];
  for (const uid of uids) {
    if (uid === status?.uid) continue; // prefixes behind this node (router mode): formatController
    const link = links.find((l) => l.peerUid === uid);
    const named = status?.peers[uid];
    const virtualIp = routes
      .filter((r) => r.peerUid === uid && r.via === null)
      .map((r) => r.mapTo ?? r.prefix.replace(/\/(32|128)$/, ""));
    const last = Math.max(link?.lastRxAt ?? 0, link?.lastTxAt ?? 0);
    rows.push({
      peer: peerLabel(named),
      ...(named?.device ? { device: named.device } : {}),
      uid,
      virtualIp,
      state: link?.state ?? "no link",
      path: link?.path ?? null,
      ...(link?.transport ? { transport: link.transport } : {}),
      ...(link?.transport === "fast" && link.fast
        ? { fast: { nativeForward: link.fast.nativeForward ?? false, relayed: link.fast.relayed ?? false } }
        : {}),
      rttMs: link?.rttMs ?? null,
      pathMtu: link?.pathMtu ?? null,
      rxBytes: link?.rxBytes ?? 0,
      txBytes: link?.txBytes ?? 0,
      idleSec: link && last > 0 ? Math.max(0, Math.round((now - last) / 1000)) : null,
      relayOnly: link?.relayOnly ?? false,
      local: candidate(link?.localType, link?.local),
      remote: candidate(link?.remoteType, link?.remote),
      ageSec: link ? Math.max(0, Math.round((now - link.createdAt) / 1000)) : null,
      setupMs: status?.links?.[uid]?.setupMs ?? null,
      why: status?.links?.[uid]?.why ?? null,
      ...(status?.links?.[uid]?.role ? { role: status.links[uid].role } : {}),
      drops: link?.drops ?? {},
    });
  }
  // Grouped by account, then device.
  return rows.sort(
    (a, b) =>
      a.peer.localeCompare(b.peer) ||
      (a.device ?? "").localeCompare(b.device ?? "") ||
      a.uid.localeCompare(b.uid),
  );
}

function candidate(type: string | null | undefined, address: string | null | undefined): string | null {
  return address ? `${type ?? "?"} ${address}` : null;
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** PATH's suffix: "+fast", with "(turn)" through our TURN server and "native" when native code forwards it. */
function fastLabel(r: PeerRow): string {
  if (r.transport !== "fast") return "";
  const how = [r.fast?.relayed ? "turn" : "", r.fast?.nativeForward ? "native" : ""].filter(Boolean);
  return how.length > 0 ? `+fast(${how.join(",")})` : "+fast";
}

export function formatTable(vnic: VnicInfo, rows: PeerRow[]): string {
  const head = `vnic ${vnic.name ?? "-"}  ${[vnic.ipv4, vnic.ipv6].filter(Boolean).join(" ") || "-"}  mtu ${vnic.mtu ?? "-"}  uid ${vnic.uid?.slice(0, 8) ?? "-"}  rx ${bytes(vnic.rxBytes)}  tx ${bytes(vnic.txBytes)}`;
  // Peers of one account are its devices: a DEVICE column when the controller named any.
  const devices = rows.some((r) => r.device !== undefined);
  const table = [
    [
      "PEER",
      ...(devices ? ["DEVICE"] : []),
      "UID",
      "VIRTUAL IP",
      "STATE",
      "PATH",
      "RTT",
      "PMTU",
      "RX",
      "TX",
      "IDLE",
    ],
    ...rows.map((r) => [
      r.peer,
      ...(devices ? [r.device ?? "-"] : []),
      r.uid.slice(0, 8),
      r.virtualIp.join(",") || "-",
      r.state,
      r.path ? `${r.path}${r.relayOnly && r.path !== "relay" ? "*" : ""}${fastLabel(r)}` : "-",
      r.rttMs === null ? "-" : `${r.rttMs.toFixed(1)} ms`,
      r.pathMtu === null ? "-" : String(r.pathMtu),
      bytes(r.rxBytes),
      bytes(r.txBytes),
      r.idleSec === null ? "-" : `${r.idleSec}s`,
    ]),
  ];
  const widths = table[0]?.map((_, c) => Math.max(...table.map((row) => (row[c] ?? "").length))) ?? [];
  const lines = table.map((row) =>
    row
      .map((cell, c) => cell.padEnd(widths[c] ?? 0))
      .join("  ")
      .trimEnd(),
  );
  if (rows.length === 0) lines.push("(no links or routes)");
  // The vNIC's drop counters by reason (e.g. txQueue: the send queue's AQM; vnicRejected: the kernel refused a packet).
  const drops = Object.entries(vnic.drops)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  const dropLine = drops.length > 0 ? `\nvnic drops: ${drops.join(", ")}` : "";
  return `${head}${dropLine}\n\n${lines.join("\n")}\n`;
}

/** The controller watchdog's line, when it finds the datapath unresponsive. */
export function healthLine(status: ControllerStatus | null, now = Date.now()): string | null {
  const h = status?.datapath;
  if (!h || h.responsive) return null;
  const since =
    h.unansweredSinceMs === null ? "" : ` for ${Math.round((now - h.unansweredSinceMs) / 1000)} s`;
  return `datapath UNRESPONSIVE: ${status?.controller} got no answer to its RPCs${since}`;
}

function duration(ms: number): string {
  const sec = Math.max(0, Math.round(ms / 1000));
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m${sec % 60}s`;
  return `${Math.floor(sec / 3600)}h${Math.floor((sec % 3600) / 60)}m`;
}

const clock = (t: number): string => new Date(t).toTimeString().slice(0, 8);

/** The controller's lines: versions and uptimes, XMPP session, members that are not online. */
export function formatController(status: ControllerStatus | null, now = Date.now()): string {
  if (!status) return "controller: none running (no fresh status file)\n";
  const lines: string[] = [];
  const up = (p: { version?: string; startedAt?: number; pid?: number } | null | undefined, name: string) =>
    p?.startedAt
      ? `${name} ${p.version ?? "?"} up ${duration(now - p.startedAt)}${p.pid ? ` (pid ${p.pid})` : ""}`
      : `${name} ?`;
  lines.push(
    `${up({ version: status.version, startedAt: status.startedAt, pid: status.pid }, status.controller)}  ${up(status.datapathProcess, "tincan")}`,
  );
  const x = status.xmpp;
  if (x) {
    const session = x.online ? `online since ${x.onlineSince ? clock(x.onlineSince) : "?"}` : "OFFLINE";
    lines.push(`xmpp ${x.jid ?? "-"} via ${x.server ?? "-"} ${session}, ${x.reconnects} reconnects`);
  }
  const notOnline = (status.members ?? []).filter((m) => m.state !== "online");
  const online = (status.members ?? []).length - notOnline.length;
  if (status.members) {
    const rest = notOnline.map((m) => `${m.jid} ${m.state}${m.reason ? ` (${m.reason})` : ""}`);
    lines.push(`members: ${online} online${rest.length > 0 ? `; ${rest.join("; ")}` : ""}`);
  }
  const r = status.routes;
  if (r && r.advertised.length > 0) lines.push(`routes advertised: ${r.advertised.join(", ")}`);
  if (r && r.accepted.length > 0)
    lines.push(`routes accepted: ${r.accepted.map((a) => `${a.prefix} via ${a.jid}`).join(", ")}`);
  if (r && r.ignored.length > 0)
    lines.push(`routes ignored: ${r.ignored.map((i) => `${i.prefix} of ${i.jid} (${i.reason})`).join("; ")}`);
  if (r?.exitNode)
    lines.push(
      `exit node: ${r.exitNode.jid} ${r.exitNode.state}${r.exitNode.reason ? ` (${r.exitNode.reason})` : ""}`,
    );
  return `${lines.join("\n")}\n`;
}

/** Per link: the selected candidate pair, age, setup time, why it is relayed or not up, drops. */
export function formatLinkDetails(rows: PeerRow[]): string {
  const lines: string[] = [];
  for (const r of rows) {
    if (r.state === "no link" && !r.why) continue;
    const pair = r.local || r.remote ? `${r.local ?? "-"} <-> ${r.remote ?? "-"}` : "no candidate pair";
    const age = r.ageSec === null ? "" : `, age ${duration(r.ageSec * 1000)}`;
    const setup = r.setupMs === null ? "" : `, setup ${r.setupMs} ms`;
    const role = r.role ? ` [${r.role}]` : "";
    lines.push(`${r.peer === "-" ? r.uid.slice(0, 8) : r.peer}${role}: ${pair}${age}${setup}`);
    if (r.why) lines.push(`  why: ${r.why}`);
    const drops = Object.entries(r.drops).filter(([, n]) => (n ?? 0) > 0);
    if (drops.length > 0) lines.push(`  drops: ${drops.map(([k, n]) => `${k} ${n}`).join(", ")}`);
  }
  return lines.length > 0 ? `\n${lines.join("\n")}\n` : "";
}

function readStatus(file: string): ControllerStatus | null {
  try {
    const parsed = ControllerStatus.safeParse(JSON.parse(readFileSync(file, "utf8")));
    if (!parsed.success) return null;
    const s = parsed.data;
    try {
      process.kill(s.pid, 0); // a status file of a controller that is gone is not shown
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return null;
    }
    return s;
  } catch {
    return null;
  }
}

function fail(code: number, message: string): never {
  process.stderr.write(`${PROG}: ${message}\n`);
  process.exit(code);
}

function datapathTarget(values: { rpc?: string; "token-file"?: string }): { rpc: string; tokenFile: string } {
  const rpc = values.rpc ?? DEFAULT_RPC;
  if (!HostPort.safeParse(rpc).success || !rpc.startsWith("127."))
    fail(2, `--rpc must be "127.x.y.z:PORT" (got "${rpc}")`);
  return { rpc, tokenFile: values["token-file"] ?? DEFAULT_TOKEN_FILE };
}

function openClient(rpc: string, tokenFile: string, timeoutMs = 1500, retries = 1): DatapathClient {
  return new DatapathClient({ rpc, tokenFile, log: nullLog, timeoutMs, retries, register: false });
}

/** Runs `fn` with a datapath client; a datapath that does not answer exits 1 with the watchdog's view. */
async function withDatapath(
  target: { rpc: string; tokenFile: string },
  fn: (client: DatapathClient) => Promise<void>,
  timeoutMs?: number,
): Promise<void> {
  const client = openClient(target.rpc, target.tokenFile, timeoutMs, timeoutMs ? 0 : 1);
  try {
    await client.open();
    await fn(client);
  } catch (err) {
    if (err instanceof RpcError && err.code === RPC_TIMEOUT) {
      const health = healthLine(readStatus(defaultStatusFile(target.tokenFile)));
      fail(1, `no datapath answering at ${target.rpc} (is tincan running?)${health ? `\n${health}` : ""}`);
    }
    fail(1, (err as Error).message);
  } finally {
    client.close();
  }
}

async function statusCommand(argv: string[]): Promise<void> {
  const { values } = parseCli(COMMANDS.status, argv);
  const target = datapathTarget(values);
  await withDatapath(target, async (client) => {
    const vnic = await client.call("vnic.query", {});
    const links = await queryAll(client, "link.query");
    const routes = await queryAll(client, "route.query");
    const status = readStatus(defaultStatusFile(target.tokenFile));
    const rows = buildRows(links, routes, status);
    if (values.json) {
      const report: StatusReport = {
        tincanctl: { version: VERSION },
        vnic,
        peers: rows,
        links,
        routes,
        controller: status,
      };
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    const health = healthLine(status);
    process.stdout.write(
      `${health ? `${health}\n` : ""}${formatController(status)}${formatTable(vnic, rows)}${formatLinkDetails(rows)}`,
    );
  });
}

function positiveNumber(flag: string, text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > max)
    usageError(PROG, `--${flag} must be a number in (0, ${max}] (got "${text}")`);
  return n;
}

async function pingCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCli(COMMANDS.ping, argv);
  const [peer, ...extra] = positionals;
  if (!peer) usageError(PROG, "ping needs a PEER (a JID, a UID or a virtual address)");
  if (extra.length > 0) usageError(PROG, `unexpected argument "${extra[0]}"`);
  const count = Math.round(positiveNumber("count", values.count, 3, 1000));
  const timeoutMs = Math.round(
    positiveNumber("timeout", values.timeout, 2, MAX_PING_TIMEOUT_MS / 1000) * 1000,
  );
  const target = datapathTarget(values);
  let replies = 0;
  await withDatapath(
    target,
    async (client) => {
      const t = resolvePeer(
        peer,
        await queryAll(client, "route.query"),
        readStatus(defaultStatusFile(target.tokenFile)),
      );
      if (typeof t === "string") fail(1, t);
      for (let i = 0; i < count; i++) {
        const started = Date.now();
        try {
          const r = await client.call("link.ping", { peerUid: t.uid, timeoutMs });
          if (r.rttMs !== null) replies++;
          process.stdout.write(`${pongLine(t, r)}\n`);
        } catch (err) {
          if (
            err instanceof RpcError &&
            (err.code === RpcErrorCode.NotFound || err.code === RpcErrorCode.Conflict)
          )
            fail(1, `${t.label}: ${err.message}`);
          throw err;
        }
        if (i < count - 1)
          await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))));
      }
    },
    timeoutMs + 2000,
  );
  process.stdout.write(`${count} probes, ${replies} replies, ${count - replies} lost\n`);
  if (replies === 0) process.exit(1);
}

/** The keys netcheck reads; the rest of a GroupVPN or SocialVPN config is left alone. */
const NetcheckConfig = z.looseObject({ xmpp: ControllerConfig.shape.xmpp, ice: ControllerConfig.shape.ice });

async function netcheckCommand(argv: string[]): Promise<void> {
  const { values } = parseCli(COMMANDS.netcheck, argv);
  if (!values.config) usageError(PROG, "netcheck needs --config FILE (the controller's config)");
  let config: ReturnType<typeof loadConfig<typeof NetcheckConfig>>;
  try {
    config = loadConfig(values.config, NetcheckConfig);
  } catch (err) {
    exitOnConfigError(err, PROG);
  }
  const results = await netcheck({ stun: config.ice.stun, turn: config.ice.turn, xmpp: config.xmpp });
  process.stdout.write(values.json ? `${JSON.stringify(results, null, 2)}\n` : formatChecks(results));
  process.exit(results.some((r) => r.status === "fail") ? 1 : 0);
}

async function logLevelCmd(argv: string[]): Promise<void> {
  const { values, positionals } = parseCli(COMMANDS["log-level"], argv);
  if (positionals.length > 1) usageError(PROG, `unexpected argument "${positionals[1]}"`);
  const target = datapathTarget(values);
  await withDatapath(target, async (client) => {
    try {
      const lines = await logLevelCommand(
        client,
        positionals[0],
        readStatus(defaultStatusFile(target.tokenFile)),
      );
      process.stdout.write(`${lines.join("\n")}\n`);
    } catch (err) {
      if (err instanceof UsageError) usageError(PROG, err.message);
      throw err;
    }
  });
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "status":
      return statusCommand(rest);
    case "ping":
      return pingCommand(rest);
    case "netcheck":
      return netcheckCommand(rest);
    case "log-level":
      return logLevelCmd(rest);
    default: {
      parseCli(TOP, argv); // answers --help and --version
      usageError(PROG, command ? `unknown command "${command}"` : "missing command");
    }
  }
}

// Only run when executed, not when imported (tests import buildRows/formatTable).
const invoked = process.argv[1] ?? "";
if (/tincanctl(\.[jt]s)?$/.test(invoked)) {
  void main(process.argv.slice(2));
}
