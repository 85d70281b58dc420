// SocialVPN test helpers: roster changes made the way chat clients make them, the node's DNS names,
// and its state file.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab, XmppServerHandle } from "../lab/index.js";
import { REPO } from "./datapath-driver.js";
import { PASSWORD, type VpnNode } from "./vpn-node.js";

const BUDDY = join(REPO, "test/support/xmpp-buddy.mjs");

/** Runs test/support/xmpp-buddy.mjs (befriend, unfriend, badpresence) from the lab's internet host. */
export async function buddyOp(lab: Lab, prosody: XmppServerHandle, ...args: string[]): Promise<string> {
  const r = await lab.internet.exec(
    [process.execPath, BUDDY, prosody.service, prosody.domain, prosody.caFile, PASSWORD, ...args],
    { timeoutMs: 30_000 },
  );
  if (r.code !== 0) throw new Error(`xmpp-buddy ${args.join(" ")}: ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/** Asks the node's SocialVPN DNS responder (127.0.0.53:5353) with dig. */
export async function dig(
  n: VpnNode,
  name: string,
  type = "A",
): Promise<{ status: string; answers: string[] }> {
  const r = await n.host.exec(["dig", "@127.0.0.53", "-p", "5353", "+time=2", "+tries=1", name, type]);
  const status = r.stdout.match(/status: (\w+)/)?.[1] ?? `no answer (${r.code})`;
  const answers = [...r.stdout.matchAll(new RegExp(`^\\S+\\s+\\d+\\s+IN\\s+${type}\\s+(\\S+)$`, "gm"))].map(
    (m) => m[1] as string,
  );
  return { status, answers };
}

/** The node's SocialVPN state file: device key (`jid/resource`) -> address of its range. */
export function stateOf(n: VpnNode): Record<string, string> {
  return JSON.parse(readFileSync(join(n.configFile, "..", "socialvpn-state.json"), "utf8")).devices;
}
