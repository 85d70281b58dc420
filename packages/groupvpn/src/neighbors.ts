import { NeighborLinks as CoreNeighborLinks, linksAnnouncement } from "@tincan/controller";
import type { z } from "zod";

/** Inter-controller message: "these are the members I have a connected link to". */
export const LinksAnnouncement = linksAnnouncement("groupvpn.links");
export type LinksAnnouncement = z.infer<typeof LinksAnnouncement>;

/** The members each neighbour announced links to (`groupvpn.links`); see NeighborLinks of the core. */
export class NeighborLinks extends CoreNeighborLinks {
  constructor() {
    super("groupvpn.links");
  }
}
