import { z } from "zod";
import { IpAddress, Ipv4Cidr, Ipv6Cidr, ListenAddress, LogFormat, LogLevel } from "./common.js";

/**
 * Sections whose keys all have defaults are optional: `.prefault({})` parses a missing section as `{}`,
 * so each default is written once, on its key.
 */
const Log = z
  .strictObject({
    level: LogLevel.default("info").meta({
      description:
        "log level (no per-packet logs at any level); at run time SIGUSR1 raises it to `debug`, SIGUSR2 sets it back, `tincanctl log-level` sets it",
    }),
    format: LogFormat.default("text").meta({
      description:
        "`text`: `time level [component] message {fields}`; `json`: one object per line with `timestamp`, `level`, `component`, `message` and the fields",
    }),
  })
  .prefault({});

/** `$schema`: the file's JSON Schema (schemas/*.schema.json), for editors; ignored. */
const SchemaRef = z
  .string()
  .optional()
  .meta({ description: "the JSON Schema of this file, for editors (ignored)", "x-type": "URL or path" });

export const DEFAULT_RPC = "127.0.0.1:5800";
export const DEFAULT_TOKEN_FILE = "/run/tincan/tincan.token";

/** Loopback only: the RPC API must never be reachable from the network. */
const LoopbackHostPort = ListenAddress.refine(
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
    .default(32)
    .describe(
      "hop limit of the frames this datapath sends; each transit node decrements it (a path takes at most this many links; greedy routes over a structured GroupVPN overlay take up to ~log2(N): p99 10 at 1,000 nodes in the simulator)",
    ),
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
    .max(1 << 30)
    .default(32 << 10)
    .describe(
      "bytes sent per event-loop turn before the vNIC is read again; the rest waits in the send queue",
    ),
  fastPath: z
    .boolean()
    .default(true)
    .describe(
      "move a connected link's frames to the fast path (own UDP socket, keys agreed over the link's DTLS channel) when the peer offers it: directly (host and STUN-mapped addresses), or for a relayed link through the datapath's own allocation on ice.turn's UDP server; links whose fast path finds no way through (and relayed ones without a TURN server) stay on the media track; false: links always stay on the media track",
    ),
  fastPathPort: z
    .number()
    .int()
    .min(0)
    .max(65_535)
    .default(0)
    .describe(
      "UDP port of the fast path's socket (one per datapath, on :: for both families; 0: the highest free port of ice.portRange when that is set, else any free port; a fixed one lets firewall rules name it)",
    ),
  fastRekeyMs: z
    .number()
    .int()
    .min(1000)
    .max(3_600_000)
    .default(120_000)
    .describe("fast-path keys are replaced this often (ms), and after 2^32 packets"),
  rxRssLimitMb: z
    .number()
    .int()
    .min(0)
    .max(1 << 20)
    .default(256)
    .describe(
      "resident memory (MB) above which the datapath closes the link taking the most messages from node-datachannel while memory still grows (libdatachannel queues received messages for the event loop without a bound); the link reports `closed` and the controller sets it up again. 0: never",
    ),
  fastPcCloseMs: z
    .number()
    .int()
    .min(0)
    .max(3_600_000)
    .default(20_000)
    .describe(
      "a link on the fast path this long (ms) closes its PeerConnection and lives on the fast path alone (no ICE consent checks: an idle link then costs ~6.5 B/s each way), when the peer can; a fast path that then stops answering takes the link down (the controller sets it up again) instead of falling back; 0: never close it first (the peer still may)",
    ),
  nativeForward: z.boolean().default(true).meta({
    description:
      "with the fast path up, packets between our own address and a peer's direct host route (/32, /128) go between the TUN and the fast-path socket in native code without entering JavaScript (lower idle RTT); anything else (transit, translation, too big, control frames, a busy send queue) still goes through JavaScript; the link, vNIC and route counters include them",
  }),
});
export type DatapathTune = z.infer<typeof DatapathTune>;

export const TincanConfig = z.strictObject({
  $schema: SchemaRef,
  rpc: LoopbackHostPort.default(DEFAULT_RPC).meta({
    description: "RPC address (loopback only)",
    "x-type": '`"127.x.y.z:port"`',
  }),
  tokenFile: z.string().min(1).default(DEFAULT_TOKEN_FILE).meta({
    description:
      "where the RPC token is written (0600, or 0640 with `tokenGroup`; a relative path is relative to the config file's directory); its directory must not be writable by others (unless sticky) nor owned by another user",
    "x-type": "path",
  }),
  tokenGroup: z
    .string()
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/, "must be a group name or number")
    .optional()
    .meta({
      description:
        "the token is readable by this group (0640), so controllers and `tincanctl` run as its members; `tincan` must be in it. The package's `/etc/tincan/tincan.json` says `tincan`",
      "x-type": "group name or number",
    }),
  maxLinks: z.number().int().min(1).max(65_536).default(4096).meta({
    description: "most links the datapath holds; `link.create`/`link.accept` beyond it fail with `-32011`",
  }),
  log: Log,
  tune: DatapathTune.prefault({}),
});
export type TincanConfig = z.infer<typeof TincanConfig>;

