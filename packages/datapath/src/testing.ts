import type { VnicFactory, VnicSettings } from "./datapath.js";
import type { VnicDevice } from "./fib.js";
import { PacketView } from "./packet-view.js";

/** In-memory vNIC for tests: records what the datapath writes, lets tests inject reads. */
export class FakeVnic implements VnicDevice {
  readonly written: Buffer[] = [];
  closed = false;
  constructor(
    readonly name: string,
    public settings: VnicSettings,
    private readonly onBatch: (buf: Buffer, o: ArrayLike<number>, l: ArrayLike<number>, c: number) => void,
  ) {}

  write(buf: Uint8Array, off: number, len: number): boolean {
    this.written.push(Buffer.from(buf.subarray(off, off + len)));
    return true;
  }

  /** The socket native forwarding was attached to (a fake's table is played by tests). */
  forwardingTo: unknown = null;

  forwardTo(socket: unknown): void {
    this.forwardingTo = socket;
  }

  /** Delivers packets as if read from the kernel in one batch. */
  inject(...packets: Buffer[]): void {
    const buf = Buffer.concat(packets);
    const offsets: number[] = [];
    const lengths: number[] = [];
    let off = 0;
    for (const p of packets) {
      offsets.push(off);
      lengths.push(p.length);
      off += p.length;
    }
    this.onBatch(buf, offsets, lengths, packets.length);
  }

  close(): void {
    this.closed = true;
  }
}

export function fakeVnicFactory(): VnicFactory & { devices: FakeVnic[] } {
  const devices: FakeVnic[] = [];
  return {
    devices,
    create(settings, onBatch) {
      const d = new FakeVnic(settings.name, settings, onBatch);
      devices.push(d);
      return d;
    },
    reconfigure(device, settings) {
      (device as FakeVnic).settings = settings;
    },
  };
}

/** A minimal IPv4/UDP packet with valid IPv4 header checksum (UDP checksum 0 = none). */
export function udp4(src: string, dst: string, payload: Buffer | string = "hello"): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const pkt = Buffer.alloc(28 + data.length);
  pkt[0] = 0x45;
  pkt.writeUInt16BE(pkt.length, 2);
  pkt[8] = 64;
  pkt[9] = 17;
  pkt.set(src.split(".").map(Number), 12);
  pkt.set(dst.split(".").map(Number), 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += pkt.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  pkt.writeUInt16BE(~sum & 0xffff, 10);
  pkt.writeUInt16BE(40000, 20);
  pkt.writeUInt16BE(9, 22);
  pkt.writeUInt16BE(8 + data.length, 24);
  data.copy(pkt, 28);
  return pkt;
}

/** A view of the whole of `buf` with the given offload state. */
export function packetView(buf: Uint8Array, meta = 0, csumStart = 0, gsoSize = 0): PacketView {
  const p = new PacketView().plain(buf, 0, buf.length);
  p.meta = meta;
  p.csumStart = csumStart;
  p.gsoSize = gsoSize;
  return p;
}
