// The compose stack for real (pnpm test:compose, not part of pnpm test): builds the images with
// podman (base image from mmdebstrap/debootstrap, no registry), brings docker/compose.yaml up with
// docker-compose against `podman system service`, pings across the three nodes through the VPN
// (carol behind the NAT router) and takes the stack down, leaving no container, network, volume,
// iptables rule or podman service behind, also when the test is killed midway (a guard process does
// the cleanup when the test process dies). The images stay in podman's store as a cache
// (`podman rmi localhost/tincan-ts localhost/tincan-lab` removes them).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type LinkInfo, uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execIn, LabProcess, runIn } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";

const PROJECT = "tincancompose";
const DIR = join(REPO, ".lab", "compose");
const SOCKET = join(DIR, "podman.sock");
const COMPOSE_FILE = join(REPO, "docker/compose.yaml");
const ENV = {
  CONTAINERS_CONF: join(DIR, "containers.conf"),
  DOCKER_HOST: `unix://${SOCKET}`,
  EXTRA_CA_FILE: "/etc/ssl/certs/ca-certificates.crt",
};
// This host's podman: crun fails on hybrid cgroups, and the default ulimits exceed the hard limits.
const CONTAINERS_CONF = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
`;
const NODES = { alice: "10.214.0.1", bob: "10.214.0.2", carol: "10.214.0.3" } as const;
type NodeName = keyof typeof NODES;
const ROUTER_WAN = "10.213.1.2";
const CAROL_LAN = "10.213.2.23";
/** Tags this test's host iptables rules (found and deleted by it). */
const RULE_TAG = PROJECT;
// The image builds from the workspace's own `pnpm deploy --prod` output (already built: no compiler,
// no npm downloads in the image); TINCAN_COMPOSE_FULL_BUILD=1 builds it from the lockfile as users do.
const FULL_BUILD = process.env.TINCAN_COMPOSE_FULL_BUILD === "1";
const PREBUILT = join(DIR, "app");
/** The stack's bridge names, for the cleanup of the rules the CNI firewall plugin leaves behind. */
const BRIDGES_FILE = join(DIR, "bridges");

// Removes what the project left in podman and the test's iptables rules, then stops the podman API
// service ($service) if there is one. Uses the podman CLI, not the API: works in any state.
const CLEANUP = `
label=label=com.docker.compose.project=${PROJECT}
cleanup() {
  trap '' TERM INT HUP
  podman ps -aq --filter "$label" | xargs -r podman rm -f -t 2 >/dev/null
  podman network ls -q --filter "$label" | xargs -r podman network rm -f >/dev/null
  podman volume ls -q --filter "$label" | xargs -r podman volume rm -f >/dev/null
  iptables -S FORWARD | grep -F -- "--comment ${RULE_TAG}" | sed 's/^-A /-D /' |
    while read -r rule; do iptables $rule; done
  # podman's Docker API makes isolated networks: the CNI firewall plugin adds DROP rules per bridge and
  # never removes them. Ours go once the bridge is gone (its name may be reused later).
  for bridge in $(cat ${BRIDGES_FILE} 2>/dev/null); do
    ip link show "$bridge" >/dev/null 2>&1 && continue
    for chain in CNI-ISOLATION-STAGE-1 CNI-ISOLATION-STAGE-2; do
      iptables -S "$chain" 2>/dev/null | grep -E -- "-[io] $bridge( |$)" | sed 's/^-A /-D /' |
        while read -r rule; do eval "iptables $rule"; done
    done
  done
  rm -f ${BRIDGES_FILE}
  if [[ -n \${service:-} ]]; then kill -TERM "$service" 2>/dev/null; wait "$service"; fi
  rm -f ${SOCKET}
  echo "guard: cleaned up"
}
`;
// Runs the podman API service and cleans up after the test: on SIGTERM (the test's own teardown),
// or as soon as one of the watched PIDs ($1...: the test process and its parent) is gone (killed, crashed).
const GUARD = `${CLEANUP}
podman system service --time=0 unix://${SOCKET} &
service=$!
echo "$service" >${join(DIR, "podman-service.pid")}
trap 'cleanup; exit 0' TERM INT HUP
alive() { for pid in "$@"; do kill -0 "$pid" 2>/dev/null || return 1; done; }
while alive "$@"; do sleep 1; done
echo "guard: test process gone"
cleanup
`;

function missingTools(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (rootful podman, debootstrap)";
  const installed = (tool: string) =>
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"].some((d) => existsSync(join(d, tool)));
  for (const tools of [["podman"], ["docker-compose"], ["iptables"], ["mmdebstrap", "debootstrap"]]) {
    if (!tools.some(installed))
      return `${tools.join(" or ")} is not installed (scripts/bootstrap.sh installs it)`;
  }
  return undefined;
}
const missing = missingTools();
if (missing) console.warn(`compose test skipped: ${missing}`);

const timings: Record<string, number> = {};
async function timed<T>(what: string, step: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await step();
  } finally {
    timings[what] = (Date.now() - started) / 1000;
    console.log(`compose: ${what} ${timings[what]!.toFixed(1)} s`);
  }
}

const run = (argv: string[], timeoutMs = 60_000) =>
  runIn(undefined, argv, { env: ENV, cwd: REPO, timeoutMs });
const compose = (args: string[], timeoutMs = 120_000) =>
  run(["docker-compose", "-p", PROJECT, "-f", COMPOSE_FILE, ...args], timeoutMs);
const container = (name: string) => `${PROJECT}_${name}_1`;
const exec = (node: string, argv: string[]) =>
  execIn(undefined, ["podman", "exec", container(node), ...argv], { env: ENV, timeoutMs: 30_000 });

/** What the project left behind: containers, networks and volumes labelled with its name, its iptables rules. */
async function leftovers(): Promise<string[]> {
  const label = `label=com.docker.compose.project=${PROJECT}`;
  const lists = await Promise.all([
    run(["podman", "ps", "-a", "--filter", label, "--format", "container {{.Names}}"]),
    run(["podman", "network", "ls", "--filter", label, "--format", "network {{.Name}}"]),
    run(["podman", "volume", "ls", "--filter", label, "--format", "volume {{.Name}}"]),
    run(["iptables", "-S"]).then((rules) =>
      rules
        .split("\n")
        .filter((r) => r.includes(`--comment ${RULE_TAG}`) || bridges.some((b) => r.includes(` ${b} `)))
        .map((r) => `iptables ${r}`)
        .join("\n"),
    ),
  ]);
  return lists.flatMap((l) => l.split("\n").filter(Boolean));
}

let bridges: string[] = [];

/** A live process whose command line contains `marker` (from an earlier run's pid file), if any. */
function liveProcess(pidFile: string, marker: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, "utf8"));
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * podman with CNI forwards between its bridges like a router, so alice could reach carol's LAN
 * address past the NAT router (ICE then finds a "host" path). As a home router's LAN is: the host
 * drops everything routed between the two networks; the router's own ports (bridged) still pass.
 */
async function isolateLan(): Promise<string[]> {
  const bridge = async (net: string) =>
    (
      await run(["podman", "network", "inspect", `${PROJECT}_${net}`, "--format", "{{.NetworkInterface}}"])
    ).trim();
  const [internet, lan] = await Promise.all([bridge("internet"), bridge("lan")]);
  bridges = [internet, lan];
  writeFileSync(BRIDGES_FILE, bridges.join("\n"));
  const rules = [
    [internet, lan],
    [lan, internet],
  ].map(([i, o]) => ["-i", i!, "-o", o!, "-m", "comment", "--comment", RULE_TAG, "-j", "DROP"]);
  for (const rule of rules) await run(["iptables", "-I", "FORWARD", "1", ...rule]);
  return [internet, lan];
}

describe.skipIf(missing !== undefined)(
  "compose stack: 3 GroupVPN nodes in containers, one behind NAT",
  () => {
    let guard: LabProcess | undefined;

    beforeAll(async () => {
      mkdirSync(DIR, { recursive: true });
      const guardPidFile = join(DIR, "guard.pid");
      const live = liveProcess(guardPidFile, "tincancompose-guard");
      if (live) throw new Error(`project ${PROJECT} in use by live process ${live}`);
      const orphan = liveProcess(join(DIR, "podman-service.pid"), SOCKET); // its guard was SIGKILLed alone
      if (orphan) process.kill(orphan, "SIGTERM");
      writeFileSync(ENV.CONTAINERS_CONF, CONTAINERS_CONF);
      rmSync(SOCKET, { force: true });
      const log = join(DIR, "guard.log");
      // A guard of a run killed with its whole process group left nothing running; what it left in
      // podman and iptables goes now (this process owns the project: no live guard).
      await run(["bash", "-c", `${CLEANUP}\ncleanup`]);
      guard = new LabProcess(
        "compose-guard",
        undefined,
        ["bash", "-c", GUARD, "tincancompose-guard", String(process.pid), String(process.ppid)],
        log,
        { env: ENV },
      );
      writeFileSync(guardPidFile, String(guard.pid));
      await waitFor("the podman API socket", () => existsSync(SOCKET), 30_000);
      await timed("base image", () => run(["bash", "docker/build.sh", "base"], 900_000));
      if (!FULL_BUILD) {
        await timed("workspace build + pnpm deploy", async () => {
          await run(["pnpm", "run", "build"], 600_000);
          rmSync(PREBUILT, { recursive: true, force: true });
          await run(
            [
              "pnpm",
              "--config.inject-workspace-packages=true",
              "--filter",
              "tincan-ts",
              "deploy",
              "--prod",
              "--offline",
              PREBUILT,
            ],
            300_000,
          );
        });
      }
      await timed("image build", () =>
        runIn(undefined, ["bash", "docker/build.sh", "images"], {
          env: { ...ENV, ...(FULL_BUILD ? {} : { PREBUILT }) },
          cwd: REPO,
          timeoutMs: 1_800_000,
        }),
      );
      await run(["bash", "docker/make-secrets.sh"]);
    }, 2_700_000);

    afterAll(async () => {
      if (!guard) return;
      if ((await leftovers().catch(() => [])).length)
        await compose(["down", "-v", "-t", "2"]).catch(() => {});
      await guard.stop(60_000);
      rmSync(join(DIR, "guard.pid"), { force: true });
      rmSync(PREBUILT, { recursive: true, force: true });
      console.log(`compose timings (s): ${JSON.stringify(timings)}`);
    }, 120_000);

    it("comes up, and every node pings the two others through the VPN (carol from behind NAT)", async () => {
      await timed("stack up", async () => {
        await compose(["up", "--no-start"]); // the networks exist now, their bridges are named
        const [internet, lan] = await isolateLan();
        console.log(`compose: host drops forwarding between ${internet} and ${lan}`);
        await compose(["start"]);
      });
      const size = await run([
        "podman",
        "image",
        "inspect",
        "localhost/tincan-ts:latest",
        "--format",
        "{{.Size}}",
      ]);
      console.log(`compose: node image ${(Number(size) / 1e6).toFixed(0)} MB`);
      const pairs = Object.keys(NODES).flatMap((from) =>
        Object.keys(NODES)
          .filter((to) => to !== from)
          .map((to) => [from, to] as [NodeName, NodeName]),
      );
      try {
        await timed("first ping, all pairs", async () => {
          for (const [from, to] of pairs) {
            await waitFor(
              `${from} to ping ${to}`,
              async () => (await exec(from, ["ping", "-c", "1", "-W", "1", NODES[to]])).code === 0,
              90_000,
            );
          }
        });
      } catch (err) {
        console.log(await compose(["logs", "--no-color", "--tail", "30"]).catch((e) => String(e)));
        throw err;
      }
      const lost: string[] = [];
      await timed("5 pings, all pairs", async () => {
        for (const [from, to] of pairs) {
          const r = await exec(from, ["ping", "-c", "5", "-i", "0.2", "-W", "1", NODES[to]]);
          const m = /(\d+) received/.exec(r.stdout);
          lost.push(`${from}->${to} ${5 - Number(m?.[1] ?? 0)}/5`);
        }
      });
      console.log(`compose: pings lost ${lost.join(", ")}`);
      // A loaded 2-core machine may lose one while a link still settles (e.g. relayed -> direct).
      expect(lost.every((l) => l.endsWith(" 0/5") || l.endsWith(" 1/5"))).toBe(true);
    }, 300_000);

    it("carol's links go through the NAT router: masqueraded both ways, her LAN address unreachable", async () => {
      // What the wire does, from the router's connection tracking: carol's UDP flows to alice and bob
      // leave from its WAN address and got answers. (The datapath's own view is only logged: with
      // libjuice it may name carol's host candidate 10.213.2.23 as the remote although the packets
      // come from the router: the NAT keeps the port.)
      const conntrack = (await exec("router", ["cat", "/proc/net/nf_conntrack"])).stdout;
      const unmasqueraded = conntrack
        .split("\n")
        .filter((l) => l.includes(`src=${CAROL_LAN} dst=10.213.1.`) && !l.includes(`dst=${ROUTER_WAN} `));
      expect(unmasqueraded, "flows of carol that left the router un-NATed").toEqual([]);
      for (const [node, ip] of [
        ["alice", "10.213.1.21"],
        ["bob", "10.213.1.22"],
      ] as const) {
        // Direct to the peer, or relayed through coturn (10.213.1.11): either way from the WAN address.
        const flow = conntrack
          .split("\n")
          .find(
            (l) =>
              l.includes(" udp ") &&
              (l.includes(`src=${CAROL_LAN} dst=${ip} `) ||
                l.includes(`src=${CAROL_LAN} dst=10.213.1.11 `)) &&
              l.includes(`dst=${ROUTER_WAN} `) &&
              l.includes("[ASSURED]"),
          );
        const out = await exec(node, ["tincanctl", "status", "--json"]);
        const links = (JSON.parse(out.stdout) as { links: LinkInfo[] }).links;
        const toCarol = links.filter((l) => l.peerUid === uidForIpv4(NODES.carol));
        console.log(
          `compose: ${node}: NAT flow ${flow?.replace(/\s+/g, " ")}; datapath says ${toCarol.map((l) => `${l.path} ${l.remote}`).join(", ")}`,
        );
        expect(flow, `no NATed flow carol -> ${node} (or the relay) in the router`).toBeDefined();
        // No way around the router: no route, and the host drops what it would forward between the bridges.
        const direct = await exec(node, ["ping", "-c", "1", "-W", "1", CAROL_LAN]);
        expect(direct.code, `${node} reached carol's LAN address directly`).not.toBe(0);
      }
    });

    it("the image's HEALTHCHECK (tincanctl status) passes on a running node", async () => {
      const r = await execIn(undefined, ["podman", "healthcheck", "run", container("bob")], { env: ENV });
      expect(r.code, r.stdout + r.stderr).toBe(0);
    });

    it("a SIGTERM to the container stops both processes at once (not the 20 s kill timeout)", async () => {
      const seconds = await timed("podman stop bob", () =>
        run(["podman", "stop", "-t", "20", container("bob")]),
      );
      const code = await run(["podman", "inspect", container("bob"), "--format", "{{.State.ExitCode}}"]);
      console.log(`compose: bob stopped in ${timings["podman stop bob"]} s, exit code ${code.trim()}`);
      expect(seconds).toBeDefined();
      expect(timings["podman stop bob"]).toBeLessThan(10);
      expect(code.trim()).not.toBe("137");
    }, 60_000);

    it("the container exits when its datapath dies (the entrypoint stops the controller too)", async () => {
      // PID found by its command line inside the container; nothing is killed by name.
      const kill = await exec("alice", [
        "sh",
        "-c",
        'for p in /proc/[0-9]*; do tr "\\0" " " <$p/cmdline | grep -q "^node .*/bin/tincan --config" && kill -KILL "$(basename $p)"; done; true',
      ]);
      expect(kill.code, kill.stderr).toBe(0);
      await waitFor(
        "alice's container to exit",
        async () =>
          (await run(["podman", "inspect", container("alice"), "--format", "{{.State.Running}}"])).trim() ===
          "false",
        20_000,
      );
    }, 60_000);

    it("goes down leaving no container, network or volume (the images stay as a cache)", async () => {
      await timed("stack down", () => compose(["down", "-v", "-t", "2"]));
      const left = await leftovers();
      // The isolation rules are the test's own: they go with the guard, checked after it.
      expect(left.filter((l) => !l.startsWith("iptables "))).toEqual([]);
      await guard?.stop(60_000);
      expect(guard?.log()).toContain("guard: cleaned up");
      expect(await leftovers()).toEqual([]);
      expect(existsSync(SOCKET)).toBe(false);
      expect(guard?.exited).toBe(true);
    }, 180_000);
  },
);
