// System test: a real tincan under hostile local input. Raw datagrams to its RPC port (a nested id,
// JSON-RPC batches, a 10k garbage flood), more links than its cap, more than one datagram of
// link.query, and attacks on the files it writes (planted symlinks and files, unsafe directories).

import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { uidForIpv4 } from "@tincan/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Host, Lab } from "./lab/index.js";
import { DAEMON_NODE_FLAGS, DatapathHandle, REPO, TINCAN_BIN, waitFor } from "./support/datapath-driver.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const can = Lab.canRun();
const PROBE = join(REPO, "test/support/rpc-probe.mjs");
const TINCANCTL = join(REPO, "packages/controller/dist/tincanctl.js");
const MAX_LINKS = 300;

/** Sends raw datagrams from inside the host to its datapath; the reply text (or null) of each. */
async function sendRaw(
  host: Host,
  addr: string,
  ...datagrams: (string | Buffer)[]
): Promise<(string | null)[]> {
  const b64 = datagrams.map((d) => Buffer.from(d).toString("base64"));
  const r = await host.exec(["node", PROBE, "send", addr, ...b64]);
  if (r.code !== 0) throw new Error(`rpc-probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout).replies;
}

const rssKb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
/** Lines of a log that match. */
const lines = (log: string, re: RegExp) => log.split("\n").filter((l) => re.test(l)).length;

describe.skipIf(!can.ok)("tincan under hostile local input", () => {
  let lab: Lab;
  let a: DatapathHandle;
  let b: Host;

  beforeAll(async () => {
    const pair = await Lab.pair({ prefix: "hi" });
    lab = pair.lab;
    b = pair.b;
    const config = join(lab.dir, "a-tincan.json");
    writeFileSync(config, JSON.stringify({ maxLinks: MAX_LINKS }));
    a = await DatapathHandle.start(lab, pair.a, { args: ["--config", config] });
    await a.configure(uidForIpv4("10.77.0.1"), "10.77.0.1/24");
  });

  afterAll(async () => {
    await a?.stop();
    await lab?.destroy();
  });

  it("answers a 12 KB request whose id is 6000 nested arrays with Invalid Request, and lives on", async () => {
    const id = `${"[".repeat(6000)}${"]".repeat(6000)}`;
    const datagram = `{"jsonrpc":"2.0","id":${id},"method":"route.query","params":{}}`;
    const t0 = Date.now();
    const [reply] = await sendRaw(a.host, "127.0.0.1:5800", datagram);
    const ms = Date.now() - t0;
    console.log(
      `nested id: ${datagram.length} bytes -> ${reply} (${ms} ms); datapath alive: ${!a.proc.exited}`,
    );
    expect(JSON.parse(reply ?? "null")).toMatchObject({ id: null, error: { code: -32600 } });
    expect(a.proc.exited).toBe(false);
    expect(await a.call("route.query")).toEqual([]);
  });

  it("follows JSON-RPC 2.0 for batches and logs bad ones rate-limited", async () => {
    const before = lines(a.proc.log(), /bad rpc requests/);
    const [withNull, empty, big] = await sendRaw(
      a.host,
      "127.0.0.1:5800",
      "[null]",
      "[]",
      JSON.stringify(Array(33).fill({ jsonrpc: "2.0", id: 1, method: "hello" })),
    );
    console.log(`batch [null] -> ${withNull}\nbatch [] -> ${empty}\nbatch of 33 -> ${big}`);
    expect(JSON.parse(withNull ?? "null")).toMatchObject([{ id: null, error: { code: -32600 } }]);
    expect(JSON.parse(empty ?? "null")).toMatchObject({ id: null, error: { code: -32600 } });
    expect(JSON.parse(big ?? "null")).toMatchObject({ id: null, error: { code: -32600 } });
    const replies = await sendRaw(a.host, "127.0.0.1:5800", ...Array(100).fill("[null, 1, []]"));
    expect(replies.every((r) => JSON.parse(r ?? "[]").length === 3)).toBe(true);
    const logged = lines(a.proc.log(), /bad rpc requests/) - before;
    console.log(`103 bad batches: ${replies.length} replies, ${logged} log line(s)`);
    expect(logged).toBeLessThanOrEqual(2);
  });

  it("keeps answering a legit RPC during a flood of 10,000 garbage datagrams", async () => {
    const pid = a.proc.pid;
    const rssBefore = rssKb(pid);
    const logBefore = lines(a.proc.log(), /rpc/);
    const r = await a.host.exec(["node", PROBE, "flood", "127.0.0.1:5800", "10000", a.tokenFile]);
    const f = JSON.parse(r.stdout);
    const logged = lines(a.proc.log(), /rpc/) - logBefore;
    console.log(
      `flood: ${f.garbage} garbage datagrams in ${f.floodMs} ms, ${f.garbageReplies} error replies, ${f.kernelDrops} ` +
        `dropped by full socket buffers; legit route.query ` +
        `${f.legitAnswered}/${f.legitSent} answered, p50 ${f.p50Ms} ms, max ${f.maxMs} ms; ` +
        `RSS ${Math.round(rssBefore / 1024)} -> ${Math.round(rssKb(pid) / 1024)} MB; ${logged} log line(s)`,
    );
    expect(a.proc.exited).toBe(false);
    // Legit requests share the full receive buffer with the flood (a controller retries them).
    expect(f.legitAnswered).toBeGreaterThanOrEqual(f.legitSent * 0.5);
    expect(logged).toBeLessThanOrEqual(4);
    expect(await a.call("route.query")).toEqual([]);
  });

  it(`refuses links beyond maxLinks (${MAX_LINKS}) and pages link.query over them`, async () => {
    const t0 = Date.now();
    for (let i = 0; i < MAX_LINKS; i++) {
      await a.call("link.create", { peerUid: uidForIpv4(`10.78.${i >> 8}.${i & 255}`) });
    }
    const createMs = Date.now() - t0;
    const over = await a.raw("link.create", { peerUid: uidForIpv4("10.79.0.1") });
    const whole = await a.raw("link.query");
    const seen = new Set<string>();
    const sizes: number[] = [];
    for (let offset = 0; ; ) {
      const page = await a.call("link.query", { offset, limit: 1000 });
      if (page.length === 0) break;
      sizes.push(JSON.stringify({ jsonrpc: "2.0", id: 1, result: page }).length);
      for (const l of page) seen.add(l.peerUid);
      offset += page.length;
    }
    // tincanctl (the controller's queryAll) lists them all too.
    const ctl = await a.host.exec(["node", TINCANCTL, "status", "--json", "--token-file", a.tokenFile]);
    const ctlLinks = ctl.code === 0 ? JSON.parse(ctl.stdout).links.length : ctl.stderr;
    console.log(
      `${MAX_LINKS} links created in ${createMs} ms (fds ${fdCount(a.proc.pid)}); link ${MAX_LINKS + 1}: ${over.error?.code} ${over.error?.message}\n` +
        `link.query unpaged: ${whole.error?.code} ${whole.error?.message}\n` +
        `paged: ${sizes.length} pages of ${sizes.join(", ")} bytes, ${seen.size} links; tincanctl status --json: ${ctlLinks} links`,
    );
    expect(over.error?.code).toBe(-32011);
    expect(whole.error?.code).toBe(-32012);
    expect(seen.size).toBe(MAX_LINKS);
    expect(sizes.length).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(60_000);
    expect(ctlLinks).toBe(MAX_LINKS);
  }, 120_000);

  describe("files", () => {
    /** Starts tincan on host b with its token in `dir` on another port; resolves when it is ready or gone. */
    async function startB(dir: string, name: string) {
      const tokenFile = join(dir, "tincan.token");
      const proc = b.spawn(
        "node",
        [...DAEMON_NODE_FLAGS, TINCAN_BIN, "--token-file", tokenFile, "--rpc", "127.0.0.1:5900"],
        {
          name,
        },
      );
      await waitFor(`tincan ${name}`, () => proc.exited || proc.log().includes(" ready "));
      return { proc, tokenFile };
    }

    it("replaces a planted symlink at the endpoint file instead of writing through it", async () => {
      const dir = join(lab.dir, "ep-symlink");
      mkdirSync(dir, { mode: 0o700 });
      const victim = join(lab.dir, "victim-endpoint");
      writeFileSync(victim, "precious\n");
      symlinkSync(victim, join(dir, "tincan.token.controller"));
      const h = await DatapathHandle.start(lab, b, {
        tokenFile: join(dir, "tincan.token"),
        args: ["--rpc", "127.0.0.1:5800"],
      });
      try {
        const endpointFile = join(dir, "tincan.token.controller");
        await waitFor("endpoint file written", () => !lstatSync(endpointFile).isSymbolicLink());
        const warned = /ignoring the endpoint file .*is a symlink/.test(h.proc.log());
        console.log(
          `symlink at the endpoint file: victim ${JSON.stringify(readFileSync(victim, "utf8"))}, endpoint file now a ` +
            `regular file mode ${(statSync(endpointFile).mode & 0o777).toString(8)}: ${readFileSync(endpointFile, "utf8")}; warned at start: ${warned}`,
        );
        expect(readFileSync(victim, "utf8")).toBe("precious\n");
        expect(statSync(endpointFile).mode & 0o777).toBe(0o600);
        expect(warned).toBe(true);
      } finally {
        await h.stop();
      }
    });

    it("never writes the token through a planted symlink or file at a guessed temp name", async () => {
      const dir = join(lab.dir, "tmp-guess");
      mkdirSync(dir, { mode: 0o700 });
      const victim = join(lab.dir, "victim-token");
      writeFileSync(victim, "precious\n");
      const last = Number(readFileSync("/proc/sys/kernel/ns_last_pid", "utf8"));
      const guesses = 300;
      for (let pid = last + 1; pid <= last + guesses; pid++) {
        if (pid % 2) symlinkSync(victim, join(dir, `tincan.token.${pid}.tmp`));
        else writeFileSync(join(dir, `tincan.token.${pid}.tmp`), "planted\n", { mode: 0o666 });
      }
      const { proc, tokenFile } = await startB(dir, "tincan-guess");
      try {
        const token = readFileSync(tokenFile, "utf8").trim();
        const leaked = readFileSync(victim, "utf8").includes(token);
        const st = statSync(tokenFile);
        console.log(
          `${guesses} symlinks/files planted at guessed temp names (pid ${proc.pid}): token leaked: ${leaked}; token file mode ` +
            `${(st.mode & 0o777).toString(8)} uid ${st.uid}`,
        );
        expect(proc.exited).toBe(false);
        expect(leaked).toBe(false);
        expect(st.mode & 0o777).toBe(0o600);
        expect(st.uid).toBe(process.getuid?.());
      } finally {
        await proc.stop();
      }
    });

    it("starts with a warning, not a crash, when the endpoint file holds garbage", async () => {
      const cases: [string, string][] = [
        ["empty", ""],
        ["garbage", "{\u0000not json"],
        ["another port of a foreign host", JSON.stringify({ host: "127.0.0.9", port: 22 })],
      ];
      for (const [what, content] of cases) {
        const dir = join(lab.dir, `ep-${what.replace(/ /g, "-")}`);
        mkdirSync(dir, { mode: 0o700 });
        writeFileSync(join(dir, "tincan.token.controller"), content, { mode: 0o600 });
        const { proc } = await startB(dir, `tincan-ep-${what.split(" ")[0]}`);
        const warning =
          proc
            .log()
            .split("\n")
            .find((l) => l.includes("ignoring the endpoint file")) ?? "";
        console.log(`${what} endpoint file: started ${!proc.exited}; ${warning.trim()}`);
        expect(proc.exited).toBe(false);
        expect(warning).toMatch(/datapath.started not sent/);
        await proc.stop();
      }
    });

    it("refuses (exit 2) a token directory writable by others or owned by another user", async () => {
      const ww = join(lab.dir, "world-writable");
      mkdirSync(ww);
      chmodSync(ww, 0o777);
      const foreign = join(lab.dir, "foreign");
      mkdirSync(foreign, { mode: 0o755 });
      chownSync(foreign, 4242, 4242);
      for (const dir of [ww, foreign]) {
        const { proc, tokenFile } = await startB(dir, `tincan-${dir.endsWith("foreign") ? "foreign" : "ww"}`);
        const exit = await proc.wait();
        const message = proc.log().trim().split("\n").at(-1);
        console.log(`token dir ${dir}: exit ${exit.code}: ${message}`);
        expect(exit.code).toBe(2);
        expect(message).toMatch(/refusing to write the token/);
        expect(() => statSync(tokenFile)).toThrow();
      }
    });
  });
});

describe.skipIf(!can.ok)("a hung datapath and the controller's watchdog", () => {
  let lab: Lab;
  let alice: VpnNode;
  let bob: VpnNode;
  const WATCHDOG_SEC = 3;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "hiw" });
    const names = ["alice", "bob"];
    const prosody = await lab.startProsody({ users: labUsers(names), groups: { lab: names } });
    [alice, bob] = (await addGroupNodes(lab, prosody, names, "10.10.7", {
      links: { policy: "proactive" },
    })) as [VpnNode, VpnNode];
    alice.opts.extra = {
      datapath: {
        rpc: "127.0.0.1:5800",
        tokenFile: alice.tokenFile,
        watchdogSec: WATCHDOG_SEC,
        restartOnHang: true,
      },
    };
    await Promise.all([alice.start(), bob.start()]);
    await waitFor("alice reaches bob", async () => (await alice.ping(bob.address)).code === 0, 30_000);
  }, 120_000);

  afterAll(async () => {
    await alice?.stop().catch(() => {});
    await bob?.stop().catch(() => {});
    await lab?.destroy();
  });

  it("notices a datapath that stops answering, shows it, ends it by PID; the restarted one is re-configured", async () => {
    const t0 = Date.now();
    alice.tincan.signal("SIGSTOP"); // alive but answering nothing, as in the hang seen once
    const [warning] = await alice.controller.waitForLog(/datapath unresponsive.*/, 30_000);
    const detectedSec = (Date.now() - t0) / 1000;
    const killed = await alice.tincan.wait(); // ended by the controller, not by us
    const killedSec = (Date.now() - t0) / 1000;
    const ctl = await alice.host.exec([
      "node",
      join(REPO, "packages/controller/dist/tincanctl.js"),
      "status",
      "--token-file",
      alice.tokenFile,
    ]);
    await alice.startDatapath(); // the supervisor's part (systemd Restart=)
    await waitFor("alice reaches bob again", async () => (await alice.ping(bob.address)).code === 0, 30_000);
    const backSec = (Date.now() - t0) / 1000;
    console.log(
      `watchdog ${WATCHDOG_SEC} s: hang noticed after ${detectedSec.toFixed(1)} s: ${warning}\n` +
        `datapath ended by the controller (${killed.signal}) at ${killedSec.toFixed(1)} s; tincanctl status meanwhile: ` +
        `exit ${ctl.code}: ${ctl.stderr.trim().replace(/\n/g, " / ")}\n` +
        `restarted datapath re-configured, alice reaches bob again ${backSec.toFixed(1)} s after the hang began`,
    );
    expect(killed.signal).toBe("SIGKILL");
    expect(ctl.stderr).toMatch(/datapath UNRESPONSIVE: groupvpn got no answer to its RPCs for \d+ s/);
    expect(alice.controller.log()).toMatch(/datapath answers again|datapath restarted/);
  }, 120_000);
});
