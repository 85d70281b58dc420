import { parseArgs } from "node:util";
import { runScenario, SCENARIOS, type ScenarioName } from "./scenarios.js";
import { POLICIES, type PolicyName } from "./simulation.js";

const USAGE = `pnpm sim -- [--nodes 1000] [--policy ${POLICIES.join("|")}] [--scenario ${SCENARIOS.join("|")}]
                [--seed sim] [--join-sec S] [--sample 500] [--hop-limit 32] [--eager-routes N]
                [--progress-sec 30]`;

/** `pnpm sim`: one scenario on the virtual-time simulator, printed as a Markdown table. */
async function main(): Promise<void> {
  const { values } = parseArgs({
    // `pnpm sim -- --nodes 10` passes the "--" on.
    args: process.argv.slice(2).filter((a) => a !== "--"),
    options: {
      nodes: { type: "string", default: "1000" },
      policy: { type: "string", default: "proactive" },
      scenario: { type: "string", default: "all" },
      seed: { type: "string", default: "sim" },
      "join-sec": { type: "string" },
      sample: { type: "string", default: "500" },
      "hop-limit": { type: "string" },
      "eager-routes": { type: "string" },
      "progress-sec": { type: "string", default: "30" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const nodes = positive(values.nodes, "--nodes");
  const policy = values.policy as PolicyName;
  const scenario = values.scenario as ScenarioName;
  const eager = values["eager-routes"];
  if (!POLICIES.includes(policy)) fail(`--policy must be one of ${POLICIES.join(", ")}`);
  if (!SCENARIOS.includes(scenario)) fail(`--scenario must be one of ${SCENARIOS.join(", ")}`);
  const started = performance.now();
  const cpu = process.cpuUsage();
  const report = await runScenario({
    nodes,
    policy,
    scenario,
    seed: values.seed,
    sample: positive(values.sample, "--sample"),
    ...(values["join-sec"] ? { joinSec: positive(values["join-sec"], "--join-sec") } : {}),
    ...(eager !== undefined ? { eagerRoutesUpTo: nonNegative(eager, "--eager-routes") } : {}),
    ...(values["hop-limit"] ? { params: { hopLimit: positive(values["hop-limit"], "--hop-limit") } } : {}),
    progress: (line) => console.error(`[sim] ${line}`),
    progressEverySec: nonNegative(values["progress-sec"], "--progress-sec"),
  });
  const used = process.cpuUsage(cpu);
  console.log(`\n${nodes} nodes, policy ${policy}, scenario ${scenario}, seed ${values.seed}\n`);
  console.log("| metric | value | target |\n|---|---|---|");
  for (const r of report.rows) console.log(`| ${r.metric} | ${r.value} | ${r.target ?? ""} |`);
  const wall = (performance.now() - started) / 1000;
  console.log(`| wall time, s | ${wall.toFixed(1)} | |`);
  console.log(`| CPU time, s | ${((used.user + used.system) / 1e6).toFixed(1)} | |`);
  for (const [hook, n] of report.hookErrors) console.log(`\npolicy hook errors: ${n} x ${hook}`);
  if (report.hookErrors.size > 0) process.exitCode = 1;
}

function nonNegative(text: string | undefined, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) fail(`${flag} must be an integer >= 0`);
  return n;
}

function positive(text: string | undefined, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) fail(`${flag} must be a positive integer`);
  return n;
}

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

// Ctrl-C or kill -INT ends the run through process.exit, which still writes a --cpu-prof profile.
process.on("SIGINT", () => process.exit(130));
await main();
