import { z } from "zod";
import { IpAddress, Ipv4, Ipv4Cidr, Ipv6Cidr, ListenAddress, LogLevel, Prefix, Uid } from "./common.js";
import type { DropCounts } from "./drops.js";

/** JSON-RPC error codes used by the datapath besides the standard ones. */
export const RpcErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  Internal: -32603,
  Unauthorized: -32001,
  NotFound: -32004,
  Conflict: -32009,
  NotConfigured: -32010,
  /** link.create / link.accept: the datapath holds `maxLinks` links already (tincan config). */
  TooManyLinks: -32011,
  /** The answer would not fit in one datagram: page it (`offset`/`limit` on link.query and route.query). */
  ResponseTooLarge: -32012,
} as const;

/** Largest RPC datagram either side sends or accepts. */
export const MAX_RPC_DATAGRAM = 60_000;
/** Most requests in one JSON-RPC batch; a larger batch gets one Invalid Request error. */
export const MAX_RPC_BATCH = 32;
/** Longest string accepted as a JSON-RPC id (ids are strings, numbers or null). */
export const MAX_RPC_ID_LENGTH = 256;
/** Most items link.query / route.query return in one page (the datapath may return fewer to fit a datagram). */
export const MAX_QUERY_PAGE = 1000;

/** Longest `link.ping` wait (default 1000 ms). */
export const MAX_PING_TIMEOUT_MS = 10_000;

/** Largest inter-controller message (`icc.send` data, JSON-encoded). */
export const MAX_ICC_BYTES = 16_384;

export const SessionDescription = z.strictObject({
  type: z.enum(["offer", "answer"]),
  sdp: z.string().min(1).max(16_384),
});
export type SessionDescription = z.infer<typeof SessionDescription>;

export const LinkState = z.enum(["new", "connecting", "connected", "disconnected", "failed", "closed"]);
export type LinkState = z.infer<typeof LinkState>;
/** Why a link failed: ICE found no path, or ICE connected and the DTLS handshake failed. */
export const LinkFailure = z.enum(["ice", "handshake"]);
export type LinkFailure = z.infer<typeof LinkFailure>;
export const LinkPath = z.enum(["host", "srflx", "prflx", "relay"]);
export type LinkPath = z.infer<typeof LinkPath>;
/** An ICE candidate's type, as node-datachannel's getSelectedCandidatePair() names it. */
export const CandidateType = z.enum(["host", "srflx", "prflx", "relay"]);
export type CandidateType = z.infer<typeof CandidateType>;

const Candidate = z.string().max(1024);
const Mid = z.string().max(64);

/**
 * Optional paging of link.query / route.query: items [offset, offset + limit) in a stable order. A page
 * may hold fewer than `limit` items (so that it fits in one datagram); an empty page means the end.
 * Without either key the whole list is returned, or ResponseTooLarge if it does not fit.
 */
const Page = {
  offset: z.number().int().min(0).optional(),
  limit: z.number().int().min(1).max(MAX_QUERY_PAGE).optional(),
};

