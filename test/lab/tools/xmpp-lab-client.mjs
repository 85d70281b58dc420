// @xmpp/client for the lab's scripts: loaded from packages/controller (the only package that
// depends on it), trusting the lab's self-signed CA for this process only (verification stays on).
// @xmpp/starttls 0.14 calls tls.connect({socket, host}) with no way to pass `ca`, so tls.connect is
// wrapped; the alternative, NODE_EXTRA_CA_CERTS, is read only at process start.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import tls from "node:tls";
import { fileURLToPath, pathToFileURL } from "node:url";

export async function loadXmppClient(caFile) {
  const here = dirname(fileURLToPath(import.meta.url));
  const require = createRequire(resolve(here, "../../../packages/controller/package.json"));
  const clientDir = dirname(require.resolve("@xmpp/client/package.json"));
  const ca = readFileSync(caFile, "utf8");
  const origConnect = tls.connect;
  tls.connect = (options, ...rest) =>
    typeof options === "object" && options !== null
      ? origConnect.call(tls, { ca, ...options }, ...rest)
      : origConnect.call(tls, options, ...rest);
  return import(pathToFileURL(resolve(clientDir, "index.js")).href);
}
