import { FastSocket, Tun } from "@tincan/tuntap";
import type { VnicFactory, VnicSettings } from "./datapath.js";
import type { FastSocketLike } from "./fast/socket.js";
import type { VnicDevice } from "./fib.js";

class TunDevice implements VnicDevice {
  constructor(readonly tun: Tun) {}

  get name(): string {
    return this.tun.name;
  }

  get vnetHdr(): boolean {
    return this.tun.vnetHdr;
  }

  get offload(): boolean {
    return this.tun.offload;
  }

  write(buf: Uint8Array, off: number, len: number, vnetHdr?: Uint8Array): boolean {
    return this.tun.write(buf, off, len, vnetHdr);
  }

  readNow(): number {
    return this.tun.readNow();
  }

  forwardTo(socket: FastSocketLike): void {
    if (socket instanceof FastSocket) this.tun.forwardTo(socket);
  }

  close(): void {
    this.tun.release();
  }
}

function apply(tun: Tun, s: VnicSettings): void {
  tun.mtu = s.mtu;
  if (s.ipv4 && tun.ipv4 !== s.ipv4) tun.ipv4 = s.ipv4;
  tun.isUp = true;
  // IPv6 addresses can only be added once the interface is up and its MTU is >= 1280.
  if (s.ipv6 && tun.ipv6 !== s.ipv6) tun.ipv6 = s.ipv6;
}

/**
 * Packets per TUN read batch. With offload each read can be a 64 KiB super-packet, so the batch buffer
 * is TUN_BATCH * 64 KiB: 16 (1 MiB, about 3 ms of traffic at 2.5 Gbit/s) measured the same throughput
 * as 64 with 3-5 MB less peak RSS (bench/RESULTS.md, session 11).
 */
const TUN_BATCH = 16;

/** The real vNIC: a Linux TUN device read in batches on the event loop. */
export const tunFactory: VnicFactory = {
  create(settings, onBatch) {
    const tun = new Tun({ name: settings.name, batchSize: TUN_BATCH, offload: settings.offload });
    try {
      apply(tun, settings);
    } catch (err) {
      tun.release();
      throw err;
    }
    tun.onPackets(onBatch);
    return new TunDevice(tun);
  },
  reconfigure(device, settings) {
    apply((device as TunDevice).tun, settings);
  },
};
