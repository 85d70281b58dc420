import {
  CandidateType,
  type LinkFailure,
  type LinkInfo,
  type LinkPath,
  type LinkState,
  type PingResult,
  type SessionDescription,
} from "@tincan/protocol";
import { FAST_OVERHEAD } from "@tincan/tuntap";
import type { DataChannel, PeerConnection, Track } from "node-datachannel";
import ndc from "node-datachannel";
import { Counters } from "./counters.js";
import { DelayGate, rtpClock } from "./delay-gate.js";
import { type FastLinkView, FastPath } from "./fast/fast-path.js";
import { largestNativePacket } from "./fast/native-forward.js";
import { decodeFastHello } from "./fast/offer.js";
import type { FastReceiver, FastTransport } from "./fast/transport.js";
import { IccChannel } from "./icc-channel.js";
import { type IceSettings, iceSocketConfig, parseCandidate, toIceServers } from "./ice.js";
import { Liveness, type LivenessRole, RTT_PROBE_MS } from "./liveness.js";
import { localTypeOf, pathOf } from "./pair-types.js";
import { PathMtu } from "./path-mtu.js";
import { PacketQueue } from "./queue.js";
import {
  Negotiation,
  offersChannels,
  offersTrack,
  ourCaps,
  PKT_MID,
  readCaps,
  readFingerprint,
  withCaps,
  withSetupRole,
} from "./session-description.js";
import {
  ControlFrames,
  FRAME_CONTROL,
  FRAME_FAST_ACCEPT,
  FRAME_FAST_OFFER,
  FRAME_FRAGMENT,
  FRAME_HEADER,
  FRAME_ICC,
  FRAME_ICC_ACK,
  FRAME_MTU_ACK,
  FRAME_MTU_PROBE,
  FRAME_PROBE,
  FRAME_PROBE_REPLY,
  FRAME_RX_ACK,
  Fragmenter,
  type FrameSink,
  isMtuAck,
  microseconds,
  mtuAckRound,
  mtuAckSize,
  Reassembler,
  RTP_HEADER,
  RTP_PAYLOAD_TYPE,
  readProbeReply,
  readRxAck,
  rtpPayloadStart,
  rtpSeq,
  rtpTimestamp,
  writeRtpHeader,
} from "./wire/index.js";

/**
 * A sender lets at most RX_WINDOW RTP packets be ahead of the last one the peer acknowledged
 * taking (FRAME_RX_ACK): libdatachannel hands every received message to the event loop through
 * an unbounded queue, so a receiver that cannot keep up (CPU starved) must be kept from being
 * sent more than it can hold.
 */
export const RX_WINDOW = 4096;
/**
 * A receiver acknowledges every this many RTP packets (acks aside: acks of acks would never end),
 * and once a second when it took fewer and a packet frame was among them (idle links stay quiet).
 */
export const RX_ACK_EVERY = 32;
/** Most `link.ping` probes one link has in flight. */
const MAX_PINGS_IN_FLIGHT = 16;
/**
 * A link on the fast path this long (tune.fastPcCloseMs' default), with a peer that keeps links on
 * it alone, closes its PeerConnection: ICE consent checks (~46 B/s each way) are most of an idle
 * link's cost.
 */
export const PC_CLOSE_AFTER_MS = 20_000;
/** Server-reflexive addresses kept per link (one per STUN/TURN server and address family is usual). */
const MAX_REFLEXIVE_ADDRESSES = 8;

/** Underlay headers around an RTP frame: IPv6 40 + UDP 8 + TURN channel 4 + RTP 12 + SRTP tag 16. */
const RTP_OVERHEAD = 80;
/**
 * A link closed for receive overload keeps its track and channels until no message has come for
 * this long: closing them aborts libdatachannel's queue for the event loop, and what is still in
 * it then is never freed; taken (and dropped) by the event loop, it is.
 */
const RX_DRAIN_QUIET_MS = 10_000;
/** Underlay headers around a fast-path frame: IPv6 40 + UDP 8 + the sealed datagram's header and tag. */
const FAST_PATH_OVERHEAD = 40 + 8 + FAST_OVERHEAD;

export interface LinkHandlers {
  candidate(link: Link, candidate: string, mid: string): void;
  state(link: Link, state: LinkState): void;
  frame(link: Link, frame: Buffer): void;
  icc(link: Link, text: string): void;
  /** Whether a candidate address must never carry the link (e.g. inside the overlay itself). */
  excludeAddress(address: string): boolean;
  /**
   * The fast path's sending session, or the largest packet the link takes (path MTU), changed
   * (fast/native-forward.ts follows both).
   */
  fastChanged?(link: Link): void;
  log?(link: Link, level: "info" | "debug" | "warn", message: string, fields?: Record<string, unknown>): void;
}

export interface LinkOptions {
  peerUid: string;
  relayOnly: boolean;
  /** No TURN servers: a direct re-attempt of a relayed link must not take a TURN allocation. */
  directOnly?: boolean;
  ice: IceSettings;
  /** Our own UID (the user part of derived TURN REST user names). */
  ownUid: string;
  /** Largest UDP payload the underlay carries: sizes DTLS records / SCTP packets. */
  underlayMtu: number;
  queuePackets: number;
  /** Above this many bytes waiting in the packet channel, packets are dropped. */
  maxBufferedBytes: number;
  /**
   * Offer the link as one media track carrying frames as RTP packets (SRTP, no SCTP; icc rides
   * on it too); false: two data channels over SCTP. An offered track is always accepted.
   */
  rtp: boolean;
  /** A connected peer silent for this long (probes unanswered) is reported `disconnected`. */
  silenceMs: number;
  /** Drop RTP frames that waited longer than this in our receive queue (0: never). */
  rxQueueMs: number;
  rxIntervalMs: number;
  /** The datapath's fast-path sockets (null: tune.fastPath off, links stay on node-datachannel). */
  fast?: FastTransport | null;
  /** tune.fastRekeyMs. */
  fastRekeyMs?: number;
  /** tune.fastPcCloseMs (0: never close the PeerConnection first). */
  fastPcCloseMs?: number;
}

