import { createHash } from "node:crypto";
import { hostname } from "node:os";

/** First 128 bits of SHA-256 of `text`, as 32 lowercase hex chars. */
export function uidOf(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 32);
}

/** GroupVPN: the UID of the node owning a virtual IPv4 address (identifier routing). */
export function uidForIpv4(address: string): string {
  return uidOf(address);
}

/** SocialVPN before devices: the UID of a bare JID (kept for the migration of saved state). */
export function uidForJid(bareJid: string): string {
  return uidOf(bareJid.toLowerCase());
}

/**
 * SocialVPN: the UID of one device of an account, from its full JID (bare JID lowercased, resource as
 * it is). Stable while the device keeps its resource, and any peer can check it from the JID the
 * server vouches for, so a device cannot take another's UID (or the IPv6 address derived from it).
 */
export function uidForDevice(bareJid: string, resource: string): string {
  return uidOf(`${bareJid.toLowerCase()}/${resource}`);
}

/**
 * The default XMPP resource, which names the device: the host name, lowercased, with anything but
 * [a-z0-9-] as "-" (so it is also a DNS label), at most 63 characters.
 */
export function defaultDeviceName(host: string = hostname()): string {
  return (
    host
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "-")
      .slice(0, 63) || "device"
  );
}
