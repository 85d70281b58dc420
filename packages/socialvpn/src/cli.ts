#!/usr/bin/env node
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import {
  ConfigError,
  Controller,
  createLogger,
  exitOnConfigError,
  loadConfig,
  parseControllerArgs,
  runController,
} from "@tincan/controller";
import { printEffectiveConfig, SocialVpnConfig, splitHostPort } from "@tincan/protocol";
import { AddressBook } from "./addresses.js";
import { DnsResponder, NameTable } from "./dns.js";
import { SocialPolicy } from "./policy.js";
import { defaultStateFile, readStateFile, StateFileError, StateWriter } from "./state.js";

const PROG = "socialvpn";
const args = parseControllerArgs(
  PROG,
  "SocialVPN controller: your XMPP buddies (mutual subscription) appear at addresses of your own\n" +
    "private range, and by name (<buddy>.svpn, <device>.<buddy>.svpn) through a small DNS responder.\n" +
    "Needs a running datapath (tincan) and the XMPP server named in the config.",
);
let config: ReturnType<typeof loadConfig<typeof SocialVpnConfig>>;
let stateFile: string;
let book: AddressBook;
try {
  config = loadConfig(args.config, SocialVpnConfig);
  stateFile = config.stateFile ?? defaultStateFile(args.config);
  book = new AddressBook(config.vnic.ipv4, readStateFile(stateFile).devices);
  if (args.checkConfig)
    printEffectiveConfig({ ...config, stateFile, log: { level: args.logLevel ?? config.log.level } });
} catch (err) {
  if (err instanceof StateFileError)
    exitOnConfigError(new ConfigError(err.file, err.message.slice(err.file.length + 2)), PROG);
  exitOnConfigError(err, PROG);
}
if (config.stateFile === undefined) {
  try {
    mkdirSync(dirname(stateFile), { recursive: true, mode: 0o700 });
  } catch (err) {
    exitOnConfigError(
      new ConfigError(stateFile, `cannot create its directory: ${(err as Error).message}`),
      PROG,
    );
  }
}
const logger = createLogger(args.logLevel ?? config.log.level);
const log = logger.component(PROG);
for (const d of book.dropped) log.warn("state file entry not used", { file: stateFile, ...d });

const names = new NameTable(config.dns.suffix);
const state = new StateWriter(stateFile, (err) =>
  log.error("cannot save the state file", { file: stateFile, error: err.message }),
);
const policy = new SocialPolicy({ config, book, state, names, log });
const dns = new DnsResponder({ ...splitHostPort(config.dns.listen), table: names, log });

/** The core controller, plus: the DNS responder stops and the state file is written before exit. */
class SocialController extends Controller {
  override async stop(): Promise<void> {
    dns.stop();
    await super.stop();
    await state.flush();
  }
}
const ctl = new SocialController({ name: PROG, config, logger, policy });
log.info("starting", {
  jid: policy.jid,
  device: policy.device,
  uid: policy.uid,
  ipv4: config.vnic.ipv4,
  ipv6: policy.ipv6,
  policy: config.links.policy,
  stateFile,
  devicesKnown: book.size,
});

dns.start().then(
  (a) =>
    log.info("dns responder listening", { address: `${a.address}:${a.port}`, suffix: config.dns.suffix }),
  // Names are a convenience: the VPN runs without them.
  (err: Error) =>
    log.error("dns responder cannot listen; names disabled", {
      listen: config.dns.listen,
      error: err.message,
    }),
);
void runController(ctl, log);
