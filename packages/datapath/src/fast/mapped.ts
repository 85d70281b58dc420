// The fast-path socket's own server-reflexive (STUN-mapped) addresses: a Binding request from the
// socket to each STUN server ICE uses tells what address and port a NAT gave the socket. Behind an
// endpoint-independent NAT the peer reaches that mapping once our probes have opened it.
import {
  decodeStun,
  type Endpoint,
  encodeStun,
  mappedAddress,
  newTransactionId,
  StunType,
} from "@tincan/protocol";

/** An answer this old is asked again before the next offer. */
export const MAPPED_FRESH_MS = 60_000;
/** How long an offer waits for the STUN servers' answers. */
export const MAPPED_WAIT_MS = 1000;
/** STUN servers asked at once (a bound). */
const MAX_SERVERS = 4;

interface Query {
  server: string;
  done: () => void;
}

export class MappedAddresses {
  private readonly found = new Map<string, { endpoint: Endpoint; at: number }>();
  private readonly queries = new Map<string, Query>();
  private readonly waits = new Map<4 | 6, Promise<void>>();

  constructor(private readonly send: (to: Endpoint, datagram: Buffer) => boolean) {}

  /** The mapped addresses of the family (one per answering server, duplicates removed). */
  of(family: 4 | 6): Endpoint[] {
    const out: Endpoint[] = [];
    for (const { endpoint } of this.found.values()) {
      if (endpoint.address.includes(":") !== (family === 6)) continue;
      if (!out.some((e) => e.address === endpoint.address && e.port === endpoint.port)) out.push(endpoint);
    }
    return out;
  }

  /**
   * Asks `servers` of the family unless their answers are fresh; resolves once all answered or after
   * MAPPED_WAIT_MS (null: nothing to ask).
   */
  refresh(servers: readonly Endpoint[], family: 4 | 6, now: number): Promise<void> | null {
    const due = servers
      .filter((s) => s.address.includes(":") === (family === 6))
      .slice(0, MAX_SERVERS)
      .filter((s) => now - (this.found.get(serverKey(s))?.at ?? Number.NEGATIVE_INFINITY) >= MAPPED_FRESH_MS);
    if (due.length === 0) return null;
    const running = this.waits.get(family);
    if (running) return running;
    const wait = new Promise<void>((resolve) => {
      const ids: string[] = [];
      const finish = (): void => {
        clearTimeout(timer);
        for (const id of ids) this.queries.delete(id);
        this.waits.delete(family);
        resolve();
      };
      const timer = setTimeout(finish, MAPPED_WAIT_MS);
      timer.unref();
      const pending = new Set(due.map(serverKey));
      for (const server of due) {
        const id = newTransactionId();
        ids.push(id.toString("hex"));
        const query: Query = {
          server: serverKey(server),
          done: () => {
            pending.delete(serverKey(server));
            if (pending.size === 0) finish();
          },
        };
        this.queries.set(id.toString("hex"), query);
        this.send(server, encodeStun(StunType.BindingRequest, id, []));
      }
    });
    this.waits.set(family, wait);
    return wait;
  }

  /** A STUN datagram on the socket: true when it answered one of our Binding requests. */
  onMessage(datagram: Buffer, from: Endpoint): boolean {
    const m = decodeStun(datagram);
    if (!m || m.type !== StunType.BindingSuccess) return false;
    const query = this.queries.get(m.transactionId.toString("hex"));
    if (query?.server !== serverKey(from)) return false;
    const endpoint = mappedAddress(m);
    if (endpoint) this.found.set(serverKey(from), { endpoint, at: Date.now() });
    query.done();
    return true;
  }
}

const serverKey = (e: Endpoint): string => `${e.address}|${e.port}`;
