// prosody (XMPP) and coturn (STUN/TURN) as private, foreground instances inside a lab namespace.
// Each gets its own config dir under the lab dir; nothing under /etc or /var is touched.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab, Netns } from "./lab.js";
import { favourCpu, type LabProcess, runIn, tail, waitFor } from "./proc.js";

/** Where a server runs: the lab's internet namespace or a host on it (anything with an address). */
export type ServerPlace = Netns & { readonly ip: string };

export interface XmppUser {
  name: string;
  password: string;
}

export interface ProsodyOptions {
  /** XMPP domain (VirtualHost and certificate CN/SAN). Default "lab.local". */
  domain?: string;
  users?: XmppUser[];
  /** Shared roster groups (mod_groups): group name -> user names (local parts). */
  groups?: Record<string, string[]>;
  /** Where to run. Default: the lab's internet namespace (100.64.0.1). */
  host?: ServerPlace;
  /** c2s port. Default 5222. */
  port?: number;
  /** Name of the config dir under the lab dir. Default "prosody". */
  dirName?: string;
  /** Prosody log level for the log file. Default "info" ("debug" logs every stanza). */
  logLevel?: "debug" | "info" | "warn";
}

export interface ProsodyHandle {
  /** Address prosody listens on. */
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
  /** The running prosody process (changes on restart()). */
  readonly process: LabProcess;
  /** "name@domain". */
  jid(user: string): string;
  /** Register (or re-password) a user with prosodyctl; works while prosody runs. */
  register(user: string, password: string): Promise<void>;
  /** Stop prosody (SIGTERM, then SIGKILL). */
  stop(): Promise<void>;
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

export async function startProsody(lab: Lab, opts: ProsodyOptions): Promise<ProsodyHandle> {
  const place: ServerPlace = opts.host ?? lab.internet;
  const domain = opts.domain ?? "lab.local";
  const port = opts.port ?? 5222;
  const dir = join(lab.dir, opts.dirName ?? "prosody");
  const dataDir = join(dir, "data");
  const certDir = join(dir, "certs");
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(certDir, { recursive: true });
  const { certFile, keyFile } = await makeCert(certDir, domain);
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
s2s_ports = { }
c2s_direct_tls_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "groups" }
modules_disabled = { "s2s" }
c2s_require_encryption = true
allow_registration = false
authentication = "internal_hashed"
storage = "internal"
groups_file = ${luaString(groupsFile)}

VirtualHost ${luaString(domain)}
  ssl = { key = ${luaString(keyFile)}; certificate = ${luaString(certFile)} }
`;
  writeFileSync(configFile, config);

  const register = async (user: string, password: string) => {
    // prosodyctl writes the account straight into data_path; run it in the server's namespace anyway.
    await place.run(["prosodyctl", "--config", configFile, "register", user, domain, password]);
  };
  for (const u of opts.users ?? []) await register(u.name, u.password);

  let proc: LabProcess;
  const start = async () => {
    proc = place.spawn("prosody", ["--config", configFile, "-F"], { name: "prosody" });
    favourCpu(proc.pid);
    try {
      await waitFor(
        `prosody listening on ${place.ip}:${port}`,
        async () => {
          if (proc.exited) throw new Error(`prosody exited (code ${proc.exitCode}):\n${tail(proc.log())}`);
          return isListening(place, "tcp", place.ip, port);
        },
        15_000,
      );
    } catch (e) {
      await proc.stop(1000);
      throw e;
    }
  };
  await start();

  return {
    host: place.ip,
    port,
    domain,
    service: `xmpp://${place.ip}:${port}`,
    caFile: certFile,
    keyFile,
    configFile,
    dir,
    logFile,
    get process() {
      return proc;
    },
    jid: (user) => `${user}@${domain}`,
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
  const proc = place.spawn("turnserver", ["-c", configFile], { name: "turnserver" });
  favourCpu(proc.pid);
  try {
    await waitFor(
      `coturn listening on udp ${place.ip}:${port}`,
      async () => {
        if (proc.exited) throw new Error(`turnserver exited (code ${proc.exitCode}):\n${tail(proc.log())}`);
        return isListening(place, "udp", place.ip, port);
      },
      15_000,
    );
  } catch (e) {
    await proc.stop(1000);
    throw e;
  }
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
