/**
 * Virtual time for the simulator: a priority queue of timers and a `now` that jumps from one timer to
 * the next. While installed it stands in for Date.now, setTimeout/clearTimeout and
 * setInterval/clearInterval, so the real controller code (LinkManager, RouteTable, the policies)
 * runs unchanged on virtual time. After each timer fires, every promise it started settles before
 * the next one fires (a real macrotask turn), so "at the same virtual time" keeps the order of Node.
 */

interface Timer {
  id: number;
  due: number;
  /** Tie-break: timers due at the same time fire in the order they were set. */
  seq: number;
  fn: () => void;
  repeatMs: number | null;
  cancelled: boolean;
}

/** What setTimeout returns in Node (the code under test calls unref() on some). */
class TimerHandle {
  constructor(readonly timer: Timer) {}
  unref(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  hasRef(): boolean {
    return true;
  }
  [Symbol.toPrimitive](): number {
    return this.timer.id;
  }
}

/** A binary min-heap on (due, seq); cancelled timers are skipped when they come out. */
class TimerHeap {
  private readonly items: Timer[] = [];

  get size(): number {
    return this.items.length;
  }

  push(t: Timer): void {
    const a = this.items;
    a.push(t);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(a[i] as Timer, a[parent] as Timer)) break;
      [a[i], a[parent]] = [a[parent] as Timer, a[i] as Timer];
      i = parent;
    }
  }

  peek(): Timer | undefined {
    return this.items[0];
  }

  pop(): Timer | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l] as Timer, a[m] as Timer)) m = l;
        if (r < a.length && before(a[r] as Timer, a[m] as Timer)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m] as Timer, a[i] as Timer];
        i = m;
      }
    }
    return top;
  }
}

const before = (x: Timer, y: Timer): boolean => x.due < y.due || (x.due === y.due && x.seq < y.seq);

const real = {
  now: Date.now,
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  setInterval: globalThis.setInterval,
  clearInterval: globalThis.clearInterval,
  setImmediate: globalThis.setImmediate,
  random: Math.random,
};

let installedClock: VirtualClock | null = null;

/** Lets every pending promise settle (one real macrotask turn). */
export const settle = (): Promise<void> => new Promise((resolve) => real.setImmediate(resolve));

export class VirtualClock {
  private readonly heap = new TimerHeap();
  private nowMs: number;
  private seq = 0;
  private installed = false;
  /** Timers fired so far (a measure of the work done). */
  fired = 0;

  /** `startMs`: the virtual epoch (Date.now() during the run starts here). */
  constructor(readonly startMs = Date.UTC(2026, 0, 1)) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  /** Timers waiting (cancelled ones included until they come out). */
  get pending(): number {
    return this.heap.size;
  }

  /**
   * Calls `fn` every `ms` of real (wall) time while the simulation runs, on the real timers (progress
   * lines of a long run); returns a stop function.
   */
  everyWallMs(ms: number, fn: () => void): () => void {
    const handle = real.setInterval(fn, ms);
    handle.unref();
    return () => real.clearInterval(handle);
  }

  /** Schedules `fn` at now + `ms` (the simulator's own events use this too). */
  at(ms: number, fn: () => void): TimerHandle {
    return this.add(fn, ms, null);
  }

  cancel(handle: unknown): void {
    if (handle instanceof TimerHandle) handle.timer.cancelled = true;
  }

  /**
   * Replaces the global clock and timers, and Math.random by `random` (reproducible runs), until
   * uninstall(). Only one clock may be installed at a time.
   */
  install(random: () => number): void {
    if (this.installed) return;
    // One simulation at a time: one that was not closed (a test that timed out) gives way.
    installedClock?.uninstall();
    installedClock = this;
    this.installed = true;
    const g = globalThis as Record<string, unknown>;
    Date.now = () => this.nowMs;
    g.setTimeout = (fn: () => void, ms?: number, ...args: unknown[]) =>
      this.add(() => fn(...(args as [])), ms ?? 0, null);
    g.setInterval = (fn: () => void, ms?: number, ...args: unknown[]) =>
      this.add(() => fn(...(args as [])), ms ?? 0, Math.max(1, ms ?? 0));
    g.clearTimeout = g.clearInterval = (h: unknown) => this.cancel(h);
    Math.random = random;
  }

  uninstall(): void {
    if (!this.installed) return;
    this.installed = false;
    installedClock = null;
    const g = globalThis as Record<string, unknown>;
    Date.now = real.now;
    g.setTimeout = real.setTimeout;
    g.clearTimeout = real.clearTimeout;
    g.setInterval = real.setInterval;
    g.clearInterval = real.clearInterval;
    Math.random = real.random;
  }

  /** Fires every timer due up to now + `ms` in order, letting promises settle after each; now ends there. */
  async advance(ms: number): Promise<void> {
    const end = this.nowMs + ms;
    await settle();
    for (;;) {
      const next = this.heap.peek();
      if (!next || next.due > end) break;
      this.heap.pop();
      if (next.cancelled) continue;
      this.nowMs = Math.max(this.nowMs, next.due);
      if (next.repeatMs !== null) {
        next.due = this.nowMs + next.repeatMs;
        next.seq = this.seq++;
        this.heap.push(next);
      }
      this.fired++;
      next.fn();
      await settle();
    }
    this.nowMs = end;
  }

  private add(fn: () => void, ms: number, repeatMs: number | null): TimerHandle {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer: Timer = {
      id: this.seq,
      due: this.nowMs + delay,
      seq: this.seq++,
      fn,
      repeatMs,
      cancelled: false,
    };
    this.heap.push(timer);
    return new TimerHandle(timer);
  }
}
