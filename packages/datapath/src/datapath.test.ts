import { uidForIpv4 } from "@tincan/protocol";
import { afterEach, describe, expect, it } from "vitest";
import winston from "winston";
import { Datapath, type DatapathOptions } from "./datapath.js";
import { fakeVnicFactory, udp4 } from "./testing.js";

const silent = winston.createLogger({ silent: true });

interface Node {
  dp: Datapath;
  uid: string;
  vnic: ReturnType<typeof fakeVnicFactory>;
  notes: { method: string; params: any }[];
}

function makeNode(ip: string, translate = false, tune: Partial<DatapathOptions> = {}): Node {
  const vnic = fakeVnicFactory();
  const notes: Node["notes"] = [];
  const node: Node = {
    uid: uidForIpv4(ip),
    vnic,
    notes,
    dp: new Datapath({
      vnicFactory: vnic,
      logger: silent,
      notify: (method, params) => notes.push({ method, params }),
      ...tune,
    }),
  };
  node.dp.methods["vnic.configure"]({ uid: node.uid, ipv4: `${ip}/16`, translate });
  return node;
}

const nodes: Node[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.dp.close();
});

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

const linkTo = (from: Node, to: Node) => from.dp.methods["link.query"]({}).find((l) => l.peerUid === to.uid);

/** Forwards `from`'s trickle candidates for `to` as they appear, like a controller would. */
function relayCandidates(from: Node, to: Node): NodeJS.Timeout {
  let next = 0;
  return setInterval(() => {
    for (; next < from.notes.length; next++) {
      const n = from.notes[next]!;
      if (n.method !== "link.candidate" || n.params.peerUid !== to.uid) continue;
      try {
        to.dp.methods["link.addCandidate"]({
          peerUid: from.uid,
          candidate: n.params.candidate,
          mid: n.params.mid,
        });
      } catch {}
    }
  }, 5);
}

/** One setup between two datapaths, passing descriptions and candidates directly. */
async function setUp(a: Node, b: Node, mangleAnswer = (sdp: string) => sdp): Promise<void> {
  const { description: offer } = await a.dp.methods["link.create"]({ peerUid: b.uid });
  const { description: answer } = await b.dp.methods["link.accept"]({ peerUid: a.uid, description: offer });
  a.dp.methods["link.complete"]({
    peerUid: b.uid,
    description: { ...answer, sdp: mangleAnswer(answer.sdp) },
  });
  const pumps = [relayCandidates(a, b), relayCandidates(b, a)];
  try {
    await until(() => {
      const states = [linkTo(a, b)?.state, linkTo(b, a)?.state];
      return states.every((s) => s === "connected") || states.some((s) => s === "failed" || s === "closed");
    });
  } finally {
    for (const p of pumps) clearInterval(p);
  }
}

/**
 * Connects two datapaths, offering again when a setup fails the DTLS handshake, as the
 * controller does (libdatachannel can verify the answer's fingerprint before it stored it).
 */
async function connect(a: Node, b: Node): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    await setUp(a, b);
    if (linkTo(a, b)?.state === "connected" && linkTo(b, a)?.state === "connected") return;
    a.dp.methods["link.remove"]({ peerUid: b.uid });
    b.dp.methods["link.remove"]({ peerUid: a.uid });
  }
  throw new Error(`no link between ${a.uid} and ${b.uid} after 3 setups`);
}

describe("Datapath: packets held for on-demand links", () => {
  it("reports a held destination again as soon as a route to it is set", async () => {
    const a = makeNode("10.10.0.1");
    nodes.push(a);
    const b = uidForIpv4("10.10.0.2");
    const reports = () => a.notes.filter((n) => n.method === "packet.unmapped").length;
    // Sent before the member's presence came: no route, and the controller cannot place it.
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "first"));
    expect(reports()).toBe(1);
    // Its presence comes within the second: the controller must hear of the packet again to link.
    await a.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b });
    expect(reports()).toBe(2);
    expect(a.notes.at(-1)?.params).toMatchObject({ dst: "10.10.0.2" });
    // Unrelated route changes do not repeat it within the interval.
    await a.dp.methods["route.set"]({ prefix: "10.10.0.3/32", peerUid: uidForIpv4("10.10.0.3") });
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "second"));
    expect(reports()).toBe(2);
    expect(a.dp.methods["vnic.query"]({}).queued).toBe(2);
  });
});

