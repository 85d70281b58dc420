/**
 * A bounded FIFO of packet copies, for packets that wait for a link to connect or for the
 * controller to map their destination. When full, the oldest packet is dropped (counted).
 */
export class PacketQueue {
  private items: Buffer[] = [];
  private bytes = 0;
  dropped = 0;

  constructor(
    readonly maxPackets: number,
    readonly maxBytes: number = maxPackets * 1500,
  ) {}

  get length(): number {
    return this.items.length;
  }

  /** Copies buf[off..off+len) into the queue. */
  push(buf: Uint8Array, off: number, len: number): void {
    if (len > this.maxBytes) {
      this.dropped++;
      return;
    }
    while (this.items.length >= this.maxPackets || this.bytes + len > this.maxBytes) {
      const old = this.items.shift() as Buffer;
      this.bytes -= old.length;
      this.dropped++;
    }
    this.items.push(Buffer.from(buf.subarray(off, off + len)));
    this.bytes += len;
  }

  /** Removes and returns every queued packet, oldest first. */
  drain(): Buffer[] {
    const out = this.items;
    this.items = [];
    this.bytes = 0;
    return out;
  }

  clear(): number {
    const n = this.items.length;
    this.items = [];
    this.bytes = 0;
    return n;
  }
}
