import { z } from "zod";

/**
 * Why the datapath dropped packets: the keys of `drops` in link.query and vnic.query (each one is
 * documented in packages/protocol/README.md). The datapath counts no other reason.
 */
export const DropReason = z.enum([
  "backpressure",
  "badFrame",
  "badIcc",
  "fastBadTag",
  "fastReplay",
  "fastShort",
  "fastUnknownIndex",
  "fragmentLost",
  "hopLimit",
  "loop",
  "malformed",
  "multicast",
  "noRoute",
  "noVnic",
  "notConnected",
  "offloadUnsupported",
  "peerBacklog",
  "rxOverload",
  "rxQueue",
  "sendError",
  "spoofed",
  "tooBig",
  "txQueue",
  "txQueueFull",
  "unmappedExpired",
  "unmappedPeer",
  "vnicFull",
  "vnicRejected",
]);
export type DropReason = z.infer<typeof DropReason>;
export const DROP_REASONS: readonly DropReason[] = DropReason.options;

/** Dropped packets by reason; a reason that never dropped anything is absent. */
export const DropCounts = z.partialRecord(DropReason, z.number().int().min(0));
export type DropCounts = z.infer<typeof DropCounts>;