/**
 * One peer link: an RTCPeerConnection carrying frames either on one media track as RTP packets
 * (inter-controller messages made reliable by IccChannel), or on two pre-negotiated data
 * channels, "pkt" (unordered, no retransmissions: tunnelled IP packets) and "icc" (reliable,
 * ordered: inter-controller messages).
 */
export class Link implements FrameSink {
  readonly peerUid: string;
  readonly ownUid: string;
  readonly relayOnly: boolean;
  readonly createdAt = Date.now();
  readonly counters = new Counters();
  /** Packets waiting for the link to connect. */
  readonly pending: PacketQueue;
  state: LinkState = "new";
  path: LinkPath | null = null;
  /** Set with state `failed`. */
  failure: LinkFailure | null = null;
  local: string | null = null;
  remote: string | null = null;
  localType: CandidateType | null = null;
  /** Our addresses as STUN servers saw them (srflx candidates), to name a NATed direct pair. */
  private readonly reflexiveAddresses = new Set<string>();
  remoteType: CandidateType | null = null;
  lastRxAt: number | null = null;
  lastTxAt: number | null = null;
  /** When the link last became `connected` (performance.now(), monotonic); null: never yet. */
  connectedAt: number | null = null;
  /** The native forwarding table holds an entry for this link (fast/native-forward.ts). */
  nativeForwarding = false;
  /** The peer announced that it takes offload frames (type 2). */
  peerOffload = false;
  /** The peer announced that it reads frames from the RTP track. */
  peerRtp = false;
  /** Largest frame (type byte to last packet byte) one RTP packet or fast-path datagram may carry (from underlayMtu). */
  readonly maxRtpFrame: number;
  /** The peer answers path MTU probes. */
  peerPmtu = false;
  /** The peer acknowledges the RTP packets it takes: we keep within its window. */
  peerRxWindow = false;
  /** The peer takes the fast path. */
  peerFast = false;
  /** Messages node-datachannel handed to the event loop (frames of the track and the data channel). */
  slowRxMessages = 0;
  /** The peer keeps a link on the fast path alone (its PeerConnection closed; hellos on the fast path). */
  peerFastOnly = false;
  /** We closed the PeerConnection: the fast path alone carries the link, and its end is the link's. */
  pcClosed = false;
  /** The link's fast path (null: the datapath has none); frames go on it while it is up. */
  readonly fast: FastPath | null;

  private readonly pc: PeerConnection;
  private pkt: DataChannel | null = null;
  private icc: DataChannel | null = null;
  /** Set when the link has the media track and no data channels: icc goes over the track. */
  private iccOverRtp: IccChannel | null = null;
  private track: Track | null = null;
  private trackOpen = false;
  private readonly ssrc = (Math.random() * 0xfffffffe + 1) >>> 0;
  private rtpSeq = (Math.random() * 0x10000) & 0xffff;
  private rtpTime = 0;
  private readonly rtp: boolean;
  private readonly fragmenter: Fragmenter;
  private readonly pmtu: PathMtu;
  private pmtuTimer: NodeJS.Timeout | null = null;
  private readonly control: ControlFrames;
  /** Last RTP sequence number the peer acknowledged taking. */
  private peerTookSeq = this.rtpSeq;
  private rxSeq = 0;
  private rxUnacked = 0;
  private rxDataUnacked = false;
  // Frames are handed on (copied where kept) before the next fragment arrives: no copy per frame.
  private readonly reassembler = new Reassembler(true);
  private readonly fastReassembler = new Reassembler(true);
  private readonly fastTransport: FastTransport | null;
  private readonly fastReceiver: FastReceiver | null = null;
  private localFingerprint: string | null = null;
  private remoteFingerprint: string | null = null;
  private readonly rxGate: DelayGate;
  private readonly rxQueueSettings: { rxQueueMs: number; rxIntervalMs: number };
  private readonly maxBufferedBytes: number;
  private closed = false;
  /** Closed for receive overload: messages still queued are dropped as the event loop takes them. */
  private rxOverloaded = false;
  private lastDrainedAt = 0;
  private readonly liveness: Liveness;
  private readonly pcCloseAfterMs: number;
  /** We reported `disconnected` because the peer fell silent. */
  private silenced = false;
  /** Smoothed round-trip time from probes (RFC 6298's 1/8 gain). */
  private srttMs: number | null = null;
  /** Least round-trip time seen on the current path: its delay without our queues. */
  private baseRttMs: number | null = null;
  /** Descriptions and candidates exchanged with the peer. */
  private readonly negotiation: Negotiation;
  /** `link.ping` probes in flight, by the clock they carry: each resolves with its RTT (ms) or null. */
  private readonly pings = new Map<number, (rttMs: number | null) => void>();

