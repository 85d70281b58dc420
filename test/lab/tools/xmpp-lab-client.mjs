// @xmpp/client for the lab's scripts: loaded from packages/controller (the only package that
// depends on it), with the controller's own patches (packages/controller/src/xmpp-patches.ts:
// the lab's private CA trusted for the XMPP domain only, verification on; native SCRAM key
// derivation, without which a login costs ~1.4 s of CPU and times out on a loaded machine; no
// crash on socket data after a stream close). Needs the controller built (dist/).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export async function loadXmppClient(caFile) {
  const here = dirname(fileURLToPath(import.meta.url));
  const controllerDir = resolve(here, "../../../packages/controller");
  const require = createRequire(resolve(controllerDir, "package.json"));
  const clientDir = dirname(require.resolve("@xmpp/client/package.json"));
  const caPem = readFileSync(caFile, "utf8");
  const xmppClient = await import(pathToFileURL(resolve(clientDir, "index.js")).href);
  const { patchClient } = await import(pathToFileURL(resolve(controllerDir, "dist/xmpp-patches.js")).href);
  const client = (options) => {
    const x = xmppClient.client(options);
    patchClient(x, { domain: options.domain, caPem });
    return x;
  };
  return { ...xmppClient, client };
}
