import type { Counters as CounterSnapshot, DropReason } from "@tincan/protocol";

/** Packet/byte counters with drops by reason; cheap enough for the packet path. */
export class Counters {
  txBytes = 0;
  rxBytes = 0;
  txPackets = 0;
  rxPackets = 0;
  private readonly drops = new Map<DropReason, number>();

  tx(packets: number, bytes: number): void {
    this.txPackets += packets;
    this.txBytes += bytes;
  }

  rx(packets: number, bytes: number): void {
    this.rxPackets += packets;
    this.rxBytes += bytes;
  }

  drop(reason: DropReason, packets = 1): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + packets);
  }

  snapshot(): CounterSnapshot {
    return {
      txBytes: this.txBytes,
      rxBytes: this.rxBytes,
      txPackets: this.txPackets,
      rxPackets: this.rxPackets,
      drops: Object.fromEntries(this.drops),
    };
  }
}