  constructor(
    options: LinkOptions,
    private readonly handlers: LinkHandlers,
  ) {
    this.peerUid = options.peerUid;
    this.ownUid = options.ownUid;
    this.relayOnly = options.relayOnly;
    this.pending = new PacketQueue(options.queuePackets);
    this.maxBufferedBytes = options.maxBufferedBytes;
    this.rtp = options.rtp;
    this.liveness = new Liveness(options.silenceMs);
    this.pcCloseAfterMs = options.fastPcCloseMs ?? PC_CLOSE_AFTER_MS;
    // One limit for both transports (the path MTU search starts again when the link switches).
    this.maxRtpFrame = options.underlayMtu - Math.max(RTP_OVERHEAD, FAST_PATH_OVERHEAD);
    this.fragmenter = new Fragmenter(RTP_HEADER, this.maxRtpFrame);
    this.control = new ControlFrames(this.maxRtpFrame);
    this.pmtu = new PathMtu(this.maxRtpFrame, this.sendMtuProbe);
    this.rxQueueSettings = { rxQueueMs: options.rxQueueMs, rxIntervalMs: options.rxIntervalMs };
    this.rxGate = new DelayGate(options.rxQueueMs, 5000, options.rxIntervalMs);
    this.pc = new ndc.PeerConnection(options.peerUid.slice(0, 8), {
      ...iceSocketConfig(options.ice),
      iceServers: toIceServers(
        options.directOnly ? { ...options.ice, turn: [] } : options.ice,
        options.relayOnly,
        options.ownUid,
      ),
      iceTransportPolicy: options.relayOnly ? "relay" : "all",
      mtu: options.underlayMtu,
      // We say when descriptions are made: automatic negotiation raced adding the answerer's track
      // against applying the offer ("Got a remote candidate without ICE transport").
      disableAutoNegotiation: true,
    });
    this.negotiation = new Negotiation(this.pc, handlers.excludeAddress, () => this.closed);
    this.fastTransport = options.fast ?? null;
    this.fast = this.fastTransport
      ? new FastPath(this.fastView(), this.fastTransport, options.fastRekeyMs ?? 120_000)
      : null;
    if (this.fast && this.fastTransport) {
      this.fastReceiver = { fast: this.fast, deliverFast: this.onFastFrame };
      this.fastTransport.attach(this.fastReceiver);
    }
    this.pc.onLocalCandidate((candidate, mid) => {
      const parsed = parseCandidate(candidate);
      if (parsed && this.handlers.excludeAddress(parsed.address)) return;
      if (parsed?.type === "srflx" && this.reflexiveAddresses.size < MAX_REFLEXIVE_ADDRESSES)
        this.reflexiveAddresses.add(parsed.address);
      this.handlers.candidate(this, candidate, mid);
    });
    this.pc.onStateChange((s) => this.onPeerState(s));
  }

  /** Starts the link as the offering side and resolves with the local offer. */
  createOffer(): Promise<SessionDescription> {
    if (this.rtp) {
      this.addTrack();
      this.carryIccOnTrack();
    } else this.openChannels();
    this.pc.setLocalDescription("offer");
    const description = this.negotiation.localDescription("offer");
    // DTLS starts on the client as soon as its ICE is connected, and a ClientHello that reaches the
    // server before the server's own ICE is connected is dropped and only resent after DTLS's 1 s
    // retransmission timeout. So the side whose ICE connects second must be the client.
    // - Full candidates: the answerer's checks can succeed before we have its answer (we answer
    //   checks with our own credentials), so the answerer would connect first: we are the client.
    // - Relay-only: the answerer's checks reach us only once our TURN allocation has a permission
    //   for its relay address, i.e. after we applied its answer and candidate and sent our own
    //   check; it connects on its next (triggered, paced ~50 ms) check, after us: it is the client.
    const role = this.relayOnly ? "passive" : "active";
    return description.then((d) => {
      this.localFingerprint = readFingerprint(d.sdp);
      return { type: d.type, sdp: this.withOurCaps(withSetupRole(d.sdp, role)) };
    });
  }

  /** Applies a remote offer and resolves with the local answer. */
  acceptOffer(offer: SessionDescription): Promise<SessionDescription> {
    if (offer.type !== "offer") throw new Error("description.type must be offer");
    const track = offersTrack(offer.sdp);
    const channels = offersChannels(offer.sdp);
    // Our track must exist before the offer is applied so the answer pairs it with the offer's.
    if (track) this.addTrack();
    if (track && !channels) this.carryIccOnTrack();
    this.readPeerCaps(offer.sdp);
    const candidates = this.negotiation.applyRemote(offer.sdp, "offer");
    if (channels) this.openChannels();
    this.pc.setLocalDescription("answer");
    const description = this.negotiation.localDescription("answer");
    this.negotiation.addDescriptionCandidates(candidates);
    return description.then((d) => {
      this.localFingerprint = readFingerprint(d.sdp);
      return { type: d.type, sdp: this.withOurCaps(d.sdp) };
    });
  }

  /** Applies the remote answer (offering side). */
  complete(answer: SessionDescription): void {
    if (answer.type !== "answer") throw new Error("description.type must be answer");
    this.readPeerCaps(answer.sdp);
    this.negotiation.addDescriptionCandidates(this.negotiation.applyRemote(answer.sdp, "answer"));
  }

  /** Adds a trickled remote candidate; returns false when it was filtered out. */
  addCandidate(candidate: string, mid: string): boolean {
    return this.negotiation.addCandidate(candidate, mid);
  }

  /**
   * Reads the selected candidate pair again (ICE may switch pairs after connecting, and a
   * peer-reflexive address may turn out to be the peer's relay); true when the path changed.
   */
  refreshPath(): boolean {
    if (this.state !== "connected") return false;
    const path = this.path;
    this.readSelectedPath();
    return this.path !== path;
  }

  /** The address (no port, no brackets) of the peer's end of the selected pair. */
  get remoteAddress(): string | null {
    const remote = this.remote;
    return remote ? remote.slice(0, remote.lastIndexOf(":")).replace(/^\[|\]$/g, "") : null;
  }

  get isConnected(): boolean {
    return this.state === "connected";
  }

  /** Whether frames of up to maxFrame bytes go over the RTP track. */
  get usesRtp(): boolean {
    return this.trackOpen && this.peerRtp;
  }

  /** Largest frame one RTP packet carries now: the path MTU found by probing, else maxRtpFrame. */
  get maxFrame(): number {
    return this.peerPmtu ? this.pmtu.current : this.maxRtpFrame;
  }

