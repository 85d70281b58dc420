import { z } from "zod";
import { Prefix } from "./common.js";
import { ControllerConfig, Links } from "./config.js";
import { type IpPrefix, isNetworkOrBroadcast, parsePrefix } from "./ip.js";
import { overlappingPrefixes } from "./prefixes.js";

/** Router mode: prefixes behind this member, who may advertise them, and whether we take others'. */
const Routes = z
  .strictObject({
    advertise: z.array(Prefix).max(32).default([]).meta({
      description:
        'prefixes behind this node that it carries for the group (router mode, see "Router mode"): network addresses, not overlapping each other or the overlay subnet; needs `routerGroup`, and this member in that group',
      "x-type": '`["192.168.50.0/24", "fd00:50::/64"]`',
    }),
    routerGroup: z.string().min(1).optional().meta({
      description:
        "the roster group whose members may advertise prefixes; advertisements of others are ignored (logged once)",
      "x-default": "nobody may advertise",
    }),
    accept: z.boolean().default(false).meta({
      description:
        "route the prefixes routers advertise over the overlay (on-demand links, kernel routes on the vNIC), like `--accept-routes`",
    }),
    exitNode: z
      .string()
      .min(3)
      .max(3071)
      .regex(/^[^@/\s]+@[^@/\s]+$/, "must be a bare JID (user@domain)")
      .optional()
      .meta({
        description:
          'send all traffic through this router (its JID), which advertises the default route (`0.0.0.0/0`, `::/0`) and masquerades it; the XMPP server, STUN/TURN servers and the underlay of our links stay outside (see "Exit node"); needs `accept`',
        "x-type": '`"gw@example.org"`',
        "x-default": "none",
      }),
  })
  .prefault({});

/** The core link keys, plus the structured overlay (issue #18): a ring by UID with long-distance links. */
const GroupLinks = Links.unwrap()
  .extend({
    policy: z.enum(["on-demand", "proactive", "structured"]).default("on-demand").meta({
      description:
        'link to every online member (`proactive`), on first packet (`on-demand`), or keep a ring by UID with long-distance links and route the rest over it (`structured`, see "Structured overlay")',
    }),
    successors: z.number().int().min(1).max(8).default(2).meta({
      description: "`structured`: links to this many ring successors and as many predecessors",
    }),
    longDistance: z
      .union([z.literal("auto"), z.number().int().min(0).max(32)])
      .default("auto")
      .meta({
        description:
          "`structured`: long-distance links (Symphony: harmonic over the ring); `auto` = floor(log2(N) / 2) of its own (at least 1), N estimated from the ring neighbours; about as many come in from others, so a node holds about log2(N) in all",
        "x-type": "`auto` or 0..32",
      }),
    shortcutBytesPerSec: z.number().int().min(0).default(8192).meta({
      description:
        "`structured`: a member we send more than this to (bytes/s, over 5 s) gets a direct shortcut link; 0: never (trimmed when idle, as on-demand links)",
      "x-type": "bytes/s",
    }),
  })
  .prefault({});

/** groupvpn.json: the core keys, the roster group and router mode. */
export const GroupVpnConfig = ControllerConfig.extend({
  links: GroupLinks,
  group: z.string().min(1).meta({ description: "the roster group whose members form the VPN" }),
  routes: Routes,
}).superRefine((c, ctx) => {
  if (isNetworkOrBroadcast(c.vnic.ipv4)) {
    ctx.addIssue({
      code: "custom",
      path: ["vnic", "ipv4"],
      message: "the own address must not be the network or broadcast address of the subnet",
    });
  }
  const { advertise, routerGroup } = c.routes;
  if (advertise.length > 0 && routerGroup === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["routes", "advertise"],
      message: "needs routes.routerGroup (only members of the router group may advertise)",
    });
  }
  for (const [i, text] of advertise.entries()) {
    const p = prefixOrNull(text);
    if (!p) continue;
    if (p.address !== p.network)
      ctx.addIssue({
        code: "custom",
        path: ["routes", "advertise", i],
        message: `host bits set: the network is ${p.network}/${p.length}`,
      });
  }
  if (c.routes.exitNode !== undefined && !c.routes.accept) {
    ctx.addIssue({
      code: "custom",
      path: ["routes", "exitNode"],
      message: "needs routes.accept: true (an exit node's default route is an accepted route)",
    });
  }
  const own = [c.vnic.ipv4, ...(c.vnic.ipv6 ? [c.vnic.ipv6] : [])];
  const all = [...own, ...advertise];
  // The default route (exit node) contains everything: longest-prefix match keeps the rest apart.
  const isDefault = (i: number) => prefixOrNull(all[i] as string)?.length === 0;
  for (const [a, b] of overlappingPrefixes(all)) {
    if (b < own.length || isDefault(a) || isDefault(b)) continue;
    ctx.addIssue({
      code: "custom",
      path: ["routes", "advertise", b - own.length],
      message:
        a < own.length ? `overlaps the overlay subnet ${own[a]}` : `overlaps ${advertise[a - own.length]}`,
    });
  }
});
export type GroupVpnConfig = z.infer<typeof GroupVpnConfig>;

function prefixOrNull(text: string): IpPrefix | null {
  try {
    return parsePrefix(text);
  } catch {
    return null;
  }
}
