// The Debian package under a real systemd (pnpm test:compose, with podman): builds the .deb, installs
// it into a container whose PID 1 is systemd (docker/systemd-test.Dockerfile on the compose stack's
// local Debian base; --network none: nothing leaves it), and runs what the package ships: postinst,
// tincan.service, groupvpn@.service logging in to a prosody inside the container, stop/restart,
// dpkg -r and --purge. Node.js comes from the host (mounted read-only at /usr/bin/node, with a stub
// `nodejs` package for the dependency). The container goes when the test ends, also when it is
// killed (a guard process removes it); the image stays as a cache (`podman rmi localhost/tincan-sysd`).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execIn, LabProcess, makeCert, runIn, tail } from "./lab/index.js";
import { CONTAINERS_CONF, liveProcess, missingTools, stepTimer } from "./support/containers.js";
import { REPO, waitFor } from "./support/datapath-driver.js";

const PREFIX = "sysd";
const DIR = join(REPO, ".lab", PREFIX);
const CONTAINER = `${PREFIX}-tincan`;
const IMAGE = "localhost/tincan-sysd:latest";
const ENV = { CONTAINERS_CONF: join(DIR, "containers.conf") };
/** CAP_NET_ADMIN alone (bit 12), as /proc/PID/status prints a capability set. */
const NET_ADMIN_ONLY = "0000000000001000";

const missing = missingTools("rootful podman", [
  ["podman"],
  ["dpkg-deb"],
  ["openssl"],
  ["mmdebstrap", "debootstrap"],
]);
if (missing) console.warn(`systemd test skipped: ${missing}`);

const run = (argv: string[], timeoutMs = 60_000) =>
  runIn(undefined, argv, { env: ENV, cwd: REPO, timeoutMs });
/** A shell command in the container: its result, whatever the exit code. */
const sh = (script: string, timeoutMs = 60_000) =>
  execIn(undefined, ["podman", "exec", CONTAINER, "sh", "-c", script], { env: ENV, timeoutMs });