  /**
   * Largest IP packet that crosses the link in one underlay datagram, once probing measured it
   * (null on data channels, whose SCTP cuts messages itself, and with peers that take no probes).
   */
  get pathMtu(): number | null {
    if (!this.pmtu.known || !this.usesRtp || !this.peerPmtu || this.state !== "connected") return null;
    return this.pmtu.current - FRAME_HEADER - (this.peerOffload ? 3 : 0);
  }

  /** Packets above this size may be refused with ICMP instead of fragmented (Infinity: never). */
  get tooBigAbove(): number {
    return this.pathMtu ?? Number.POSITIVE_INFINITY;
  }

  /**
   * Sends the frame at buf[RTP_HEADER..end) (the bytes before it are scratch for the RTP
   * header): over the RTP track when it fits, else on the data channel. Drops and counts when
   * the link is not connected or the data channel is backed up.
   */
  sendFrame(buf: Buffer, end: number, packets: number, payloadBytes: number): void {
    if (this.state !== "connected") {
      this.counters.drop("notConnected", packets);
      return;
    }
    if (this.fast?.sending) {
      if (this.sendOverFast(buf, end)) {
        this.counters.tx(packets, payloadBytes);
        this.lastTxAt = Date.now();
      } else this.counters.drop("sendError", packets);
      return;
    }
    if (!this.usesRtp) {
      this.sendOnChannel(buf.subarray(RTP_HEADER, end), packets, payloadBytes);
      return;
    }
    if (this.peerRxWindow && ((this.rtpSeq - this.peerTookSeq) & 0xffff) >= RX_WINDOW) {
      this.counters.drop("peerBacklog", packets);
      return;
    }
    if (!this.sendOverTrack(buf, end)) {
      this.counters.drop("sendError", packets);
      return;
    }
    this.counters.tx(packets, payloadBytes);
    this.lastTxAt = Date.now();
  }

  /**
   * Packets the native forwarding table moved on the link's fast path (fast/native-forward.ts):
   * counted as if sent and received here, and heard from the peer like any frame.
   */
  nativeForwarded(txPackets: number, txBytes: number, rxPackets: number, rxBytes: number, now: number): void {
    if (txPackets > 0) {
      this.counters.tx(txPackets, txBytes);
      this.lastTxAt = now;
      this.fast?.noteSent(now);
    }
    if (rxPackets > 0) {
      this.counters.rx(rxPackets, rxBytes);
      this.heard(now);
      this.lastRxAt = now;
    }
  }

  /** Sends the frame at buf[RTP_HEADER..end) on the track: one RTP packet, or fragments if larger. */
  private sendOverTrack(buf: Buffer, end: number): boolean {
    this.rtpTime = rtpClock();
    const max = this.maxFrame;
    return end - RTP_HEADER <= max
      ? this.sendRtp(buf, 0, end)
      : this.fragmenter.send(buf, RTP_HEADER, end, this.sendRtp, max);
  }

  /** Sends the frame at buf[RTP_HEADER..end) on the fast path: one datagram, or fragments if larger. */
  private sendOverFast(buf: Buffer, end: number): boolean {
    const max = this.maxFrame;
    return end - RTP_HEADER <= max
      ? (this.fast as FastPath).send(buf, RTP_HEADER, end, Date.now())
      : this.fragmenter.send(buf, RTP_HEADER, end, this.sendFastFragment, max);
  }

  /** A fragment at buf[start+12..end) (the RTP headroom is not sent on the fast path). */
  private readonly sendFastFragment = (buf: Buffer, start: number, end: number): boolean =>
    (this.fast as FastPath).send(buf, start + RTP_HEADER, end, Date.now());

  /** Sends buf[start+12..end) as one RTP packet, its header written over buf[start..start+12). */
  private readonly sendRtp = (buf: Buffer, start: number, end: number): boolean => {
    const seq = this.rtpSeq;
    this.rtpSeq = (seq + 1) & 0xffff;
    writeRtpHeader(buf, start, seq, this.rtpTime, this.ssrc);
    try {
      return (this.track as Track).sendMessageBinary(buf.subarray(start, end));
    } catch {
      return false;
    }
  };

  private sendOnChannel(frame: Uint8Array, packets: number, payloadBytes: number): void {
    const channel = this.pkt;
    if (!channel) {
      this.counters.drop("notConnected", packets);
      return;
    }
    if (channel.bufferedAmount() > this.maxBufferedBytes) {
      this.counters.drop("backpressure", packets);
      return;
    }
    try {
      channel.sendMessageBinary(frame);
    } catch {
      this.counters.drop("sendError", packets);
      return;
    }
    this.counters.tx(packets, payloadBytes);
    this.lastTxAt = Date.now();
  }

  /** Queues an inter-controller message; throws IccQueueFull when too many wait already. */
  sendIcc(text: string): void {
    if (this.state !== "connected") throw new Error("link is not connected");
    if (this.iccOverRtp) this.iccOverRtp.send(text);
    else if (this.icc) this.icc.sendMessage(text);
    else throw new Error("link is not connected");
  }

