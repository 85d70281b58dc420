import { createHash } from "node:crypto";

/** First 128 bits of SHA-256 of `text`, as 32 lowercase hex chars. */
export function uidOf(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 32);
}

/** GroupVPN: the UID of the node owning a virtual IPv4 address (identifier routing). */
export function uidForIpv4(address: string): string {
  return uidOf(address);
}

/** SocialVPN: the UID of a bare JID. */
export function uidForJid(bareJid: string): string {
  return uidOf(bareJid.toLowerCase());
}
