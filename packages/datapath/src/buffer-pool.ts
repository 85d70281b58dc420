/**
 * Reusable buffers for the copies the send queue keeps of packets larger than Node's own buffer
 * pool serves (TCP super-packets of up to 64 KiB, under vNIC offload). A fresh Buffer per
 * super-packet is a malloc'd 64 KiB backing store freed only when V8 collects its Buffer object:
 * under a TCP upload the dead copies piled up to ~13 MB of ArrayBuffers and grew the malloc heap
 * by ~16 MB (bench/RESULTS.md, session 13). Buffers come in power-of-two classes from 8 KiB to
 * 64 KiB (a fresh buffer is at most twice its packet); given-back buffers wait in per-class free
 * lists holding at most `maxFreeBytes` in all, beyond which they are left to the GC. A packet
 * takes an idle buffer of its class or, when there is none, of a larger class.
 */

/** Below this, Buffer.allocUnsafe slices Node's shared 8 KiB pool (poolSize >>> 1): not pooled here. */
const SMALLEST_POOLED = 4096;
const MIN_CLASS_SHIFT = 13; // 8 KiB
const MAX_CLASS_SHIFT = 16; // 64 KiB: the largest IP packet (65535) fits

export class BufferPool {
  private readonly free: Buffer[][] = [];
  private freeBytes = 0;

  constructor(private readonly maxFreeBytes: number) {
    for (let s = MIN_CLASS_SHIFT; s <= MAX_CLASS_SHIFT; s++) this.free.push([]);
  }

  /** Bytes waiting in the free lists. */
  get idleBytes(): number {
    return this.freeBytes;
  }

  /** A buffer of at least `len` bytes (its length may be larger: keep `len` beside it). */
  take(len: number): Buffer {
    const c = classOf(len);
    if (c < 0) return Buffer.allocUnsafe(len);
    // Its own class first, else a larger idle buffer: the sizes of super-packets vary (with several
    // TCP streams, most of them), and a miss is a fresh buffer for the GC to collect later.
    for (let k = c; k < this.free.length; k++) {
      const buf = (this.free[k] as Buffer[]).pop();
      if (buf === undefined) continue;
      this.freeBytes -= buf.length;
      return buf;
    }
    return Buffer.allocUnsafeSlow(1 << (c + MIN_CLASS_SHIFT));
  }

  /** Hands back a buffer from take() that nothing refers to any more. */
  give(buf: Buffer): void {
    const c = classOf(buf.length);
    if (c < 0 || buf.length !== 1 << (c + MIN_CLASS_SHIFT)) return;
    if (this.freeBytes + buf.length > this.maxFreeBytes) return;
    (this.free[c] as Buffer[]).push(buf);
    this.freeBytes += buf.length;
  }

  /** Lets every idle buffer go (e.g. when the queue is cleared). */
  drain(): void {
    for (const list of this.free) list.length = 0;
    this.freeBytes = 0;
  }
}

/** Index of the size class for a packet of `len` bytes, or -1 when it is not pooled. */
function classOf(len: number): number {
  if (len < SMALLEST_POOLED || len > 1 << MAX_CLASS_SHIFT) return -1;
  const shift = Math.max(MIN_CLASS_SHIFT, 32 - Math.clz32(len - 1));
  return shift - MIN_CLASS_SHIFT;
}
