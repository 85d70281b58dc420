// prosody and ejabberd (XMPP) and coturn (STUN/TURN) as private, foreground instances inside a lab
// namespace. Each gets its own config dir under the lab dir; nothing under /etc or /var is touched.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Lab, Netns } from "./lab.js";
import { favourCpu, type LabProcess, runIn, tail, waitFor } from "./proc.js";

/** Where a server runs: the lab's internet namespace or a host on it (anything with an address). */
export type ServerPlace = Netns & { readonly ip: string };

export interface XmppUser {
  name: string;
  password: string;
}

export interface XmppServerOptions {
  /** XMPP domain (virtual host and certificate CN/SAN). Default "lab.local". */
  domain?: string;
  users?: XmppUser[];
  /** Shared roster groups: group name -> user names (local parts). Members see each other. */
  groups?: Record<string, string[]>;
  /** Where to run. Default: the lab's internet namespace (100.64.0.1). */
  host?: ServerPlace;
  /** c2s port. Default 5222. */
  port?: number;
  /** Name of the config dir under the lab dir. Default: the server's name. */
  dirName?: string;
}

export interface ProsodyOptions extends XmppServerOptions {
  /** Prosody log level for the log file. Default "info" ("debug" logs every stanza). */
  logLevel?: "debug" | "info" | "warn";
  /** More modules for the virtual host (on top of docker/prosody/common.cfg.lua's), e.g. "mam". */
  modules?: string[];
}

/** What controllers and test clients need of a lab XMPP server (prosody or ejabberd). */
export interface XmppServerHandle {
  /** Address the server listens on. */
  host: string;
  port: number;
  domain: string;
  /** "xmpp://HOST:PORT", for @xmpp/client `service` and controller configs. */
  service: string;
  /** The self-signed certificate (PEM): trust it as the CA (`xmpp.caFile`, tls `ca`). */
  caFile: string;
  keyFile: string;
  configFile: string;
  /** Config/data/log dir. */
  dir: string;
  logFile: string;
  /** The running server process (prosody's changes on restart()). */
  readonly process: LabProcess;
  /** "name@domain". */
  jid(user: string): string;
  /** Register (or re-password) a user with the server's own tool; works while it runs. */
  register(user: string, password: string): Promise<void>;
  /** Stop the server (SIGTERM, then SIGKILL). */
  stop(): Promise<void>;
}

export interface ProsodyHandle extends XmppServerHandle {
  /** Kill prosody (SIGKILL, as in a crash; or SIGTERM with graceful) and start it again on the same data. */
  restart(opts?: { graceful?: boolean }): Promise<void>;
}

export interface CoturnOptions {
  user: string;
  password: string;
  realm?: string;
  host?: ServerPlace;
  /** Default 3478. */
  port?: number;
  dirName?: string;
  /** Relay port range. Default 49152-65535. */
  minPort?: number;
  maxPort?: number;
  /** Extra raw config lines. */
  extraConfig?: string[];
  /**
   * TURN REST (`use-auth-secret` + `static-auth-secret`): clients derive their credentials from this
   * secret; `user`/`password` are then not accepted.
   */
  authSecret?: string;
}

export interface CoturnHandle {
  host: string;
  port: number;
  realm: string;
  /** "stun:HOST:PORT" */
  stunUrl: string;
  /** "turn:HOST:PORT?transport=udp" */
  turnUrl: string;
  /** "turn:USER:PASS@HOST:PORT?transport=udp", the form node-datachannel's iceServers takes. */
  turnUrlWithCredentials: string;
  username: string;
  credential: string;
  /** Set when started with `authSecret` (TURN REST). */
  authSecret: string | undefined;
  configFile: string;
  dir: string;
  logFile: string;
  readonly process: LabProcess;
  stop(): Promise<void>;
}

/** Is a TCP (or UDP) socket listening on addr:port inside the namespace? (uses `ss`) */
export async function isListening(
  place: Netns,
  proto: "tcp" | "udp",
  addr: string,
  port: number,
): Promise<boolean> {
  const r = await place.exec(["ss", "-Hln", proto === "tcp" ? "-t" : "-u"]);
  const want = [`${addr}:${port}`, `0.0.0.0:${port}`, `*:${port}`];
  return r.stdout.split("\n").some((line) => {
    const local = line.trim().split(/\s+/)[3];
    return local !== undefined && want.includes(local);
  });
}

