/**
 * Time as the GroupVPN policy sees it: the wall clock in a controller, virtual time in the simulator
 * and in tests. The policy reads time and arms timers only through this.
 */
export interface Clock {
  now(): number;
  /** Calls `fire` once after `ms`; the returned function cancels it. */
  setTimer(fire: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fire, ms) {
    const timer = setTimeout(fire, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};
