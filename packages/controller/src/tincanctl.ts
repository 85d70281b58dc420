#!/usr/bin/env node
import { readFileSync } from "node:fs";
import {
  DEFAULT_RPC,
  DEFAULT_TOKEN_FILE,
  HostPort,
  type LinkInfo,
  parseCli,
  type RouteInfo,
  type VnicInfo,
} from "@tincan/protocol";
import { type ControllerStatus, defaultStatusFile } from "./controller.js";
import { DatapathClient, queryAll, RPC_TIMEOUT, RpcError } from "./datapath-client.js";
import { logLevelCommand, UsageError } from "./log-level-command.js";
import { nullLog } from "./logger.js";

const PROG = "tincanctl";
const CLI = {
  prog: PROG,
  usage:
    "status [--rpc ADDR] [--token-file FILE] [--json]\n       tincanctl log-level [error|warn|info|debug] [--rpc ADDR] [--token-file FILE]",
  description:
    "Shows the links and routes of a running tincan datapath, with peer names when a controller runs.\n" +
    "log-level sets (or shows) the datapath's log level; a running controller gets SIGUSR1 (debug) or\n" +
    "SIGUSR2 (back to its configured level).\n" +
    "Needs read access to the token file: its owner, or a member of tincan's tokenGroup.",
  options: {
    rpc: { type: "string" },
    "token-file": { type: "string" },
    json: { type: "boolean" },
  },
  optionHelp: [
    `      --rpc ADDR        datapath RPC address (default ${DEFAULT_RPC})`,
    `      --token-file FILE datapath token file (default ${DEFAULT_TOKEN_FILE})`,
    "      --json            machine-readable output",
  ].join("\n"),
  allowPositionals: true,
} as const;

export interface PeerRow {
  peer: string;
  uid: string;
  virtualIp: string[];
  state: string;
  path: string | null;
  rttMs: number | null;
  pathMtu: number | null;
  rxBytes: number;
  txBytes: number;
  idleSec: number | null;
  relayOnly: boolean;
}

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
    const link = links.find((l) => l.peerUid === uid);
    const named = status?.peers[uid];
    const virtualIp = routes
      .filter((r) => r.peerUid === uid && r.via === null)
      .map((r) => r.mapTo ?? r.prefix.replace(/\/(32|128)$/, ""));
    const last = Math.max(link?.lastRxAt ?? 0, link?.lastTxAt ?? 0);
    rows.push({
      peer: peerLabel(named),
      uid,
      virtualIp,
      state: link?.state ?? "no link",
      path: link?.path ?? null,
      rttMs: link?.rttMs ?? null,
      pathMtu: link?.pathMtu ?? null,
      rxBytes: link?.rxBytes ?? 0,
      txBytes: link?.txBytes ?? 0,
      idleSec: link && last > 0 ? Math.max(0, Math.round((now - last) / 1000)) : null,
      relayOnly: link?.relayOnly ?? false,
    });
  }
  return rows.sort((a, b) => a.peer.localeCompare(b.peer) || a.uid.localeCompare(b.uid));
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

export function formatTable(vnic: VnicInfo, rows: PeerRow[]): string {
  const head = `vnic ${vnic.name ?? "-"}  ${[vnic.ipv4, vnic.ipv6].filter(Boolean).join(" ") || "-"}  mtu ${vnic.mtu ?? "-"}  uid ${vnic.uid?.slice(0, 8) ?? "-"}  rx ${bytes(vnic.rxBytes)}  tx ${bytes(vnic.txBytes)}`;
  const table = [
    ["PEER", "UID", "VIRTUAL IP", "STATE", "PATH", "RTT", "PMTU", "RX", "TX", "IDLE"],
    ...rows.map((r) => [
      r.peer,
      r.uid.slice(0, 8),
      r.virtualIp.join(",") || "-",
      r.state,
      r.path ? `${r.path}${r.relayOnly && r.path !== "relay" ? "*" : ""}` : "-",
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

function readStatus(file: string): ControllerStatus | null {
  try {
    const s = JSON.parse(readFileSync(file, "utf8")) as ControllerStatus;
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

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseCli(CLI, argv);
  const [command, ...extra] = positionals;
  if (command !== "status" && command !== "log-level")
    fail(2, `${command ? `unknown command "${command}"` : "missing command"}\nTry '${PROG} --help'.`);
  const maxArgs = command === "log-level" ? 1 : 0;
  if (extra.length > maxArgs) fail(2, `unexpected argument "${extra[maxArgs]}"`);
  const rpc = values.rpc ?? DEFAULT_RPC;
  if (!HostPort.safeParse(rpc).success || !rpc.startsWith("127."))
    fail(2, `--rpc must be "127.x.y.z:PORT" (got "${rpc}")`);
  const tokenFile = values["token-file"] ?? DEFAULT_TOKEN_FILE;

  const client = new DatapathClient({
    rpc,
    tokenFile,
    log: nullLog,
    timeoutMs: 1500,
    retries: 1,
    register: false,
  });
  try {
    await client.open();
    if (command === "log-level") {
      const lines = await logLevelCommand(client, extra[0], readStatus(defaultStatusFile(tokenFile)));
      process.stdout.write(`${lines.join("\n")}\n`);
      return;
    }
    const vnic = await client.call("vnic.query", {});
    const links = await queryAll(client, "link.query");
    const routes = await queryAll(client, "route.query");
    const status = readStatus(defaultStatusFile(tokenFile));
    const rows = buildRows(links, routes, status);
    const health = healthLine(status);
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({ vnic, peers: rows, links, routes, controller: status }, null, 2)}\n`,
      );
    } else {
      process.stdout.write(`${health ? `${health}\n` : ""}${formatTable(vnic, rows)}`);
    }
  } catch (err) {
    if (err instanceof UsageError) fail(2, err.message);
    if (err instanceof RpcError && err.code === RPC_TIMEOUT) {
      const health = healthLine(readStatus(defaultStatusFile(tokenFile)));
      fail(1, `no datapath answering at ${rpc} (is tincan running?)${health ? `\n${health}` : ""}`);
    }
    fail(1, (err as Error).message);
  } finally {
    client.close();
  }
}

// Only run when executed, not when imported (tests import buildRows/formatTable).
const invoked = process.argv[1] ?? "";
if (/tincanctl(\.[jt]s)?$/.test(invoked)) {
  void main(process.argv.slice(2));
}
