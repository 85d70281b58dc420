import { describe, expect, it } from "vitest";
import { Fib } from "../fib.js";
import type { Link } from "../link.js";
import { FakeVnic } from "../testing.js";
import { FakeFastNet, type FakeFastSocket } from "./fake-socket.js";
import { NativeForward } from "./native-forward.js";

/** The parts of a Link the table reads, and what it tells the link. */
interface StubLink {
  peerUid: string;
  state: string;
  tooBigAbove: number;
  maxFrame: number;
  fast: { phase: string; sending: { localIndex: number } | null } | null;
  forwarded: number[][];
  nativeForwarding: boolean;
  nativeForwarded(...counts: number[]): void;
}

const KEY = new Uint8Array(32);

function setup() {
  const fib = new Fib();
  fib.ownUid = "me";
  fib.vnic = new FakeVnic(
    "tin0",
    { name: "tin0", ipv4: null, ipv6: null, mtu: 1280, offload: false },
    () => {},
  );
  const socket = new FakeFastNet().socket("192.0.2.1", 5000);
  let open: FakeFastSocket | null = socket;
  const table = new NativeForward(fib, () => open);
  const link = (peerUid: string, localIndex: number): StubLink => {
    socket.setSession(localIndex, localIndex + 1000, KEY, KEY, { address: "192.0.2.2", port: 5000 });
    const l: StubLink = {
      peerUid,
      state: "connected",
      tooBigAbove: Number.POSITIVE_INFINITY,
      maxFrame: 1402,
      fast: { phase: "up", sending: { localIndex } },
      forwarded: [],
      nativeForwarding: false,
      nativeForwarded: (...counts) => l.forwarded.push(counts.slice(0, 4)),
    };
    fib.links.set(peerUid, l as unknown as Link);
    return l;
  };
  return { fib, socket, table, link, close: () => (open = null) };
}

const entries = (socket: FakeFastSocket) =>
  Object.fromEntries(
    [...socket.forwards()].map(([i, f]) => [i, `${f.hopLimit} ${f.maxPacket} ${f.addresses.join(",")}`]),
  );

