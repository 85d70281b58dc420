import { z } from "zod";
import { Ipv4, Ipv6, Prefix, Uid } from "./common.js";
import { SessionDescription } from "./rpc.js";

export const PRESENCE_NS = "urn:tincan:0";
export const SIGNAL_NS = "urn:tincan:signal:0";

/** Most `<route/>` children a presence may carry (more: the presence is malformed). */
export const MAX_PRESENCE_ROUTES = 32;

/**
 * The `<tincan xmlns="urn:tincan:0" .../>` presence child: its attributes, and `routes` from its
 * `<route prefix="..."/>` children (router mode: prefixes the member carries; older nodes ignore them).
 */
export const PresenceTincan = z.strictObject({
  uid: Uid,
  ipv4: Ipv4.optional(),
  ipv6: Ipv6.optional(),
  routes: z.array(Prefix).min(1).max(MAX_PRESENCE_ROUTES).optional(),
});
export type PresenceTincan = z.infer<typeof PresenceTincan>;

/** Each setup attempt carries an id so late answers/candidates of an old attempt are ignored. */
const SetupId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

const Base = { from: Uid, to: Uid, setup: SetupId };

/** JSON text of the `<signal xmlns="urn:tincan:signal:0">` child of a chat message. */
export const Signal = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("offer"),
    ...Base,
    description: SessionDescription,
    relayOnly: z.boolean(),
    /** A direct re-attempt of a relayed link: the answer gathers no TURN candidates either. */
    directOnly: z.boolean().optional(),
  }),
  z.strictObject({ type: z.literal("answer"), ...Base, description: SessionDescription }),
  z.strictObject({
    type: z.literal("candidate"),
    ...Base,
    candidate: z.string().max(1024),
    mid: z.string().max(64),
  }),
  z.strictObject({ type: z.literal("bye"), ...Base, reason: z.string().max(200).optional() }),
]);
export type Signal = z.infer<typeof Signal>;
export const MAX_SIGNAL_BYTES = 20_000;
