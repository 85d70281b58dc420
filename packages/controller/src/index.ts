export * from "./admission.js";
export * from "./cli.js";
export * from "./config.js";
export * from "./controller.js";
export * from "./datapath-client.js";
export * from "./link-manager.js";
export * from "./logger.js";
export * from "./xmpp.js";
