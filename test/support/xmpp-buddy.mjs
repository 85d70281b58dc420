#!/usr/bin/env node
// Roster changes the way a user's chat client makes them (for the SocialVPN system test), with
// @xmpp/client from packages/controller's dependencies and the lab CA passed as TLS `ca` (verification
// stays on; see test/lab/tools/xmpp-roster.mjs). Usage:
//   node xmpp-buddy.mjs SERVICE DOMAIN CAFILE PASSWORD befriend USER_A USER_B
//        both log in; each asks for the other's presence and approves the other's request,
//        until both rosters show subscription "both"
//   node xmpp-buddy.mjs SERVICE DOMAIN CAFILE PASSWORD unfriend USER_A USER_B
//        A removes B from its roster (iq set, subscription="remove"): the server pushes the change to
//        all of A's resources and cancels both subscriptions, so B gets a push too; prints
//        {"removedAt": <ms since epoch when the server answered>, "subscription": ...}
//   node xmpp-buddy.mjs SERVICE DOMAIN CAFILE PASSWORD badpresence USER RESOURCE
//        USER logs in as RESOURCE and sends a presence with a malformed <tincan> child

import { loadXmppClient } from "../lab/tools/xmpp-lab-client.mjs";

const [service, domain, caFile, password, cmd, a, b] = process.argv.slice(2);
const { client, xml } = await loadXmppClient(caFile);

const NS_ROSTER = "jabber:iq:roster";
const timer = setTimeout(() => {
  console.error(`timeout (${cmd})`);
  process.exit(1);
}, 20_000);

async function login(username, resource = "buddy-script") {
  const x = client({ service, domain, username, password, resource });
  x.on("error", (e) => console.error(`${username}: xmpp error: ${e.message}`));
  await x.start(); // resolves once online
  return x;
}

/** Initial presence: the server delivers subscription requests only to available resources. */
async function available(x) {
  await x.send(xml("presence", null, xml("priority", null, "-1")));
}

async function subscription(x, jid) {
  const res = await x.iqCaller.request(xml("iq", { type: "get" }, xml("query", { xmlns: NS_ROSTER })));
  const item = res
    .getChild("query")
    .getChildren("item")
    .find((i) => i.attrs.jid === jid);
  return item?.attrs.subscription ?? "absent";
}

const jid = (u) => `${u}@${domain}`;

if (cmd === "befriend") {
  const xa = await login(a);
  const xb = await login(b);
  for (const [x, other] of [
    [xa, jid(b)],
    [xb, jid(a)],
  ]) {
    x.on("stanza", (s) => {
      if (s.is("presence") && s.attrs.type === "subscribe" && s.attrs.from?.split("/")[0] === other) {
        void x.send(xml("presence", { to: other, type: "subscribed" }));
      }
    });
  }
  await Promise.all([available(xa), available(xb)]);
  await xa.send(xml("presence", { to: jid(b), type: "subscribe" }));
  await xb.send(xml("presence", { to: jid(a), type: "subscribe" }));
  for (;;) {
    const [sa, sb] = [await subscription(xa, jid(b)), await subscription(xb, jid(a))];
    if (sa === "both" && sb === "both") break;
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`${jid(a)} <-> ${jid(b)}: both`);
  await Promise.all([xa.stop(), xb.stop()]).catch(() => {});
} else if (cmd === "unfriend") {
  const xa = await login(a);
  await xa.iqCaller.request(
    xml(
      "iq",
      { type: "set" },
      xml("query", { xmlns: NS_ROSTER }, xml("item", { jid: jid(b), subscription: "remove" })),
    ),
  );
  const removedAt = Date.now(); // the server has applied the removal and sent its pushes
  console.log(JSON.stringify({ removedAt, subscription: await subscription(xa, jid(b)) }));
  await xa.stop().catch(() => {});
} else if (cmd === "badpresence") {
  const x = await login(a, b);
  await x.send(
    xml(
      "presence",
      null,
      xml("priority", null, "-1"),
      xml("tincan", { xmlns: "urn:tincan:0", uid: "not-a-uid", ipv4: "300.1.2.3" }),
    ),
  );
  await new Promise((r) => setTimeout(r, 1500));
  console.log("sent");
  await x.stop().catch(() => {});
} else {
  console.error(`unknown command ${cmd}`);
  process.exit(2);
}
clearTimeout(timer);
process.exit(0);
