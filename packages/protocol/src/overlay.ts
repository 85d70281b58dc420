import { z } from "zod";
import { Uid } from "./common.js";
import { LinkPath, LinkState } from "./rpc.js";

/**
 * The overlay as one controller knows it, served as `/overlay.json` and pushed as server-sent events
 * by the controller's map page (`web.listen`): members as nodes, links as edges.
 */
export const OverlayNode = z.strictObject({
  uid: Uid,
  /** Bare JID (null for this node before it logged in). */
  jid: z.string().nullable(),
  name: z.string().optional(),
  ipv4: z.string().optional(),
  ipv6: z.string().optional(),
  /** This node. */
  self: z.boolean(),
  /** Online in XMPP presence (this node: logged in). */
  online: z.boolean(),
});
export type OverlayNode = z.infer<typeof OverlayNode>;

/**
 * An undirected edge. `source: "link"`: one of this node's own links (from `link.query`: path, state,
 * bytes, RTT). `source: "neighbor"`: a link that a neighbour announced it has (GroupVPN
 * `groupvpn.links`): its path and traffic are unknown here (null / 0).
 */
export const OverlayEdge = z.strictObject({
  a: Uid,
  b: Uid,
  source: z.enum(["link", "neighbor"]),
  path: LinkPath.nullable(),
  state: LinkState.nullable(),
  rttMs: z.number().nullable(),
  /** Bytes sent + received over the link so far (0 when unknown). */
  bytes: z.number().int().min(0),
});
export type OverlayEdge = z.infer<typeof OverlayEdge>;

/** A roster contact this controller refuses to link with, and why (e.g. not in the group). */
export const OverlayRefused = z.strictObject({
  jid: z.string(),
  name: z.string().optional(),
  reason: z.string(),
});
export type OverlayRefused = z.infer<typeof OverlayRefused>;

export const OverlayMap = z.strictObject({
  /** This node's UID. */
  self: Uid,
  controller: z.string(),
  updatedAt: z.number(),
  nodes: z.array(OverlayNode),
  edges: z.array(OverlayEdge),
  /** Roster contacts that are no members: drawn as a list, not as nodes (they have no UID here). */
  refused: z.array(OverlayRefused),
});
export type OverlayMap = z.infer<typeof OverlayMap>;