  /**
   * Called once a second: probes a peer we have not heard from for a while (on the fast path only
   * the leading side does, every 10 s: liveness.ts), and reports the link `disconnected` when it
   * stays silent for silenceMs (ICE consent alone notices after ~30 s). A peer heard from again
   * makes it `connected` again, unless the PeerConnection is closed. Closes the PeerConnection
   * once the fast path has carried the link for tune.fastPcCloseMs.
   */
  keepAlive(now: number): void {
    if (this.state !== "connected" && !this.silenced) return;
    if (this.pcClosed && this.silenced) return;
    const role = this.livenessRole;
    const busy = this.lastTxAt !== null && now - this.lastTxAt < RTT_PROBE_MS;
    if (this.liveness.probeDue(now, role, busy)) this.sendProbe(now);
    if (this.rxDataUnacked) this.sendRxAck();
    if (this.state === "connected" && this.usesRtp && this.peerPmtu) this.stepPathMtu(now, busy);
    if (this.fast) {
      this.startFast(now);
      this.fast.tick(now);
      const closeAfter = this.pcCloseAfterMs;
      if (
        this.fast.sending &&
        this.peerFastOnly &&
        !this.pcClosed &&
        closeAfter > 0 &&
        this.fast.upFor(now) >= closeAfter
      )
        this.closePeerConnection(`on the fast path for ${closeAfter / 1000} s`);
    }
    if (this.liveness.silent(now, role) && !this.silenced) this.goSilent();
  }

  /** Who probes an idle link: on the fast path, the side that opens it; else both. */
  private get livenessRole(): LivenessRole {
    if (!this.fast?.sending) return "shared";
    return this.fast.opens ? "lead" : "follow";
  }

  private goSilent(): void {
    this.silenced = true;
    this.setState("disconnected");
  }

  /**
   * Closes the PeerConnection (ICE, DTLS, the track) and keeps the link on the fast path alone:
   * probes, icc, path MTU and rekeying all travel on it. Once the fast path fails, the link is
   * `disconnected` for good (the controller sets it up again).
   */
  private closePeerConnection(why: string): void {
    if (this.pcClosed || this.closed) return;
    this.pcClosed = true;
    this.handlers.log?.(this, "info", "PeerConnection closed: the link stays on the fast path alone", {
      peer: this.peerUid,
      why,
    });
    this.closeNative();
  }

  /** A PeerConnection that went away under a link on the fast path with a peer that closes its own. */
  private peerConnectionGone(): boolean {
    if (this.pcClosed) return true;
    if (!this.fast?.sending || !this.peerFastOnly) return false;
    // Not from inside the binding's own callback.
    setImmediate(() => this.closePeerConnection("the peer closed its PeerConnection"));
    return true;
  }

  private closeNative(): void {
    this.closeReceivers();
    this.closePcOnly();
  }

  /**
   * Fits the receive queue's CoDel to the path: an interval of the path's base RTT plus the
   * configured minimum (so TCP over a long path has time to react before more drops), capped at
   * RFC 8289's 100 ms, and a target of a tenth of it, at least the configured one.
   */
  fitRxQueue(): void {
    const { rxQueueMs, rxIntervalMs } = this.rxQueueSettings;
    if (rxQueueMs <= 0) return;
    const interval = Math.min(100, rxIntervalMs + (this.baseRttMs ?? 0));
    this.rxGate.configure(Math.max(rxQueueMs, interval / 10), interval);
  }

  get rttMs(): number | null {
    if (this.state !== "connected" || this.srttMs === null) return null;
    return Math.round(this.srttMs * 100) / 100;
  }

