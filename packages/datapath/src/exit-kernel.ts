import { execFile, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);

export type Family = 4 | 6;

/** The routing table and `ip rule` priorities of the exit-node policy routing (see the README). */
export const EXIT_TABLE = 21572;
const PREF_BYPASS = 21570;
const PREF_MAIN = 21571;
const PREF_TABLE = 21572;

/** What the member side wants in the kernel: per family, whether all traffic goes to the vNIC. */
export interface ExitRoutingState {
  device: string;
  families: ReadonlySet<Family>;
  /** Addresses that keep the main table (XMPP, STUN/TURN, link underlay), any family. */
  bypass: ReadonlySet<string>;
}

/**
 * Kernel state of exit nodes, with the datapath's CAP_NET_ADMIN. Member side: policy routing
 * (`ip rule` + table EXIT_TABLE, like wg-quick). Exit side: iptables MASQUERADE of the overlay out
 * of every other interface, FORWARD accepted for the vNIC, forwarding sysctls on.
 */
export interface ExitKernel {
  /** Commands that turn `from` into `to` (both as installed: from is what the last call left). */
  route(from: ExitRoutingState | null, to: ExitRoutingState | null): Promise<void>;
  /** Masquerade the overlay prefixes (by family) out of the uplinks; `null` removes it. */
  masquerade(from: MasqueradeState | null, to: MasqueradeState | null): Promise<void>;
  /** At exit: synchronous, errors ignored. */
  clearSync(routing: ExitRoutingState | null, nat: MasqueradeState | null): void;
  /**
   * What a datapath killed before its cleanup left (SIGKILL): every rule at our priorities, our
   * table, our iptables rules for this vNIC and overlay. Returns how many it removed.
   */
  clearStale(device: string, prefixes: readonly string[]): Promise<number>;
}

export interface MasqueradeState {
  device: string;
  /** Overlay prefixes ("10.10.0.0/16", "fd50::/64"). */
  prefixes: readonly string[];
  /** Forwarding sysctl values found before we set them, restored when masquerading ends. */
  savedForwarding?: Partial<Record<Family, string>>;
}

const FORWARDING: Record<Family, string> = {
  4: "/proc/sys/net/ipv4/ip_forward",
  6: "/proc/sys/net/ipv6/conf/all/forwarding",
};

function familyOf(text: string): Family {
  return text.includes(":") ? 6 : 4;
}

/** `ip rule` / `ip route` argument lists that build `s` (reversed and with "del" they remove it). */
function routingCommands(s: ExitRoutingState): string[][] {
  const cmds: string[][] = [];
  for (const f of [4, 6] as const) {
    if (!s.families.has(f)) continue;
    const fam = `-${f}`;
    const host = f === 4 ? 32 : 128;
    for (const a of [...s.bypass].filter((b) => familyOf(b) === f).sort())
      cmds.push([fam, "rule", "add", "pref", `${PREF_BYPASS}`, "to", `${a}/${host}`, "lookup", "main"]);
    cmds.push([fam, "rule", "add", "pref", `${PREF_MAIN}`, "lookup", "main", "suppress_prefixlength", "0"]);
    cmds.push([fam, "route", "add", "default", "dev", s.device, "table", `${EXIT_TABLE}`]);
    cmds.push([fam, "rule", "add", "pref", `${PREF_TABLE}`, "lookup", `${EXIT_TABLE}`]);
  }
  return cmds;
}

