import { z } from "zod";
import { ListenAddress } from "./common.js";
import { ControllerConfig, Links } from "./config.js";
import { type Ipv4Range, ipv4Range } from "./ip.js";

/** socialvpn.json: the core keys and SocialVPN's own. */
export const SocialVpnConfig = ControllerConfig.extend({
  links: Links.unwrap()
    .extend({
      relayForBuddies: z.boolean().default(false).meta({
        description:
          "SocialVPN: offer your buddies (and your own devices) to relay their IPv6 traffic to each other through this device while a direct link between them is set up",
      }),
    })
    .prefault({}),
  stateFile: z.string().min(1).optional().meta({
    description: "device (`<jid>/<resource>`) -> address map, kept across restarts",
    "x-type": "path",
    "x-default":
      "`/var/lib/tincan/<config name>-state.json` (root or user tincan), else `$XDG_STATE_HOME/tincan/` (or `~/.local/state/tincan/`)",
  }),
  dns: z
    .strictObject({
      suffix: z
        .string()
        .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)*$/)
        .default("svpn")
        .meta({ description: "names: `<buddy>.<suffix>`, `<device>.<buddy>.<suffix>`" }),
      listen: ListenAddress.default("127.0.0.53:5353").meta({
        description: "buddy names: where their DNS server listens (an address, not a host name)",
        "x-type": "`ip:port`",
      }),
    })
    .prefault({}),
}).superRefine((c, ctx) => {
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
