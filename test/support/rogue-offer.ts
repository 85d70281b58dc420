// Runs inside a lab host: logs in as USER and sends link offers straight to a member's full JID.
//   tsx rogue-offer.ts SERVICE DOMAIN USER PASSWORD CAFILE TARGET_FULL_JID TARGET_UID [COUNT IPV4 DESCRIPTION_FILE]
// Without the optional arguments USER is NOT a group member: 3 offers with a stub description, no
// tincan presence. With them USER is a member that announces tincan presence for IPV4 (its UID is
// the one of IPV4) and floods COUNT offers, each with a fresh setup id and the SDP description in
// DESCRIPTION_FILE (JSON, e.g. from a real datapath's link.create), as fast as it can.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { nullLog, XmppSession } from "@tincan/controller";
import { type Signal, uidForIpv4 } from "@tincan/protocol";

const [service, domain, username, password, caFile, target, targetUid, count, ipv4, descriptionFile] =
  process.argv.slice(2) as string[];
const session = new XmppSession({
  service: service!,
  domain: domain!,
  username: username!,
  password: password!,
  caFile,
  log: nullLog,
});
const from = uidForIpv4(ipv4 ?? "10.10.0.66");
if (ipv4) await session.setPresence({ uid: from, ipv4 });
const online = once(session, "online");
await session.start();
await online;
const offers = Number(count ?? 3);
const description: Extract<Signal, { type: "offer" }>["description"] = descriptionFile
  ? JSON.parse(readFileSync(descriptionFile, "utf8"))
  : { type: "offer", sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" };
// Presence first: the target only takes signals from a resource whose tincan presence it has seen.
if (ipv4) await new Promise((r) => setTimeout(r, 1500));
const t0 = Date.now();
const sends: Promise<void>[] = [];
for (let i = 0; i < offers; i++) {
  sends.push(
    session.sendSignal(target!, {
      type: "offer",
      from,
      to: targetUid!,
      setup: `rogue${i}`,
      relayOnly: false,
      description,
    }),
  );
}
await Promise.all(sends);
console.log(JSON.stringify({ sent: offers, ms: Date.now() - t0 }));
await session.stop();
process.exit(0);
