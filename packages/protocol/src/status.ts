// The contract of `tincanctl status --json` and of the controller's status file it reads
// (`controller-status.json` next to the datapath's token). Times are ms since the epoch.
import { z } from "zod";
import { Uid } from "./common.js";
import { DropCounts } from "./drops.js";
import {
  CandidateType,
  FastPhase,
  type LinkInfo,
  LinkPath,
  LinkState,
  LinkTransport,
  type RouteInfo,
  type TxQueueInfo,
  type VnicInfo,
} from "./rpc.js";

const Time = z.number();
const Count = z.number().int().min(0);

const CountersShape = {
  txBytes: Count,
  rxBytes: Count,
  txPackets: Count,
  rxPackets: Count,
  drops: DropCounts,
};

export const LinkInfoSchema = z.strictObject({
  ...CountersShape,
  peerUid: Uid,
  state: LinkState,
  path: LinkPath.nullable(),
  local: z.string().nullable(),
  remote: z.string().nullable(),
  localType: CandidateType.nullable(),
  remoteType: CandidateType.nullable(),
  rttMs: z.number().nullable(),
  pathMtu: z.number().int().nullable(),
  relayOnly: z.boolean(),
  createdAt: Time,
  lastRxAt: Time.nullable(),
  lastTxAt: Time.nullable(),
  transport: LinkTransport.optional(),
  fast: z
    .strictObject({
      phase: FastPhase,
      endpoint: z.string().nullable(),
      fallbacks: Count,
      rekeys: Count,
      peerConnection: z.enum(["open", "closed"]).optional(),
      nativeForward: z.boolean().optional(),
      relayed: z.boolean().optional(),
    })
    .optional(),
}) satisfies z.ZodType<LinkInfo>;

export const RouteInfoSchema = z.strictObject({
  prefix: z.string(),
  peerUid: Uid,
  via: Uid.nullable(),
  mapTo: z.string().nullable(),
  /** Absent from datapaths before router mode. */
  kernel: z.boolean().optional(),
  /** Only for packets in transit (structured overlay, router mode); absent when false. */
  transit: z.boolean().optional(),
  /** Absent from datapaths before the structured overlay. */
  txPackets: Count.optional(),
  txBytes: Count.optional(),
  rxPackets: Count.optional(),
}) satisfies z.ZodType<RouteInfo>;

export const TxQueueInfoSchema = z.strictObject({
  packets: Count,
  bytes: Count,
  delay: z.strictObject({
    bounds: z.array(z.number()),
    counts: z.array(Count),
    sumSeconds: z.number().min(0),
  }),
}) satisfies z.ZodType<TxQueueInfo>;

export const VnicInfoSchema = z.strictObject({
  ...CountersShape,
  name: z.string().nullable(),
  uid: Uid.nullable(),
  ipv4: z.string().nullable(),
  ipv6: z.string().nullable(),
  mtu: z.number().int().nullable(),
  translate: z.boolean(),
  queued: Count,
  txQueue: TxQueueInfoSchema.nullable(),
}) satisfies z.ZodType<VnicInfo>;

/** What the link manager is doing with a peer's link, and why (see the controller's LinkManager). */
export const LinkPhase = z.enum([
  "queued",
  "waiting",
  "offering",
  "answering",
  "connecting",
  "connected",
  "backoff",
]);
export type LinkPhase = z.infer<typeof LinkPhase>;

/** Why a structured GroupVPN overlay holds a link (`incoming`: another member's choice). */
export const LinkRole = z.enum(["successor", "predecessor", "long", "shortcut", "incoming"]);
export type LinkRole = z.infer<typeof LinkRole>;

export const ControllerLinkStatus = z.strictObject({
  phase: LinkPhase,
  /** Structured overlay (GroupVPN `links.policy: "structured"`): the link's role. */
  role: LinkRole.optional(),
  /** The link is relayed or not connected: why, in words (null when direct and connected). */
  why: z.string().nullable(),
  /** When the current connection came up. */
  upSince: Time.nullable(),
  /** From the first offer or answer to the first transport connected, for the current connection. */
  setupMs: z.number().nullable(),
  /** When traffic moved to a relay (null: not relayed). */
  relayedSince: Time.nullable(),
  /** Failed setups in a row. */
  failures: Count,
  /** When the next setup (backoff) or direct re-attempt (relayed) is due. */
  nextAttemptAt: Time.nullable(),
});
export type ControllerLinkStatus = z.infer<typeof ControllerLinkStatus>;

