import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";

/**
 * Writes a file atomically and safely in a directory others may also write: the data goes to a new
 * temp file of an unpredictable name, created with O_CREAT|O_EXCL|O_NOFOLLOW (a planted file or
 * symlink makes this fail instead of being written through), synced, then renamed over the target
 * (rename replaces a symlink there, never follows it). With `gid`, the file gets that group first.
 */
export async function writeFileAtomic(file: string, data: string, mode = 0o600, gid?: number): Promise<void> {
  const tmp = `${file}.${randomBytes(9).toString("base64url")}.tmp`;
  const handle = await open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    try {
      await handle.writeFile(data);
      if (gid !== undefined) await handle.chown(-1, gid);
      await handle.chmod(mode); // the umask may have taken bits; never adds any beyond `mode`
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}
