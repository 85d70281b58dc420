#!/usr/bin/env node
// Log in with @xmpp/client (from packages/controller's dependencies), trusting the server's
// certificate through tls `ca` (verification stays on), and print the roster as JSON:
// [{jid, subscription, groups: [..]}]. Verification stays on: the CA is added to tls.connect's
// options. (@xmpp/starttls 0.14 calls tls.connect({socket, host}) with no way to pass `ca`, so we
// wrap tls.connect; the alternative is NODE_EXTRA_CA_CERTS, read only at process start.)
// usage: node xmpp-roster.mjs SERVICE DOMAIN USER PASSWORD CAFILE
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import tls from "node:tls";
import { fileURLToPath, pathToFileURL } from "node:url";

const [service, domain, username, password, caFile] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const controllerPkg = resolve(here, "../../../packages/controller/package.json");
const require = createRequire(controllerPkg);
const clientDir = dirname(require.resolve("@xmpp/client/package.json"));
const { client, xml } = await import(pathToFileURL(resolve(clientDir, "index.js")).href);

const ca = readFileSync(caFile, "utf8");
const origConnect = tls.connect;
tls.connect = (options, ...rest) =>
  typeof options === "object" && options !== null
    ? origConnect.call(tls, { ca, ...options }, ...rest)
    : origConnect.call(tls, options, ...rest);

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
