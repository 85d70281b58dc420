import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chown, mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "@tincan/protocol";
import { checkSecretDirectory } from "./secure-files.js";

/** The group that may read the token: controllers and tincanctl run as its members. */
export interface TokenGroup {
  name: string;
  gid: number;
}

/** `tokenGroup` (a name, looked up through NSS with getent, or a number) as a gid; throws if unknown. */
export function resolveTokenGroup(group: string): TokenGroup {
  if (/^\d+$/.test(group)) return { name: group, gid: Number(group) };
  let line: string;
  try {
    line = execFileSync("getent", ["group", group], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    throw new Error(`tokenGroup: no group "${group}" on this system (getent group ${group})`);
  }
  const gid = Number(line.split(":")[2]);
  if (!Number.isInteger(gid)) throw new Error(`tokenGroup: cannot read the gid of "${group}" from getent`);
  return { name: group, gid };
}

/**
 * Writes a fresh random token readable only by its owner, or also by `group` (mode 0640). The
 * directory is created 0700 (0750 with the group) if missing and refused (UnsafeDirectoryError) if
 * others could replace files in it. Returns the token and, when the group cannot reach the token
 * (the directory is not searchable by it), a warning saying what to change.
 */
export async function writeToken(
  file: string,
  group?: TokenGroup,
): Promise<{ token: string; warning: string | null }> {
  const token = randomBytes(24).toString("base64url");
  const dir = path.dirname(file);
  if (group && (await mkdir(dir, { recursive: true, mode: 0o750 })) !== undefined) {
    await chown(dir, -1, group.gid);
  }
  await checkSecretDirectory(dir);
  await writeFileAtomic(file, `${token}\n`, group ? 0o640 : 0o600, group?.gid);
  let warning: string | null = null;
  if (group) {
    const st = await stat(dir);
    const searchable = (st.gid === group.gid && st.mode & 0o010) || st.mode & 0o001;
    if (!searchable)
      warning = `group ${group.name} cannot reach the token: ${dir} is mode 0${(st.mode & 0o777).toString(8)}, group ${st.gid}; e.g. chgrp ${group.name} ${dir} && chmod 0750 ${dir}`;
  }
  return { token, warning };
}
