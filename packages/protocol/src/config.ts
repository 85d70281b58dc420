import { z } from "zod";
import { HostPort, Ipv4Cidr, Ipv6Cidr, LogLevel } from "./common.js";

/**
 * Sections whose keys all have defaults are optional: `.prefault({})` parses a missing section as `{}`,
 * so each default is written once, on its key.
 */
const Log = z.strictObject({ level: LogLevel.default("info") }).prefault({});

export const DEFAULT_RPC = "127.0.0.1:5800";
export const DEFAULT_TOKEN_FILE = "/run/tincan/tincan.token";

/** Loopback only: the RPC API must never be reachable from the network. */
const LoopbackHostPort = HostPort.refine(
  (s) => s.startsWith("127."),
  "the RPC address must be on 127.0.0.0/8",
);

/**
 * The datapath's tuning knobs (the `tune` section of tincan.json, overridden by the TINCAN_TUNE
 * environment variable for experiments): for benchmarks and experiments, the defaults are what ships.
 */
export const DatapathTune = z.strictObject({
  underlayMtu: z
    .number()
    .int()
    .min(1280)
    .max(9000)
    .default(1400)
    .describe(
      "UDP payload size links may use on the underlay (sizes DTLS records, RTP frames and SCTP packets)",
    ),
  maxFrameBytes: z
    .number()
    .int()
    .min(1280)
    .max(262_144)
    .default(16_384)
    .describe(
      "largest frame carrying several packets on a link (data channel; the track takes one datagram)",
    ),
  linkQueuePackets: z
    .number()
    .int()
    .min(1)
    .max(65_536)
    .default(64)
    .describe("packets held per link while it connects"),
  maxBufferedBytes: z
    .number()
    .int()
    .min(1024)
    .max(1 << 30)
    .default(1 << 20)
    .describe(
      "bytes waiting in a data-channel link's send buffer above which packets are dropped (backpressure)",
    ),
  hopLimit: z
    .number()
    .int()
    .min(1)
    .max(255)
    .default(4)
    .describe("hop limit of the frames this datapath sends; each transit node decrements it"),
  offload: z.boolean().default(true).describe("ask the vNIC for checksum and TCP segmentation offload"),
  rtp: z
    .boolean()
    .default(true)
    .describe(
      "offer links as a media track carrying frames as RTP packets, no SCTP; false: offer data channels over SCTP (either kind of offer is accepted)",
    ),
  silenceMs: z
    .number()
    .min(2000)
    .max(3_600_000)
    .default(10_000)
    .describe(
      "a connected peer not heard from (probes included) for this long (ms) is reported disconnected",
    ),
  rxQueueMs: z
    .number()
    .min(0)
    .max(1000)
    .default(2)
    .describe(
      "CoDel target of the receive queue (ms): the least queueing delay above which RTP frames are dropped (0: never); links raise it to a tenth of their interval",
    ),
  rxIntervalMs: z
    .number()
    .positive()
    .max(1000)
    .default(20)
    .describe(
      "least CoDel interval of the receive queue (ms); links use it plus their path's RTT, up to 100",
    ),
  txQueueMs: z
    .number()
    .min(0)
    .max(1000)
    .default(5)
    .describe(
      "CoDel target of the send queue between the vNIC and the links (ms; 0: no send queue, packets the datapath cannot send yet wait in the TUN device, unseen)",
    ),
  txIntervalMs: z
    .number()
    .positive()
    .max(10_000)
    .default(100)
    .describe("CoDel interval of the send queue (ms; it should cover the RTT of the flows inside)"),
  txQueueBytes: z
    .number()
    .int()
    .min(65_536)
    .max(1 << 30)
    .default(2 << 20)
    .describe("bytes the send queue holds at most"),
  turnBytes: z
    .number()
    .int()
    .min(1)
    .default(32 << 10)
    .describe(
      "bytes sent per event-loop turn before the vNIC is read again; the rest waits in the send queue",
    ),
});
export type DatapathTune = z.infer<typeof DatapathTune>;

export const TincanConfig = z.strictObject({
  rpc: LoopbackHostPort.default(DEFAULT_RPC),
  tokenFile: z.string().min(1).default(DEFAULT_TOKEN_FILE),
  /** Links the datapath holds at most; link.create / link.accept beyond it get TooManyLinks. */
  maxLinks: z.number().int().min(1).max(65_536).default(4096),
  log: Log,
  tune: DatapathTune.prefault({}),
});
export type TincanConfig = z.infer<typeof TincanConfig>;

