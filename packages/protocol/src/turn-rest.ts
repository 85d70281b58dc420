import { createHmac } from "node:crypto";

/**
 * TURN REST credentials (coturn `use-auth-secret`): user name "<expiry unix time>:<user>", password
 * base64(HMAC-SHA1(secret, user name)). coturn checks the expiry on every request, refreshes included.
 */
export function turnRestCredentials(
  secret: string,
  user: string,
  ttlSec: number,
  nowMs = Date.now(),
): { username: string; password: string } {
  const username = `${Math.floor(nowMs / 1000) + ttlSec}:${user}`;
  return { username, password: createHmac("sha1", secret).update(username).digest("base64") };
}
