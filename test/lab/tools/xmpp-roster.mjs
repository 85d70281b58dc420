#!/usr/bin/env node
// Log in with @xmpp/client (from packages/controller's dependencies), trusting the server's
// certificate through tls `ca` (verification stays on), and print the roster as JSON:
// [{jid, subscription, groups: [..]}]. Verification stays on: the CA is added to tls.connect's
// options (see xmpp-lab-client.mjs).
// usage: node xmpp-roster.mjs SERVICE DOMAIN USER PASSWORD CAFILE
import { loadXmppClient } from "./xmpp-lab-client.mjs";

const [service, domain, username, password, caFile] = process.argv.slice(2);
const { client, xml } = await loadXmppClient(caFile);

const xmpp = client({ service, domain, username, password, resource: "lab-probe" });
const timer = setTimeout(() => {
  console.error("timeout");
  process.exit(1);
}, 10_000);
xmpp.on("error", (e) => {
  console.error(`xmpp error: ${e.message}`);
  process.exit(1);
});
xmpp.on("online", async () => {
  const res = await xmpp.iqCaller.request(
    xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })),
  );
  const items = res
    .getChild("query")
    .getChildren("item")
    .map((it) => ({
      jid: it.attrs.jid,
      subscription: it.attrs.subscription,
      groups: it.getChildren("group").map((g) => g.text()),
    }));
  console.log(JSON.stringify(items));
  clearTimeout(timer);
  await xmpp.stop().catch(() => {});
  process.exit(0);
});
await xmpp.start();