/** Params of every method, without the `auth` token (checked before these schemas). */
export const RpcParams = {
  hello: z.strictObject({
    controller: z.strictObject({
      host: z.literal("127.0.0.1"),
      port: z.number().int().min(1).max(65535),
    }),
  }),
  "vnic.configure": z.strictObject({
    name: z
      .string()
      .min(1)
      .max(15)
      .regex(/^[A-Za-z0-9_.-]+$/)
      .optional(),
    uid: Uid,
    ipv4: Ipv4Cidr.optional(),
    ipv6: Ipv6Cidr.optional(),
    mtu: z.number().int().min(576).max(9000).optional(),
    translate: z.boolean().optional(),
    /**
     * Register a DNS server for the vNIC with systemd-resolved (`resolvectl dns`/`domain`, run by the
     * datapath: it holds CAP_NET_ADMIN, which resolved asks for); null withdraws it (`resolvectl revert`).
     */
    dns: z
      .strictObject({
        server: ListenAddress,
        domains: z
          .array(z.string().regex(/^~?[a-z0-9-]+(\.[a-z0-9-]+)*$/, 'must look like "~svpn"'))
          .min(1)
          .max(8),
      })
      .nullable()
      .optional(),
  }),
  "vnic.query": z.strictObject({}),
  "ice.configure": z.strictObject({
    stun: z
      .array(z.string().regex(/^stun:/, 'must start with "stun:"'))
      .max(8)
      .default([]),
    turn: z
      .array(
        z.union([
          z.strictObject({
            urls: z.string().regex(/^turns?:/, 'must start with "turn:" or "turns:"'),
            username: z.string().min(1).max(256),
            credential: z.string().min(1).max(256),
          }),
          // TURN REST: the datapath derives "<expiry>:<username or own uid>" and its HMAC per link.
          z.strictObject({
            urls: z.string().regex(/^turns?:/, 'must start with "turn:" or "turns:"'),
            username: z.string().min(1).max(200).optional(),
            secret: z.string().min(1).max(1024),
            ttlSec: z
              .number()
              .int()
              .min(60)
              .max(30 * 86_400),
          }),
        ]),
      )
      .max(8)
      .default([]),
    portRange: z
      .tuple([z.number().int().min(1024).max(65_535), z.number().int().min(1024).max(65_535)])
      .refine(([min, max]) => min <= max, "min must not be greater than max")
      .optional(),
    udpMux: z.boolean().optional(),
    bindAddress: IpAddress.optional(),
  }),
  "link.create": z
    .strictObject({ peerUid: Uid, relayOnly: z.boolean().optional(), directOnly: z.boolean().optional() })
    .refine((p) => !(p.relayOnly && p.directOnly), "relayOnly and directOnly exclude each other"),
  "link.accept": z
    .strictObject({
      peerUid: Uid,
      description: SessionDescription,
      relayOnly: z.boolean().optional(),
      directOnly: z.boolean().optional(),
    })
    .refine((p) => !(p.relayOnly && p.directOnly), "relayOnly and directOnly exclude each other"),
  "link.complete": z.strictObject({
    peerUid: Uid,
    description: SessionDescription,
    relayOnly: z.boolean().optional(),
  }),
  "link.addCandidate": z.strictObject({
    peerUid: Uid,
    candidate: Candidate,
    mid: Mid,
    relayOnly: z.boolean().optional(),
  }),
  "link.remove": z.strictObject({ peerUid: Uid, relayOnly: z.boolean().optional() }),
  "link.query": z.strictObject({ peerUid: Uid.optional(), ...Page }),
  "route.set": z.strictObject({
    prefix: Prefix,
    peerUid: Uid,
    via: Uid.optional(),
    mapTo: Ipv4.optional(),
    /** Also route the prefix to the vNIC in the kernel (removed with the route and on exit). */
    kernel: z.boolean().optional(),
    /**
     * Only for packets in transit (from one link to another): packets from or to our own vNIC do not
     * take it (structured GroupVPN: a router's prefix this node carries for others but does not accept).
     */
    transit: z.boolean().optional(),
  }),
  "route.remove": z.strictObject({ prefix: Prefix }),
  /** Exit side: masquerade the overlay out of the uplinks (iptables), or stop (`on: false`). */
  "exit.serve": z.strictObject({ on: z.boolean() }),
  /**
   * Member side: all traffic to the vNIC (policy routing) while the link to `peerUid` is connected
   * and a default route goes to it; `bypass` (and our links' underlay) keep the main table. null: off.
   */
  "exit.use": z.strictObject({ peerUid: Uid.nullable(), bypass: z.array(IpAddress).max(32).default([]) }),
  "route.query": z.strictObject({ ...Page }),
  "icc.send": z.strictObject({ peerUid: Uid, data: z.json() }),
  /** Sets the datapath's log level until restart (or SIGUSR1/SIGUSR2); without `level` only returns it. */
  "log.level": z.strictObject({ level: LogLevel.optional() }),
  /** One liveness probe over the link that carries the peer's traffic; answers when it returns or times out. */
  "link.ping": z.strictObject({
    peerUid: Uid,
    timeoutMs: z.number().int().min(1).max(MAX_PING_TIMEOUT_MS).optional(),
  }),
} as const;

export type RpcMethod = keyof typeof RpcParams;
export type RpcParamsOf<M extends RpcMethod> = z.infer<(typeof RpcParams)[M]>;
export const RPC_METHODS = Object.keys(RpcParams) as RpcMethod[];

export interface Counters {
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  /** Dropped packets by reason (see DropReason). */
  drops: DropCounts;
}

export interface LinkInfo extends Counters {
  peerUid: string;
  state: LinkState;
  path: LinkPath | null;
  local: string | null;
  remote: string | null;
  /** Types of the selected candidate pair's ends (null until ICE selected a pair). */
  localType: CandidateType | null;
  remoteType: CandidateType | null;
  rttMs: number | null;
  /** Largest IP packet the link carries in one underlay datagram, as probed (null: not measured). */
  pathMtu: number | null;
  relayOnly: boolean;
  createdAt: number;
  lastRxAt: number | null;
  lastTxAt: number | null;
  /** What carries the link's frames now (absent from datapaths before the fast path). */
  transport?: LinkTransport;
  /** The fast path's state (absent: no fast path on this link's datapath). */
  fast?: FastPathInfo;
}

