// The release artifact: scripts/build-deb.sh builds the .deb, which is unpacked into a clean root
// (dpkg -x) and used as installed: the binaries answer --version/--help/--check-config, the units
// pass `systemd-analyze verify`, and two GroupVPN nodes made of the INSTALLED binaries ping each
// other through the VPN, with the datapath as an unprivileged user holding only CAP_NET_ADMIN (as
// tincan.service runs it) and the controllers as other users of its tokenGroup.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execIn, Lab, type ProsodyHandle, runIn } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const hasDpkg = hasCommand("dpkg-deb");

// Ids with no passwd entry, so nothing on the host is touched: the datapath's user, the token
// group, a controller in that group, and a user outside it.
const DATAPATH_UID = 64_100;
const TOKEN_GID = 64_101;
const MEMBER_UID = 64_102;
const OUTSIDER_UID = 64_103;

/** setpriv argv that runs as `uid` with `groups`, optionally keeping CAP_NET_ADMIN as an ambient capability. */
function as(uid: number, groups: number[], netAdmin = false): string[] {
  return [
    "setpriv",
    `--reuid=${uid}`,
    `--regid=${uid}`,
    groups.length > 0 ? `--groups=${groups.join(",")}` : "--clear-groups",
    ...(netAdmin ? ["--inh-caps=+net_admin", "--ambient-caps=+net_admin"] : []),
    "--",
  ];
}

/** Runs a command to completion whatever its exit code (test/lab execIn, in this namespace). */
const exec = (argv: string[], timeoutMs = 60_000) => execIn(undefined, argv, { timeoutMs });
/** Runs a command and gives its stdout; throws on a non-zero exit. */
const run = (argv: string[]) => runIn(undefined, argv);

