import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

/**
 * Top self-time functions of a V8 `.cpuprofile` (`node --cpu-prof`), and the same with the time of
 * their callees ("total"), so two runs at different sizes can be compared without reading the JSON.
 *
 *   node --import tsx bench/sim/profile-top.ts [--top 25] FILE.cpuprofile
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  const file = positionals[0];
  if (!file) {
    console.error("usage: profile-top.ts [--top N] FILE.cpuprofile");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const top = Number(values.top);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);

  // Self time per node from the samples (each sample's delta goes to the node it landed in).
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });

  const self = new Map<string, number>();
  const total = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const name = label(node);
    self.set(name, (self.get(name) ?? 0) + us);
    // Total: once per distinct function on the stack (recursion counts once).
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
      const n = byId.get(at);
      if (!n) break;
      const l = label(n);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + us);
    }
  }
  const allUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  console.log(`${file}: ${(allUs / 1e6).toFixed(1)} s sampled`);
  print("self", self, allUs, top);
  print("total (self + callees)", total, allUs, top);
}

function label(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url ? `${url.replace(/^.*\/(packages|bench|node_modules)\//, "$1/")}:${lineNumber + 1}` : "";
  return `${functionName || "(anonymous)"} ${where}`.trim();
}

function print(title: string, times: Map<string, number>, allUs: number, top: number): void {
  console.log(`\n${title}:`);
  const rows = [...times].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [name, us] of rows)
    console.log(
      `${(us / 1e6).toFixed(2).padStart(8)} s ${((100 * us) / allUs).toFixed(1).padStart(5)} %  ${name}`,
    );
}

main();
