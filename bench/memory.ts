// A node's memory with shared pages counted once: the physical pages (PFNs from /proc/PID/pagemap,
// readable by root only) that any of its processes maps. The datapath and the controller each map
// the `node` binary's ~40 MB of code, which a sum of their RSS counts twice.
import { closeSync, openSync, readFileSync, readSync } from "node:fs";

const PAGE = 4096;
const PRESENT = 1n << 63n;
const PFN_MASK = (1n << 55n) - 1n;

/** MB of distinct physical pages mapped by `pids`; undefined when pagemap gives no PFNs (not root). */
export function pagesOnceMB(pids: number[]): number | undefined {
  const pfns = new Set<bigint>();
  try {
    for (const pid of pids) addPages(pid, pfns);
  } catch {
    return undefined;
  }
  // Without CAP_SYS_ADMIN the kernel reports every PFN as 0.
  if (pfns.size <= 1) return undefined;
  return (pfns.size * PAGE) / 1048576;
}

function addPages(pid: number, into: Set<bigint>): void {
  const maps = readFileSync(`/proc/${pid}/maps`, "utf8");
  const fd = openSync(`/proc/${pid}/pagemap`, "r");
  try {
    for (const line of maps.trimEnd().split("\n")) {
      const [range = "", perms = ""] = line.split(" ", 2);
      if (perms.startsWith("---")) continue; // reservations: never backed
      const [lo, hi] = range.split("-").map((x) => BigInt(`0x${x}`)) as [bigint, bigint];
      if (hi > 1n << 47n) continue; // [vsyscall]
      const pages = Number((hi - lo) / BigInt(PAGE));
      const buf = Buffer.alloc(pages * 8);
      readSync(fd, buf, 0, buf.length, Number((lo / BigInt(PAGE)) * 8n));
      for (let i = 0; i < pages; i++) {
        const e = buf.readBigUInt64LE(i * 8);
        if (e & PRESENT) into.add(e & PFN_MASK);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Samples pagesOnceMB of each side's processes every `everyMs` and keeps the peak. */
export class PeakSampler {
  private readonly peak = { a: 0, b: 0 };
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: { a: number[]; b: number[] },
    everyMs = 2000,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }

  private sample(): void {
    for (const side of ["a", "b"] as const) {
      const mb = pagesOnceMB(this.pids[side]);
      if (mb !== undefined) this.peak[side] = Math.max(this.peak[side], mb);
    }
  }

  /** The peaks (undefined when nothing could be read). */
  stop(): { a: number; b: number } | undefined {
    clearInterval(this.timer);
    this.sample();
    return this.peak.a > 0 ? { ...this.peak } : undefined;
  }
}

/** utime+stime in seconds (all threads) and VmHWM/VmRSS in bytes, read from the shared /proc. */
export function procStats(pid: number): { cpuS: number; hwmBytes: number; rssBytes: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(f[11]) + Number(f[12]); // fields 14 and 15 of stat(5)
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(status.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0) * 1024;
    return { cpuS: ticks / CLK_TCK, hwmBytes: kb("VmHWM"), rssBytes: kb("VmRSS") };
  } catch {
    return undefined;
  }
}
const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux/x86-64 and arm64
