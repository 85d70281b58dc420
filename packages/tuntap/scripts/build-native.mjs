#!/usr/bin/env node
// Builds the native addon with the node-gyp installed in this package.
// There may be no internet access, so point node-gyp at the Node headers already on this
// machine (e.g. /usr/include/node from the distribution package, or <prefix>/include/node
// of an official tarball) instead of letting it download them.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

if (process.platform !== "linux") {
  console.warn(`tuntap: skipping native build on ${process.platform} (Linux only)`);
  process.exit(0);
}

function findNodeDir() {
  if (process.env.TUNTAP_NODEDIR) return process.env.TUNTAP_NODEDIR;
  const candidates = [path.dirname(path.dirname(process.execPath)), "/usr", "/usr/local"];
  for (const dir of candidates) {
    if (existsSync(path.join(dir, "include", "node", "node_api.h"))) return dir;
  }
  return undefined;
}

const bin = path.join(pkgDir, "node_modules", ".bin", "node-gyp");
if (!existsSync(bin)) {
  console.error(`tuntap: ${bin} not found; run pnpm install first`);
  process.exit(1);
}

const args = ["rebuild"];
const nodedir = findNodeDir();
if (nodedir) args.push(`--nodedir=${nodedir}`);
else console.warn("tuntap: no local Node headers found; node-gyp will try to download them");

console.log(`tuntap: node-gyp ${args.join(" ")}`);
const res = spawnSync(bin, args, { cwd: pkgDir, stdio: "inherit" });
if (res.error) {
  console.error(`tuntap: cannot run node-gyp: ${res.error.message}`);
  process.exit(1);
}
process.exit(res.status ?? 1);
