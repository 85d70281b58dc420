import { z } from "zod";
import { IpAddress, Ipv4Cidr, Ipv6Cidr, ListenAddress, LogLevel } from "./common.js";
import { type Ipv4Range, ipv4Range, isNetworkOrBroadcast } from "./ip.js";

const Log = z.strictObject({ level: LogLevel.default("info") }).default({ level: "info" });

export const DEFAULT_RPC = "127.0.0.1:5800";
export const DEFAULT_TOKEN_FILE = "/run/tincan/tincan.token";

/** Loopback only: the RPC API must never be reachable from the network. */
const LoopbackHostPort = ListenAddress.refine(
  (s) => s.startsWith("127."),
  "the RPC address must be on 127.0.0.0/8",
);

export const TincanConfig = z.strictObject({
  rpc: LoopbackHostPort.default(DEFAULT_RPC),
  tokenFile: z.string().min(1).default(DEFAULT_TOKEN_FILE),
  /** Group (name or number) given read access to the token (mode 0640), for controllers and tincanctl. */
  tokenGroup: z
    .string()
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/, "must be a group name or number")
    .optional(),
  /** Links the datapath holds at most; link.create / link.accept beyond it get TooManyLinks. */
  maxLinks: z.number().int().min(1).max(65_536).default(4096),
  log: Log,
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
const DATAPATH_DEFAULTS = {
  rpc: DEFAULT_RPC,
  tokenFile: DEFAULT_TOKEN_FILE,
  watchdogSec: 30,
  restartOnHang: false,
};

const Xmpp = z
  .strictObject({
    /** Optional: without it the server is found by DNS SRV `_xmpp-client._tcp.<domain>` (else domain:5222). */
    service: z
      .string()
      .regex(/^xmpps?:\/\/[^/]+$/, 'must look like "xmpp://host:5222"')
      .optional(),
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
    stun: z.array(z.string().regex(/^stun:/, 'must start with "stun:"')).default([]),
    turn: z.array(Turn).default([]),
    /** Local UDP ports ICE may use, [min, max] inclusive: what the firewall opens (see README "Firewall"). */
    portRange: z
      .tuple([IcePort, IcePort])
      .refine(([min, max]) => min <= max, "min must not be greater than max")
      .optional(),
    /** All links share one UDP port (the first of `portRange`; otherwise any). */
    udpMux: z.boolean().default(false),
    /** The local address ICE binds to (host candidates are gathered on it only). */
    bindAddress: IpAddress.optional(),
  })
  .default({ stun: [], turn: [], udpMux: false });

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
  .default({
    policy: "on-demand",
    maxLinks: 64,
    idleTimeoutSec: 300,
    relayFallbackSec: 0.3,
    setupTimeoutSec: 10,
  });

const Vnic = z.strictObject({
  name: z.string().min(1).max(15).default("tincan0"),
  ipv4: Ipv4Cidr,
  ipv6: Ipv6Cidr.optional(),
  mtu: z.number().int().min(576).max(9000).default(1280),
});

const ControllerBase = {
  datapath: Datapath.default(DATAPATH_DEFAULTS),
  xmpp: Xmpp,
  vnic: Vnic,
  ice: Ice,
  links: Links,
  log: Log,
};

export const GroupVpnConfig = z
  .strictObject({ ...ControllerBase, group: z.string().min(1) })
  .refine((c) => !isNetworkOrBroadcast(c.vnic.ipv4), {
    path: ["vnic", "ipv4"],
    message: "the own address must not be the network or broadcast address of the subnet",
  });
export type GroupVpnConfig = z.infer<typeof GroupVpnConfig>;

export const SocialVpnConfig = z
  .strictObject({
    ...ControllerBase,
    stateFile: z.string().min(1).optional(),
    dns: z
      .strictObject({
        suffix: z
          .string()
          .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)*$/)
          .default("svpn"),
        listen: ListenAddress.default("127.0.0.53:5353"),
      })
      .default({ suffix: "svpn", listen: "127.0.0.53:5353" }),
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
    let range: Ipv4Range;
    try {
      range = ipv4Range(c.vnic.ipv4);
    } catch {
      return; // malformed: vnic.ipv4 has its own issue already
    }
    if (range.length > 30) {
      ctx.addIssue({
        code: "custom",
        path: ["vnic", "ipv4"],
        message: "the range needs room for buddies: use a prefix of /30 or shorter",
      });
    } else if (range.address === range.network || range.address === range.broadcast) {
      ctx.addIssue({
        code: "custom",
        path: ["vnic", "ipv4"],
        message: "the own address must not be the network or broadcast address of its range",
      });
    }
  });
export type SocialVpnConfig = z.infer<typeof SocialVpnConfig>;
