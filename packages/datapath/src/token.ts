import { randomBytes } from "node:crypto";
import path from "node:path";
import { writeFileAtomic } from "@tincan/protocol";
import { checkSecretDirectory } from "./secure-files.js";

/**
 * Writes a fresh random token readable only by its owner. The directory is created 0700 if missing
 * and refused (UnsafeDirectoryError) if others could replace files in it.
 */
export async function writeToken(file: string): Promise<string> {
  const token = randomBytes(24).toString("base64url");
  await checkSecretDirectory(path.dirname(file));
  await writeFileAtomic(file, `${token}\n`, 0o600);
  return token;
}
