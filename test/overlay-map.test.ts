// The live overlay map (web.listen) in a real headless browser: Debian's chromium driven by
// playwright-core, run inside the node's namespace (the page is served on that namespace's loopback).
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type OverlayMap, uidForIpv4 } from "@tincan/protocol";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab, type ProsodyHandle } from "./lab/index.js";
import { REPO, waitFor } from "./support/datapath-driver.js";
import { buddyOp } from "./support/social.js";
import { addGroupNodes, labUsers, type VpnNode } from "./support/vpn-node.js";

const CHROMIUM = "/usr/bin/chromium";
const MAP_URL = "http://127.0.0.1:9481/";
const can = Lab.canRun();
const COLOURS: Record<string, string> = {
  host: "rgb(46, 125, 50)",
  srflx: "rgb(21, 101, 192)",
  relay: "rgb(239, 108, 0)",
  unknown: "rgb(158, 158, 158)",
};

interface DrawnEdge {
  a: string;
  b: string;
  path: string;
  source: string;
  stroke: string;
}

// Run in the page (strings: this project type-checks without the DOM library).
function drawnEdges(page: Page): Promise<DrawnEdge[]> {
  return page.evaluate(`[...document.querySelectorAll("svg#map line.edge")].map((l) => ({
    a: l.dataset.a, b: l.dataset.b, path: l.dataset.path, source: l.dataset.source, stroke: getComputedStyle(l).stroke,
  }))`);
}

function drawnNodes(page: Page) {
  return page.$$eval("svg#map circle.node", (cs) =>
    cs.map((c) => ({
      uid: c.getAttribute("data-uid") ?? "",
      online: c.getAttribute("data-online") === "true",
      self: c.getAttribute("data-self") === "true",
    })),
  );
}

