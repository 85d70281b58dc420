import { constants, type Stats } from "node:fs";
import { mkdir, open, stat } from "node:fs/promises";
import { RpcParams } from "@tincan/protocol";
import type { Endpoint } from "./rpc-server.js";

/** A directory the datapath must not write its secret files into; the message says why. */
export class UnsafeDirectoryError extends Error {
  override name = "UnsafeDirectoryError";
}

const uid = () => process.getuid?.() ?? 0;

/**
 * Creates the directory (0700) if it is missing, and refuses one that others could plant files in or
 * swap files of: writable by others without the sticky bit, or owned by another user than us or root.
 */
export async function checkSecretDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (!st.isDirectory()) throw new UnsafeDirectoryError(`${dir} is not a directory`);
  const mode = `0${(st.mode & 0o7777).toString(8)}`;
  if (st.mode & 0o002 && !(st.mode & 0o1000))
    throw new UnsafeDirectoryError(
      `${dir} is writable by others (mode ${mode}) without the sticky bit: anyone could replace the token; use a directory only root (or this user) can write, e.g. chmod o-w ${dir}`,
    );
  if (st.uid !== 0 && st.uid !== uid())
    throw new UnsafeDirectoryError(
      `${dir} belongs to uid ${st.uid}, neither root nor this user (uid ${uid()}): its owner could replace the token`,
    );
}

/** What reading the endpoint file gave: the endpoint, nothing (no file), or why it is not used. */
export type EndpointRead = { endpoint: Endpoint } | { missing: true } | { problem: string };

const MAX_ENDPOINT_BYTES = 4096;

/**
 * Reads the endpoint file of the previous datapath's controller without following a symlink, and
 * only if it is a regular file of root or us that others cannot write, with a valid endpoint.
 */
export async function readEndpointFile(file: string): Promise<EndpointRead> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { missing: true };
    if (code === "ELOOP") return { problem: "is a symlink" };
    return { problem: `cannot be read: ${(err as Error).message}` };
  }
  try {
    const st: Stats = await handle.stat();
    if (!st.isFile()) return { problem: "is not a regular file" };
    if (st.uid !== 0 && st.uid !== uid()) return { problem: `belongs to uid ${st.uid}, neither root nor us` };
    if (st.mode & 0o022) return { problem: `is writable by others (mode 0${(st.mode & 0o777).toString(8)})` };
    if (st.size > MAX_ENDPOINT_BYTES) return { problem: `is larger than ${MAX_ENDPOINT_BYTES} bytes` };
    const text = (await handle.readFile("utf8")).slice(0, MAX_ENDPOINT_BYTES);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { problem: "is not valid JSON" };
    }
    const parsed = RpcParams.hello.shape.controller.safeParse(json);
    if (!parsed.success) return { problem: 'is not {"host":"127.0.0.1","port":N}' };
    return { endpoint: parsed.data };
  } catch (err) {
    return { problem: `cannot be read: ${(err as Error).message}` };
  } finally {
    await handle.close().catch(() => {});
  }
}
