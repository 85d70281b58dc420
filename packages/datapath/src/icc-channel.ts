import { FRAME_ICC, FRAME_ICC_ACK, ICC_HEADER } from "./wire/types.js";

/**
 * Inter-controller messages over a link's media track, which may lose and reorder packets:
 * made reliable and ordered by stop-and-wait (one message in flight; they are few and small,
 * so an SCTP association, with its heartbeats on the wire, is not worth keeping for them).
 *   [FRAME_ICC][seq u32][UTF-8 text]  is answered by  [FRAME_ICC_ACK][seq u32]
 * Sequence numbers start at 0 for every link (every link is a new DTLS session).
 */

/** Messages waiting for the peer before `send` refuses more. */
export const MAX_ICC_QUEUE = 64;
const MIN_RTO_MS = 200;
const MAX_RTO_MS = 3000;

export interface IccTransport {
  /** Sends the frame at buf[headroom..end); false when it could not be sent (retried later). */
  sendControl(buf: Buffer, end: number): boolean;
  deliver(text: string): void;
  /** The path's round-trip time, if known. */
  rttMs(): number | null;
}

export class IccQueueFull extends Error {}

export class IccChannel {
  private nextSeq = 0;
  private rxNext = 0;
  /** Frames not yet acknowledged; the first is in flight. */
  private readonly queue: { seq: number; buf: Buffer }[] = [];
  private rto = MIN_RTO_MS;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Frames sent again after no acknowledgement came in time. */
  retransmits = 0;

  constructor(
    private readonly headroom: number,
    private readonly transport: IccTransport,
  ) {}

  send(text: string): void {
    if (this.closed) throw new Error("link is closed");
    if (this.queue.length >= MAX_ICC_QUEUE)
      throw new IccQueueFull(`${MAX_ICC_QUEUE} messages already wait for the peer's acknowledgement`);
    const bytes = Buffer.byteLength(text);
    const buf = Buffer.allocUnsafe(this.headroom + ICC_HEADER + bytes);
    const seq = this.nextSeq;
    this.nextSeq = (seq + 1) >>> 0;
    buf[this.headroom] = FRAME_ICC;
    buf.writeUInt32BE(seq, this.headroom + 1);
    buf.write(text, this.headroom + ICC_HEADER, "utf8");
    this.queue.push({ seq, buf });
    if (this.queue.length === 1) this.transmit(true);
  }

  /** Takes a FRAME_ICC or FRAME_ICC_ACK frame from the peer. False: malformed. */
  onFrame(frame: Buffer): boolean {
    if (frame.length < ICC_HEADER) return false;
    const seq = frame.readUInt32BE(1);
    if (frame[0] === FRAME_ICC_ACK) {
      const head = this.queue[0];
      if (head && head.seq === seq) {
        this.queue.shift();
        this.stopTimer();
        if (this.queue.length > 0) this.transmit(true);
      }
      return true;
    }
    if (frame[0] !== FRAME_ICC) return false;
    const ahead = (seq - this.rxNext) | 0;
    // A message we delivered before whose acknowledgement was lost: acknowledge it again.
    if (ahead < 0) this.ack(seq);
    if (ahead !== 0) return true;
    this.rxNext = (seq + 1) >>> 0;
    this.ack(seq);
    this.transport.deliver(frame.toString("utf8", ICC_HEADER));
    return true;
  }

  close(): void {
    this.closed = true;
    this.stopTimer();
    this.queue.length = 0;
  }

  get waiting(): number {
    return this.queue.length;
  }

  private transmit(first: boolean): void {
    const head = this.queue[0];
    if (!head || this.closed) return;
    if (first) this.rto = this.firstRto();
    this.transport.sendControl(head.buf, head.buf.length);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.retransmits++;
      this.rto = Math.min(MAX_RTO_MS, this.rto * 2);
      this.transmit(false);
    }, this.rto);
    this.timer.unref();
  }

  private ack(seq: number): void {
    const buf = Buffer.allocUnsafe(this.headroom + ICC_HEADER);
    buf[this.headroom] = FRAME_ICC_ACK;
    buf.writeUInt32BE(seq, this.headroom + 1);
    this.transport.sendControl(buf, buf.length);
  }

  private firstRto(): number {
    const rtt = this.transport.rttMs();
    return Math.min(MAX_RTO_MS, Math.max(MIN_RTO_MS, rtt === null ? 0 : 3 * rtt));
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
