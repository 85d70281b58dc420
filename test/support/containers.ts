// What the podman tests (pnpm test:compose) share: this host's podman settings, the check of the tools
// they need, the check that another run holds a lab prefix, and timed steps.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** This host's podman: crun fails on hybrid cgroups, and the default ulimits exceed the hard limits. */
export const CONTAINERS_CONF = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
`;

/** Why a test cannot run here (not root; none of the alternatives of a group installed), or undefined. */
export function missingTools(rootFor: string, groups: string[][]): string | undefined {
  if (process.getuid?.() !== 0) return `needs root (${rootFor})`;
  const installed = (tool: string) =>
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"].some((d) => existsSync(join(d, tool)));
  for (const tools of groups) {
    if (!tools.some(installed))
      return `${tools.join(" or ")} is not installed (scripts/bootstrap.sh installs it)`;
  }
  return undefined;
}

/** A live process whose command line contains `marker` (from an earlier run's pid file), if any. */
export function liveProcess(pidFile: string, marker: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, "utf8"));
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Steps timed in seconds, each logged as `LABEL: STEP N s` when it ends (also when it fails). */
export function stepTimer(label: string) {
  const timings: Record<string, number> = {};
  async function timed<T>(what: string, step: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      return await step();
    } finally {
      timings[what] = (Date.now() - started) / 1000;
      console.log(`${label}: ${what} ${timings[what]!.toFixed(1)} s`);
    }
  }
  return { timings, timed };
}
