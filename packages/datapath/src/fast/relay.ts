// The fast path's TURN allocation: one per fast-path socket (a TURN server tells allocations apart
// by the client's address and port, so all relayed links of a datapath share it), made when the
// first relayed fast path asks for it and released when the last one closes. Each peer's relayed
// address gets one channel, shared by the links to that peer.
import type { Endpoint } from "@tincan/protocol";
import type { TurnClient, TurnCredentials } from "./turn-client.js";

/** Where the allocation is made: the TURN server ICE uses (UDP) and the credentials for it now. */
export interface TurnTarget {
  server: Endpoint;
  credentials: TurnCredentials;
}

/** A peer's relayed address bound on our allocation: datagrams go to `server` as ChannelData on `channel`. */
export interface RelayBinding {
  server: Endpoint;
  channel: number;
}

interface PeerBinding {
  users: number;
  channel: Promise<number | null>;
}

const key = (e: Endpoint): string => `${e.address}|${e.port}`;

export class FastRelay {
  private client: TurnClient | null = null;
  private allocating: Promise<Endpoint | null> | null = null;
  private readonly users = new Set<object>();
  private readonly peers = new Map<string, PeerBinding>();
  /** A relayed path failed: the allocation is checked (Refresh) before it is offered again. */
  private suspect = false;

  constructor(
    /** The TURN server to use now (null: none configured). */
    private readonly target: () => TurnTarget | null,
    private readonly newClient: (target: TurnTarget) => TurnClient,
    private readonly log: (message: string, fields: Record<string, unknown>) => void,
  ) {}

  /** Our relayed address while the allocation stands. */
  get relayed(): Endpoint | null {
    return this.client?.state === "ready" ? this.client.relayed : null;
  }

  /** Our relayed address, allocating it when needed (null: no TURN server, or it refused). */
  async allocate(user: object): Promise<Endpoint | null> {
    this.users.add(user);
    if (this.suspect && this.client?.state === "ready") {
      this.suspect = false;
      if (!(await this.client.refresh())) this.reset("the allocation is gone (Refresh failed)");
    }
    if (this.client?.state === "ready") return this.client.relayed;
    if (this.client && this.client.state !== "allocating") this.reset(null);
    if (!this.allocating) this.allocating = this.start();
    return this.allocating;
  }

  /** The channel to the peer's relayed address on our allocation (null: refused, or no allocation). */
  async bind(peer: Endpoint): Promise<RelayBinding | null> {
    const client = this.client;
    if (client?.state !== "ready") return null;
    let b = this.peers.get(key(peer));
    if (!b) {
      b = { users: 0, channel: client.bind(peer) };
      this.peers.set(key(peer), b);
    }
    b.users++;
    const channel = await b.channel;
    if (channel === null) {
      // Refused or unanswered: the allocation may be gone (a restarted server).
      this.suspect = true;
      this.unbind(peer);
      return null;
    }
    return { server: client.server, channel };
  }

  unbind(peer: Endpoint): void {
    const b = this.peers.get(key(peer));
    if (!b || --b.users > 0) return;
    this.peers.delete(key(peer));
    this.client?.unbind(peer);
  }

  /** A fast path is done with the relay; the last one releases the allocation. */
  release(user: object): void {
    if (!this.users.delete(user) || this.users.size > 0) return;
    this.reset(null);
  }

  /** A relayed path stopped answering: check the allocation before it is used again. */
  failed(): void {
    this.suspect = true;
  }

  /** Whether `from` is our TURN server and the datagram answered one of our requests. */
  onMessage(datagram: Buffer, from: Endpoint): boolean {
    return this.client?.onMessage(datagram, from) ?? false;
  }

  /** Renews permissions and channel bindings that are due. */
  tick(now: number): void {
    this.client?.tick(now);
  }

  close(): void {
    this.users.clear();
    this.reset(null);
  }

  private async start(): Promise<Endpoint | null> {
    const target = this.target();
    if (!target) return null;
    const client = this.newClient(target);
    this.client = client;
    const relayed = await client.allocate();
    if (this.client === client) this.allocating = null;
    if (!relayed) {
      this.log("fast path TURN allocation failed: relayed links stay on node-datachannel", {
        server: `${target.server.address}:${target.server.port}`,
        error: client.error,
      });
      return null;
    }
    this.log("fast path TURN allocation made", { relayed: `${relayed.address}:${relayed.port}` });
    return relayed;
  }

  private reset(why: string | null): void {
    if (why) this.log("fast path TURN allocation dropped", { why });
    this.client?.close();
    this.client = null;
    this.allocating = null;
    this.peers.clear();
  }
}