/** A shell command in the container that must succeed: its stdout. */
async function must(script: string, timeoutMs = 60_000): Promise<string> {
  const r = await sh(script, timeoutMs);
  if (r.code !== 0) throw new Error(`in ${CONTAINER}: ${script}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}
const isActive = async (unit: string) => (await sh(`systemctl is-active ${unit}`)).stdout.trim();
const journal = (unit: string) => sh(`journalctl -u ${unit} --no-pager -o cat`).then((r) => r.stdout);
/** `systemctl start UNIT`, then waits for `line` in its journal. */
async function startUnit(unit: string, line: string, timeoutMs = 60_000): Promise<void> {
  await must(`systemctl start ${unit}.service`);
  await waitFor(`${unit} to log "${line}"`, async () => (await journal(unit)).includes(line), timeoutMs);
}
/** Runs `step`; when it fails, the units' journals go to the log first. */
async function showingJournal<T>(units: string[], step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    for (const unit of units) console.log(`--- journal of ${unit}:\n${tail(await journal(unit), 40)}`);
    throw err;
  }
}
const mainPid = async (unit: string) => Number(await must(`systemctl show -p MainPID --value ${unit}`));

const { timings, timed } = stepTimer("systemd");

// Removes the container once the test process (and its parent) is gone, or on SIGTERM.
const GUARD = `
cleanup() { trap '' TERM INT HUP; podman rm -f -t 2 ${CONTAINER} >/dev/null 2>&1; echo "guard: cleaned up"; }
trap 'cleanup; exit 0' TERM INT HUP
alive() { for pid in "$@"; do kill -0 "$pid" 2>/dev/null || return 1; done; }
while alive "$@"; do sleep 1; done
cleanup
`;

/** The sample groupvpn.json made to work in the container: prosody on 127.0.0.1 as vpn.test. */
function groupvpnConfig(): string {
  const sample = JSON.parse(readFileSync(join(REPO, "configs/groupvpn.json"), "utf8"));
  return JSON.stringify({
    ...sample,
    xmpp: {
      service: "xmpp://vpn.test:5222",
      domain: "vpn.test",
      username: "alice",
      passwordFile: "alice.password",
      caFile: "vpn.test.crt",
    },
    group: "vpn",
    ice: { stun: [], turn: [] },
  });
}

/** The sample socialvpn.json with dns.resolved, logging in as alice (buddies bob and carol by the shared group). */
function socialvpnConfig(): string {
  const sample = JSON.parse(readFileSync(join(REPO, "configs/socialvpn.json"), "utf8"));
  return JSON.stringify({
    ...sample,
    xmpp: JSON.parse(groupvpnConfig()).xmpp,
    ice: { stun: [], turn: [] },
    dns: { ...sample.dns, resolved: true },
  });
}

/** A controller config in /etc/tincan/, with the files it names: alice's password (0640 root:tincan), the CA. */
async function installConfig(name: string, json: string): Promise<void> {
  const write = async (file: string, text: string) => {
    const argv = ["podman", "exec", "-i", CONTAINER, "sh", "-c", `cat >/etc/tincan/${file}`];
    const r = await execIn(undefined, argv, { env: ENV, input: text });
    if (r.code !== 0) throw new Error(`writing /etc/tincan/${file} in ${CONTAINER}: ${r.stderr}`);
  };
  await write(name, json);
  await write("alice.password", "secret-alice");
  await write("vpn.test.crt", readFileSync(join(DIR, "certs/vpn.test.crt"), "utf8"));
  await must("chown root:tincan /etc/tincan/alice.password && chmod 0640 /etc/tincan/alice.password");
}

describe.skipIf(missing !== undefined)(
  "the Debian package under systemd (container, systemd as PID 1)",
  () => {
    let guard: LabProcess | undefined;
    let deb = "";

    beforeAll(async () => {
      mkdirSync(DIR, { recursive: true });
      const guardPidFile = join(DIR, "guard.pid");
      const live = liveProcess(guardPidFile, `${PREFIX}-guard`);
      if (live) throw new Error(`lab prefix ${PREFIX} in use by live process ${live}`);
      writeFileSync(ENV.CONTAINERS_CONF, CONTAINERS_CONF);
      await run(["podman", "rm", "-f", "-t", "1", CONTAINER]);
      guard = new LabProcess(
        `${PREFIX}-guard`,
        undefined,
        ["bash", "-c", GUARD, `${PREFIX}-guard`, String(process.pid), String(process.ppid)],
        join(DIR, "guard.log"),
        { env: ENV },
      );
      writeFileSync(guardPidFile, String(guard.pid));

      await timed("base image", () => run(["bash", "docker/build.sh", "base"], 900_000));
      const context = join(DIR, "context"); // the Dockerfile copies nothing
      mkdirSync(context, { recursive: true });
      await timed("systemd image", () =>
        run(
          [
            "podman",
            "build",
            "--format",
            "docker",
            "-f",
            "docker/systemd-test.Dockerfile",
            "-t",
            IMAGE,
            context,
          ],
          900_000,
        ),
      );
      deb = await timed("workspace build + .deb", async () => {
        await run(["pnpm", "run", "build"], 600_000);
        const out = await run(["bash", "scripts/build-deb.sh", join(DIR, "out")], 300_000);
        return out.trim().split("\n").at(-1)!;
      });
      // The package depends on nodejs (>= 20); Debian 12 has 18. The host's node stands in for it.
      const version = process.version.slice(1);
      const stub = join(DIR, "nodejs-stub");
      rmSync(stub, { recursive: true, force: true });
      mkdirSync(join(stub, "DEBIAN"), { recursive: true });
      writeFileSync(
        join(stub, "DEBIAN/control"),
        `Package: nodejs\nVersion: ${version}-host\nArchitecture: all\nMaintainer: TinCan-TS tests <tincan-ts@localhost>\nDescription: the host's Node.js, mounted at /usr/bin/node by test/systemd.test.ts\n`,
      );
      await run(["dpkg-deb", "--root-owner-group", "--build", stub, join(DIR, "nodejs-stub.deb")]);
      const { certFile, keyFile } = await makeCert(join(DIR, "certs"), "vpn.test");

      await timed("boot", async () => {
        await run([
          "podman",
          "run",
          "-d",
          "--name",
          CONTAINER,
          "--systemd=always",
          "--network=none",
          "--add-host=vpn.test:127.0.0.1",
          // A machine's PID 1 has them: systemd sets up the units' sandboxes (mount namespaces), the
          // datapath gets CAP_NET_ADMIN from the unit and a TUN device.
          "--cap-add=SYS_ADMIN,NET_ADMIN",
          "--device=/dev/net/tun",
          `--volume=${process.execPath}:/usr/bin/node:ro`,
          IMAGE,
        ]);
        await waitFor(
          "systemd in the container to finish booting",
          async () => /^(running|degraded)$/m.test((await sh("systemctl is-system-running")).stdout),
          120_000,
        );
      });
      for (const [from, to] of <[string, string][]>[
        [deb, "/tmp/tincan.deb"],
        [join(DIR, "nodejs-stub.deb"), "/tmp/nodejs-stub.deb"],
        [certFile, "/tmp/vpn.test.crt"],
        [keyFile, "/tmp/vpn.test.key"],
        [join(REPO, "docker/prosody/prosody.cfg.lua"), "/etc/prosody/prosody.cfg.lua"],
        [join(REPO, "docker/prosody/common.cfg.lua"), "/etc/prosody/common.cfg.lua"],
        [join(REPO, "docker/prosody/groups.txt"), "/etc/prosody/groups.txt"],
      ])
        await run(["podman", "cp", from, `${CONTAINER}:${to}`]);
      // The compose stack's prosody config (vpn.test, shared group "vpn": alice, bob, carol), as a service.
      await must(`set -e
      install -o prosody -g prosody -m 0600 /tmp/vpn.test.key /var/lib/prosody/vpn.test.key
      install -o prosody -g prosody -m 0644 /tmp/vpn.test.crt /var/lib/prosody/vpn.test.crt
      for u in alice bob carol; do prosodyctl register $u vpn.test secret-$u; done
      systemctl unmask prosody.service && systemctl start prosody.service`);
    }, 1_800_000);

    afterAll(async () => {
      if (!guard) return;
      if (process.env.SYSD_KEEP !== "1") await guard.stop(30_000);
      rmSync(join(DIR, "guard.pid"), { force: true });
      console.log(`systemd timings (s): ${JSON.stringify(timings)}`);
    }, 60_000);

    it("dpkg -i: postinst creates the system user and group tincan and /var/lib/tincan", async () => {
      await timed("dpkg -i", () => must("dpkg -i /tmp/nodejs-stub.deb /tmp/tincan.deb", 120_000));
      const user = (await must("getent passwd tincan")).trim().split(":");
      expect(Number(user[2]), "a system uid").toBeLessThan(1000);
      expect(user[5]).toBe("/var/lib/tincan");
      expect(user[6]).toBe("/usr/sbin/nologin");
      expect((await must("getent group tincan")).split(":")[2]).toBe(user[3]);
      expect((await must("stat -c '%U:%G %a' /var/lib/tincan")).trim()).toBe("tincan:tincan 750");
      expect(
        await must("systemctl list-unit-files 'tincan*' 'groupvpn@*' 'socialvpn@*' --no-legend"),
      ).toMatch(
        /tincan\.service[\s\S]*groupvpn@\.service[\s\S]*socialvpn@\.service|groupvpn@\.service[\s\S]*socialvpn@\.service[\s\S]*tincan\.service/,
      );
    }, 180_000);

    it("tincan.service comes up as user tincan with CAP_NET_ADMIN only; the token is 0640 tincan:tincan", async () => {
      await startUnit("tincan", "ready");
      expect(await isActive("tincan")).toBe("active");
      const status = await must(`cat /proc/${await mainPid("tincan")}/status`);
      const field = (name: string) => new RegExp(`^${name}:\\s+(.*)$`, "m").exec(status)?.[1]?.trim();
      console.log(
        `systemd: datapath Uid ${field("Uid")} CapEff ${field("CapEff")} CapBnd ${field("CapBnd")} CapAmb ${field("CapAmb")} NoNewPrivs ${field("NoNewPrivs")}`,
      );
      const uid = (await must("id -u tincan")).trim();
      expect(field("Uid")?.split(/\s+/)).toEqual([uid, uid, uid, uid]);
      expect(field("CapEff")).toBe(NET_ADMIN_ONLY);
      expect(field("CapPrm")).toBe(NET_ADMIN_ONLY);
      expect(field("CapBnd")).toBe(NET_ADMIN_ONLY);
      expect(field("NoNewPrivs")).toBe("1");
      expect((await must("stat -c '%U:%G %a' /run/tincan/tincan.token")).trim()).toBe("tincan:tincan 640");
    }, 60_000);

    it("groupvpn@lab comes up active, logs in to prosody and configures the vNIC", async () => {
      await installConfig("lab.json", groupvpnConfig());
      await timed("groupvpn@lab online", () => startUnit("groupvpn@lab", "xmpp online"));
      expect(await isActive("groupvpn@lab")).toBe("active");
      const controller = await must(`cat /proc/${await mainPid("groupvpn@lab")}/status`);
      expect(/^CapEff:\s+(\S+)$/m.exec(controller)?.[1]).toBe("0000000000000000");
      expect(await must("ip -o addr show dev tincan0")).toContain("10.10.0.5/16");
      // The unprivileged user reads the token through tokenGroup (tincan).
      expect(await must("runuser -u tincan -- tincanctl status")).toContain("alice@vpn.test");
    }, 120_000);

    it("restart and stop leave nothing behind: one datapath after a restart, none and no vNIC after stop", async () => {
      await must("systemctl restart tincan.service");
      await waitFor(
        "groupvpn@lab to follow the restart (Requires=) and log in again",
        async () => (await isActive("tincan")) === "active" && (await isActive("groupvpn@lab")) === "active",
        60_000,
      );
      await waitFor("the vNIC to be back", async () => (await sh("ip link show tincan0")).code === 0, 60_000);
      expect((await must("pgrep -c -u tincan -f 'datapath/dist/cli.js'")).trim()).toBe("1");
      await must("systemctl stop tincan.service");
      expect(await isActive("groupvpn@lab"), "Requires=: the controller stops with its datapath").toBe(
        "inactive",
      );
      expect(await isActive("tincan")).toBe("inactive");
      expect((await sh("pgrep -u tincan")).stdout.trim(), "processes of user tincan").toBe("");
      expect((await sh("ip link show tincan0")).code, "tincan0 still exists").not.toBe(0);
      expect((await sh("ss -Hlnu 'sport = :5800'")).stdout.trim(), "the RPC port still bound").toBe("");
    }, 120_000);

    it("dns.resolved: <buddy>.svpn resolves through systemd-resolved (per-link server on the vNIC address), withdrawn on stop", async () => {
      await installConfig("svpn.json", socialvpnConfig());
      // bob is offline here: his address comes from a device of his the state file already knows
      // (addresses are per device; `<buddy>.svpn` answers with the known devices while none is online).
      const bob = "172.31.0.7";
      const seed = JSON.stringify({ version: 2, devices: { "bob@vpn.test/desk": bob } });
      await must(
        `printf '%s' '${seed}' > /var/lib/tincan/svpn-state.json && chown tincan:tincan /var/lib/tincan/svpn-state.json`,
      );
      expect(await isActive("systemd-resolved")).toBe("active");
      await timed("socialvpn@svpn names registered", () =>
        showingJournal(["socialvpn@svpn", "tincan"], () =>
          // Starts tincan.service too (Requires=).
          startUnit("socialvpn@svpn", "names registered with systemd-resolved"),
        ),
      );
      const link = await must("resolvectl dns tincan0; resolvectl domain tincan0");
      console.log(`systemd: resolved's view of the vNIC: ${link.replace(/\n/g, "; ")}`);
      expect(link).toContain("172.31.0.1:5353");
      expect(link).toContain("~svpn");
      let query = "";
      await waitFor(
        "resolvectl query bob.svpn",
        async () => {
          query = (await sh("resolvectl query --cache=no bob.svpn")).stdout;
          return query.includes(bob);
        },
        30_000,
      );
      console.log(`systemd: ${query.trim().replace(/\n/g, "; ")}`);
      expect(query, "answered through the vNIC's server").toContain("link: tincan0");
      // What programs see: glibc through nss-resolve.
      expect(await must("getent ahostsv4 bob.svpn")).toContain(bob);
      // The responder at dns.listen still answers (dig @127.0.0.53 -p 5353 works without resolved).
      expect(await must("ss -Hlnu 'sport = :5353'")).toContain("127.0.0.53:5353");

      // A crashed datapath (restarted by Restart=on-failure, the controller stays) makes a new vNIC,
      // which resolved knows nothing of: the controller's re-sync registers it again.
      const registered = async () => (await journal("tincan")).split("vnic dns registered").length - 1;
      expect(await registered()).toBe(1);
      await must("systemctl kill --signal=SIGKILL tincan.service");
      await timed("names back after a datapath crash", async () => {
        await waitFor(
          "the restarted datapath to register the names again",
          async () => (await registered()) === 2,
          60_000,
        );
        await waitFor(
          "bob.svpn to resolve again",
          async () => (await sh("resolvectl query --cache=no bob.svpn")).stdout.includes(bob),
          30_000,
        );
      });
      expect(await isActive("socialvpn@svpn"), "the controller outlives the datapath's crash").toBe("active");

      await must("systemctl stop socialvpn@svpn.service");
      expect(await must("resolvectl dns tincan0; true"), "the server after socialvpn stopped").not.toContain(
        "172.31.0.1",
      );
      expect((await sh("resolvectl query --cache=no bob.svpn")).code).not.toBe(0);
      await must("systemctl stop tincan.service");
    }, 180_000);

    it("dpkg -r removes the package's files and keeps the configs; --purge removes them and the state", async () => {
      await must("dpkg -r tincan", 120_000);
      const files = "/usr/bin/tincan /usr/bin/groupvpn /usr/lib/tincan /lib/systemd/system/tincan.service";
      expect(
        await must(`for f in ${files}; do test -e $f && echo $f; done; true`),
        "left after dpkg -r",
      ).toBe("");
      expect(await must("ls /etc/tincan")).toContain("tincan.json");
      expect(await must("systemctl list-unit-files 'tincan*' --no-legend; true")).not.toContain(
        "tincan.service",
      );
      await must("dpkg --purge tincan", 120_000);
      expect((await sh("test -e /var/lib/tincan")).code, "/var/lib/tincan after purge").not.toBe(0);
      expect((await sh("ls /etc/tincan")).stdout).not.toContain("tincan.json");
      expect((await sh("dpkg -s tincan")).code, "dpkg still knows the package").not.toBe(0);
      // Debian policy: the system user stays (its uid may own files elsewhere); postrm says so.
      expect((await sh("getent passwd tincan")).code).toBe(0);
    }, 180_000);
  },
);
