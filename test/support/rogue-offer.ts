// Runs inside a lab host: logs in as a JID that is NOT a group member and sends link offers
// (and a malformed signal) straight to a member's full JID. Usage:
//   tsx rogue-offer.ts SERVICE DOMAIN USER PASSWORD CAFILE TARGET_FULL_JID TARGET_UID
import { once } from "node:events";
import { nullLog, XmppSession } from "@tincan/controller";
import { uidForIpv4 } from "@tincan/protocol";

const [service, domain, username, password, caFile, target, targetUid] = process.argv.slice(2) as string[];
const session = new XmppSession({
  service: service!,
  domain: domain!,
  username: username!,
  password: password!,
  caFile,
  log: nullLog,
});
const online = once(session, "online");
await session.start();
await online;
const from = uidForIpv4("10.10.0.66");
for (let i = 0; i < 3; i++) {
  await session.sendSignal(target!, {
    type: "offer",
    from,
    to: targetUid!,
    setup: `rogue${i}`,
    relayOnly: false,
    description: { type: "offer", sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" },
  });
}
console.log("sent");
await session.stop();
process.exit(0);
