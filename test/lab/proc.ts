// Process helpers for the network lab: run commands (optionally inside a network namespace),
// spawn long-running processes in their own process group with output to a log file, and stop
// them by PID. Nothing here ever kills by name.
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { setPriority } from "node:os";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string | undefined>;
  /** Kill the command (SIGKILL) after this many ms; the result then has code 124. Default 60 s. */
  timeoutMs?: number;
  /** Data written to the command's stdin. */
  input?: string;
  cwd?: string;
}

/** Prefix that runs argv inside namespace ns (none for the root namespace). */
export function nsArgv(ns: string | undefined, argv: string[]): string[] {
  return ns ? ["ip", "netns", "exec", ns, ...argv] : argv;
}

/** Run argv to completion; never throws for a non-zero exit (look at `code`). */
export function execIn(ns: string | undefined, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const full = nsArgv(ns, argv);
  const [file, ...args] = full;
  if (!file) throw new Error("execIn: empty argv");
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      {
        env: { ...process.env, ...opts.env },
        timeout: opts.timeoutMs ?? 60_000,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
        cwd: opts.cwd,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
          if (e.killed) code = 124;
          else if (typeof e.code === "number") code = e.code;
          else code = 127; // spawn failure (ENOENT...)
          if (typeof e.code === "string") stderr = `${stderr}${e.message}\n`;
        }
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Like execIn, but throws (with stderr in the message) when the command exits non-zero. */
export async function runIn(ns: string | undefined, argv: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await execIn(ns, argv, opts);
  if (r.code !== 0) {
    throw new Error(
      `command failed (exit ${r.code})${ns ? ` in netns ${ns}` : ""}: ${argv.join(" ")}\n${r.stderr.trim()}`,
    );
  }
  return r.stdout;
}

/** Synchronous variant used only by exit-time cleanup. Never throws. */
export function execSyncQuiet(argv: string[]): string {
  const [file, ...args] = argv;
  if (!file) return "";
  try {
    return execFileSync(file, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 10_000,
    });
  } catch {
    return "";
  }
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  /** Log file that receives stdout and stderr (appended). Default: chosen by the caller (lab dir). */
  logFile?: string;
  cwd?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A long-running process started by the lab, in its own process group. */
export class LabProcess {
  readonly pid: number;
  readonly name: string;
  readonly logFile: string;
  readonly argv: string[];
  private readonly child: ChildProcess;
  private exitInfo: ExitInfo | undefined;
  private readonly exitPromise: Promise<ExitInfo>;

  constructor(
    name: string,
    ns: string | undefined,
    argv: string[],
    logFile: string,
    opts: SpawnOptions = {},
  ) {
    this.name = name;
    this.logFile = logFile;
    this.argv = argv;
    const full = nsArgv(ns, argv);
    const [file, ...args] = full;
    if (!file) throw new Error("spawn: empty argv");
    const fd = openSync(logFile, "a");
    try {
      // detached: setsid(), so the process leads its own group and stop() can signal the whole group.
      // `ip netns exec` execs the command in place, so pid is the command's own PID.
      this.child = spawn(file, args, {
        env: { ...process.env, ...opts.env },
        cwd: opts.cwd,
        detached: true,
        stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    if (this.child.pid === undefined) throw new Error(`spawn failed: ${full.join(" ")}`);
    this.pid = this.child.pid;
    this.exitPromise = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      this.child.once("error", () => {
        this.exitInfo ??= { code: 127, signal: null };
        resolve(this.exitInfo);
      });
    });
    // The child stays ref'd: a script awaiting wait()/stop() must not see its event loop drain.
    // Lab.destroy() (or the exit hooks) end it.
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  get exitCode(): number | null | undefined {
    return this.exitInfo?.code;
  }

  /** Resolves when the process exits. */
  wait(): Promise<ExitInfo> {
    return this.exitPromise;
  }

  /** Current content of the log file. */
  log(): string {
    try {
      return readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }

  /** Wait until the log matches `re` (polls); throws with the log tail on timeout or early exit. */
  async waitForLog(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.log().match(re);
      if (m) return m;
      if (this.exited) {
        throw new Error(`${this.name} (pid ${this.pid}) exited before logging ${re}:\n${tail(this.log())}`);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${this.name} (pid ${this.pid}): no ${re} in log after ${timeoutMs} ms:\n${tail(this.log())}`,
        );
      }
      await sleep(50);
    }
  }

  /** Send a signal to the process group (falls back to the PID). */
  signal(sig: NodeJS.Signals): void {
    if (this.exited) return;
    killGroup(this.pid, sig);
  }

  /** SIGTERM the process group, then SIGKILL after timeoutMs. Idempotent. */
  async stop(timeoutMs = 3000): Promise<ExitInfo> {
    if (!this.exited) {
      this.signal("SIGTERM");
      const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), timeoutMs).unref());
      if ((await Promise.race([this.exitPromise, timer])) === "timeout") {
        this.signal("SIGKILL");
      }
    }
    const info = await this.exitPromise;
    // Anything left in the group (children that ignored SIGTERM) goes too.
    killGroup(this.pid, "SIGKILL");
    return info;
  }

  /** Synchronous SIGKILL of the group, for exit handlers. */
  killSync(): void {
    killGroup(this.pid, "SIGKILL");
  }
}

/** Signal a process group by its leader PID; falls back to the single PID. Never throws. */
export function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
    return;
  } catch {
    // not a group leader or already gone
  }
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

export function killPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * Gives a lab server (prosody, coturn) the CPU share of a machine of its own. Each lab process
 * leads its own session (setsid), and with autogroup scheduling a session's weight, not a nice
 * value, decides its share: 80 VPN processes on 2 cores would otherwise leave the one XMPP server
 * they all signal through ~1/80 of the CPU, and the lab would measure that instead of the VPN.
 */
export function favourCpu(pid: number, nice = -10): void {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch {
    // no autogroup scheduling here (or the process sits in a cgroup with its own CPU weight)
  }
  try {
    setPriority(pid, nice);
  } catch {
    // not root, or already gone: the lab still works, its servers are just slower under load
  }
}

/** Lower bounds a lab sets for the kernel's neighbour-table limits (gc_thresh1..3). */
const NEIGH_THRESH = [1024, 8192, 16384];

/**
 * Raises the kernel's neighbour-table limits, never lowers them (they stay raised after the lab).
 * The ARP and NDP tables are one table for all namespaces, limited by init_net's gc_thresh3 (1024
 * by default): 40 lab hosts, each
 * with a neighbour entry per host it reaches on the lab net and per overlay address on its vNIC,
 * overflow it, and then every send to a new neighbour fails with ENOBUFS ("neighbor table
 * overflow!" in dmesg), which a lab would misread as VPN links that carry nothing.
 */
export function roomForNeighbours(): void {
  for (const family of ["ipv4", "ipv6"]) {
    NEIGH_THRESH.forEach((min, i) => {
      const file = `/proc/sys/net/${family}/neigh/default/gc_thresh${i + 1}`;
      try {
        if (Number(readFileSync(file, "utf8")) < min) writeFileSync(file, String(min));
      } catch (e) {
        // Labs of a few hosts still fit; a big one would fail as if the VPN carried nothing.
        process.emitWarning(`lab: cannot raise ${file} to ${min}: ${(e as Error).message}`);
      }
    });
  }
}

/** Is the process running? A zombie (exited, not yet reaped) counts as dead. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Poll `check` until it returns true; throws `what` on timeout. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
