export { type Clock, systemClock } from "./clock.js";
export { LinksAnnouncement, NeighborLinks } from "./neighbors.js";
export { GroupPolicy, type GroupPolicyOptions } from "./policy.js";
export * from "./ring.js";
export * from "./structured.js";
