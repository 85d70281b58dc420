import type { Logger } from "winston";
import type { ExitKernel, ExitRoutingState, Family, MasqueradeState } from "./exit-kernel.js";

/** Underlay addresses kept outside the tunnel at most (controller's plus those of our links). */
const MAX_BYPASS = 256;

/** What the exit-node state reads of the datapath. */
export interface ExitView {
  /** The vNIC's name, null before vnic.configure. */
  device(): string | null;
  /** The overlay prefixes of our vNIC (masqueraded on the exit side). */
  overlayPrefixes(): string[];
  /** The families whose default route (0.0.0.0/0, ::/0) the FIB sends to `peerUid`. */
  defaultFamilies(peerUid: string): Set<Family>;
  /** Whether the link carrying `peerUid`'s traffic is connected. */
  isConnected(peerUid: string): boolean;
  /** Remote underlay addresses of our connected links. */
  linkRemotes(): string[];
}

/**
 * Exit nodes in the kernel: on the exit side (`exit.serve`) masquerading; on the member side
 * (`exit.use`) the policy routing that sends all traffic to the vNIC, installed only while the
 * exit's link is connected and its default route is set, so a dead exit gives routing back within
 * the link-failure detection time. Kernel changes run one at a time; each is all or nothing.
 */
export class ExitNode {
  private use: { peerUid: string; bypass: string[] } | null = null;
  private serving = false;
  private routing: ExitRoutingState | null = null;
  private nat: MasqueradeState | null = null;
  private queue: Promise<void> = Promise.resolve();
  private lastError = "";
  /** Leftovers of a killed predecessor are removed before the first change (once). */
  private staleCleared = false;

  constructor(
    private readonly kernel: ExitKernel,
    private readonly view: ExitView,
    private readonly log: Logger,
  ) {}

  /** The exit in use (policy routing installed), or null. */
  get inUse(): string | null {
    return this.routing && this.use ? this.use.peerUid : null;
  }

  setUse(use: { peerUid: string; bypass: string[] } | null): Promise<void> {
    this.use = use;
    return this.enqueue(() => this.applyRouting(true));
  }

  setServe(on: boolean): Promise<void> {
    return this.enqueue(async () => {
      const device = this.view.device();
      const to = on && device ? { device, prefixes: this.view.overlayPrefixes() } : null;
      if (key(to) === key(this.nat)) return;
      await this.kernel.masquerade(this.nat, to);
      this.serving = on;
      this.nat = to;
      this.log.info(to ? "exit node: masquerading the overlay" : "exit node: masquerading ended", {
        prefixes: to?.prefixes ?? [],
      });
    });
  }

  /** Re-reads links and routes (a link went up or down, a route changed, the periodic timer). */
  sync(): void {
    void this.enqueue(() => this.applyRouting(false)).catch(() => {});
  }

  /** At exit: everything we installed goes. */
  close(): void {
    this.kernel.clearSync(this.routing, this.nat);
    this.routing = null;
    this.nat = null;
    this.serving = false;
  }

  get isServing(): boolean {
    return this.serving;
  }

  private async applyRouting(throwErrors: boolean): Promise<void> {
    const to = this.wantedRouting();
    if (key(to) === key(this.routing)) return;
    try {
      await this.kernel.route(this.routing, to);
      this.lastError = "";
    } catch (err) {
      const message = (err as Error).message;
      if (throwErrors) throw err;
      if (message !== this.lastError) this.log.warn("exit node: policy routing failed", { error: message });
      this.lastError = message;
      return;
    }
    const was = this.routing;
    this.routing = to;
    if (!was !== !to)
      this.log.info(to ? "exit node: all traffic goes to the exit" : "exit node: normal routing back", {
        peer: this.use?.peerUid,
        families: to ? [...to.families] : [],
      });
  }

  private wantedRouting(): ExitRoutingState | null {
    const device = this.view.device();
    if (!this.use || !device || !this.view.isConnected(this.use.peerUid)) return null;
    const families = new Set(this.view.defaultFamilies(this.use.peerUid)); // a copy: compared later
    if (families.size === 0) return null;
    const bypass = new Set([...this.use.bypass, ...this.view.linkRemotes()].slice(0, MAX_BYPASS));
    return { device, families, bypass };
  }

  private async clearStale(): Promise<void> {
    const device = this.view.device();
    if (this.staleCleared || !device) return;
    this.staleCleared = true;
    const removed = await this.kernel.clearStale(device, this.view.overlayPrefixes());
    if (removed > 0) this.log.warn("exit node: removed rules an earlier datapath left behind", { removed });
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(() => this.clearStale()).then(step);
    this.queue = next.catch(() => {});
    return next;
  }
}

function key(s: ExitRoutingState | MasqueradeState | null): string {
  if (!s) return "";
  if ("families" in s) return JSON.stringify([s.device, [...s.families].sort(), [...s.bypass].sort()]);
  return JSON.stringify([s.device, s.prefixes]);
}