/** Wait until something listens on addr:port (tcp or udp) inside the namespace. */
export async function waitListening(
  place: Netns,
  proto: "tcp" | "udp",
  addr: string,
  port: number,
  timeoutMs = 10_000,
  proc?: LabProcess,
): Promise<void> {
  await waitFor(
    `${proto} ${addr}:${port} listening in ${place.ns}`,
    async () => {
      if (proc?.exited) throw new Error(`${proc.name} exited (code ${proc.exitCode}):\n${tail(proc.log())}`);
      return isListening(place, proto, addr, port);
    },
    timeoutMs,
    50,
  );
}

/**
 * Spawn a server in `place` and wait until it listens on proto place.ip:port (or `addr`:port);
 * stops it and throws with its log tail when it exits or does not listen in time.
 */
async function spawnListening(
  place: Netns,
  name: string,
  argv: string[],
  listen: { proto: "tcp" | "udp"; addr: string; port: number; timeoutMs?: number },
  env?: Record<string, string>,
): Promise<LabProcess> {
  const [cmd, ...args] = argv as [string, ...string[]];
  const proc = place.spawn(cmd, args, { name, ...(env ? { env } : {}) });
  favourCpu(proc.pid);
  try {
    await waitListening(place, listen.proto, listen.addr, listen.port, listen.timeoutMs ?? 15_000, proc);
  } catch (e) {
    await proc.stop(1000);
    throw e;
  }
  return proc;
}

/**
 * Where an XMPP server of the lab runs and its certificate (made here for its domain, unless `cert`
 * is given: the nodes of a cluster share one).
 */
export async function prepareXmppServer(
  lab: Lab,
  opts: XmppServerOptions,
  name: string,
  cert?: { certFile: string; keyFile: string },
) {
  const place: ServerPlace = opts.host ?? lab.internet;
  const domain = opts.domain ?? "lab.local";
  const dir = join(lab.dir, opts.dirName ?? name);
  const certDir = join(dir, "certs");
  mkdirSync(certDir, { recursive: true });
  const { certFile, keyFile } = cert ?? (await makeCert(certDir, domain));
  const port = opts.port ?? 5222;
  /** The handle's fields that do not depend on the server kind. */
  const base = {
    host: place.ip,
    port,
    domain,
    service: `xmpp://${place.ip}:${port}`,
    caFile: certFile,
    keyFile,
    dir,
    jid: (user: string) => `${user}@${domain}`,
  };
  return { place, domain, port, dir, certDir, certFile, keyFile, base };
}

function luaString(s: string): string {
  return JSON.stringify(s); // a JSON string literal is a valid Lua string literal for these values
}

/** Self-signed certificate for `domain` (CN and subjectAltName), usable as its own CA. */
export async function makeCert(dir: string, domain: string): Promise<{ certFile: string; keyFile: string }> {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, `${domain}.crt`);
  const keyFile = join(dir, `${domain}.key`);
  await runIn(undefined, [
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "30",
    "-subj",
    `/CN=${domain}`,
    "-addext",
    `subjectAltName=DNS:${domain}`,
    "-keyout",
    keyFile,
    "-out",
    certFile,
  ]);
  return { certFile, keyFile };
}

/** The server settings the compose stack's prosody uses as well (one source for both). */
const PROSODY_COMMON_CONFIG = join(
  dirname(fileURLToPath(import.meta.url)),
  "../../docker/prosody/common.cfg.lua",
);