describe.skipIf(!can.ok || !existsSync(CHROMIUM))(
  "overlay map in a headless browser, 3 GroupVPN nodes",
  () => {
    let lab: Lab;
    const nodes: VpnNode[] = [];
    let browser: BrowserContext | undefined;
    let page: Page;
    let prosody: ProsodyHandle;

    beforeAll(async () => {
      lab = await Lab.create({ prefix: "omap" });
      const names = ["alice", "bob", "carol"];
      // mallory has an account but is in no group: alice's buddy, refused as a member.
      prosody = await lab.startProsody({
        users: labUsers([...names, "mallory"]),
        groups: { lab: names },
      });
      nodes.push(
        ...(await addGroupNodes(lab, prosody, names, "10.40.0", { links: { policy: "proactive" } })),
      );
      nodes[0]!.opts.extra = { web: { listen: "127.0.0.1:9481" } };
      await Promise.all(nodes.map((n) => n.start()));
      await waitFor(
        "alice has 2 connected links",
        async () => (await nodes[0]!.connectedLinks()).length === 2,
        30_000,
      );

      // chromium runs in alice's namespace, where the page is served on loopback.
      const wrapper = join(lab.dir, "chromium-in-alice");
      writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${nodes[0]!.host.ns} ${CHROMIUM} "$@"\n`);
      chmodSync(wrapper, 0o755);
      const profile = join(lab.dir, "chromium-profile");
      mkdirSync(profile, { recursive: true });
      browser = await chromium.launchPersistentContext(profile, {
        executablePath: wrapper,
        headless: true,
        viewport: { width: 900, height: 640 },
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      page = browser.pages()[0] ?? (await browser.newPage());
    }, 120_000);

    afterAll(async () => {
      await browser?.close().catch(() => {});
      for (const n of nodes) await n.stop().catch(() => {});
      await lab?.destroy();
    });

    it("draws 3 nodes and 3 edges coloured by path, the local node highlighted", async () => {
      const [alice, bob, carol] = nodes.map((n) => uidForIpv4(n.address)) as [string, string, string];
      await page.goto(MAP_URL);
      // alice's own links, and bob-carol as bob and carol announced it.
      await page.waitForFunction(
        // (an edge is drawn from link.create on: wait until alice's two links have connected)
        `document.querySelectorAll("svg#map circle.node").length === 3 &&
         document.querySelectorAll("svg#map line.edge").length === 3 &&
         document.querySelectorAll('svg#map line.edge[data-source="link"]:not([data-path="unknown"])').length === 2`,
        undefined,
        { timeout: 20_000 },
      );
      const drawn = await drawnNodes(page);
      expect(drawn.map((n) => n.uid).sort()).toEqual([alice, bob, carol].sort());
      expect(drawn.every((n) => n.online)).toBe(true);
      expect(drawn.filter((n) => n.self).map((n) => n.uid)).toEqual([alice]);

      const edges = await drawnEdges(page);
      const pair = (x: string, y: string) =>
        edges.find((e) => (e.a === x && e.b === y) || (e.a === y && e.b === x));
      for (const peer of [bob, carol]) {
        // A direct path on the flat lab: host, or srflx/prflx when ICE picked a peer-reflexive pair.
        const edge = pair(alice, peer);
        expect(edge).toMatchObject({ source: "link" });
        expect(["host", "srflx"]).toContain(edge?.path);
        expect(edge?.stroke).toBe(COLOURS[edge?.path ?? "unknown"]);
      }
      expect(pair(bob, carol)).toMatchObject({
        path: "unknown",
        source: "neighbor",
        stroke: COLOURS.unknown,
      });

      // The same model as JSON.
      const json = (await page.evaluate(async () => (await fetch("/overlay.json")).json())) as OverlayMap;
      expect(json.self).toBe(alice);
      expect(json.edges).toHaveLength(3);

      await page.waitForSelector('svg#map[data-settled="true"]', { timeout: 10_000 }).catch(() => {});
      // Kept after the lab is gone (the lab dir is deleted).
      const shot = join(mkdtempSync(join(tmpdir(), "overlay-map-")), "overlay-map.png");
      await page.screenshot({ path: shot });
      console.log(`overlay map screenshot: ${shot}`);
    });

    it("lists a buddy outside the group as refused, with the reason, and draws no node for it", async () => {
      await buddyOp(lab, prosody, "befriend", "alice", "mallory");
      const item = page.locator(`#refused li[data-jid="${prosody.jid("mallory")}"]`);
      await item.waitFor({ timeout: 15_000 });
      expect(await item.textContent()).toMatch(/mallory@lab\.local: not in roster group "lab"/);
      expect(await page.locator("#refused").isVisible()).toBe(true);
      expect(await drawnNodes(page)).toHaveLength(3);
    });

    it("shows a member going offline, and a removed link disappears within 5 s", async () => {
      const [alice, bob, carol] = nodes.map((n) => uidForIpv4(n.address)) as [string, string, string];
      const edgeSelector = (u: string) =>
        `svg#map line.edge[data-a="${u}"], svg#map line.edge[data-b="${u}"]`;
      const pairSelector = (x: string, y: string) =>
        `svg#map line.edge[data-a="${x}"][data-b="${y}"], svg#map line.edge[data-a="${y}"][data-b="${x}"]`;
      // carol's controller says goodbye: offline in presence, while its links stay (the data plane decides).
      await nodes[2]!.controller.stop(5000);
      await page.waitForSelector(`svg#map circle.node[data-uid="${carol}"][data-online="false"]`, {
        timeout: 15_000,
      });
      expect(await page.locator(edgeSelector(carol)).count()).toBe(2);

      // alice removes her link to carol (link.remove over RPC, as a controller would).
      const token = readFileSync(nodes[0]!.tokenFile, "utf8").trim();
      const request = {
        jsonrpc: "2.0",
        id: 1,
        method: "link.remove",
        params: { auth: token, peerUid: carol },
      };
      const removedAt = Date.now();
      const reply = await nodes[0]!.host.run([
        "node",
        join(REPO, "test/support/rpc-probe.mjs"),
        "send",
        "127.0.0.1:5800",
        Buffer.from(JSON.stringify(request)).toString("base64"),
      ]);
      const answer = JSON.parse(JSON.parse(reply).replies[0] ?? "null");
      expect(answer).toMatchObject({ result: {} });
      await page.waitForSelector(pairSelector(alice, carol), { state: "detached", timeout: 5_000 });
      console.log(`alice-carol gone from alice's map ${Date.now() - removedAt} ms after link.remove`);

      // carol's datapath stops: bob's datapath notices the silence and bob announces its links anew.
      const stoppedAt = Date.now();
      await nodes[2]!.tincan.stop(5000);
      await page.waitForSelector(edgeSelector(carol), { state: "detached", timeout: 30_000 });
      console.log(
        `bob-carol (announced by bob) gone ${Date.now() - stoppedAt} ms after carol's datapath stopped`,
      );
      const edges = await drawnEdges(page);
      expect(edges).toHaveLength(1);
      expect(edges[0]).toMatchObject({ source: "link" });
      expect(["host", "srflx"]).toContain(edges[0]?.path);
      expect([edges[0]!.a, edges[0]!.b].sort()).toEqual([alice, bob].sort());
    });
  },
);