  /**
   * Sends one liveness probe now and resolves with its round trip and the path it took (rttMs null:
   * no reply within timeoutMs). The peer answers any probe, so this works with every peer version.
   */
  ping(timeoutMs: number): Promise<PingResult> {
    if (this.pings.size >= MAX_PINGS_IN_FLIGHT) throw new Error(`${MAX_PINGS_IN_FLIGHT} pings in flight`);
    let clock = microseconds();
    while (this.pings.has(clock)) clock = (clock + 1) >>> 0;
    const result = (rttMs: number | null): PingResult => ({
      rttMs,
      path: this.path,
      relayOnly: this.relayOnly,
      local: this.local,
      remote: this.remote,
      localType: this.localType,
      remoteType: this.remoteType,
    });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pings.delete(clock);
        resolve(result(null));
      }, timeoutMs);
      this.pings.set(clock, (rttMs) => {
        clearTimeout(timer);
        resolve(result(rttMs));
      });
      this.liveness.probed(Date.now());
      const probe = this.control.probe(clock);
      this.sendControl(probe, probe.length);
    });
  }

  info(): LinkInfo {
    return {
      peerUid: this.peerUid,
      state: this.state,
      path: this.path,
      local: this.local,
      remote: this.remote,
      localType: this.localType,
      remoteType: this.remoteType,
      rttMs: this.rttMs,
      pathMtu: this.pathMtu,
      relayOnly: this.relayOnly,
      createdAt: this.createdAt,
      lastRxAt: this.lastRxAt,
      lastTxAt: this.lastTxAt,
      transport: this.fast?.sending ? "fast" : "datachannel",
      ...(this.fast
        ? {
            fast: {
              ...this.fast.info(),
              peerConnection: this.pcClosed ? "closed" : "open",
              nativeForward: this.nativeForwarding,
            },
          }
        : {}),
      ...this.counters.snapshot(),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending.clear();
    for (const ping of this.pings.values()) ping(null);
    this.pings.clear();
    if (this.pmtuTimer) clearTimeout(this.pmtuTimer);
    if (this.fastReceiver) this.fastTransport?.detach(this.fastReceiver);
    this.iccOverRtp?.close();
    if (!this.pcClosed) {
      if (this.rxOverloaded) this.closePcOnly();
      else this.closeNative();
    }
    this.setState("closed");
  }

  /**
   * Closes the link because node-datachannel queued more of its messages than memory allows (see
   * RxWatchdog): the connection stops receiving at once, and what is queued already is dropped
   * (`rxOverload`) as the event loop takes it, before the track and channels are closed.
   */
  closeForRxOverload(): void {
    if (this.closed || this.rxOverloaded) return;
    this.rxOverloaded = true;
    this.lastDrainedAt = Date.now();
    this.counters.drop("rxOverload");
    const release = (): void => {
      if (Date.now() - this.lastDrainedAt < RX_DRAIN_QUIET_MS) {
        setTimeout(release, RX_DRAIN_QUIET_MS).unref();
        return;
      }
      this.closeReceivers();
    };
    setTimeout(release, RX_DRAIN_QUIET_MS).unref();
    this.close();
  }

  /** Counts a message that came after the link was closed for receive overload; true if so. */
  private drainedOverload(): boolean {
    if (!this.rxOverloaded) return false;
    this.lastDrainedAt = Date.now();
    this.counters.drop("rxOverload");
    return true;
  }

  private closeReceivers(): void {
    try {
      this.pkt?.close();
      this.icc?.close();
      this.track?.close();
    } catch {
      // Closing a half-built connection may throw inside the native binding; nothing to undo.
    }
  }

  private closePcOnly(): void {
    try {
      this.pc.close();
    } catch {
      // As above.
    }
  }

  /**
   * Hands a received frame on; a frame that still trips the code is dropped, never fatal.
   * `fastIndex`: the fast-path session it came on (0: node-datachannel).
   */
  private deliverFrame(frame: Buffer, fastIndex = 0): void {
    if ((frame[0] as number) >= FRAME_CONTROL) {
      this.onControlFrame(frame, fastIndex);
      return;
    }
    this.lastRxAt = this.liveness.heardAt;
    try {
      this.handlers.frame(this, frame);
    } catch {
      this.counters.drop("badFrame");
    }
  }

  private openChannels(): void {
    // Pre-negotiated channels open as soon as SCTP is up: no in-band channel handshake.
    const pkt = this.pc.createDataChannel("pkt", {
      negotiated: true,
      id: 0,
      unordered: true,
      maxRetransmits: 0,
    });
    const icc = this.pc.createDataChannel("icc", { negotiated: true, id: 1 });
    this.pkt = pkt;
    this.icc = icc;
    pkt.onOpen(() => this.onTransportOpen());
    pkt.onClosed(() => this.onTransportClosed());
    pkt.onMessage((msg) => {
      if (this.drainedOverload()) return;
      this.slowRxMessages++;
      if (typeof msg === "string") return;
      this.heard(Date.now());
      this.deliverFrame(Buffer.isBuffer(msg) ? msg : Buffer.from(msg));
    });
    icc.onMessage((msg) => {
      if (typeof msg === "string") this.handlers.icc(this, msg);
    });
  }

  /** Inter-controller messages ride on the media track (the link has no data channels). */
  private carryIccOnTrack(): void {
    this.iccOverRtp = new IccChannel(RTP_HEADER, {
      sendControl: this.sendControl,
      deliver: (text) => this.handlers.icc(this, text),
      rttMs: () => this.rttMs,
    });
  }

  private withOurCaps(sdp: string): string {
    return withCaps(sdp, ourCaps(this.track !== null, this.fast !== null));
  }

  private readPeerCaps(sdp: string): void {
    const caps = readCaps(sdp, this.track !== null);
    this.peerOffload = caps.offload;
    this.peerRtp = caps.rtp;
    this.peerPmtu = caps.pmtu;
    this.peerRxWindow = caps.rxWindow;
    this.peerFast = caps.fast && this.fast !== null;
    this.peerFastOnly = this.peerFast && caps.fastOnly;
    this.remoteFingerprint = readFingerprint(sdp);
  }

  /** A frame of the link's own: icc over the track, probes, fast-path agreement. */
  private onControlFrame(frame: Buffer, fastIndex: number): void {
    switch (frame[0]) {
      case FRAME_PROBE: {
        const reply = this.control.probeReply(frame);
        if (!reply) break;
        // A probe on the fast path is answered on the session it came on: that proves the path.
        if (fastIndex !== 0) this.fast?.sendOn(fastIndex, reply, RTP_HEADER, reply.length);
        else this.sendControl(reply, reply.length);
        return;
      }
      case FRAME_PROBE_REPLY: {
        const clock = readProbeReply(frame);
        if (clock < 0) break;
        if (fastIndex !== 0) this.fast?.probeAnswered(fastIndex, Date.now());
        const sample = ((microseconds() - clock) >>> 0) / 1000;
        const ping = this.pings.get(clock);
        if (ping) {
          this.pings.delete(clock);
          ping(Math.round(sample * 100) / 100);
        }
        // A reply to a probe from before a long stall is no measure of the path.
        if (sample >= 60_000) return;
        this.srttMs = this.srttMs === null ? sample : this.srttMs * 0.875 + sample * 0.125;
        this.baseRttMs = Math.min(this.baseRttMs ?? sample, sample);
        return;
      }
      case FRAME_MTU_PROBE: {
        const ack = this.control.mtuAck(frame);
        if (!ack) break;
        this.sendControl(ack, ack.length);
        return;
      }
      case FRAME_MTU_ACK: {
        if (!isMtuAck(frame) || !this.peerPmtu) break;
        const now = Date.now();
        if (this.pathMtuStep(() => this.pmtu.onAck(mtuAckRound(frame), mtuAckSize(frame), now, this.rttMs)))
          this.armPathMtuTimer(now);
        return;
      }
      case FRAME_RX_ACK: {
        const seq = readRxAck(frame);
        if (seq < 0) break;
        // Acknowledgements may come out of order: only a later one moves the window.
        if (((seq - this.peerTookSeq) & 0xffff) < 0x8000) this.peerTookSeq = seq;
        return;
      }
      case FRAME_ICC:
      case FRAME_ICC_ACK:
        if (this.iccOverRtp?.onFrame(frame)) return;
        break;
      case FRAME_FAST_OFFER:
      case FRAME_FAST_ACCEPT: {
        if (!this.fast || !this.peerFast) break;
        const hello = decodeFastHello(frame);
        if (typeof hello === "string") {
          this.handlers.log?.(this, "debug", "fast hello refused", { error: hello });
          break;
        }
        this.fast.onHello(hello, Date.now());
        return;
      }
    }
    this.counters.drop("badFrame");
  }

  /** Sends the frame at buf[RTP_HEADER..end) of the link's own, whatever the link's state. */
  private readonly sendControl = (buf: Buffer, end: number): boolean => {
    if (this.closed) return false;
    if (this.fast?.sending) return this.sendOverFast(buf, end);
    return this.sendSlowControl(buf, end);
  };

  /** Sends the frame at buf[RTP_HEADER..end) of the link's own on node-datachannel. */
  private readonly sendSlowControl = (buf: Buffer, end: number): boolean => {
    if (this.closed || this.pcClosed) return false;
    try {
      if (this.usesRtp) return this.sendOverTrack(buf, end);
      const pkt = this.pkt;
      if (!pkt?.isOpen()) return false;
      return pkt.sendMessageBinary(buf.subarray(RTP_HEADER, end));
    } catch {
      return false;
    }
  };

  /** Sends a path MTU probe of `bytes` frame bytes as one RTP packet (never fragmented). */
  private readonly sendMtuProbe = (round: number, bytes: number): void => {
    if (this.closed || !this.usesRtp) return;
    const b = this.control.mtuProbe(round);
    if (this.fast?.sending) {
      this.fast.send(b, RTP_HEADER, RTP_HEADER + bytes, Date.now());
      return;
    }
    this.rtpTime = rtpClock();
    this.sendRtp(b, 0, RTP_HEADER + bytes);
  };

  private stepPathMtu(now: number, busy = true): void {
    this.pathMtuStep(() => this.pmtu.tick(now, this.rttMs, busy));
    this.armPathMtuTimer(now);
  }

  /**
   * Runs a step of the path MTU search; when it changes the largest packet the link takes while
   * native code forwards it, the native table hears at once (not at its next 1-s refresh).
   */
  private pathMtuStep<T>(step: () => T): T {
    const before = this.nativeForwarding ? largestNativePacket(this) : 0;
    const result = step();
    if (this.nativeForwarding && largestNativePacket(this) !== before) this.handlers.fastChanged?.(this);
    return result;
  }

  /** A timer for the end of the probe round in flight (rounds are shorter than keepAlive's period). */
  private armPathMtuTimer(now: number): void {
    const until = this.pmtu.waitingUntil;
    if (until === null || this.pmtuTimer !== null) return;
    this.pmtuTimer = setTimeout(
      () => {
        this.pmtuTimer = null;
        if (!this.closed && this.usesRtp && this.peerPmtu) this.stepPathMtu(Date.now());
      },
      Math.max(0, until - now) + 1,
    );
    this.pmtuTimer.unref();
  }

  private startPathMtu(): void {
    if (this.closed || !this.usesRtp || !this.peerPmtu) return;
    const now = Date.now();
    this.pathMtuStep(() => this.pmtu.restart(now, this.rttMs));
    this.armPathMtuTimer(now);
  }

  private sendRxAck(): void {
    this.rxUnacked = 0;
    this.rxDataUnacked = false;
    const ack = this.control.rxAck(this.rxSeq);
    this.sendControl(ack, ack.length);
  }

  private sendProbe(now: number): void {
    this.liveness.probed(now);
    const probe = this.control.probe(microseconds());
    this.sendControl(probe, probe.length);
  }

  private heard(now: number): void {
    this.liveness.heard(now);
    if (!this.silenced || this.pcClosed) return;
    this.silenced = false;
    if (this.state === "disconnected" && this.transportOpen && this.pc.state() === "connected") {
      this.readSelectedPath();
      this.setState("connected");
    }
  }

  private get transportOpen(): boolean {
    return this.iccOverRtp ? this.trackOpen : this.pkt?.isOpen() === true;
  }

  /** The media track for frames as RTP: any codec will do, nothing inspects the payload. */
  private addTrack(): void {
    const video = new ndc.Video(PKT_MID, "SendRecv");
    video.addH264Codec(RTP_PAYLOAD_TYPE);
    video.addSSRC(this.ssrc, "tincan");
    const track = this.pc.addTrack(video);
    this.track = track;
    track.onOpen(() => {
      this.trackOpen = true;
      if (this.iccOverRtp) this.onTransportOpen();
      this.startPathMtu();
    });
    track.onClosed(() => {
      // On the fast path alone frames keep the track's format: it counts as open.
      if (this.peerConnectionGone()) return;
      this.trackOpen = false;
      if (this.iccOverRtp) this.onTransportClosed();
    });
    track.onMessage((msg) => {
      if (this.drainedOverload()) return;
      this.slowRxMessages++;
      if (typeof msg === "string") return;
      const packet = Buffer.isBuffer(msg) ? msg : Buffer.from(msg);
      const start = rtpPayloadStart(packet);
      if (start < 0) {
        this.counters.drop("badFrame");
        return;
      }
      if (start >= packet.length) return;
      if (this.peerRxWindow) {
        this.rxSeq = rtpSeq(packet);
        const type = packet[start] as number;
        if (type < FRAME_CONTROL) this.rxDataUnacked = true;
        if (type !== FRAME_RX_ACK && ++this.rxUnacked >= RX_ACK_EVERY) this.sendRxAck();
      }
      this.heard(Date.now());
      // The link's own frames are few and small: dropping an MTU probe or its ack would read as
      // a path that shrank.
      if ((packet[start] as number) < FRAME_CONTROL && !this.rxGate.admit(rtpClock(), rtpTimestamp(packet))) {
        this.counters.drop("rxQueue");
        return;
      }
      if (packet[start] !== FRAME_FRAGMENT) {
        this.deliverFrame(packet.subarray(start));
        return;
      }
      const r = this.reassembler;
      const lost = r.lost;
      const malformed = r.malformed;
      const frame = r.push(packet, start);
      if (r.lost !== lost) this.counters.drop("fragmentLost");
      if (r.malformed !== malformed) this.counters.drop("badFrame");
      if (frame) this.deliverFrame(frame);
    });
  }

  private onTransportOpen(): void {
    if (this.closed) return;
    const now = Date.now();
    this.liveness.heard(now);
    this.readSelectedPath();
    this.setState("connected");
    this.sendProbe(now);
    this.startFast(now);
  }

  /**
   * Starts the fast path once the link is connected to a peer that takes it: on a direct path, or
   * through a relay when the datapath has a TURN server for its own allocation.
   */
  private startFast(now: number): void {
    if (this.fast?.phase !== "off" || !this.peerFast || !this.usesRtp) return;
    if (this.state !== "connected" || this.path === null) return;
    if (this.fastRelayed && !this.fastTransport?.canRelay(this.remoteAddress?.includes(":") ? 6 : 4)) return;
    this.fast.start(now);
  }

  /** ICE relays the link: its fast path goes through TURN too. */
  private get fastRelayed(): boolean {
    return this.relayOnly || this.path === "relay";
  }

  /** A frame received on the fast path (session `localIndex`); the buffer is reused after this. */
  private readonly onFastFrame = (frame: Buffer, localIndex: number): void => {
    if (this.closed || frame.length === 0) return;
    this.heard(Date.now());
    if (frame[0] !== FRAME_FRAGMENT) {
      this.deliverFrame(frame, localIndex);
      return;
    }
    const r = this.fastReassembler;
    const lost = r.lost;
    const malformed = r.malformed;
    const whole = r.push(frame, 0);
    if (r.lost !== lost) this.counters.drop("fragmentLost");
    if (r.malformed !== malformed) this.counters.drop("badFrame");
    if (whole) this.deliverFrame(whole, localIndex);
  };

  /** What the fast path sees of the link. */
  private fastView(): FastLinkView {
    const link = this;
    return {
      get ownUid() {
        return link.ownUid;
      },
      peerUid: this.peerUid,
      get localFingerprint() {
        return link.localFingerprint;
      },
      get remoteFingerprint() {
        return link.remoteFingerprint;
      },
      get peerAddress() {
        return link.remoteAddress;
      },
      get relayed() {
        return link.fastRelayed;
      },
      // With a peer that keeps links on the fast path alone, hellos after the first agreement go
      // on it: authenticated by the current session's keys (see packages/protocol/README.md).
      sendHello: (buf) =>
        this.fast?.sending && this.peerFastOnly
          ? this.sendOverFast(buf, buf.length)
          : this.sendSlowControl(buf, buf.length),
      sendingChanged: () => this.handlers.fastChanged?.(this),
      switched: (fast) => {
        this.baseRttMs = null;
        if (!fast && this.pcClosed && !this.silenced) this.goSilent();
        else this.startPathMtu();
      },
      log: (level, message, fields) =>
        this.handlers.log?.(this, level, message, { peer: this.peerUid, ...fields }),
    };
  }

  private onTransportClosed(): void {
    if (this.closed || this.peerConnectionGone()) return;
    if (this.state === "connected") this.setState("disconnected");
  }

  private onPeerState(s: string): void {
    if (this.closed || this.pcClosed) return;
    if ((s === "failed" || s === "disconnected" || s === "closed") && this.peerConnectionGone()) return;
    if (s === "connecting" && this.state === "new") this.setState("connecting");
    else if (s === "failed") {
      // libdatachannel hands ICE the answer before it stores the answer's fingerprint; on a
      // loaded host the DTLS handshake can finish in between and fail verification. The
      // controller retries such a failure at once instead of treating the path as blocked.
      // (A remote fingerprint is only known once DTLS got to the certificate check.)
      this.failure = this.pc.remoteFingerprint().value ? "handshake" : "ice";
      this.setState("failed");
    } else if (s === "disconnected") this.setState("disconnected");
    else if (s === "closed") this.setState("closed");
    else if (s === "connected" && this.state === "disconnected" && this.transportOpen && !this.silenced) {
      this.readSelectedPath();
      this.setState("connected");
    }
  }

  private readSelectedPath(): void {
    if (this.pcClosed) return;
    const pair = this.pc.getSelectedCandidatePair();
    if (!pair) return;
    const remote = `${pair.remote.address}:${pair.remote.port}`;
    const reportedLocal = CandidateType.safeParse(pair.local.type).data ?? null;
    this.localType =
      reportedLocal &&
      localTypeOf(
        reportedLocal,
        { localAddress: pair.local.address, remoteAddress: pair.remote.address },
        this.reflexiveAddresses,
      );
    this.remoteType = CandidateType.safeParse(pair.remote.type).data ?? null;
    this.path = pathOf(
      [this.localType ?? pair.local.type, pair.remote.type],
      this.negotiation.remoteRelays.has(remote),
    );
    const moved = this.remote !== null && remote !== this.remote;
    if (remote !== this.remote) this.baseRttMs = null;
    this.local = `${pair.local.address}:${pair.local.port}`;
    this.remote = remote;
    // Another path may carry other sizes.
    if (moved) this.startPathMtu();
  }

  private setState(state: LinkState): void {
    if (this.state === state) return;
    this.state = state;
    if (state === "connected") this.connectedAt = performance.now();
    this.handlers.state(this, state);
  }
}

/** Process-wide SCTP tuning of libdatachannel; applies to connections created afterwards. */
export function configureSctp(settings: Parameters<typeof ndc.setSctpSettings>[0]): void {
  ndc.setSctpSettings(settings);
}
