// A ping running in the background (`ping -D -i 0.1`), and what it saw: which requests got no
// reply and when replies came, for tests that count lost pings across an event.
import type { Host, LabProcess } from "../lab/index.js";

export interface PingRecord {
  /** Requests sent up to the last one answered. */
  sent: number;
  /** Of those, how many got no reply. */
  lost: number;
  /** Reply times (ms since the epoch), in order. */
  replies: number[];
  /** Longest time without a reply between two replies (ms). */
  maxGapMs: number;
}

export class PingRecorder {
  private constructor(
    private readonly proc: LabProcess,
    private readonly intervalSec: number,
  ) {}

  /** Pings `address` from `host` every `intervalSec` (with `size` bytes of payload) until stop(). */
  static start(host: Host, address: string, intervalSec = 0.1, size = 56): PingRecorder {
    const args = ["-D", "-n", "-i", String(intervalSec), "-W", "1", "-s", String(size), address];
    const proc = host.spawn("ping", args, { name: "ping" });
    return new PingRecorder(proc, intervalSec);
  }

  /**
   * What the ping saw so far. After stop(), the requests of the last second (still in flight when
   * ping was interrupted) are not counted, and the time from the last reply to the end counts as a gap.
   */
  record(end?: number): PingRecord {
    const log = this.proc.log();
    const seqs = new Set<number>();
    const replies: number[] = [];
    for (const m of log.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+)/gm)) {
      replies.push(Math.round(Number(m[1]) * 1000));
      seqs.add(Number(m[2]));
    }
    const transmitted = Number(log.match(/(\d+) packets transmitted/)?.[1] ?? 0);
    const sent = end === undefined ? Math.max(0, ...seqs) : Math.max(0, transmitted - 1 / this.intervalSec);
    let lost = 0;
    for (let seq = 1; seq <= sent; seq++) if (!seqs.has(seq)) lost++;
    const times = end === undefined ? replies : [...replies, end];
    let maxGapMs = 0;
    for (let i = 1; i < times.length; i++)
      maxGapMs = Math.max(maxGapMs, (times[i] as number) - (times[i - 1] as number));
    return { sent, lost, replies, maxGapMs };
  }

  /** The first reply at or after `t` (ms since the epoch). */
  firstReplyAfter(t: number): number | undefined {
    return this.record().replies.find((r) => r >= t);
  }

  async stop(): Promise<PingRecord> {
    const end = Date.now();
    this.proc.signal("SIGINT");
    await this.proc.wait();
    return this.record(end);
  }
}
