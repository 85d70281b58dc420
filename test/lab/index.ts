// Network lab for TinCan-TS system tests, demos and benchmarks. See README.md.
export * from "./dns.js";
export * from "./ejabberd-cluster.js";
export * from "./lab.js";
export * from "./probes.js";
export * from "./proc.js";
export * from "./servers.js";