describe("NativeForward", () => {
  it("installs an entry for each link on the fast path with the peer's direct host routes only", () => {
    const { fib, socket, table, link } = setup();
    link("p1", 11);
    link("p2", 22);
    const slow = link("p3", 33);
    slow.fast = { phase: "down", sending: null };
    fib.setRoute("10.0.0.1/32", "p1", null, null);
    fib.setRoute("fd00::1/128", "p1", null, null);
    fib.setRoute("10.0.0.2/32", "p2", null, null);
    fib.setRoute("10.0.0.3/32", "p3", null, null);
    fib.setRoute("10.0.0.4/32", "p2", "p1", null); // via a neighbour: transit, JS decides
    fib.setRoute("10.0.0.5/32", "p2", null, "192.168.0.5"); // translated
    fib.setRoute("10.1.0.0/16", "p1", null, null); // a prefix: longest match is JS's
    fib.setRoute("10.0.0.9/32", "me", null, null); // behind this node
    table.setLocalAddresses("10.0.0.100", "fd00::100");
    table.refresh();
    expect(entries(socket)).toEqual({ 11: "4 1400 10.0.0.1,fd00::1", 22: "4 1400 10.0.0.2" });
    expect(socket.localAddresses).toEqual(["10.0.0.100", "fd00::100"]);
    expect((fib.vnic as FakeVnic).forwardingTo).toBe(socket);
  });

  it("follows route changes, fall-back, rekey, path MTU, link state and removal, translation", () => {
    const { fib, socket, table, link, close } = setup();
    const l1 = link("p1", 11);
    link("p2", 22);
    fib.setRoute("10.0.0.1/32", "p1", null, null);
    fib.setRoute("10.0.0.2/32", "p2", null, null);
    table.refresh();
    expect(entries(socket)).toEqual({ 11: "4 1400 10.0.0.1", 22: "4 1400 10.0.0.2" });

    fib.setRoute("10.0.0.2/32", "p1", null, null); // moved to another peer
    table.refresh();
    expect(entries(socket)).toEqual({ 11: "4 1400 10.0.0.1,10.0.0.2" });
    fib.removeRoute("10.0.0.2/32");
    table.refresh();
    expect(entries(socket)).toEqual({ 11: "4 1400 10.0.0.1" });

    l1.tooBigAbove = 1200; // path MTU measured
    table.refresh();
    expect(entries(socket)).toEqual({ 11: "4 1200 10.0.0.1" });

    link("p1", 12).tooBigAbove = 1200; // rekeyed: a new sending session (same link object in the FIB)
    (fib.links.get("p1") as unknown as StubLink).fast = { phase: "up", sending: { localIndex: 12 } };
    table.refresh();
    expect(entries(socket)).toEqual({ 12: "4 1200 10.0.0.1" });

    const now = fib.links.get("p1") as unknown as StubLink;
    now.fast = { phase: "down", sending: null }; // fell back to node-datachannel
    table.refresh();
    expect(entries(socket)).toEqual({});
    now.fast = { phase: "up", sending: { localIndex: 12 } };
    now.state = "disconnected";
    table.refresh();
    expect(entries(socket)).toEqual({});
    now.state = "connected";
    table.refresh();
    expect(entries(socket)).toEqual({ 12: "4 1200 10.0.0.1" });

    fib.translate = true; // SocialVPN rewrites addresses: JS only
    table.refresh();
    expect(entries(socket)).toEqual({});
    fib.translate = false;
    table.refresh();
    fib.links.delete("p1"); // link removed (or another transport carries the peer)
    table.refresh();
    expect(entries(socket)).toEqual({});

    table.refresh();
    link("p1", 13);
    table.refresh();
    expect(entries(socket)).toEqual({ 13: "4 1400 10.0.0.1" });
    close(); // the socket closed: nothing is kept
    table.refresh();
    expect(table.installed().size).toBe(0);
  });

  it("adds what was forwarded natively to the link, vNIC and route counters, once", () => {
    const { fib, socket, table, link } = setup();
    const l = link("p1", 11);
    fib.setRoute("10.0.0.1/32", "p1", null, null);
    table.refresh();
    const stats = socket.forwardOf(11)?.stats;
    if (!stats) throw new Error("no entry");
    Object.assign(stats, { txPackets: 3, txBytes: 300, rxPackets: 2, rxBytes: 180, vnicFull: 1 });
    stats.addresses = [{ address: "10.0.0.1", txPackets: 3, txBytes: 300, rxPackets: 2 }];
    table.sync();
    table.sync();
    expect(l.forwarded).toEqual([[3, 300, 2, 180]]);
    expect(fib.vnicCounters.snapshot()).toMatchObject({
      rxPackets: 3,
      rxBytes: 300,
      txPackets: 2,
      txBytes: 180,
      drops: { vnicFull: 1 },
    });
    expect(fib.routes.get("10.0.0.1/32")).toMatchObject({ txPackets: 3, txBytes: 300, rxPackets: 2 });

    // Counts since the last sync are not lost when the entry goes.
    Object.assign(stats, { txPackets: 5, txBytes: 500 });
    stats.addresses = [{ address: "10.0.0.1", txPackets: 5, txBytes: 500, rxPackets: 2 }];
    fib.removeRoute("10.0.0.1/32");
    fib.setRoute("10.0.0.1/32", "p1", null, null); // counters start over with a new route...
    (fib.links.get("p1") as unknown as StubLink).fast = { phase: "down", sending: null };
    table.refresh();
    expect(l.forwarded).toEqual([
      [3, 300, 2, 180],
      [2, 200, 0, 0],
    ]);
    expect(fib.routes.get("10.0.0.1/32")).toMatchObject({ txPackets: 2, txBytes: 200 }); // ...and get the rest
  });

  it("walks the route table only when routes changed (1,000 routes: the 1-s refresh is cheap)", () => {
    const { fib, socket, table, link } = setup();
    for (let p = 0; p < 100; p++) {
      if (p < 10) link(`p${p}`, 100 + p);
      for (let i = 0; i < 10; i++) fib.setRoute(`10.${p}.0.${i + 1}/32`, `p${p}`, null, null);
    }
    let walks = 0;
    const entriesOf = fib.routes.entries.bind(fib.routes);
    fib.routes.entries = () => {
      walks++;
      return entriesOf();
    };
    table.refresh();
    expect(walks).toBe(1);
    expect(table.installed().size).toBe(10);
    const timed = (n: number, before: () => void) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        before();
        table.refresh();
      }
      return (performance.now() - t0) / n;
    };
    const cachedMs = timed(200, () => {});
    expect(walks).toBe(1);
    // What each refresh cost before: the table walked every time.
    const walkedMs = timed(200, () => fib.routesVersion++);
    expect(walks).toBe(201);
    console.log(
      `NativeForward.refresh, 1000 routes, 10 fast links: ${(cachedMs * 1000).toFixed(1)} us unchanged, ` +
        `${(walkedMs * 1000).toFixed(1)} us walking the routes`,
    );
    // A change is seen at the next refresh: a route set, a route removed, our UID.
    fib.setRoute("10.0.0.99/32", "p0", null, null);
    table.refresh();
    expect(entries(socket)[100]).toMatch(/,10\.0\.0\.99$/);
    fib.removeRoute("10.0.0.99/32");
    table.refresh();
    expect(entries(socket)[100]).not.toMatch(/10\.0\.0\.99/);
    fib.ownUid = "p1";
    table.refresh();
    expect(table.installed().size).toBe(9);
  });

  it("holds native forwarding while JS's send queue is busy", () => {
    const { fib, socket, table, link } = setup();
    link("p1", 11);
    fib.setRoute("10.0.0.1/32", "p1", null, null);
    table.refresh();
    table.hold(true);
    expect(socket.held).toBe(true);
    table.hold(false);
    expect(socket.held).toBe(false);
  });
});