describe("Datapath over real node-datachannel links (fake vNICs)", () => {
  it("forwards packets, refuses spoofed sources, reports unmapped destinations once", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    // The first packet arrives before any route: held, reported, delivered once the link is up.
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "first"));
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "second"));
    expect(a.notes.filter((n) => n.method === "packet.unmapped")).toHaveLength(1);
    a.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    b.dp.methods["route.set"]({ prefix: "10.10.0.1/32", peerUid: a.uid });
    await connect(a, b);
    await until(() => b.vnic.devices[0]!.written.length >= 2);
    expect(b.vnic.devices[0]!.written.map((p) => p.subarray(28).toString())).toEqual(["first", "second"]);
    expect(a.notes.some((n) => n.method === "link.state" && n.params.state === "connected")).toBe(true);

    // A batch of packets crosses in one frame, and B refuses a packet whose source A does not own.
    a.vnic.devices[0]!.inject(
      udp4("10.10.0.1", "10.10.0.2", "x1"),
      udp4("10.10.0.99", "10.10.0.2", "forged"),
      udp4("10.10.0.1", "10.10.0.2", "x2"),
    );
    await until(() => b.vnic.devices[0]!.written.length >= 4);
    await new Promise((r) => setTimeout(r, 50));
    const texts = b.vnic.devices[0]!.written.map((p) => p.subarray(28).toString());
    expect(texts).toEqual(["first", "second", "x1", "x2"]);
    const [linkAtB] = b.dp.methods["link.query"]({});
    expect(linkAtB?.drops.spoofed).toBe(1);
    expect(linkAtB?.rxPackets).toBe(5);
    // Probes measure the link's round-trip time (one goes out when the link connects).
    await until(() => typeof linkTo(a, b)?.rttMs === "number");
    // Loose: both datapaths share this event loop, so a busy test runner adds its pauses.
    expect(linkTo(a, b)?.rttMs).toBeLessThan(1000);
  });

  it("translates addresses for SocialVPN on receive", async () => {
    // Alice knows Bob as 172.31.0.2; Bob knows Alice as 172.31.0.9. Bob's own address is 172.31.0.1.
    const alice = makeNode("172.31.0.1", true);
    const bob = makeNode("172.31.0.1", true);
    // Same address on both ends: UIDs must still differ, so derive them differently.
    (bob as { uid: string }).uid = uidForIpv4("bob");
    bob.dp.methods["vnic.configure"]({ uid: bob.uid, ipv4: "172.31.0.1/16", translate: true });
    nodes.push(alice, bob);
    alice.dp.methods["route.set"]({ prefix: "172.31.0.2/32", peerUid: bob.uid });
    bob.dp.methods["route.set"]({ prefix: "172.31.0.9/32", peerUid: alice.uid });
    await connect(alice, bob);
    alice.vnic.devices[0]!.inject(udp4("172.31.0.1", "172.31.0.2", "hi bob"));
    await until(() => bob.vnic.devices[0]!.written.length >= 1);
    const got = bob.vnic.devices[0]!.written[0]!;
    expect([...got.subarray(12, 16)].join(".")).toBe("172.31.0.9");
    expect([...got.subarray(16, 20)].join(".")).toBe("172.31.0.1");
    expect(got.subarray(28).toString()).toBe("hi bob");
  });

  it("forwards via another node with a hop limit (A -> B -> C)", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    const c = makeNode("10.10.0.3");
    nodes.push(a, b, c);
    a.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    a.dp.methods["route.set"]({ prefix: "10.10.0.3/32", peerUid: c.uid, via: b.uid });
    b.dp.methods["route.set"]({ prefix: "10.10.0.1/32", peerUid: a.uid });
    b.dp.methods["route.set"]({ prefix: "10.10.0.3/32", peerUid: c.uid });
    c.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    c.dp.methods["route.set"]({ prefix: "10.10.0.1/32", peerUid: a.uid, via: b.uid });
    await connect(a, b);
    await connect(b, c);
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.3", "via b"));
    await until(() => c.vnic.devices[0]!.written.length >= 1);
    expect(c.vnic.devices[0]!.written[0]!.subarray(28).toString()).toBe("via b");
    c.vnic.devices[0]!.inject(udp4("10.10.0.3", "10.10.0.1", "back"));
    await until(() => a.vnic.devices[0]!.written.length >= 1);
    expect(a.vnic.devices[0]!.written[0]!.subarray(28).toString()).toBe("back");
    expect(b.vnic.devices[0]!.written).toHaveLength(0);
  });

  it("sends packets waiting for a direct link via another node once a via route is set", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    const c = makeNode("10.10.0.3");
    nodes.push(a, b, c);
    a.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    a.dp.methods["route.set"]({ prefix: "10.10.0.3/32", peerUid: c.uid });
    b.dp.methods["route.set"]({ prefix: "10.10.0.1/32", peerUid: a.uid });
    b.dp.methods["route.set"]({ prefix: "10.10.0.3/32", peerUid: c.uid });
    c.dp.methods["route.set"]({ prefix: "10.10.0.1/32", peerUid: a.uid, via: b.uid });
    c.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    await connect(a, b);
    await connect(b, c);
    await a.dp.methods["link.create"]({ peerUid: c.uid }); // a direct link that never connects
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.3", "waited"));
    expect(a.dp.fib.links.get(c.uid)?.pending.length).toBe(1);
    a.dp.methods["route.set"]({ prefix: "10.10.0.3/32", peerUid: c.uid, via: b.uid });
    await until(() => c.vnic.devices[0]!.written.length >= 1);
    expect(c.vnic.devices[0]!.written[0]!.subarray(28).toString()).toBe("waited");
    expect(a.dp.fib.links.get(c.uid)?.pending.length).toBe(0);
  });

  it("holds a full and a relay-only transport per peer; traffic moves to the one that connects", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    a.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    b.dp.methods["route.set"]({ prefix: "10.10.0.1/32", peerUid: a.uid });
    // Set up first, the relay-only transport holds the waiting packets (without TURN it never connects).
    await a.dp.methods["link.create"]({ peerUid: b.uid, relayOnly: true });
    await expect(a.dp.methods["link.create"]({ peerUid: b.uid, relayOnly: true })).rejects.toThrow(/exists/);
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "waited"));
    expect(a.dp.fib.links.get(b.uid)?.relayOnly).toBe(true);
    expect(a.dp.fib.links.get(b.uid)?.pending.length).toBe(1);

    await connect(a, b);
    await until(() => b.vnic.devices[0]!.written.length >= 1);
    expect(b.vnic.devices[0]!.written[0]!.subarray(28).toString()).toBe("waited");
    const listed = a.dp.methods["link.query"]({ peerUid: b.uid });
    // The carrying transport is listed first; the relay-only one (no TURN here) is still setting up or,
    // once ICE gave up on a loaded host, failed and gone.
    expect(listed.map((l) => [l.relayOnly, l.state])[0]).toEqual([false, "connected"]);
    for (const l of listed.slice(1))
      expect([l.relayOnly, l.state]).toEqual([true, expect.not.stringMatching(/connected/)]);
    expect(listed.length).toBeLessThanOrEqual(2);
    expect(listed.flatMap((l) => Object.keys(l.drops))).toEqual([]);
    expect(a.dp.methods["vnic.query"]({}).drops).toEqual({});
    expect(
      a.notes.some(
        (n) => n.method === "link.state" && n.params.state === "connected" && n.params.relayOnly === false,
      ),
    ).toBe(true);

    // Each transport is addressed by its kind; link.remove without one removes both.
    a.dp.methods["link.remove"]({ peerUid: b.uid, relayOnly: true });
    expect(a.dp.methods["link.query"]({}).map((l) => l.relayOnly)).toEqual([false]);
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "after"));
    await until(() => b.vnic.devices[0]!.written.length >= 2);
    await a.dp.methods["link.create"]({ peerUid: b.uid, relayOnly: true });
    expect(a.dp.fib.links.get(b.uid)?.relayOnly).toBe(false);
    a.dp.methods["link.remove"]({ peerUid: b.uid });
    expect(a.dp.methods["link.query"]({})).toEqual([]);
    expect(a.dp.fib.links.size).toBe(0);
  });

  it("moves waiting packets to the other transport when the one holding them is removed", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    a.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    await a.dp.methods["link.create"]({ peerUid: b.uid });
    await a.dp.methods["link.create"]({ peerUid: b.uid, relayOnly: true });
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "x"), udp4("10.10.0.1", "10.10.0.2", "y"));
    expect(a.dp.fib.links.get(b.uid)?.relayOnly).toBe(false);
    a.dp.methods["link.remove"]({ peerUid: b.uid, relayOnly: false });
    const relay = a.dp.fib.links.get(b.uid);
    expect(relay?.relayOnly).toBe(true);
    expect(relay?.pending.length).toBe(2);
    expect(a.dp.methods["vnic.query"]({}).drops).toEqual({});
  });

  it("reports a failed DTLS handshake after ICE connected as reason handshake", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    // A wrong fingerprint in the answer: ICE connects, then the offerer refuses the certificate.
    await setUp(a, b, (sdp) =>
      sdp.replace(/(a=fingerprint:sha-256 )([0-9A-F]{2})/, (_m, p, h) => `${p}${h === "00" ? "01" : "00"}`),
    );
    await until(() => a.notes.some((n) => n.method === "link.state" && n.params.state === "failed"));
    const failed = a.notes.find((n) => n.method === "link.state" && n.params.state === "failed");
    expect(failed?.params).toEqual({
      peerUid: b.uid,
      relayOnly: false,
      state: "failed",
      reason: "handshake",
    });
  });

  it("keeps the packets queued for a setup that is removed for the next setup", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    a.dp.methods["route.set"]({ prefix: "10.10.0.2/32", peerUid: b.uid });
    b.dp.methods["route.set"]({ prefix: "10.10.0.1/32", peerUid: a.uid });
    await a.dp.methods["link.create"]({ peerUid: b.uid });
    a.vnic.devices[0]!.inject(udp4("10.10.0.1", "10.10.0.2", "waits"));
    expect(a.dp.methods["vnic.query"]({}).queued).toBe(0);
    a.dp.methods["link.remove"]({ peerUid: b.uid });
    expect(a.dp.methods["vnic.query"]({}).queued).toBe(1);
    await connect(a, b);
    await until(() => b.vnic.devices[0]!.written.length >= 1);
    expect(b.vnic.devices[0]!.written[0]!.subarray(28).toString()).toBe("waits");
  });

  it.each([
    ["a media track (no SCTP)", true],
    ["data channels", false],
  ])("carries inter-controller messages in order over %s", async (_kind, rtp) => {
    const a = makeNode("10.10.0.1", false, { rtp });
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    await connect(a, b);
    const sent = Array.from({ length: 40 }, (_, i) => ({ i, text: "y".repeat(i * 200) }));
    for (const data of sent) a.dp.methods["icc.send"]({ peerUid: b.uid, data });
    b.dp.methods["icc.send"]({ peerUid: a.uid, data: "reply" });
    const iccAt = (n: Node) => n.notes.filter((x) => x.method === "icc.message").map((x) => x.params.data);
    await until(() => iccAt(b).length >= sent.length && iccAt(a).length >= 1);
    expect(iccAt(b)).toEqual(sent);
    expect(iccAt(a)).toEqual(["reply"]);
  });

  it("offers no data channels when links use the media track", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2", false, { rtp: false });
    nodes.push(a, b);
    const { description } = await a.dp.methods["link.create"]({ peerUid: b.uid });
    expect(description.sdp).toMatch(/^m=video /m);
    expect(description.sdp).not.toMatch(/^m=application /m);
    a.dp.methods["link.remove"]({ peerUid: b.uid });
    const fromB = await b.dp.methods["link.create"]({ peerUid: a.uid });
    expect(fromB.description.sdp).toMatch(/^m=application /m);
    expect(fromB.description.sdp).not.toMatch(/^m=video /m);
  });

  it("reports a silent peer disconnected, and connected again once it answers", async () => {
    const a = makeNode("10.10.0.1", false, { silenceMs: 2000 });
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    await connect(a, b);
    const statesAtA = () =>
      a.notes
        .filter((n) => n.method === "link.state" && n.params.peerUid === b.uid)
        .map((n) => n.params.state);
    // Idle for longer than silenceMs: probes and their replies keep the link up (or bring it back at
    // once when a loaded machine delayed a reply past the limit; without them it stays disconnected).
    await new Promise((r) => setTimeout(r, 3500));
    await until(() => linkTo(a, b)?.state === "connected", 10_000);
    // Only what follows counts (a retried first setup or a late probe reply add states of their own).
    const base = statesAtA().length;
    const firstConnectedAt = a.dp.fib.links.get(b.uid)?.connectedAt ?? null;
    expect(firstConnectedAt).toBeTypeOf("number");
    // B stops answering probes (and sends nothing else): ICE consent alone would take ~30 s, so a
    // bound of 20 s, however loaded the machine, still tells silence detection from consent.
    const linkAtB = b.dp.fib.links.get(a.uid) as unknown as { sendControl: unknown };
    const answer = linkAtB.sendControl;
    linkAtB.sendControl = () => true;
    const start = Date.now();
    await until(() => statesAtA().at(-1) === "disconnected", 20_000);
    console.log(`silent peer reported disconnected after ${Date.now() - start} ms (silenceMs 2000)`);
    linkAtB.sendControl = answer;
    await until(() => statesAtA().at(-1) === "connected", 20_000);
    expect(statesAtA().slice(base)).toEqual(["disconnected", "connected"]);
    // Connected again: the source check's grace (outside.ts) counts from now.
    expect(a.dp.fib.links.get(b.uid)?.connectedAt).toBeGreaterThan(firstConnectedAt ?? Infinity);
  }, 90_000);

  it("link.ping answers with the probe's round trip and the selected candidate pair, or null when unanswered", async () => {
    const a = makeNode("10.10.0.1");
    const b = makeNode("10.10.0.2");
    nodes.push(a, b);
    await expect(a.dp.methods["link.ping"]({ peerUid: b.uid })).rejects.toThrow(/no link/);
    await connect(a, b);
    const pong = await a.dp.methods["link.ping"]({ peerUid: b.uid, timeoutMs: 2000 });
    expect(pong.rttMs).toBeGreaterThan(0);
    expect(pong.rttMs).toBeLessThan(2000);
    // On loopback the pair is host or peer-reflexive, depending on when the trickled candidates came.
    expect(pong).toMatchObject({ path: linkTo(a, b)?.path, relayOnly: false });
    expect(["host", "prflx"]).toContain(pong.path);
    expect(["host", "prflx"]).toContain(pong.remoteType);
    expect(pong.remote).toMatch(/:\d+$/);
    expect(linkTo(a, b)).toMatchObject({ localType: pong.localType, remoteType: pong.remoteType });
    // B stops answering probes: the ping times out with rttMs null.
    const linkAtB = b.dp.fib.links.get(a.uid) as unknown as { sendControl: unknown };
    linkAtB.sendControl = () => true;
    const lost = await a.dp.methods["link.ping"]({ peerUid: b.uid, timeoutMs: 300 });
    expect(lost.rttMs).toBeNull();
  });
});