/** A roster entry and why it does or does not take part. */
export const MemberStatus = z.strictObject({
  jid: z.string(),
  name: z.string().optional(),
  /** online: admitted and announces tincan presence; offline: admitted, no presence; refused: fails admission. */
  state: z.enum(["online", "offline", "refused"]),
  reason: z.string().optional(),
});
export type MemberStatus = z.infer<typeof MemberStatus>;

export const XmppStatus = z.strictObject({
  /** The server of the current or last connection ("xmpp://host:port"), null before the first attempt. */
  server: z.string().nullable(),
  jid: z.string().nullable(),
  online: z.boolean(),
  onlineSince: Time.nullable(),
  /** Logins after the first one. */
  reconnects: Count,
});

export const ProcessInfo = z.strictObject({
  version: z.string(),
  startedAt: Time,
  pid: z.number().int().optional(),
});

/** Router mode: what this node advertises, what it routes of others' and what it ignored, and why. */
export const RouterStatus = z.strictObject({
  advertised: z.array(z.string()),
  accepted: z.array(z.strictObject({ prefix: z.string(), jid: z.string() })),
  ignored: z.array(z.strictObject({ prefix: z.string(), jid: z.string(), reason: z.string() })),
  /** `routes.exitNode`: "in use" (all traffic goes through it while its link is up), else why not. */
  exitNode: z
    .strictObject({
      jid: z.string(),
      state: z.enum(["in use", "waiting", "refused"]),
      reason: z.string().optional(),
    })
    .optional(),
});
export type RouterStatus = z.infer<typeof RouterStatus>;

/** The controller's status file (written within 0.5 s of a change, and every 5 s). */
export const ControllerStatus = z.object({
  controller: z.string(),
  pid: z.number().int(),
  jid: z.string().nullable(),
  uid: Uid,
  updatedAt: Time,
  peers: z.record(
    z.string(),
    z.object({
      jid: z.string(),
      /** The peer's device: its XMPP resource (peers of one account are its devices). */
      device: z.string().optional(),
      name: z.string().optional(),
      ipv4: z.string().optional(),
      ipv6: z.string().optional(),
    }),
  ),
  signalDrops: z.object({ rateLimited: Count, setupInProgress: Count }).optional(),
  datapath: z.object({ responsive: z.boolean(), unansweredSinceMs: Time.nullable() }).optional(),
  /** The rest is absent in files of older controllers. */
  version: z.string().optional(),
  startedAt: Time.optional(),
  datapathProcess: ProcessInfo.nullable().optional(),
  xmpp: XmppStatus.optional(),
  members: z.array(MemberStatus).optional(),
  links: z.record(z.string(), ControllerLinkStatus).optional(),
  routes: RouterStatus.optional(),
});
export type ControllerStatus = z.infer<typeof ControllerStatus>;

/** One row per peer of `tincanctl status`. */
export const PeerRow = z.strictObject({
  peer: z.string(),
  /** The device of the peer's account (rows are grouped by account, then device). */
  device: z.string().optional(),
  uid: Uid,
  virtualIp: z.array(z.string()),
  state: z.string(),
  path: LinkPath.nullable(),
  /** What carries the link's frames (absent: an older datapath). */
  transport: LinkTransport.optional(),
  /**
   * While the fast path carries the link: whether the native forwarding table moves its packets
   * and whether it goes through TURN (absent: not on the fast path, or an older datapath).
   */
  fast: z.strictObject({ nativeForward: z.boolean(), relayed: z.boolean() }).optional(),
  rttMs: z.number().nullable(),
  pathMtu: z.number().int().nullable(),
  rxBytes: Count,
  txBytes: Count,
  idleSec: z.number().nullable(),
  relayOnly: z.boolean(),
  /** The selected candidate pair ("type address:port"), null until ICE selected one. */
  local: z.string().nullable(),
  remote: z.string().nullable(),
  ageSec: z.number().nullable(),
  setupMs: z.number().nullable(),
  why: z.string().nullable(),
  /** Structured overlay: the link's role (see ControllerLinkStatus). */
  role: LinkRole.optional(),
  drops: DropCounts,
});
export type PeerRow = z.infer<typeof PeerRow>;

/** `tincanctl status --json`. */
export const StatusReport = z.strictObject({
  tincanctl: z.strictObject({ version: z.string() }),
  vnic: VnicInfoSchema,
  peers: z.array(PeerRow),
  links: z.array(LinkInfoSchema),
  routes: z.array(RouteInfoSchema),
  controller: ControllerStatus.nullable(),
});
export type StatusReport = z.infer<typeof StatusReport>;
