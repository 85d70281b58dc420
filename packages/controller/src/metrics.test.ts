import type { LinkInfo, VnicInfo } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import type { LinkEvent } from "./link-manager.js";
import { ControllerMetrics, type MetricsSources } from "./metrics.js";
import { linkInfo } from "./testing.js";

const UID_B = "b".repeat(40);
const UID_C = "c".repeat(40);

const link = linkInfo;

const vnic: VnicInfo = {
  name: "tincan0",
  uid: "a".repeat(40),
  ipv4: "10.0.0.1/24",
  ipv6: null,
  mtu: 1280,
  translate: false,
  queued: 3,
  txQueue: null,
  rxBytes: 0,
  txBytes: 0,
  rxPackets: 0,
  txPackets: 0,
  drops: { txQueue: 5, noRoute: 2 },
};

function sources(links: LinkInfo[], answer = true): MetricsSources {
  return {
    datapath: {
      call: (async (method: string) => {
        if (!answer) throw new Error("no answer");
        if (method === "vnic.query") return vnic;
        return links;
      }) as MetricsSources["datapath"]["call"],
    },
    links: () => [],
    xmppOnline: () => true,
    jidOf: (uid) => (uid === UID_B ? "bob@lab.local" : undefined),
  };
}

/** value of a series of the registry's JSON view */
async function value(m: ControllerMetrics, name: string, labels: Record<string, string> = {}) {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = metric?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value;
}

const ev = (uid: string): LinkEvent => ({
  peer: { uid, bareJid: "", fullJid: null },
  path: null,
  relayOnly: false,
});