describe.skipIf(!can.ok || !hasDpkg)("the Debian package, installed into a clean root", () => {
  let work: string;
  let deb: string;
  let root: string;
  const bin = (name: string) => join(root, "usr/bin", name);

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "tincan-deb-test-"));
    chmodSync(work, 0o755);
    const started = Date.now();
    const build = await exec(["bash", join(REPO, "scripts/build-deb.sh"), join(work, "out")], 280_000);
    expect(build.stderr).toBe("");
    expect(build.code).toBe(0);
    deb = build.stdout.trim().split("\n").at(-1) as string;
    console.log(
      `build-deb.sh: ${((Date.now() - started) / 1000).toFixed(1)} s; ${build.stdout.trim().split("\n")[0]}`,
    );
    root = join(work, "root");
    const unpacked = Date.now();
    await run(["dpkg", "-x", deb, root]);
    chmodSync(root, 0o755);
    console.log(`dpkg -x: ${((Date.now() - unpacked) / 1000).toFixed(1)} s`);
  }, 300_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("holds the binaries, units, conffiles and both native binaries, and no sources", async () => {
    const info = await run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"]);
    expect(info).toMatch(/^Package: tincan$/m);
    expect(info).toMatch(/^Depends: nodejs \(>= 20\)/m);
    const files = await run(["dpkg-deb", "-c", deb]);
    for (const f of [
      "./usr/bin/tincan",
      "./usr/bin/tincanctl",
      "./usr/bin/groupvpn",
      "./usr/bin/socialvpn",
      "./usr/lib/systemd/system/tincan.service",
      "./usr/lib/systemd/system/groupvpn@.service",
      "./usr/lib/systemd/system/socialvpn@.service",
      "./usr/share/polkit-1/rules.d/50-tincan.rules",
      "./etc/tincan/tincan.json",
      "./usr/share/doc/tincan/deploy.md",
      "/build/Release/tuntap.node",
      "/node_datachannel.node",
    ])
      expect(files).toContain(f);
    // Our packages ship dist/ only (some dependencies run from their src/); no build leftovers or dev tools.
    expect(files).not.toMatch(/\.ts$|\.map$|@tincan\/[a-z]+\/src\/|obj\.target|node-gyp|vitest|typescript/m);
    const control = join(work, "control");
    await run(["dpkg-deb", "-e", deb, control]);
    expect(readFileSync(join(control, "conffiles"), "utf8").trim().split("\n").sort()).toEqual([
      "/etc/tincan/groupvpn.json",
      "/etc/tincan/socialvpn.json",
      "/etc/tincan/tincan.json",
    ]);
    expect(readFileSync(join(control, "postinst"), "utf8")).toMatch(/useradd --system --gid tincan/);
  });

  it("every installed binary answers --version, -h and a bad flag the same way", async () => {
    const version = (await run(["dpkg-deb", "-f", deb, "Version"])).trim();
    for (const name of ["tincan", "tincanctl", "groupvpn", "socialvpn"]) {
      expect((await exec([bin(name), "--version"])).stdout).toBe(`${name} ${version}\n`);
      const help = await exec([bin(name), "-h"]);
      expect([help.code, help.stdout]).toEqual([0, expect.stringMatching(new RegExp(`^Usage: ${name} `))]);
      expect(help.stdout).toMatch(/-V, --version/);
      const bad = await exec([bin(name), "--no-such-flag"]);
      expect([bad.code, bad.stderr]).toEqual([
        2,
        expect.stringMatching(
          new RegExp(`^${name}: Unknown option '--no-such-flag'.*\nTry '${name} --help'[.]\n$`),
        ),
      ]);
    }
  });

  it("the wrapper says which Node.js it needs when there is none", async () => {
    const r = await exec(["env", "TINCAN_NODE=/nonexistent/node", bin("tincan"), "--version"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tincan: Node\.js >= 20 is needed and '\/nonexistent\/node' was not found/);
  });

  it("the shipped samples pass --check-config once the files the guide names are created", async () => {
    // docs/deploy.md, "Configure": the same steps, under a copy of /etc/tincan.
    const etc = join(work, "etc-tincan");
    mkdirSync(etc);
    for (const f of ["tincan.json", "groupvpn.json", "socialvpn.json"])
      copyFileSync(join(root, "etc/tincan", f), join(etc, f));
    const groupvpn = join(etc, "groupvpn.json");
    const before = await exec([bin("groupvpn"), "--config", groupvpn, "--check-config"]);
    expect(before.code).toBe(2);
    expect(before.stderr).toMatch(
      /^groupvpn: .*groupvpn\.json: xmpp\.passwordFile: cannot read .*alice\.password: ENOENT/,
    );
    await exec([
      "sh",
      "-c",
      `printf '%s\\n' 'the XMPP password' | install -m 0600 /dev/stdin ${etc}/alice.password`,
    ]);
    await exec([
      "sh",
      "-c",
      `printf '%s\\n' 'the TURN password' | install -m 0600 /dev/stdin ${etc}/turn.secret`,
    ]);
    const ok = await exec([bin("groupvpn"), "--config", groupvpn, "--check-config"]);
    expect([ok.code, ok.stderr]).toEqual([0, ""]);
    const effective = JSON.parse(ok.stdout);
    expect(effective.xmpp.password).toBe("(hidden)");
    expect(ok.stdout).not.toContain("the XMPP password");
    expect(effective.links.setupTimeoutSec).toBe(10); // defaults are filled in
    const social = await exec([bin("socialvpn"), "--config", join(etc, "socialvpn.json"), "--check-config"]);
    expect(social.code).toBe(0);
    expect(JSON.parse(social.stdout).stateFile).toBe("/var/lib/tincan/socialvpn-state.json"); // we are root
    // tincan.json names the group the package creates; on this host it does not exist.
    const tincan = await exec([bin("tincan"), "--config", join(etc, "tincan.json"), "--check-config"]);
    if ((await exec(["getent", "group", "tincan"])).code === 0) expect(tincan.code).toBe(0);
    else
      expect(tincan.stderr).toMatch(/^tincan: .*tincan\.json: tokenGroup: no group "tincan" on this system/);

    // Bad input: exit 2 with the field named.
    const bad = JSON.parse(readFileSync(groupvpn, "utf8"));
    bad.vnic.ipv4 = "10.10.0.0/16";
    writeFileSync(groupvpn, JSON.stringify(bad));
    const network = await exec([bin("groupvpn"), "--config", groupvpn, "--check-config"]);
    expect([network.code, network.stderr]).toEqual([
      2,
      expect.stringMatching(
        /vnic\.ipv4: the own address must not be the network or broadcast address of the subnet\n$/,
      ),
    ]);
    const svpn = JSON.parse(readFileSync(join(etc, "socialvpn.json"), "utf8"));
    svpn.dns.listen = "localhost:5353";
    writeFileSync(join(etc, "socialvpn.json"), JSON.stringify(svpn));
    const listen = await exec([bin("socialvpn"), "--config", join(etc, "socialvpn.json"), "--check-config"]);
    expect([listen.code, listen.stderr]).toEqual([
      2,
      expect.stringMatching(/dns\.listen: must be "ip:port" with an IPv4 address, not a host name\n$/),
    ]);
  });

  it.skipIf(!hasCommand("systemd-analyze"))("the systemd units pass systemd-analyze verify", async () => {
    // verify resolves the units' dependencies (sysinit.target...) and ExecStart= inside --root:
    // give the unpacked root the host's system units beside ours.
    const units = join(root, "usr/lib/systemd/system");
    await run(["cp", "-an", "/lib/systemd/system/.", `${units}/`]);
    const ours = ["tincan.service", "groupvpn@.service", "socialvpn@.service"].map((u) => join(units, u));
    const verify = await exec(["systemd-analyze", "verify", `--root=${root}`, ...ours]);
    // Any output is a finding (an unknown key is only a warning on stderr, exit 0).
    expect([verify.code, verify.stdout, verify.stderr]).toEqual([0, "", ""]);
    for (const unit of ["tincan.service", "groupvpn@.service"]) {
      const security = await exec([
        "systemd-analyze",
        "security",
        `--root=${root}`,
        "--offline=yes",
        join(units, unit),
      ]);
      console.log(`${unit}: ${security.stdout.trim().split("\n").at(-1)}`);
    }
  });

  describe("two GroupVPN nodes of installed binaries in the lab", () => {
    let lab: Lab;
    let prosody: ProsodyHandle;
    const nodes: VpnNode[] = [];

    beforeAll(async () => {
      lab = await Lab.create({ prefix: "deb" });
      prosody = await lab.startProsody({
        users: labUsers(["alice", "bob"]),
        groups: { lab: ["alice", "bob"] },
      });
      // The other users must reach the CA certificate and their configs in the lab dir.
      for (const d of [lab.dir, dirname(dirname(prosody.caFile)), dirname(prosody.caFile)])
        chmodSync(d, 0o711);
      chmodSync(prosody.caFile, 0o644);
      // As the datapath runs in tincan.service: its own user, CAP_NET_ADMIN only, a config with tokenGroup.
      const tincanConfig = join(lab.dir, "tincan.json");
      writeFileSync(tincanConfig, JSON.stringify({ tokenGroup: String(TOKEN_GID) }));
      chmodSync(tincanConfig, 0o644);
      // Debian's /dev/net/tun is 0666 (CAP_NET_ADMIN, not the file mode, guards it); where it is not,
      // the datapath gets a 0666 node of the same device bind-mounted in the mount namespace that
      // `ip netns exec` made for it (the host's node stays as it is).
      const tunOpen = (statSync("/dev/net/tun").mode & 0o006) === 0o006;
      const tunNode = join(work, "tun");
      if (!tunOpen) await run(["mknod", "-m", "0666", tunNode, "c", "10", "200"]);
      const withTun = tunOpen ? [] : ["sh", "-c", 'mount --bind "$0" /dev/net/tun && exec "$@"', tunNode];
      nodes.push(
        ...(await addGroupNodes(lab, prosody, ["alice", "bob"], "10.10.8", {
          links: { policy: "proactive" },
          commands: {
            tincan: [
              ...withTun,
              ...as(DATAPATH_UID, [TOKEN_GID], true),
              bin("tincan"),
              "--config",
              tincanConfig,
            ],
            controller: [...as(MEMBER_UID, [TOKEN_GID]), bin("groupvpn")],
            tincanctl: [...as(MEMBER_UID + 10, [TOKEN_GID]), bin("tincanctl")],
          },
        })),
      );
      mkdirSync(join(lab.dir, "nodes"), { recursive: true });
      chmodSync(join(lab.dir, "nodes"), 0o711);
      for (const n of nodes) {
        // The token's directory as RuntimeDirectory= makes it: the datapath user's, 0750, group readable.
        const dir = dirname(n.tokenFile);
        chownSync(dir, DATAPATH_UID, TOKEN_GID);
        chmodSync(dir, 0o750);
      }
    }, 60_000);

    afterAll(async () => {
      for (const n of nodes) await n.stop().catch(() => {});
      await lab?.destroy();
    });

    it("ping each other through the VPN; tincanctl of a group member shows the link", async () => {
      const started = Date.now();
      for (const n of nodes) n.writeConfig();
      for (const n of nodes) chmodSync(n.configFile, 0o640);
      for (const n of nodes) chownSync(n.configFile, 0, TOKEN_GID);
      await Promise.all(nodes.map((n) => n.start()));
      const [alice, bob] = nodes as [VpnNode, VpnNode];
      console.log(`installed nodes running ${((Date.now() - started) / 1000).toFixed(1)} s after start`);
      // The token as tincan wrote it: the datapath user's, group-readable by tokenGroup only.
      const st = (await run(["stat", "-c", "%u %g %a", alice.tokenFile])).trim();
      expect(st).toBe(`${DATAPATH_UID} ${TOKEN_GID} 640`);
      expect(alice.tincan.log()).toMatch(new RegExp(`"tokenGroup":"${TOKEN_GID}"`));
      const pinged = Date.now();
      await waitFor(
        "alice pings bob through the VPN",
        async () => (await alice.ping(bob.address, 1, 1)).code === 0,
        30_000,
      );
      console.log(
        `first ping alice -> bob answered ${((Date.now() - pinged) / 1000).toFixed(1)} s after the controllers ran`,
      );
      expect((await bob.ping(alice.address, 3, 2)).code).toBe(0);
      await waitFor(
        "alice's tincanctl shows a connected link",
        async () => (await alice.connectedLinks()).length === 1,
      );
    });

    it("a user outside tokenGroup gets a clear error from tincanctl and from a controller", async () => {
      const [alice] = nodes as [VpnNode];
      const ctl = await alice.host.exec([
        ...as(OUTSIDER_UID, []),
        bin("tincanctl"),
        "status",
        "--token-file",
        alice.tokenFile,
      ]);
      expect(ctl.code).toBe(1);
      expect(ctl.stderr).toMatch(
        /^tincanctl: cannot read the datapath token file .*tincan\.token: permission denied \(its directory is not searchable by us; we are uid 64103, groups 64103\): .*member of the group set as tokenGroup/,
      );
      // A controller of a user outside the group, with a config it can read: it says why it cannot
      // reach the datapath, and keeps retrying (the group may be fixed while it runs).
      const config = join(lab.dir, "outsider.json");
      copyFileSync(alice.configFile, config);
      chmodSync(config, 0o644);
      const outsider = alice.host.spawn(
        "setpriv",
        [...as(OUTSIDER_UID, []).slice(1), bin("groupvpn"), "--config", config],
        {
          name: "outsider",
        },
      );
      try {
        await waitFor(
          "the outsider's controller to explain",
          () => /permission denied/.test(outsider.log()),
          20_000,
        );
        expect(outsider.log()).toMatch(
          /cannot read the datapath token file .*permission denied .*tokenGroup/,
        );
        expect(outsider.exited).toBeFalsy();
      } finally {
        await outsider.stop(2000).catch(() => {});
      }
    });
  });
});

function hasCommand(name: string): boolean {
  try {
    execFileSync(name, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
