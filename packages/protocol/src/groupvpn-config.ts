import { z } from "zod";
import { ControllerConfig } from "./config.js";
import { isNetworkOrBroadcast } from "./ip.js";

/** groupvpn.json: the core keys and the roster group. */
export const GroupVpnConfig = ControllerConfig.extend({
  group: z.string().min(1).meta({ description: "the roster group whose members form the VPN" }),
}).refine((c) => !isNetworkOrBroadcast(c.vnic.ipv4), {
  path: ["vnic", "ipv4"],
  message: "the own address must not be the network or broadcast address of the subnet",
});
export type GroupVpnConfig = z.infer<typeof GroupVpnConfig>;