const Datapath = z.strictObject({
  rpc: LoopbackHostPort.default(DEFAULT_RPC).meta({
    description:
      "how the controller reaches its datapath: the datapath's `rpc` (an address, not a host name)",
    "x-type": '`"127.x.y.z:port"`',
  }),
  tokenFile: z.string().min(1).default(DEFAULT_TOKEN_FILE).meta({
    description:
      "how the controller reaches its datapath: the datapath's `tokenFile` (relative: to this file's directory)",
    "x-type": "path",
  }),
  watchdogSec: z.number().min(1).max(3600).default(30).meta({
    description:
      "RPCs left unanswered this long (no answer to anything since the oldest was sent): the datapath counts as hung, logged (warn, with what was pending) and shown by `tincanctl status`",
  }),
  restartOnHang: z.boolean().default(false).meta({
    description:
      "when hung, end the datapath by its PID (SIGKILL) so that its supervisor restarts it; the controller then re-configures it as after any restart. Needs the controller and the datapath in one PID namespace",
  }),
});

const Xmpp = z
  .strictObject({
    service: z
      .string()
      .regex(/^xmpps?:\/\/[^/]+$/, 'must look like "xmpp://host:5222"')
      .optional()
      .meta({
        description:
          "XMPP server (STARTTLS required). Without it the server is found like any XMPP client does: DNS SRV `_xmpp-client._tcp.<domain>` (by priority and weight, the next target after each failed attempt), else `<domain>:5222` (RFC 6120 3.2)",
        "x-type": "`xmpp://host:port`",
        "x-default": "DNS SRV",
      }),
    domain: z.string().min(1).meta({ description: "the account: `username@domain`" }),
    username: z.string().min(1).meta({ description: "the account: `username@domain`" }),
    password: z
      .string()
      .min(1)
      .optional()
      .meta({ description: "password, inline (or `passwordFile`)", "x-default": "one of the two required" }),
    passwordFile: z.string().min(1).optional().meta({
      description: "password, in a file (or `password`)",
      "x-type": "path",
      "x-default": "one of the two required",
    }),
    resource: z.string().min(1).max(64).optional().meta({
      description:
        "XMPP resource: names this device (SocialVPN: its UID, addresses and `<device>.<user>.svpn` name follow from it). Each device of an account needs its own",
      "x-default": "host name (lowercase, other than `[a-z0-9-]` as `-`)",
    }),
    caFile: z.string().min(1).optional().meta({
      description: "PEM of a private CA that signed the server certificate",
      "x-type": "path",
      "x-default": "system CAs",
    }),
    pingIntervalSec: z.number().min(1).max(3600).default(60).meta({
      description:
        "XMPP ping every interval; unanswered after the interval (at most 15 s), the connection is dropped and logged in again. Also caps the reconnect backoff (half of it) and a login attempt (the interval, within 5-30 s): from 5 s up, logged in again within 2 intervals of the server being reachable again",
      "x-type": "seconds, 1..3600",
    }),
  })
  .refine((x) => (x.password === undefined) !== (x.passwordFile === undefined), {
    message: 'give exactly one of "password" or "passwordFile"',
  });

const Turn = z
  .strictObject({
    urls: z.string().regex(/^turns?:/, 'must start with "turn:"'),
    /** With `secret`: the `<uid>` part of the TURN REST user name (default: the node's UID). */
    username: z.string().min(1).optional(),
    credential: z.string().min(1).optional(),
    credentialFile: z.string().min(1).optional(),
    /** coturn `static-auth-secret` (TURN REST): a user name and password are derived per link. */
    secret: z.string().min(1).optional(),
    secretFile: z.string().min(1).optional(),
    /** Seconds derived TURN REST credentials stay valid (counted from the link's creation). */
    ttlSec: z
      .number()
      .int()
      .min(60)
      .max(30 * 86_400)
      .default(86_400),
  })
  .refine(
    (t) =>
      [t.credential, t.credentialFile, t.secret, t.secretFile].filter((v) => v !== undefined).length === 1,
    { message: 'give exactly one of "credential", "credentialFile", "secret" or "secretFile"' },
  )
  .refine((t) => t.username !== undefined || t.credential === undefined, {
    message: '"credential" needs a "username"',
  })
  .refine((t) => t.username !== undefined || t.credentialFile === undefined, {
    message: '"credentialFile" needs a "username"',
  });

const IcePort = z.number().int().min(1024, "ports below 1024 are privileged").max(65_535);