export async function startProsody(lab: Lab, opts: ProsodyOptions): Promise<ProsodyHandle> {
  const { place, domain, port, dir, certDir, certFile, keyFile, base } = await prepareXmppServer(
    lab,
    opts,
    "prosody",
  );
  const dataDir = join(dir, "data");
  mkdirSync(dataDir, { recursive: true });
  const logFile = join(dir, "prosody.log");
  const groupsFile = join(dir, "groups.txt");
  const configFile = join(dir, "prosody.cfg.lua");

  const groupLines: string[] = [];
  for (const [group, members] of Object.entries(opts.groups ?? {})) {
    groupLines.push(`[${group}]`);
    for (const m of members) groupLines.push(`${m}@${domain}=${m}`);
    groupLines.push("");
  }
  writeFileSync(groupsFile, groupLines.join("\n"));

  const config = `-- generated by test/lab (private instance; nothing under /etc is used)
run_as_root = true
-- foreground: started with -F (the daemonize option is deprecated in 0.12)
pidfile = ${luaString(join(dir, "prosody.pid"))}
data_path = ${luaString(dataDir)}
certificates = ${luaString(certDir)}
log = {
  { levels = { min = ${luaString(opts.logLevel ?? "info")} }, to = "file", filename = ${luaString(logFile)} };
  { levels = { min = "error" }, to = "console" };
}
interfaces = { ${luaString(place.ip)} }
local_interfaces = { ${luaString(place.ip)} }
c2s_ports = { ${port} }
groups_file = ${luaString(groupsFile)}
Include ${luaString(PROSODY_COMMON_CONFIG)}

VirtualHost ${luaString(domain)}
  ssl = { key = ${luaString(keyFile)}; certificate = ${luaString(certFile)} }
${opts.modules?.length ? `  modules_enabled = { ${opts.modules.map(luaString).join("; ")} }\n` : ""}`;
  writeFileSync(configFile, config);

  const register = async (user: string, password: string) => {
    // prosodyctl writes the account straight into data_path; run it in the server's namespace anyway.
    await place.run(["prosodyctl", "--config", configFile, "register", user, domain, password]);
  };
  for (const u of opts.users ?? []) await register(u.name, u.password);

  let proc: LabProcess;
  const start = async () => {
    proc = await spawnListening(place, "prosody", ["prosody", "--config", configFile, "-F"], {
      proto: "tcp",
      addr: place.ip,
      port,
    });
  };
  await start();

  return {
    ...base,
    configFile,
    logFile,
    get process() {
      return proc;
    },
    register,
    async stop() {
      await proc.stop(5000);
    },
    async restart(o = {}) {
      if (o.graceful) await proc.stop(5000);
      else {
        proc.signal("SIGKILL");
        await proc.wait();
      }
      await start();
    },
  };
}

export interface EjabberdHandle extends XmppServerHandle {
  /** The epmd (Erlang port mapper) the node registers with, on 127.0.0.1 of the server's namespace. */
  readonly epmd: LabProcess;
  /** Run `ejabberdctl ARGS...` against this node; resolves stdout, throws on a non-zero exit. */
  ctl(args: string[]): Promise<string>;
}

/**
 * ejabberd (Debian 23.01) with its c2s listener on the server's address, STARTTLS required with a
 * certificate made here, `mod_shared_roster` groups (`ejabberdctl srg_create`/`srg_user_add`, each
 * group displayed to its own members) and accounts made with `ejabberdctl register`.
 * Runs as root in the namespace (Debian's ejabberdctl would `su` to the ejabberd user, whose HOME and
 * cookie are under /var/lib): HOME, spool, logs and the node's epmd are all the lab's own.
 */
export async function startEjabberd(lab: Lab, opts: XmppServerOptions): Promise<EjabberdHandle> {
  const { place, domain, port, dir, certFile, keyFile, base } = await prepareXmppServer(
    lab,
    opts,
    "ejabberd",
  );
  const node = writeEjabberdNode(dir, { place, domain, port, certFile, keyFile });
  const { proc, epmd } = await launchEjabberdNode(place, node, port);
  try {
    await provisionEjabberd(node, domain, opts);
  } catch (e) {
    await proc.stop(10_000);
    await epmd.stop(1000);
    throw e;
  }
  return {
    ...base,
    configFile: node.configFile,
    logFile: node.logFile,
    process: proc,
    epmd,
    register: node.register,
    ctl: node.ctl,
    async stop() {
      await proc.stop(10_000);
      await epmd.stop(3000);
    },
  };
}

