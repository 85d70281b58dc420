#!/usr/bin/env node
import {
  Controller,
  createLogger,
  exitOnConfigError,
  type InProcessDatapath,
  loadConfig,
  loadInProcessDatapath,
  parseControllerArgs,
  runController,
} from "@tincan/controller";
import { GroupVpnConfig, printEffectiveConfig } from "@tincan/protocol";
import { GroupPolicy } from "./policy.js";

const args = parseControllerArgs(
  "groupvpn",
  "GroupVPN controller: all members of an XMPP roster group share one virtual subnet.\n" +
    "Needs a running datapath (tincan, or --with-datapath) and the XMPP server named in the config.",
);
let config: ReturnType<typeof loadConfig<typeof GroupVpnConfig>>;
let inProcess: InProcessDatapath | undefined;
try {
  config = loadConfig(args.config, GroupVpnConfig);
  if (args.withDatapath) inProcess = await loadInProcessDatapath(args.withDatapath, config.datapath);
} catch (err) {
  exitOnConfigError(err, "groupvpn");
}
if (args.checkConfig)
  printEffectiveConfig({ ...config, log: { ...config.log, level: args.logLevel ?? config.log.level } });
const logger = createLogger(args.logLevel ?? config.log.level, { format: config.log.format });
const policy = new GroupPolicy(config);
const ctl = new Controller({ name: "groupvpn", config, logger, policy });
logger.component("groupvpn").info("starting", {
  jid: `${config.xmpp.username}@${config.xmpp.domain}`,
  group: config.group,
  ipv4: config.vnic.ipv4,
  uid: policy.uid,
  policy: config.links.policy,
});
void runController(ctl, logger.component("groupvpn"), inProcess);
