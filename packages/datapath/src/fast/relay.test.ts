import { type Endpoint, encodeStun, StunType } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { MappedAddresses } from "./mapped.js";
import { FastRelay, type TurnTarget } from "./relay.js";
import type { TurnClient, TurnState } from "./turn-client.js";

const SERVER: Endpoint = { address: "100.64.0.1", port: 3478 };
const TARGET: TurnTarget = { server: SERVER, credentials: { username: "u", password: "p" } };

/** A TurnClient stand-in: allocates at once (relayed port 50000 + n), refresh as told. */
class FakeTurn {
  state: TurnState = "idle";
  relayed: Endpoint | null = null;
  error: string | null = null;
  refreshOk = true;
  bindOk = true;
  readonly bound = new Set<string>();
  constructor(
    readonly server: Endpoint,
    private readonly n: number,
  ) {}
  async allocate() {
    this.state = "ready";
    this.relayed = { address: SERVER.address, port: 50000 + this.n };
    return this.relayed;
  }
  async bind(peer: Endpoint) {
    if (!this.bindOk) return null;
    this.bound.add(`${peer.address}:${peer.port}`);
    return 0x4000 + this.bound.size - 1;
  }
  unbind(peer: Endpoint) {
    this.bound.delete(`${peer.address}:${peer.port}`);
  }
  async refresh() {
    if (!this.refreshOk) this.state = "failed";
    return this.refreshOk;
  }
  onMessage() {
    return false;
  }
  tick() {}
  close() {
    this.state = "closed";
  }
}

function relay() {
  const clients: FakeTurn[] = [];
  const r = new FastRelay(
    () => TARGET,
    (t) => {
      const c = new FakeTurn(t.server, clients.length);
      clients.push(c);
      return c as unknown as TurnClient;
    },
    () => {},
  );
  return { r, clients };
}

const PEER: Endpoint = { address: "100.64.0.1", port: 60000 };

describe("FastRelay", () => {
  it("shares one allocation among users and one channel per peer; the last user releases it", async () => {
    const { r, clients } = relay();
    const [a, b] = [{}, {}];
    const [ra, rb] = await Promise.all([r.allocate(a), r.allocate(b)]);
    expect(ra).toEqual({ address: SERVER.address, port: 50000 });
    expect(rb).toEqual(ra);
    expect(clients).toHaveLength(1);
    const [ba, bb] = [await r.bind(PEER), await r.bind(PEER)];
    expect(ba).toEqual({ server: SERVER, channel: 0x4000 });
    expect(bb).toEqual(ba);
    r.unbind(PEER);
    expect(clients[0]?.bound.size).toBe(1);
    r.unbind(PEER);
    expect(clients[0]?.bound.size).toBe(0);
    r.release(a);
    expect(clients[0]?.state).toBe("ready");
    r.release(b);
    expect(clients[0]?.state).toBe("closed");
    expect(r.relayed).toBeNull();
  });

  it("after a failed relayed path checks the allocation and makes a new one when it is gone", async () => {
    const { r, clients } = relay();
    const user = {};
    await r.allocate(user);
    r.failed();
    expect(await r.allocate(user)).toEqual({ address: SERVER.address, port: 50000 });
    expect(clients).toHaveLength(1);
    (clients[0] as FakeTurn).refreshOk = false;
    r.failed();
    expect(await r.allocate(user)).toEqual({ address: SERVER.address, port: 50001 });
    expect(clients).toHaveLength(2);
    expect(clients[0]?.state).toBe("closed");
  });

  it("a refused channel marks the allocation for that check", async () => {
    const { r, clients } = relay();
    const user = {};
    await r.allocate(user);
    const c = clients[0] as FakeTurn;
    c.bindOk = false;
    c.refreshOk = false;
    expect(await r.bind(PEER)).toBeNull();
    await r.allocate(user);
    expect(clients).toHaveLength(2);
  });
});

describe("MappedAddresses", () => {
  it("takes the answer of the server asked, by transaction ID; ignores others; waits at most a second", async () => {
    const sent: Array<{ to: Endpoint; datagram: Buffer }> = [];
    const m = new MappedAddresses((to, datagram) => {
      sent.push({ to, datagram });
      return true;
    });
    const wait = m.refresh([SERVER], 4, Date.now());
    expect(wait).not.toBeNull();
    const request = sent[0]?.datagram as Buffer;
    const id = request.subarray(8, 20);
    const xorAddress = Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]);
    xorAddress.writeUInt16BE(26000 ^ 0x2112, 2);
    Buffer.from([100 ^ 0x21, 64 ^ 0x12, 0 ^ 0xa4, 11 ^ 0x42]).copy(xorAddress, 4);
    const answer = encodeStun(StunType.BindingSuccess, id, [[0x0020, xorAddress]]);
    expect(m.onMessage(answer, { address: "100.64.0.99", port: 3478 })).toBe(false);
    expect(m.onMessage(encodeStun(StunType.BindingSuccess, Buffer.alloc(12), []), SERVER)).toBe(false);
    expect(m.onMessage(answer, SERVER)).toBe(true);
    await wait;
    expect(m.of(4)).toEqual([{ address: "100.64.0.11", port: 26000 }]);
    expect(m.of(6)).toEqual([]);
    // Fresh: not asked again.
    expect(m.refresh([SERVER], 4, Date.now())).toBeNull();
    expect(m.refresh([], 4, Date.now())).toBeNull();
  });
});
