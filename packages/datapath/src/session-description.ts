import { parseCandidate } from "./ice.js";

/**
 * The SDP text a link exchanges (through the controllers) before it connects: what each side
 * offers (media track or data channels), its capabilities, and its candidates. Pure text work:
 * the Link applies the results to its connection.
 */

/** Media section id of the packet track. */
export const PKT_MID = "pkt";

/**
 * Session-level SDP attribute announcing what the sender accepts, `a=x-tincan-caps:<flags>`
 * (libdatachannel keeps unknown attributes; we read it from the description's text).
 */
const CAPS_ATTRIBUTE = "x-tincan-caps";
const CAPS_RE = new RegExp(`^a=${CAPS_ATTRIBUTE}:(\\d{1,3})\\s*$`, "m");
/** Caps flag: offload frames (type 2). */
export const CAPS_OFFLOAD = 0x01;
/** Caps flag: frames may come as RTP packets on the `pkt` media track. */
export const CAPS_RTP = 0x02;
/** Caps flag: answers path MTU probes on the track. */
export const CAPS_PMTU = 0x04;
/** Caps flag: acknowledges RTP packets taken (FRAME_RX_ACK) and honours the peer's. */
export const CAPS_RX_WINDOW = 0x08;

/** What a peer announced it takes (all false without the attribute). */
export interface PeerCaps {
  offload: boolean;
  rtp: boolean;
  pmtu: boolean;
  rxWindow: boolean;
}

/** Our caps: offload frames always; the track's frames, probes and window when we have the track. */
export const ourCaps = (withTrack: boolean): number =>
  CAPS_OFFLOAD | (withTrack ? CAPS_RTP | CAPS_PMTU | CAPS_RX_WINDOW : 0);

/** Adds our caps as a session-level attribute (after the t= line) of a description we send. */
export function withCaps(sdp: string, caps: number): string {
  return sdp.replace(/^(t=.*)$/m, `$1\r\na=${CAPS_ATTRIBUTE}:${caps}`);
}

/** The peer's caps; RTP ones only count when we have the track too. */
export function readCaps(sdp: string, withTrack: boolean): PeerCaps {
  const m = CAPS_RE.exec(sdp);
  const caps = m ? Number(m[1]) : 0;
  const rtp = (caps & CAPS_RTP) !== 0 && withTrack;
  return {
    offload: (caps & CAPS_OFFLOAD) !== 0,
    rtp,
    pmtu: rtp && (caps & CAPS_PMTU) !== 0,
    rxWindow: rtp && (caps & CAPS_RX_WINDOW) !== 0,
  };
}

/** Whether an offer has the packet track, and whether it has data channels. */
export const offersTrack = (sdp: string): boolean => new RegExp(`^a=mid:${PKT_MID}\\s*$`, "m").test(sdp);
export const offersChannels = (sdp: string): boolean => /^m=application /m.test(sdp);

/** Our offer with the DTLS role taken (`active`: client, `passive`: server) instead of `actpass`. */
export const withSetupRole = (sdp: string, role: "active" | "passive"): string =>
  sdp.replace(/^a=setup:actpass/gm, `a=setup:${role}`);

/** Candidate lines whose address must not carry the link (e.g. our own overlay address). */
export type ExcludeAddress = (address: string) => boolean;

/** Drops candidate lines whose address must not carry the link. */
export function withoutExcludedCandidates(sdp: string, exclude: ExcludeAddress): string {
  return sdp
    .split(/\r?\n/)
    .filter((line) => {
      if (!line.startsWith("a=candidate:")) return true;
      const parsed = parseCandidate(line);
      return !parsed || !exclude(parsed.address);
    })
    .join("\r\n");
}

/** A remote description split into the description without candidates and its candidates. */
export interface SplitDescription {
  sdp: string;
  candidates: string[];
  /** The media section every candidate belongs to (bundled: the first). */
  mid: string;
}

/** Splits the candidate lines (allowed ones only) off a remote description. */
export function splitCandidates(sdp: string, exclude: ExcludeAddress): SplitDescription {
  const lines = withoutExcludedCandidates(sdp, exclude).split(/\r?\n/);
  return {
    sdp: lines.filter((l) => !l.startsWith("a=candidate:")).join("\r\n"),
    candidates: lines.filter((l) => l.startsWith("a=candidate:")).map((l) => l.slice(2)),
    mid: /^a=mid:(\S+)/m.exec(sdp)?.[1] ?? "0",
  };
}

/** Bound of the remembered relay candidates of the peer (a peer has one per TURN server). */
const MAX_REMOTE_RELAYS = 16;

/**
 * The peer's relay candidates (address:port). ICE learns the peer's relay address as
 * peer-reflexive when the peer's checks arrive (through its TURN server) before its relay
 * candidate: remembering them keeps such a path counted as relayed.
 */
export class RemoteRelays {
  private readonly relays = new Set<string>();

  note(c: { address: string; port: string; type: string } | null): void {
    if (c?.type === "relay" && this.relays.size < MAX_REMOTE_RELAYS)
      this.relays.add(`${c.address}:${c.port}`);
  }

  has(addressPort: string): boolean {
    return this.relays.has(addressPort);
  }
}