/** "fast": the datapath's own UDP socket; "datachannel": node-datachannel (media track or data channels). */
export const LinkTransport = z.enum(["fast", "datachannel"]);
export type LinkTransport = z.infer<typeof LinkTransport>;

/**
 * off: not tried (peer without it, relayed path, turned off); negotiating: keys offered; probing:
 * keys agreed, the peer's endpoints probed; up: carrying frames; down: fell back (retried later).
 */
export const FastPhase = z.enum(["off", "negotiating", "probing", "up", "down"]);
export type FastPhase = z.infer<typeof FastPhase>;

export interface FastPathInfo {
  phase: FastPhase;
  /** The peer's fast-path address:port in use (null: none yet). */
  endpoint: string | null;
  /** Times the link fell back to node-datachannel (silent fast path, or no probe answered). */
  fallbacks: number;
  /** Key agreements completed (the first one included). */
  rekeys: number;
  /**
   * "closed": the link's PeerConnection (ICE, DTLS, the media track) was closed and the fast path
   * alone carries the link (path, local and remote stay as ICE last selected them). Absent from
   * datapaths before it.
   */
  peerConnection?: "open" | "closed";
  /**
   * true: the native forwarding table moves this link's packets between the vNIC and the fast path
   * without JavaScript (tune.nativeForward; counted in the link's counters all the same). Absent
   * from datapaths before it.
   */
  nativeForward?: boolean;
  /**
   * true: the fast path's session (the one sending, else the newest) goes through our TURN server
   * (`endpoint` is then that server). Absent from datapaths before it.
   */
  relayed?: boolean;
}

export interface RouteInfo {
  prefix: string;
  peerUid: string;
  via: string | null;
  mapTo: string | null;
  /** A kernel route sends the prefix to the vNIC (`route.set` with `kernel`; absent from older datapaths). */
  kernel?: boolean;
  /** Only for packets in transit (`route.set` with `transit`; absent when false and from older datapaths). */
  transit?: boolean;
  /**
   * Packets from the vNIC this route took and their bytes, and packets received whose source it
   * routes; kept while `route.set` changes only the next hop (absent from older datapaths).
   */
  txPackets?: number;
  txBytes?: number;
  rxPackets?: number;
}

export interface VnicInfo extends Counters {
  name: string | null;
  uid: string | null;
  ipv4: string | null;
  ipv6: string | null;
  mtu: number | null;
  translate: boolean;
  queued: number;
  /** The send queue between the vNIC and the links (null: tune.txQueueMs is 0, no queue). */
  txQueue: TxQueueInfo | null;
}

/** What waits in the datapath's send queue now, and how long packets waited in it since start. */
export interface TxQueueInfo {
  packets: number;
  bytes: number;
  /**
   * Per packet handed to a link: counts[i] waited at most bounds[i] seconds and more than
   * bounds[i - 1] (not cumulative; the last count is above every bound). Packets sent at once,
   * without queueing, count in the first bucket. sumSeconds is the total time waited.
   */
  delay: { bounds: number[]; counts: number[]; sumSeconds: number };
}

export interface HelloResult {
  version: string;
  uid: string | null;
  vnic: { name: string; ipv4: string | null; ipv6: string | null; mtu: number } | null;
  startedAt: number;
  /** The datapath's process id (the controller's watchdog ends a hung datapath by it). */
  pid: number;
}

/** Result types of every method. */
export interface RpcResults {
  hello: HelloResult;
  /** `dns` when asked for: whether systemd-resolved took the registration, and why not. */
  "vnic.configure": { name: string; mtu: number; dns?: { registered: boolean; error?: string } };
  "vnic.query": VnicInfo;
  "ice.configure": Record<string, never>;
  "link.create": { description: SessionDescription };
  "link.accept": { description: SessionDescription };
  "link.complete": Record<string, never>;
  "link.addCandidate": Record<string, never>;
  "link.remove": Record<string, never>;
  "link.query": LinkInfo[];
  "route.set": Record<string, never>;
  "route.remove": Record<string, never>;
  "route.query": RouteInfo[];
  "exit.serve": Record<string, never>;
  "exit.use": Record<string, never>;
  "icc.send": Record<string, never>;
  "link.ping": PingResult;
  "log.level": { level: LogLevel };
}

/** `link.ping`: the probe's round trip (null: no reply within timeoutMs) and the path it took. */
export interface PingResult {
  rttMs: number | null;
  path: LinkPath | null;
  relayOnly: boolean;
  local: string | null;
  remote: string | null;
  localType: CandidateType | null;
  remoteType: CandidateType | null;
}

export const Auth = z.string().min(16).max(256);