/** One ejabberd node's files and how to run `ejabberdctl` against it (see writeEjabberdNode). */
export interface EjabberdNodeFiles {
  place: ServerPlace;
  /** Erlang node name, e.g. "ejabberd@localhost" or "ejabberd@100.64.0.10". */
  name: string;
  configFile: string;
  logFile: string;
  /** `ejabberdctl --config-dir ... --spool ... --logs ...` (append a command). */
  ctlArgv: string[];
  env: Record<string, string>;
  /** The addresses its epmd listens on (comma-separated, as `epmd -address` takes them). */
  epmdAddresses: string;
  ctl(args: string[]): Promise<string>;
  register(user: string, password: string): Promise<void>;
}

/**
 * Writes an ejabberd node's config (`ejabberd.yml`, `ejabberdctl.cfg`, `inetrc`) and dirs under `dir`.
 * Alone (no `cluster`): node `ejabberd@localhost`, Erlang distribution on 127.0.0.1 only. In a cluster:
 * node `ejabberd@<its address>` (a long name, so no host name has to resolve), epmd and distribution
 * (a port epmd hands out) on that address too, and the cluster's shared Erlang cookie.
 */
export function writeEjabberdNode(
  dir: string,
  o: {
    place: ServerPlace;
    domain: string;
    port: number;
    certFile: string;
    keyFile: string;
    cluster?: { cookie: string };
  },
): EjabberdNodeFiles {
  const { place, domain, port, certFile, keyFile, cluster } = o;
  const home = join(dir, "home"); // Erlang keeps its cookie in $HOME/.erlang.cookie
  const spoolDir = join(dir, "spool"); // mnesia: accounts, rosters, shared roster groups
  const logsDir = join(dir, "logs");
  for (const d of [home, spoolDir, logsDir]) mkdirSync(d, { recursive: true });
  const configFile = join(dir, "ejabberd.yml");
  const yaml = (v: string) => JSON.stringify(v); // a JSON string is a valid YAML scalar
  writeFileSync(
    configFile,
    `# generated by test/lab (private instance; nothing under /etc is used)
hosts:
  - ${yaml(domain)}
loglevel: info
log_rotate_count: 0
certfiles:
  - ${yaml(certFile)}
  - ${yaml(keyFile)}
listen:
  -
    port: ${port}
    ip: ${yaml(place.ip)}
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
modules:
  mod_admin_extra: {}
  mod_carboncopy: {}
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_shared_roster: {}
`,
  );
  const distIp = cluster ? place.ip : "127.0.0.1";
  const name = cluster ? `ejabberd@${place.ip}` : "ejabberd@localhost";
  const erlIp = `{${distIp.split(".").join(",")}}`;
  if (cluster) writeFileSync(join(home, ".erlang.cookie"), cluster.cookie, { mode: 0o400 });
  // ejabberdctl reads ERL_INETRC and the ctl config from --config-dir, and sources the ctl config
  // after choosing how to run: EXEC_CMD keeps it as the current user (root) instead of `su ejabberd`.
  writeFileSync(join(dir, "inetrc"), '{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n');
  writeFileSync(
    join(dir, "ejabberdctl.cfg"),
    `EXEC_CMD=as_current_user
ERLANG_NODE=${name}
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface ${erlIp}"
EJABBERD_PID_PATH=${join(dir, "ejabberd.pid")}
EJABBERD_BYPASS_WARNINGS=true
`,
  );
  const env = { HOME: home };
  const ctlArgv = ["ejabberdctl", "--config-dir", dir, "--spool", spoolDir, "--logs", logsDir];
  const ctl = (args: string[]) => place.run([...ctlArgv, ...args], { env, timeoutMs: 60_000 });
  const register = async (user: string, password: string) => {
    const r = await place.exec([...ctlArgv, "register", user, domain, password], { env, timeoutMs: 60_000 });
    if (r.code === 0) return;
    if (!/already registered/i.test(r.stdout + r.stderr))
      throw new Error(`ejabberdctl register ${user} failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
    await ctl(["change_password", user, domain, password]);
  };
  return {
    place,
    name,
    configFile,
    logFile: join(logsDir, "ejabberd.log"),
    ctlArgv,
    env,
    epmdAddresses: cluster ? `127.0.0.1,${place.ip}` : "127.0.0.1",
    ctl,
    register,
  };
}

/**
 * Starts the node's own epmd in the foreground (erl would otherwise start a daemonized one we hold
 * no PID of), then `ejabberdctl foreground`, and waits until c2s listens (7-17 s; longer while a
 * cluster node waits for its tables from the others).
 */
export async function launchEjabberdNode(
  place: ServerPlace,
  node: EjabberdNodeFiles,
  c2sPort = 5222,
): Promise<{ proc: LabProcess; epmd: LabProcess }> {
  const epmd = await spawnListening(place, "epmd", ["epmd", "-address", node.epmdAddresses], {
    proto: "tcp",
    addr: "127.0.0.1",
    port: 4369,
  });
  try {
    const proc = await spawnListening(
      place,
      "ejabberd",
      [...node.ctlArgv, "foreground"],
      { proto: "tcp", addr: place.ip, port: c2sPort, timeoutMs: 60_000 },
      node.env,
    );
    return { proc, epmd };
  } catch (e) {
    await epmd.stop(1000);
    throw e;
  }
}

/** Registers the users and makes each shared roster group (displayed to its own members). */
export async function provisionEjabberd(
  node: Pick<EjabberdNodeFiles, "ctl" | "register">,
  domain: string,
  opts: Pick<XmppServerOptions, "users" | "groups">,
): Promise<void> {
  for (const u of opts.users ?? []) await node.register(u.name, u.password);
  for (const [group, members] of Object.entries(opts.groups ?? {})) {
    // srg_create GROUP HOST LABEL DESCRIPTION DISPLAY: the label is the roster group name clients see
    await node.ctl(["srg_create", group, domain, group, "", group]);
    for (const m of members) await node.ctl(["srg_user_add", m, domain, group, domain]);
  }
}

export async function startCoturn(lab: Lab, opts: CoturnOptions): Promise<CoturnHandle> {
  const place: ServerPlace = opts.host ?? lab.internet;
  const port = opts.port ?? 3478;
  const realm = opts.realm ?? "lab.local";
  const dir = join(lab.dir, opts.dirName ?? "coturn");
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, "turnserver.log");
  const configFile = join(dir, "turnserver.conf");
  if (/[:\s]/.test(opts.user) || /\s/.test(opts.password))
    throw new Error("coturn user must not contain ':' or spaces");
  const lines = [
    `listening-ip=${place.ip}`,
    `relay-ip=${place.ip}`,
    `listening-port=${port}`,
    `min-port=${opts.minPort ?? 49152}`,
    `max-port=${opts.maxPort ?? 65535}`,
    `realm=${realm}`,
    ...(opts.authSecret
      ? ["use-auth-secret", `static-auth-secret=${opts.authSecret}`]
      : ["lt-cred-mech", `user=${opts.user}:${opts.password}`]),
    // a private sqlite user db, so the system's /var/lib/turn/turndb is never opened
    `userdb=${join(dir, "turndb")}`,
    "no-tls",
    "no-dtls",
    "no-cli",
    "fingerprint",
    `pidfile=${join(dir, "turnserver.pid")}`,
    `log-file=${logFile}`,
    "simple-log",
    ...(opts.extraConfig ?? []),
  ];
  writeFileSync(configFile, `${lines.join("\n")}\n`);
  const proc = await spawnListening(place, "turnserver", ["turnserver", "-c", configFile], {
    proto: "udp",
    addr: place.ip,
    port,
  });
  return {
    host: place.ip,
    port,
    realm,
    stunUrl: `stun:${place.ip}:${port}`,
    turnUrl: `turn:${place.ip}:${port}?transport=udp`,
    turnUrlWithCredentials: `turn:${opts.user}:${opts.password}@${place.ip}:${port}?transport=udp`,
    username: opts.user,
    credential: opts.password,
    authSecret: opts.authSecret,
    configFile,
    dir,
    logFile,
    process: proc,
    async stop() {
      await proc.stop(3000);
    },
  };
}
