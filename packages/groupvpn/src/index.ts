export { GroupPolicy } from "./policy.js";
export { LinksAnnouncement, NeighborLinks } from "./neighbors.js";
