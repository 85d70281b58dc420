/**
 * The send queue between the vNIC and the links: FQ-CoDel (RFC 8290) in our own process.
 *
 * When the datapath cannot send as fast as the kernel hands it packets (it is CPU-bound: every
 * packet is encrypted and sent by us), the standing queue used to build up in the TUN device's
 * ring, where we cannot see it: a ping waited behind ~1 MB of a TCP download (15-20 ms) and was
 * dropped when the ring overflowed. The TUN device never stops its queue, so no qdisc can act
 * on it. Instead the datapath now reads the ring as fast as it fills and keeps what it could not
 * send yet here, stamped with the read time:
 * - each flow (addresses, protocol, ports) has its own FIFO, served round-robin by bytes
 *   (deficit round robin); a flow that just became active (a ping, an ACK, a DNS query) is
 *   served before the bulk flows, so it does not wait behind them;
 * - each flow's queue runs CoDel on the time its packets waited, so a bulk TCP flow inside sees
 *   drops once its packets queue longer than the target, and backs off;
 * - a byte limit bounds memory: when full, the flow with the most bytes queued loses packets.
 * Packets are copied in (super-packets into reused buffers, see buffer-pool.ts); order within a
 * flow is kept.
 */
import { BufferPool } from "./buffer-pool.js";
import { CoDel } from "./codel.js";
import { DelayHistogram } from "./delay-histogram.js";
import { IPPROTO_TCP, IPPROTO_UDP } from "./packet.js";
import { PacketView } from "./packet-view.js";

export interface TxQueueOptions {
  /** Flow buckets (a power of two). */
  flows: number;
  /** Bytes a flow may send per round. */
  quantum: number;
  /** CoDel target and interval, in rtpClock units (100 µs). */
  target: number;
  interval: number;
  /** Bytes queued in all flows at most. */
  maxBytes: number;
  /** Seed of the flow hash (default: random, so flows cannot be steered into one bucket). */
  seed?: number;
}

/**
 * Receives a dequeued packet (plain, or a super-packet with its offload state); the view is reused,
 * and so are its bytes once deliver returns: copy what you keep.
 */
export type TxDeliver = (p: PacketView) => void;

interface Entry {
  /** The copy: buf[0..len) (a pooled buffer may be longer). */
  buf: Buffer;
  len: number;
  meta: number;
  csumStart: number;
  gsoSize: number;
  /** When it was queued (rtpClock units). */
  at: number;
}

const IDLE = 0;
const NEW = 1;
const OLD = 2;

