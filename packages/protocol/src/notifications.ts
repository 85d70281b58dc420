import { z } from "zod";
import { Uid } from "./common.js";
import { LinkFailure, LinkPath, LinkState } from "./rpc.js";

/** Notifications the datapath sends to the controller registered by `hello`. */
export const NotificationParams = {
  "datapath.started": z.strictObject({ version: z.string(), startedAt: z.number() }),
  "link.candidate": z.strictObject({
    peerUid: Uid,
    candidate: z.string(),
    mid: z.string(),
    relayOnly: z.boolean().optional(),
  }),
  "link.state": z.strictObject({
    peerUid: Uid,
    relayOnly: z.boolean().optional(),
    state: LinkState,
    path: LinkPath.optional(),
    reason: LinkFailure.optional(),
  }),
  "packet.unmapped": z.strictObject({
    src: z.string(),
    dst: z.string(),
    proto: z.number().int(),
    length: z.number().int(),
  }),
  "icc.message": z.strictObject({ peerUid: Uid, data: z.json() }),
} as const;

export type NotificationMethod = keyof typeof NotificationParams;
export type NotificationParamsOf<M extends NotificationMethod> = z.infer<(typeof NotificationParams)[M]>;
