#!/usr/bin/env node
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import {
  ConfigError,
  Controller,
  createLogger,
  exitOnConfigError,
  type InProcessDatapath,
  loadConfig,
  loadInProcessDatapath,
  parseControllerArgs,
  queryAll,
  runController,
} from "@tincan/controller";
import { printEffectiveConfig, SocialVpnConfig, splitHostPort } from "@tincan/protocol";
import { AddressBook } from "./addresses.js";
import { DnsResponder, NameTable } from "./dns.js";
import { SocialPolicy } from "./policy.js";
import { SocialProfile } from "./profile.js";
import { defaultStateFile, readStateFile, StateFileError, StateWriter } from "./state.js";

const PROG = "socialvpn";
const args = parseControllerArgs(
  PROG,
  "SocialVPN controller: your XMPP buddies (mutual subscription) appear at addresses of your own\n" +
    "private range, and by name (<buddy>.svpn, <device>.<buddy>.svpn) through a small DNS responder.\n" +
    "Needs a running datapath (tincan, or --with-datapath) and the XMPP server named in the config.",
);
let config: ReturnType<typeof loadConfig<typeof SocialVpnConfig>>;
let stateFile: string;
let book: AddressBook;
let profile: SocialProfile;
let inProcess: InProcessDatapath | undefined;
try {
  config = loadConfig(args.config, SocialVpnConfig);
  if (args.withDatapath) inProcess = await loadInProcessDatapath(args.withDatapath, config.datapath);
  stateFile = config.stateFile ?? defaultStateFile(args.config);
  const saved = readStateFile(stateFile);
  book = new AddressBook(config.vnic.ipv4, saved.devices);
  profile = new SocialProfile(saved.scores);
  if (args.checkConfig)
    printEffectiveConfig({
      ...config,
      stateFile,
      log: { ...config.log, level: args.logLevel ?? config.log.level },
    });
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
const logger = createLogger(args.logLevel ?? config.log.level, { format: config.log.format });
const log = logger.component(PROG);
for (const d of book.dropped) log.warn("state file entry not used", { file: stateFile, ...d });

const names = new NameTable(config.dns.suffix);
const state = new StateWriter(stateFile, (err) =>
  log.error("cannot save the state file", { file: stateFile, error: err.message }),
);
const listen = splitHostPort(config.dns.listen);
// systemd-resolved takes no server at its own 127.0.0.53/54: with dns.resolved the names are also
// served on the vNIC's address, once the vNIC has it, and the datapath registers that server.
const resolvedDns = config.dns.resolved
  ? { server: `${book.ownAddress}:${listen.port}`, domains: [`~${config.dns.suffix}`] }
  : undefined;
let vnicDns: DnsResponder | undefined;
const startVnicDns = () => {
  if (!resolvedDns || vnicDns) return;
  vnicDns = new DnsResponder({
    host: book.ownAddress,
    port: listen.port,
    table: names,
    log,
    // resolved asks from the vNIC's own address; buddies reach that address too, and get no answer.
    acceptFrom: (a) => a === book.ownAddress,
  });
  startResponder(vnicDns, resolvedDns.server).catch(() => {
    vnicDns = undefined; // tried again when the vNIC is configured next
  });
};
const policy = new SocialPolicy({
  config,
  book,
  state,
  names,
  profile,
  log,
  resolvedDns,
  onVnicReady: startVnicDns,
});
const dns = new DnsResponder({ ...listen, table: names, log });

/** How often the links' traffic is added to the social profile's scores. */
const TRAFFIC_SAMPLE_MS = 15_000;

/**
 * The core controller, plus: the links' traffic is sampled for the social profile; the DNS responders
 * stop, the resolved registration is withdrawn and the state file is written before exit.
 */
class SocialController extends Controller {
  private sampler: NodeJS.Timeout | null = null;

  override async start(): Promise<void> {
    await super.start();
    this.sampler = setInterval(() => void this.sampleTraffic(), TRAFFIC_SAMPLE_MS);
    this.sampler.unref();
  }

  override async stop(): Promise<void> {
    if (this.sampler) {
      // Started: the datapath answered; the last minutes of traffic count too.
      clearInterval(this.sampler);
      this.sampler = null;
      await this.sampleTraffic();
    }
    if (resolvedDns) {
      // Withdrawn while the datapath is still reachable: resolved would ask a responder that is gone.
      await this.datapath.call("vnic.configure", { uid: policy.uid, dns: null }).catch(() => {});
    }
    dns.stop();
    vnicDns?.stop();
    await super.stop();
    await state.flush();
  }

  private async sampleTraffic(): Promise<void> {
    try {
      policy.sampleTraffic(await queryAll(this.datapath, "link.query"));
    } catch (err) {
      log.debug("traffic sample failed", { error: (err as Error).message });
    }
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

/** Starts a responder; names are a convenience: the VPN runs without them. */
function startResponder(responder: DnsResponder, listen: string): Promise<unknown> {
  return responder.start().then(
    (a) =>
      log.info("dns responder listening", { address: `${a.address}:${a.port}`, suffix: config.dns.suffix }),
    (err: Error) => {
      log.error("dns responder cannot listen; names disabled there", { listen, error: err.message });
      throw err;
    },
  );
}
startResponder(dns, config.dns.listen).catch(() => {});
void runController(ctl, log, inProcess);