/**
 * A FIFO on an array with a moving head, so taking from the front does not shift the array; the
 * taken part is cut off once it is most of the array (a queue that never empties must not grow).
 */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get first(): T | undefined {
    return this.items[this.head];
  }

  get isEmpty(): boolean {
    return this.head === this.items.length;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** Takes the first item (the FIFO must not be empty). */
  shift(): T {
    const item = this.items[this.head] as T;
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

class Flow {
  readonly packets = new Fifo<Entry>();
  bytes = 0;
  deficit = 0;
  list = IDLE;
  readonly codel: CoDel;

  constructor(target: number, interval: number) {
    this.codel = new CoDel(target, interval);
  }

  get isEmpty(): boolean {
    return this.packets.isEmpty;
  }

  push(e: Entry): void {
    this.packets.push(e);
    this.bytes += e.len;
  }

  shift(): Entry {
    const e = this.packets.shift();
    this.bytes -= e.len;
    return e;
  }
}

/** Most packets one overflow drops (Linux fq_codel's drop_batch_size). */
const MAX_DROP_BATCH = 64;
/** Below this many bytes left in a flow, CoDel does not drop (RFC 8289's "maxpacket" rule). */
const MIN_BACKLOG = 1500;

export class TxQueue {
  private readonly flows: Flow[];
  /** Shows each dequeued packet to `deliver`. */
  private readonly view = new PacketView();
  private readonly newFlows = new Fifo<Flow>();
  private readonly pool: BufferPool;
  private readonly oldFlows = new Fifo<Flow>();
  private readonly seed: number;
  private readonly mask: number;
  private bytes = 0;
  private packets = 0;
  /** How long the packets handed on waited (those sent straight through are added by the caller). */
  readonly delay = new DelayHistogram();

  constructor(
    private readonly options: TxQueueOptions,
    private readonly onDrop: (reason: "txQueue" | "txQueueFull", packets: number) => void,
  ) {
    if (options.flows & (options.flows - 1)) throw new RangeError("flows must be a power of two");
    this.mask = options.flows - 1;
    this.seed = options.seed ?? (Math.random() * 2 ** 32) | 0;
    this.flows = Array.from({ length: options.flows }, () => new Flow(options.target, options.interval));
    // Room for every buffer a full queue holds (a fresh one is at most twice its packet): a buffer
    // the pool lets go lives on until V8's next full GC (queued copies outlive the young
    // generation), and under 4 TCP streams those piled up to 16 MB (bench/RESULTS.md, session 13).
    this.pool = new BufferPool(2 * options.maxBytes + 65_536);
  }

  get isEmpty(): boolean {
    return this.packets === 0;
  }

  get queuedBytes(): number {
    return this.bytes;
  }

  get queuedPackets(): number {
    return this.packets;
  }

  /** Copies the packet into its flow's queue. */
  enqueue(p: PacketView, now: number): void {
    const len = p.len;
    if (len > this.options.maxBytes) {
      this.onDrop("txQueueFull", 1);
      return;
    }
    while (this.bytes + len > this.options.maxBytes) this.dropFromFattest();
    const flow = this.flows[flowHash(p.buf, p.off, len, this.seed) & this.mask] as Flow;
    const copy = this.pool.take(len);
    copy.set(p.buf.subarray(p.off, p.off + len));
    flow.push({ buf: copy, len, meta: p.meta, csumStart: p.csumStart, gsoSize: p.gsoSize, at: now });
    this.bytes += len;
    this.packets++;
    if (flow.list === IDLE) {
      flow.list = NEW;
      flow.deficit = this.options.quantum;
      this.newFlows.push(flow);
    }
  }

  /**
   * Hands packets to `deliver` in fair order until about `budget` bytes went out or the queue is
   * empty; packets that queued too long are dropped on the way (CoDel).
   */
  dequeue(budget: number, now: number, deliver: TxDeliver): void {
    const quantum = this.options.quantum;
    while (budget > 0) {
      const fromNew = !this.newFlows.isEmpty;
      const list = fromNew ? this.newFlows : this.oldFlows;
      const flow = list.first;
      if (!flow) return;
      if (flow.deficit <= 0) {
        flow.deficit += quantum;
        list.shift();
        flow.list = OLD;
        this.oldFlows.push(flow);
        continue;
      }
      const e = this.next(flow, now);
      if (!e) {
        list.shift();
        // A new flow that emptied goes to the old list once, so it cannot starve the old ones
        // by coming back as new at once (RFC 8290 section 4.2).
        if (fromNew && !this.oldFlows.isEmpty) {
          flow.list = OLD;
          this.oldFlows.push(flow);
        } else {
          flow.list = IDLE;
        }
        continue;
      }
      flow.deficit -= e.len;
      budget -= e.len;
      const p = this.view.plain(e.buf, 0, e.len);
      p.meta = e.meta;
      p.csumStart = e.csumStart;
      p.gsoSize = e.gsoSize;
      deliver(p);
      // deliver copied the packet (into a frame, or a queue of its own): the buffer is free again.
      this.pool.give(e.buf);
    }
  }

  /** Drops everything queued (e.g. when the vNIC goes away), counted as txQueue drops. */
  clear(): void {
    if (this.packets > 0) this.onDrop("txQueue", this.packets);
    const { target, interval } = this.options;
    for (let i = 0; i < this.flows.length; i++) this.flows[i] = new Flow(target, interval);
    this.newFlows.clear();
    this.oldFlows.clear();
    this.pool.drain();
    this.bytes = 0;
    this.packets = 0;
  }

  /** The flow's next packet that CoDel lets pass, dropping those it does not. */
  private next(flow: Flow, now: number): Entry | undefined {
    while (!flow.isEmpty) {
      const e = flow.shift();
      this.bytes -= e.len;
      this.packets--;
      const waited = (now - e.at) | 0;
      const sojourn = flow.bytes < MIN_BACKLOG ? 0 : waited;
      if (flow.codel.pass(now, sojourn)) {
        this.delay.record(waited);
        return e;
      }
      this.pool.give(e.buf);
      this.onDrop("txQueue", 1);
    }
    return undefined;
  }

  /**
   * Drops from the head of the flow with the most bytes queued: up to half of them and at most
   * MAX_DROP_BATCH packets (like Linux fq_codel), so one overflow does not cost TCP a whole window.
   */
  private dropFromFattest(): void {
    let fattest = this.flows[0] as Flow;
    for (const f of this.flows) if (f.bytes > fattest.bytes) fattest = f;
    const keep = fattest.bytes >> 1;
    let dropped = 0;
    do {
      const e = fattest.shift();
      this.bytes -= e.len;
      this.packets--;
      this.pool.give(e.buf);
      dropped++;
    } while (fattest.bytes > keep && dropped < MAX_DROP_BATCH && !fattest.isEmpty);
    this.onDrop("txQueueFull", dropped);
    // An empty flow stays on its list; dequeue() takes it off when it finds it empty.
  }
}

/**
 * Hash of a packet's flow: addresses, protocol and (TCP/UDP, unfragmented IPv4 or IPv6 without
 * extension headers) ports. Reads only inside buf[off..off+len); malformed packets hash somewhere
 * and are dropped later by routing.
 */
export function flowHash(buf: Uint8Array, off: number, len: number, seed: number): number {
  let h = seed;
  const version = len > 0 ? (buf[off] as number) >> 4 : 0;
  let l4 = -1;
  let proto = -1;
  if (version === 4 && len >= 20) {
    for (let i = 12; i < 20; i += 4) h = mix(h, u32(buf, off + i));
    proto = buf[off + 9] as number;
    const fragmented = (((buf[off + 6] as number) & 0x3f) | (buf[off + 7] as number)) !== 0;
    if (!fragmented) l4 = ((buf[off] as number) & 0x0f) * 4;
  } else if (version === 6 && len >= 40) {
    for (let i = 8; i < 40; i += 4) h = mix(h, u32(buf, off + i));
    proto = buf[off + 6] as number;
    l4 = 40;
  }
  h = mix(h, proto);
  if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && l4 >= 20 && l4 + 4 <= len)
    h = mix(h, u32(buf, off + l4));
  return finish(h);
}

function u32(b: Uint8Array, i: number): number {
  return (
    ((b[i] as number) << 24) |
    ((b[i + 1] as number) << 16) |
    ((b[i + 2] as number) << 8) |
    (b[i + 3] as number) |
    0
  );
}

// murmur3's 32-bit mixing steps
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