describe("ControllerMetrics", () => {
  it("maps link.query and vnic.query to per-peer traffic, link states and drops by reason", async () => {
    const m = new ControllerMetrics(
      sources([
        link(UID_B, { rxBytes: 100, txBytes: 200, rxPackets: 1, txPackets: 2, drops: { backpressure: 4 } }),
        link(UID_B, { relayOnly: true, path: "relay", rxBytes: 10, txBytes: 20, drops: { backpressure: 1 } }),
        link(UID_C, { state: "connecting", path: null, drops: { sendError: 7 } }),
      ]),
    );
    const text = await m.render();
    expect(text).toContain('tincan_peer_bytes_total{peer="bob@lab.local"');
    expect(await value(m, "tincan_peer_bytes_total", { uid: UID_B, dir: "in" })).toBe(110);
    expect(await value(m, "tincan_peer_bytes_total", { uid: UID_B, dir: "out" })).toBe(220);
    expect(await value(m, "tincan_peer_packets_total", { uid: UID_B, dir: "out" })).toBe(2);
    expect(await value(m, "tincan_peer_bytes_total", { uid: UID_C, dir: "in" })).toBe(0);
    expect(await value(m, "tincan_peer_bytes_total", { uid: UID_C })).toBeDefined();
    expect(await value(m, "tincan_links", { state: "connected", path: "host" })).toBe(1);
    expect(await value(m, "tincan_links", { state: "connected", path: "relay" })).toBe(1);
    expect(await value(m, "tincan_links", { state: "connecting", path: "none" })).toBe(1);
    expect(await value(m, "tincan_drops_total", { reason: "backpressure", where: "link" })).toBe(5);
    expect(await value(m, "tincan_drops_total", { reason: "sendError", where: "link" })).toBe(7);
    expect(await value(m, "tincan_drops_total", { reason: "txQueue", where: "vnic" })).toBe(5);
    expect(await value(m, "tincan_unmapped_held_packets")).toBe(3);
    expect(await value(m, "tincan_datapath_up")).toBe(1);
    expect(await value(m, "tincan_xmpp_online")).toBe(1);
  });

  it("takes drop reasons only from the DropReason union", async () => {
    const m = new ControllerMetrics(
      sources([link(UID_B, { drops: { bogus: 9, 'x"}': 1, loop: 1 } as LinkInfo["drops"] })]),
    );
    const text = await m.render();
    expect(text).not.toContain("bogus");
    expect(await value(m, "tincan_drops_total", { reason: "loop" })).toBe(1);
  });

  it("a scrape reads the counters anew: a link that went is gone, none add up across scrapes", async () => {
    const links = [link(UID_B, { rxBytes: 100 })];
    const m = new ControllerMetrics(sources(links));
    await m.render();
    links[0] = link(UID_B, { rxBytes: 150 });
    await m.render();
    expect(await value(m, "tincan_peer_bytes_total", { uid: UID_B, dir: "in" })).toBe(150);
    links.pop();
    await m.render();
    expect(await value(m, "tincan_peer_bytes_total", { uid: UID_B })).toBeUndefined();
  });

  it("exports the datapath's send-queue delay buckets as a cumulative histogram", async () => {
    const txQueue = {
      packets: 2,
      bytes: 3000,
      delay: { bounds: [0.001, 0.01], counts: [5, 3, 2], sumSeconds: 0.5 },
    };
    const m = new ControllerMetrics(sources([]));
    m.setDatapath({ vnic: { ...vnic, txQueue }, links: [] });
    const text = await m.registry.metrics();
    expect(text).toContain("# TYPE tincan_send_queue_delay_seconds histogram");
    expect(text).toContain('tincan_send_queue_delay_seconds_bucket{le="0.001"} 5');
    expect(text).toContain('tincan_send_queue_delay_seconds_bucket{le="0.01"} 8');
    expect(text).toContain('tincan_send_queue_delay_seconds_bucket{le="+Inf"} 10');
    expect(text).toMatch(/^tincan_send_queue_delay_seconds_sum 0\.5$/m);
    expect(text).toMatch(/^tincan_send_queue_delay_seconds_count 10$/m);
    expect(await value(m, "tincan_send_queue_bytes")).toBe(3000);
    // no queue (tune.txQueueMs 0) or no datapath: no series
    m.setDatapath({ vnic, links: [] });
    expect(await m.registry.metrics()).not.toMatch(/^tincan_send_queue_delay_seconds_count/m);
  });

  it("a datapath that does not answer: up 0 and no datapath series", async () => {
    const m = new ControllerMetrics(sources([link(UID_B, { rxBytes: 100 })], false));
    await m.render();
    expect(await value(m, "tincan_datapath_up")).toBe(0);
    expect(await value(m, "tincan_peer_bytes_total", { uid: UID_B })).toBeUndefined();
  });

  it("counts setups by outcome with their duration, relay fallbacks, reconnects and RPCs", async () => {
    const m = new ControllerMetrics(sources([]));
    m.onLinkSetup(ev(UID_B), 1000);
    m.onLinkSetup(ev(UID_B), 1500); // a second attempt of the same setup
    m.onLinkUp(ev(UID_B), 3500);
    m.onLinkUp(ev(UID_B), 4000); // announced again without a setup: not counted
    m.onLinkSetup(ev(UID_C), 0);
    m.onLinkSetupFailed(ev(UID_C));
    m.onRelayAttempt();
    m.onXmppOnline();
    m.onXmppOnline();
    m.onXmppOnline();
    m.onRpc("link.query", 0.002, null);
    m.onRpc("link.query", 3, -32099);
    expect(await value(m, "tincan_link_setups_total", { outcome: "connected" })).toBe(1);
    expect(await value(m, "tincan_link_setups_total", { outcome: "failed" })).toBe(1);
    const text = await m.registry.getSingleMetricAsString("tincan_link_setup_duration_seconds");
    expect(text).toContain("tincan_link_setup_duration_seconds_sum 2.5");
    expect(text).toContain('tincan_link_setup_duration_seconds_bucket{le="2"} 0');
    expect(text).toContain('tincan_link_setup_duration_seconds_bucket{le="5"} 1');
    expect(await value(m, "tincan_relay_fallbacks_total")).toBe(1);
    expect(await value(m, "tincan_xmpp_reconnects_total")).toBe(2);
    expect(await value(m, "tincan_rpc_calls_total", { method: "link.query" })).toBe(2);
    expect(await value(m, "tincan_rpc_errors_total", { method: "link.query", code: "-32099" })).toBe(1);
  });
});
