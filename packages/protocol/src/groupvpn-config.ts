import { z } from "zod";
import { ControllerConfig } from "./config.js";

/** groupvpn.json: the core keys and the roster group. */
export const GroupVpnConfig = ControllerConfig.extend({
  group: z.string().min(1).meta({ description: "the roster group whose members form the VPN" }),
});
export type GroupVpnConfig = z.infer<typeof GroupVpnConfig>;