const Datapath = z.strictObject({
  rpc: LoopbackHostPort.default(DEFAULT_RPC),
  tokenFile: z.string().min(1).default(DEFAULT_TOKEN_FILE),
  /** Seconds the datapath may leave RPCs unanswered before it counts as hung (logged, shown in status). */
  watchdogSec: z.number().min(1).max(3600).default(30),
  /** When the datapath hangs: end it by PID (SIGKILL) so that its supervisor restarts it. */
  restartOnHang: z.boolean().default(false),
});

const Xmpp = z
  .strictObject({
    service: z.string().regex(/^xmpps?:\/\/[^/]+$/, 'must look like "xmpp://host:5222"'),
    domain: z.string().min(1),
    username: z.string().min(1),
    password: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    resource: z.string().min(1).max(64).optional(),
    caFile: z.string().min(1).optional(),
    /** Seconds between liveness pings; bounds how long a dead connection goes unnoticed (see README). */
    pingIntervalSec: z.number().min(1).max(3600).default(60),
  })
  .refine((x) => (x.password === undefined) !== (x.passwordFile === undefined), {
    message: 'give exactly one of "password" or "passwordFile"',
  });

const Turn = z
  .strictObject({
    urls: z.string().regex(/^turns?:/, 'must start with "turn:"'),
    username: z.string().min(1),
    credential: z.string().min(1).optional(),
    credentialFile: z.string().min(1).optional(),
  })
  .refine((t) => (t.credential === undefined) !== (t.credentialFile === undefined), {
    message: 'give exactly one of "credential" or "credentialFile"',
  });

const Ice = z
  .strictObject({
    stun: z.array(z.string().regex(/^stun:/, 'must start with "stun:"')).default([]),
    turn: z.array(Turn).default([]),
  })
  .prefault({});

const Links = z
  .strictObject({
    policy: z.enum(["on-demand", "proactive"]).default("on-demand"),
    maxLinks: z.number().int().min(1).max(4096).default(64),
    idleTimeoutSec: z.number().min(1).default(300),
    /**
     * Seconds after which a relay-only attempt races a direct setup that has not connected yet
     * (with TURN servers; 0: both start at once). The first to connect carries the link.
     */
    relayFallbackSec: z.number().min(0).default(0.3),
    /** Seconds a setup may take before it is abandoned and retried with backoff. */
    setupTimeoutSec: z.number().min(1).default(10),
  })
  .prefault({});

const Vnic = z.strictObject({
  name: z.string().min(1).max(15).default("tincan0"),
  ipv4: Ipv4Cidr,
  ipv6: Ipv6Cidr.optional(),
  mtu: z.number().int().min(576).max(9000).default(1280),
});

/**
 * The keys every controller has (what the controller core reads). A controller's config schema is
 * `ControllerConfig.extend({ ...its own keys })` in its own file (e.g. groupvpn-config.ts).
 */
export const ControllerConfig = z.strictObject({
  datapath: Datapath.prefault({}),
  xmpp: Xmpp,
  vnic: Vnic,
  ice: Ice,
  links: Links,
  log: Log,
});
export type ControllerConfig = z.infer<typeof ControllerConfig>;

/** socialvpn.json: the core keys (spread as ControllerConfig.extend() does) and SocialVPN's own. */
export const SocialVpnConfig = z
  .strictObject({
    ...ControllerConfig.shape,
    stateFile: z.string().min(1).optional(),
    dns: z
      .strictObject({
        suffix: z
          .string()
          .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)*$/)
          .default("svpn"),
        listen: HostPort.default("127.0.0.53:5353"),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    // SocialVPN derives the IPv6 address from the UID (one overlay-wide ULA /64), so it is not configured.
    if (c.vnic.ipv6 !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["vnic", "ipv6"],
        message: "SocialVPN derives its IPv6 address from the JID; remove this key",
      });
    }
    // Buddies get addresses of the own range: it needs room besides the own, network and broadcast address.
    const [addr, len] = c.vnic.ipv4.split("/") as [string, string];
    const bits = Number(len);
    const n = addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
    const size = 2 ** (32 - bits);
    if (bits > 30) {
      ctx.addIssue({
        code: "custom",
        path: ["vnic", "ipv4"],
        message: "the range needs room for buddies: use a prefix of /30 or shorter",
      });
    } else if (n % size === 0 || n % size === size - 1) {
      ctx.addIssue({
        code: "custom",
        path: ["vnic", "ipv4"],
        message: "the own address must not be the network or broadcast address of its range",
      });
    }
  });
export type SocialVpnConfig = z.infer<typeof SocialVpnConfig>;
