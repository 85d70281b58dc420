import { canonicalPrefix, type RouteInfo, RpcErrorCode, type RpcParamsOf } from "@tincan/protocol";
import { type DatapathApi, queryAll, RPC_TIMEOUT, RpcError } from "./datapath-client.js";
import type { Log } from "./logger.js";

export type RouteParams = RpcParamsOf<"route.set">;

/**
 * The routes this controller wants in its datapath. A route RPC that got no answer may still be
 * applied later (the request waited in a busy datapath's socket; the client may even have sent
 * it twice): then the datapath's table and ours differ, e.g. a via route outlives its link. So
 * the table holds what we want from the moment we ask, and after any unanswered route RPC it is
 * compared with `route.query` once the datapath answers again, and differences are set right.
 * Healthy datapaths cost nothing extra: the check runs only after a timeout.
 */
export class RouteTable {
  private readonly wanted = new Map<string, RouteParams>();
  /** Per prefix, how many changes were asked for: an answer to an older one must not undo a newer one. */
  private readonly changes = new Map<string, number>();
  private checkTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly datapath: Pick<DatapathApi, "call">,
    private readonly log: Log,
    private readonly checkDelayMs = 5000,
  ) {}

  list(): RouteParams[] {
    return [...this.wanted.values()];
  }

  prefixes(): string[] {
    return [...this.wanted.keys()];
  }

  async set(params: RouteParams): Promise<void> {
    const change = this.changed(params.prefix);
    const before = this.wanted.get(params.prefix);
    this.wanted.set(params.prefix, params);
    try {
      await this.datapath.call("route.set", params);
    } catch (err) {
      this.failed(err, params.prefix, change, before);
      throw err;
    }
  }

  async remove(prefix: string): Promise<void> {
    const change = this.changed(prefix);
    const before = this.wanted.get(prefix);
    this.wanted.delete(prefix);
    try {
      await this.datapath.call("route.remove", { prefix });
    } catch (err) {
      // Not there: what we wanted (e.g. an attempt that timed out was applied, and the retry found nothing).
      if (err instanceof RpcError && err.code === RpcErrorCode.NotFound) return;
      this.failed(err, prefix, change, before);
      throw err;
    }
  }

  /** Takes a route the datapath already has as ours (a restarted controller). */
  adopt(r: RouteInfo): void {
    const params: RouteParams = { prefix: r.prefix, peerUid: r.peerUid };
    if (r.via) params.via = r.via;
    if (r.mapTo) params.mapTo = r.mapTo;
    if (r.kernel) params.kernel = true;
    if (r.transit) params.transit = true;
    this.wanted.set(r.prefix, params);
  }

  /** Sets every route again (a restarted datapath has none). */
  async reapply(): Promise<void> {
    for (const r of this.wanted.values()) await this.datapath.call("route.set", r);
  }

  stop(): void {
    this.stopped = true;
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.checkTimer = null;
  }

  private changed(prefix: string): number {
    const n = (this.changes.get(prefix) ?? 0) + 1;
    this.changes.set(prefix, n);
    return n;
  }

  private failed(err: unknown, prefix: string, change: number, before: RouteParams | undefined): void {
    if (err instanceof RpcError && err.code === RPC_TIMEOUT) {
      this.scheduleCheck();
      return;
    }
    // Refused: nothing changed on the datapath, so neither does our table (unless changed since).
    if (this.changes.get(prefix) !== change) return;
    if (before) this.wanted.set(prefix, before);
    else this.wanted.delete(prefix);
  }

  private scheduleCheck(): void {
    if (this.checkTimer || this.stopped) return;
    this.checkTimer = setTimeout(() => {
      this.checkTimer = null;
      void this.check();
    }, this.checkDelayMs);
    this.checkTimer.unref();
  }

  /**
   * Makes the datapath's routes what we want; tries again later if it does not answer. A route
   * changed while the check runs is left to that change (which schedules a check of its own if it
   * goes unanswered).
   */
  async check(): Promise<void> {
    if (this.stopped) return;
    let fixed = 0;
    try {
      const actual = await queryAll(this.datapath, "route.query");
      // The datapath names prefixes canonically (RFC 5952 IPv6 text): compare in that form.
      const snapshot = new Map([...this.wanted.values()].map((w) => [canonical(w.prefix), w]));
      const unchanged = (w: RouteParams) => !this.stopped && this.wanted.get(w.prefix) === w;
      const unwanted = (prefix: string) =>
        !this.stopped && !this.prefixes().some((p) => canonical(p) === canonical(prefix));
      for (const r of actual) {
        const key = canonical(r.prefix);
        const want = snapshot.get(key);
        snapshot.delete(key);
        if (!want) {
          if (unwanted(r.prefix) && (await this.fix("route.remove", { prefix: r.prefix }))) fixed++;
        } else if (
          want.peerUid !== r.peerUid ||
          (want.via ?? null) !== r.via ||
          (want.mapTo ?? null) !== r.mapTo ||
          (r.kernel !== undefined && (want.kernel ?? false) !== r.kernel) ||
          (want.transit ?? false) !== (r.transit ?? false)
        ) {
          if (unchanged(want) && (await this.fix("route.set", want))) fixed++;
        }
      }
      for (const want of snapshot.values()) {
        if (unchanged(want) && (await this.fix("route.set", want))) fixed++;
      }
    } catch (err) {
      this.log.debug("route check: the datapath did not answer; trying again", {
        error: (err as Error).message,
      });
      this.scheduleCheck();
    }
    if (fixed > 0) this.log.info("routes set right after unanswered route RPCs", { fixed });
  }

  /**
   * One repair: true when the datapath took it. A refused route.set (it would refuse it every
   * time) is forgotten rather than tried forever; no answer throws, so the check runs again.
   */
  private async fix(
    method: "route.set" | "route.remove",
    params: RouteParams | { prefix: string },
  ): Promise<boolean> {
    try {
      if (method === "route.set") await this.datapath.call("route.set", params as RouteParams);
      else await this.datapath.call("route.remove", params);
      return true;
    } catch (err) {
      if (err instanceof RpcError && err.code === RPC_TIMEOUT) throw err;
      this.log.warn("route check: the datapath refused a repair", { method, error: (err as Error).message });
      if (method === "route.set" && this.wanted.get(params.prefix) === params)
        this.wanted.delete(params.prefix);
      return false;
    }
  }
}

/** `address/length` with the address in canonical text (host bits are not cleared: we set host routes). */
function canonical(prefix: string): string {
  return canonicalPrefix(prefix) ?? prefix;
}
