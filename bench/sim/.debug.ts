import { ringOrder } from "./measure.js";
import { runScenario } from "./scenarios.js";
import { Simulation } from "./simulation.js";

const orig = Simulation.prototype.close;
Simulation.prototype.close = function (this: Simulation) {
  const ring = ringOrder(this.live());
  for (let i = 0; i < ring.length; i++) {
    const a = ring[i]!,
      b = ring[(i + 1) % ring.length]!;
    if (!a.dp.isConnected(b.uid) || !b.dp.isConnected(a.uid))
      console.log(
        "gap",
        a.ipv4,
        b.ipv4,
        a.links.linkState(b.uid),
        b.links.linkState(a.uid),
        a.dp.links.get(b.uid)?.state,
        b.dp.links.get(a.uid)?.state,
        (a.policy as any).linkRoles().get(b.uid),
        (b.policy as any).linkRoles().get(a.uid),
        a.links.status()[b.uid]?.why,
        "|",
        b.links.status()[a.uid]?.why,
      );
  }
  orig.call(this);
};
const r = await runScenario({
  nodes: 32,
  policy: "structured",
  scenario: "crash",
  seed: "test",
  joinSec: 10,
  sample: 100,
});
for (const row of r.rows) if (/crash|gaps/.test(row.metric)) console.log(row.metric, row.value);
