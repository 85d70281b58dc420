import type { SessionDescription } from "@tincan/protocol";
import type { PeerConnection } from "node-datachannel";
import { parseCandidate } from "./ice.js";

/**
 * What a link exchanges (through the controllers) before it connects: its SDP (media track or
 * data channels offered, capabilities, DTLS role) and its candidates. The text functions are
 * pure; Negotiation applies descriptions and candidates to the link's peer connection.
 */

/** Longest wait for candidates to put into a local description (the rest trickle). */
const GATHER_WAIT_MS = 40;

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

/** Caps flag: takes the fast path (FAST_OFFER / FAST_ACCEPT on the track, fast/). */
export const CAPS_FAST = 0x10;
/**
 * Caps flag: keeps a link on the fast path alone (closes its PeerConnection once the fast path is
 * stable; takes FAST_OFFER / FAST_ACCEPT on the fast path and lets the peer's idle probing lead).
 */
export const CAPS_FAST_ONLY = 0x20;

/** What a peer announced it takes (all false without the attribute). */
export interface PeerCaps {
  offload: boolean;
  rtp: boolean;
  pmtu: boolean;
  rxWindow: boolean;
  fast: boolean;
  fastOnly: boolean;
}

/**
 * Our caps: offload frames always; the track's frames, probes and window when we have the track;
 * the fast path when we have the track and a fast-path transport.
 */
export const ourCaps = (withTrack: boolean, fast = false): number =>
  CAPS_OFFLOAD |
  (withTrack ? CAPS_RTP | CAPS_PMTU | CAPS_RX_WINDOW | (fast ? CAPS_FAST | CAPS_FAST_ONLY : 0) : 0);

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
    fast: rtp && (caps & CAPS_FAST) !== 0,
    fastOnly: rtp && (caps & CAPS_FAST) !== 0 && (caps & CAPS_FAST_ONLY) !== 0,
  };
}

/** The DTLS certificate fingerprint of a description ("sha-256 AB:CD:..."), null without one. */
export function readFingerprint(sdp: string): string | null {
  const m = /^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$/m.exec(sdp);
  return m ? `${m[1]?.toLowerCase()} ${m[2]?.toUpperCase()}` : null;
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

/** The peer connection calls the negotiation makes. */
type NegotiatingConnection = Pick<
  PeerConnection,
  "setRemoteDescription" | "addRemoteCandidate" | "localDescription" | "gatheringState"
>;

/** Applies remote descriptions and candidates to a link's connection, and reads its local description. */
export class Negotiation {
  readonly remoteRelays = new RemoteRelays();

  constructor(
    private readonly pc: NegotiatingConnection,
    private readonly exclude: ExcludeAddress,
    private readonly isClosed: () => boolean,
  ) {}

  /**
   * Applies a remote description without its candidate lines and returns them: libdatachannel
   * sometimes refuses candidates inside a description ("Got a remote candidate without ICE
   * transport") when several connections start at once; added one by one afterwards they work.
   */
  applyRemote(sdp: string, type: "offer" | "answer"): SplitDescription {
    const split = splitCandidates(sdp, this.exclude);
    this.pc.setRemoteDescription(split.sdp, type);
    return split;
  }

  /** Adds the candidates of a remote description; those refused are tried once more 50 ms later. */
  addDescriptionCandidates({ candidates, mid }: Omit<SplitDescription, "sdp">, retry = true): void {
    const failed: string[] = [];
    for (const c of candidates) {
      this.remoteRelays.note(parseCandidate(c));
      try {
        this.pc.addRemoteCandidate(c, mid);
      } catch {
        failed.push(c);
      }
    }
    if (failed.length > 0 && retry) {
      setTimeout(() => {
        if (!this.isClosed()) this.addDescriptionCandidates({ candidates: failed, mid }, false);
      }, 50).unref();
    }
  }

  /** Adds a trickled remote candidate; returns false when it was filtered out. */
  addCandidate(candidate: string, mid: string): boolean {
    const parsed = parseCandidate(candidate);
    if (!parsed) throw new Error("candidate is not an ICE candidate line");
    if (this.exclude(parsed.address)) return false;
    this.remoteRelays.note(parsed);
    this.pc.addRemoteCandidate(candidate, mid);
    return true;
  }

  /**
   * Resolves with the local description just set. It is read from the connection, not awaited as a
   * callback: libdatachannel queues callbacks behind its worker threads' other work (DTLS handshakes
   * of other links), so on a loaded host the callback came seconds late (the controller's RPC had
   * timed out by then) while the description was ready at once. With host candidates only,
   * gathering is complete when setLocalDescription returns; with STUN/TURN servers we send what we
   * have after GATHER_WAIT_MS and trickle the rest: a description that carries the host candidates
   * lets the peer start connectivity checks at once instead of waiting for trickled ones (which cost
   * a check retransmission, ~1 s, when they arrive after the peer's first checks).
   */
  localDescription(type: "offer" | "answer"): Promise<SessionDescription> {
    const take = (): SessionDescription | null => {
      const d = this.isClosed() ? null : this.pc.localDescription();
      return d?.type === type ? { type, sdp: withoutExcludedCandidates(d.sdp, this.exclude) } : null;
    };
    const now = this.pc.gatheringState() === "complete" ? take() : null;
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      setTimeout(() => {
        const d = take();
        if (d) resolve(d);
        else
          reject(
            new Error(
              this.isClosed() ? "link removed before its description was ready" : "no local description",
            ),
          );
      }, GATHER_WAIT_MS);
    });
  }
}
