// System test of the datapath's TURN client (packages/datapath/src/fast/turn-client.ts) against a
// real coturn: two hosts behind symmetric NATs each allocate a relayed address, bind a channel to
// the other's, and exchange ChannelData through the server: the relay path the fast path is to use.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "./lab/index.js";
import { REPO } from "./support/datapath-driver.js";

const can = Lab.canRun();
const PROBE = `${REPO}/test/support/turn-probe.mjs`;

describe.skipIf(!can.ok)("TURN client", () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await Lab.create({ prefix: "tcl" });
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it("allocates through symmetric NATs, binds channels to each other and relays ChannelData both ways", async () => {
    const coturn = await lab.startCoturn({ user: "turnuser", password: "turnpass" });
    const h1 = await lab.addHost("t1", { nat: "symmetric" });
    const h2 = await lab.addHost("t2", { nat: "symmetric" });
    const run = (h: typeof h1, name: string, peer: string, password = coturn.credential) =>
      h.exec(
        ["node", PROBE, coturn.host, String(coturn.port), coturn.username, password, lab.dir, name, peer],
        { timeoutMs: 30_000 },
      );
    const t0 = Date.now();
    const [r1, r2] = await Promise.all([run(h1, "t1", "t2"), run(h2, "t2", "t1")]);
    const ms = Date.now() - t0;
    const a = JSON.parse(r1.stdout.trim().split("\n").at(-1) ?? "{}");
    const b = JSON.parse(r2.stdout.trim().split("\n").at(-1) ?? "{}");
    console.log(
      `TURN client through symmetric NATs: ${JSON.stringify(a)} / ${JSON.stringify(b)} in ${ms} ms`,
    );
    expect(a.relayed?.address, r1.stderr).toBe(coturn.host);
    expect(b.relayed?.address, r2.stderr).toBe(coturn.host);
    expect(a.got).toBe("hello from t2");
    expect(b.got).toBe("hello from t1");

    const wrong = await run(h1, "t3", "nobody", "wrong");
    const w = JSON.parse(wrong.stdout.trim().split("\n").at(-1) ?? "{}");
    console.log(`wrong password: ${w.error}`);
    expect(w.relayed).toBeNull();
    expect(w.error).toMatch(/^Allocate: 401/);
  }, 90_000);
});
