// Loading the addon (build/Release/tuntap.node) and the package's coded argument errors,
// shared by Tun (index.ts) and FastSocket (fast-socket.ts).

import { createRequire } from "node:module";

let native: unknown;

/** The addon object behind each FastSocket, for Tun.forwardTo (private to this package). */
export const nativeObjects = new WeakMap<object, object>();

export function codedError<E extends Error>(err: E, code: string, extra?: Record<string, unknown>): E {
  return Object.assign(err, { code }, extra);
}

export function invalid(message: string): TypeError {
  return codedError(new TypeError(`tuntap: ${message}`), "ERR_INVALID_ARG_VALUE");
}

export function outOfRange(message: string): RangeError {
  return codedError(new RangeError(`tuntap: ${message}`), "ERR_OUT_OF_RANGE");
}

/** The addon's exports (typed by the caller); throws a coded Error when it cannot load. */
export function loadNative<T>(): T {
  if (native) return native as T;
  if (process.platform !== "linux") {
    throw codedError(new Error("tuntap: Linux only"), "ERR_TUNTAP_UNSUPPORTED_PLATFORM");
  }
  const require = createRequire(import.meta.url);
  try {
    native = require("../build/Release/tuntap.node");
  } catch (e) {
    throw codedError(
      new Error(
        `tuntap: cannot load the native addon (build it with \`pnpm --filter @tincan/tuntap run build\`): ${(e as Error).message}`,
      ),
      "ERR_TUNTAP_NOT_BUILT",
      { cause: e },
    );
  }
  return native as T;
}