const Ice = z
  .strictObject({
    stun: z
      .array(z.string().regex(/^stun:/, 'must start with "stun:"'))
      .default([])
      .meta({ description: "STUN servers", "x-type": '`["stun:host:port"]`' }),
    turn: z.array(Turn).default([]).meta({
      description:
        "TURN servers (relay fallback). Long-term credentials: `username` and `credential` or `credentialFile`. Or coturn's `static-auth-secret` (`use-auth-secret`, the TURN REST scheme) as `secret` or `secretFile`: each link gets user name `<expiry unix time>:<username or the node's UID>` and password base64(HMAC-SHA1(secret, user name)), valid `ttlSec` (60..2592000, default 86400) from the link's creation (coturn checks it on every request: an older relayed link fails and is set up again); a server that refuses them is logged by `tincan`",
      "x-type": "`[{urls, username?, credential | credentialFile | secret | secretFile, ttlSec?}]`",
    }),
    portRange: z
      .tuple([IcePort, IcePort])
      .refine(([min, max]) => min <= max, "min must not be greater than max")
      .optional()
      .meta({
        description:
          'local UDP ports ICE binds (inclusive), and the fast path\'s socket unless tune.fastPathPort names one (the highest free port of the range); what the firewall opens (see "Firewall"): the range must have room for one more port than ICE uses',
        "x-type": "`[min, max]`, 1024..65535",
        "x-default": "any port",
      }),
    udpMux: z.boolean().default(false).meta({
      description:
        "all links share one UDP port (one of `portRange`, picked at random by libjuice); the fast path takes one more",
    }),
    bindAddress: IpAddress.optional().meta({
      description: "the local address ICE binds to (host candidates are gathered on it only)",
      "x-type": "IP address",
      "x-default": "all addresses",
    }),
  })
  .prefault({});

export const Links = z
  .strictObject({
    policy: z
      .enum(["on-demand", "proactive"])
      .default("on-demand")
      .meta({ description: "link to every online member, or on first packet (GroupVPN also: `structured`)" }),
    maxLinks: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .default(64)
      .meta({ description: "most links at once (more wait in a queue)" }),
    idleTimeoutSec: z
      .number()
      .min(1)
      .default(300)
      .meta({ description: "on-demand links idle this long are trimmed", "x-type": "seconds" }),
    relayFallbackSec: z.number().min(0).default(0.3).meta({
      description:
        "with TURN servers, a relay-only attempt races a direct setup not connected by then (0: both at once); the first to connect carries the link",
      "x-type": "seconds",
    }),
    setupTimeoutSec: z
      .number()
      .min(1)
      .default(10)
      .meta({ description: "a setup not done by then is retried with backoff", "x-type": "seconds" }),
    retryMaxSec: z.number().min(1).max(3600).default(60).meta({
      description:
        "a failed setup is retried after 1 s, doubling (±10 %) up to this; a peer back online or a packet for it retries at once",
      "x-type": "seconds, 1..3600",
    }),
    directRetryMaxSec: z.number().min(5).max(86_400).default(300).meta({
      description:
        "while a link is relayed, a direct path is tried again after 5 s, doubling up to this (each try may take a TURN allocation)",
      "x-type": "seconds, 5..86400",
    }),
    signalBurst: z.number().int().min(4).max(10_000).default(24).meta({
      description:
        "signals (offers, answers, candidates, byes) a peer may send at once; beyond it and `signalsPerSec` they are dropped, counted and logged once per burst",
      "x-type": "count, 4..10000",
    }),
    signalsPerSec: z.number().min(0.1).max(1000).default(4).meta({
      description: "signals per second a peer may send over time (refills `signalBurst`)",
      "x-type": "per second, 0.1..1000",
    }),
  })
  .prefault({});

const Web = z
  .strictObject({
    listen: ListenAddress.refine((s) => s.startsWith("127."), "the map page must listen on 127.0.0.0/8")
      .optional()
      .meta({
        description:
          'serve the live overlay map (`/`, `/overlay.json`, `/events`) on this loopback address (see "Overlay map")',
        "x-type": '`"127.x.y.z:port"`',
        "x-default": "off",
      }),
  })
  .prefault({});

const Vnic = z.strictObject({
  name: z.string().min(1).max(15).default("tincan0").meta({ description: "TUN device name" }),
  ipv4: Ipv4Cidr.meta({
    description:
      "own address and the overlay subnet (GroupVPN) or private range (SocialVPN: at most /30); the own address is not the network or broadcast address of either",
  }),
  ipv6: Ipv6Cidr.optional().meta({
    description:
      "GroupVPN: own IPv6 address (not translated). SocialVPN: must not be set, derived from the JID (`fd53:7670:6e00::/64` + 64 bits of the UID)",
  }),
  mtu: z.number().int().min(576).max(9000).default(1280).meta({ description: "vNIC MTU" }),
});

/**
 * The keys every controller has (what the controller core reads). A controller's config schema is
 * `ControllerConfig.extend({ ...its own keys })` in its own file (e.g. groupvpn-config.ts).
 */
export const ControllerConfig = z.strictObject({
  $schema: SchemaRef,
  datapath: Datapath.prefault({}),
  xmpp: Xmpp,
  vnic: Vnic,
  ice: Ice,
  links: Links,
  log: Log,
  metrics: z
    .strictObject({
      listen: ListenAddress.refine((s) => s.startsWith("127."), "metrics must listen on 127.0.0.0/8")
        .optional()
        .meta({
          description: 'serve Prometheus metrics at `http://<listen>/metrics` (loopback only; see "Metrics")',
          "x-type": '`"127.x.y.z:port"`',
          "x-default": "off",
        }),
    })
    .prefault({}),
  web: Web,
});
export type ControllerConfig = z.infer<typeof ControllerConfig>;