function masqueradeCommands(s: MasqueradeState): string[][] {
  const cmds: string[][] = [];
  for (const prefix of s.prefixes) {
    const tool = familyOf(prefix) === 6 ? "ip6tables" : "iptables";
    const tag = ["-m", "comment", "--comment", `tincan exit ${s.device}`];
    cmds.push([
      tool,
      "-t",
      "nat",
      "-A",
      "POSTROUTING",
      "-s",
      prefix,
      "!",
      "-o",
      s.device,
      ...tag,
      "-j",
      "MASQUERADE",
    ]);
    cmds.push([tool, "-A", "FORWARD", "-i", s.device, ...tag, "-j", "ACCEPT"]);
    cmds.push([
      tool,
      ...["-A", "FORWARD", "-o", s.device, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"],
      ...tag,
      ...["-j", "ACCEPT"],
    ]);
  }
  return cmds;
}

/** The command that undoes `cmd` (an "add"/"-A" of routingCommands or masqueradeCommands). */
function undo(cmd: string[]): string[] {
  return cmd.map((a) => (a === "add" ? "del" : a === "-A" ? "-D" : a));
}

function sameCommands(a: string[][], b: string[][]): Set<string> {
  const keys = new Set(b.map((c) => c.join(" ")));
  return new Set(a.map((c) => c.join(" ")).filter((k) => keys.has(k)));
}

async function exec(cmd: string[]): Promise<void> {
  const [file, args] = cmd[0] === "-4" || cmd[0] === "-6" ? ["ip", cmd] : [cmd[0] as string, cmd.slice(1)];
  try {
    await run(file, args, { timeout: 5000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`${file} ${args.join(" ")}: ${stderr || (err as Error).message}`);
  }
}

function execSync(cmd: string[]): void {
  const [file, args] = cmd[0] === "-4" || cmd[0] === "-6" ? ["ip", cmd] : [cmd[0] as string, cmd.slice(1)];
  try {
    execFileSync(file, args, { stdio: "ignore", timeout: 2000 });
  } catch {
    // gone already (e.g. the routes went with the device)
  }
}

/** Removes what `from` installed and is not in `to`, then adds what `to` needs and is missing. */
async function transition(from: string[][], to: string[][]): Promise<void> {
  const kept = sameCommands(from, to);
  for (const cmd of [...from].reverse()) {
    if (kept.has(cmd.join(" "))) continue;
    await exec(undo(cmd)).catch(() => {});
  }
  const done: string[][] = [];
  try {
    for (const cmd of to) {
      if (kept.has(cmd.join(" "))) continue;
      await exec(cmd);
      done.push(cmd);
    }
  } catch (err) {
    // All or nothing: what this call added goes again (what was kept stays).
    for (const cmd of done.reverse()) await exec(undo(cmd)).catch(() => {});
    throw err;
  }
}

function families(prefixes: readonly string[]): Family[] {
  return [...new Set(prefixes.map(familyOf))];
}

export const systemExitKernel: ExitKernel = {
  async route(from, to) {
    await transition(from ? routingCommands(from) : [], to ? routingCommands(to) : []);
  },

  async masquerade(from, to) {
    if (to) {
      const saved: Partial<Record<Family, string>> = { ...from?.savedForwarding };
      for (const f of families(to.prefixes)) {
        if (saved[f] !== undefined) continue;
        saved[f] = readFileSync(FORWARDING[f], "utf8").trim();
        writeFileSync(FORWARDING[f], "1");
      }
      to.savedForwarding = saved;
    }
    await transition(from ? masqueradeCommands(from) : [], to ? masqueradeCommands(to) : []);
    if (!to && from) restoreForwarding(from);
  },

  async clearStale(device, prefixes) {
    let removed = 0;
    const repeat = async (cmd: string[]) => {
      // Each call removes one copy (a datapath killed twice may have left two).
      for (let i = 0; i < 64; i++) {
        try {
          await exec(cmd);
        } catch {
          return;
        }
        removed++;
      }
    };
    for (const fam of ["-4", "-6"]) {
      for (const pref of [PREF_TABLE, PREF_MAIN, PREF_BYPASS])
        await repeat([fam, "rule", "del", "pref", `${pref}`]);
      await exec([fam, "route", "flush", "table", `${EXIT_TABLE}`]).catch(() => {});
    }
    for (const cmd of masqueradeCommands({ device, prefixes })) await repeat(undo(cmd));
    return removed;
  },

  clearSync(routing, nat) {
    if (routing) for (const cmd of routingCommands(routing).reverse()) execSync(undo(cmd));
    if (nat) {
      for (const cmd of masqueradeCommands(nat).reverse()) execSync(undo(cmd));
      restoreForwarding(nat);
    }
  },
};

function restoreForwarding(s: MasqueradeState): void {
  for (const [f, value] of Object.entries(s.savedForwarding ?? {})) {
    try {
      writeFileSync(FORWARDING[Number(f) as Family], value);
    } catch {
      // read-only /proc: nothing we can restore
    }
  }
}
