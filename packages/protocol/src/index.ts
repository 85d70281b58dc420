export * from "./atomic-file.js";
export * from "./common.js";
export * from "./config.js";
export * from "./drops.js";
export * from "./notifications.js";
export * from "./rpc.js";
export * from "./signal.js";
export * from "./uid.js";
