#!/usr/bin/env node
// What a user's other client (a phone) gets to see of TinCan-TS signalling: message carbons
// (XEP-0280) while it is online, and the server's message archive (XEP-0313) afterwards. Usage:
//   node xmpp-archive.mjs SERVICE DOMAIN CAFILE USER PASSWORD watch SECONDS
//        logs in as USER/phone, enables carbons, stays available for SECONDS and prints
//        {"messages": N, "signals": N} for every message it received (carbon copies included)
//   node xmpp-archive.mjs SERVICE DOMAIN CAFILE USER PASSWORD archive
//        pages through USER's whole archive and prints {"messages": N, "signals": N, "bodies": [...]}
//   node xmpp-archive.mjs SERVICE DOMAIN CAFILE USER PASSWORD chat TO BODY
//        sends one ordinary chat message (a control: the archive must keep it)

import { loadXmppClient } from "./xmpp-lab-client.mjs";

const [service, domain, caFile, username, password, cmd, ...args] = process.argv.slice(2);
const { client, xml } = await loadXmppClient(caFile);
const NS_MAM = "urn:xmpp:mam:2";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_SIGNAL = "urn:tincan:signal:0";

const deadline = setTimeout(
  () => {
    console.error(`timeout (${cmd})`);
    process.exit(1);
  },
  (Number(args[0]) || 0) * 1000 + 20_000,
);

const x = client({ service, domain, username, password, resource: "phone" });
x.on("error", (e) => console.error(`xmpp error: ${e.message}`));
await x.start();

/** True when the element, or a message forwarded inside it, carries a TinCan signal. */
function hasSignal(el) {
  return el.toString().includes(NS_SIGNAL);
}

if (cmd === "watch") {
  let messages = 0;
  let signals = 0;
  x.on("stanza", (s) => {
    if (!s.is("message")) return;
    messages++;
    if (hasSignal(s)) signals++;
  });
  await x.iqCaller.request(xml("iq", { type: "set" }, xml("enable", { xmlns: NS_CARBONS })));
  await x.send(xml("presence"));
  await new Promise((r) => setTimeout(r, Number(args[0]) * 1000));
  console.log(JSON.stringify({ messages, signals }));
} else if (cmd === "archive") {
  let messages = 0;
  let signals = 0;
  const bodies = [];
  x.on("stanza", (s) => {
    const forwarded = s.is("message") ? s.getChild("result", NS_MAM)?.getChild("forwarded") : undefined;
    if (!forwarded) return;
    messages++;
    if (hasSignal(forwarded)) signals++;
    const body = forwarded.getChild("message")?.getChildText("body");
    if (body) bodies.push(body);
  });
  let after;
  for (;;) {
    const set = xml("set", { xmlns: "http://jabber.org/protocol/rsm" }, xml("max", {}, "100"));
    if (after) set.append(xml("after", {}, after));
    const res = await x.iqCaller.request(
      xml("iq", { type: "set" }, xml("query", { xmlns: NS_MAM, queryid: "q" }, set)),
      15_000,
    );
    const fin = res.getChild("fin", NS_MAM);
    after = fin?.getChild("set")?.getChildText("last");
    if (!fin || fin.attrs.complete === "true" || !after) break;
  }
  console.log(JSON.stringify({ messages, signals, bodies }));
} else if (cmd === "chat") {
  const [to, body] = args;
  await x.send(xml("message", { type: "chat", to }, xml("body", {}, body)));
  // The server archives on receipt; give it the round trip of a ping before leaving.
  await x.iqCaller.request(xml("iq", { type: "get", to: domain }, xml("ping", { xmlns: "urn:xmpp:ping" })));
  console.log(JSON.stringify({ sent: true }));
} else {
  console.error(`unknown command ${cmd}`);
  process.exit(2);
}
clearTimeout(deadline);
await x.stop();
