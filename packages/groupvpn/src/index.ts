export { LinksAnnouncement, NeighborLinks } from "./neighbors.js";
export { GroupPolicy } from "./policy.js";
