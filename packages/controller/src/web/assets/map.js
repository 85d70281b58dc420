// The overlay map: draws the model of /overlay.json (pushed by /events) as an SVG graph with a small
// force layout. Data attributes on the SVG elements carry the model (for tests and for styling).
const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 800;
const HEIGHT = 560;
const svg = document.getElementById("map");
const edgeLayer = svg.querySelector("g.edges");
const nodeLayer = svg.querySelector("g.nodes");
const statusEl = document.getElementById("status");
const refusedEl = document.getElementById("refused");

/** Positions survive updates, by UID. */
const positions = new Map();
let model = { nodes: [], edges: [] };
let frames = 0;

function pathClass(edge) {
  if (edge.path === "host") return "host";
  if (edge.path === "srflx" || edge.path === "prflx") return "srflx";
  if (edge.path === "relay") return "relay";
  return "unknown";
}

/** Wider for more traffic: 2 px idle, up to 12 px (log scale). */
function edgeWidth(edge) {
  return Math.min(12, 2 + Math.log10(1 + edge.bytes) * 1.2);
}

function label(node) {
  return node.name || (node.jid ? node.jid.split("@")[0] : node.uid.slice(0, 8));
}

function el(name, attrs) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function render(next) {
  model = next;
  svg.dataset.self = next.self;
  svg.dataset.updatedAt = String(next.updatedAt);
  for (const [i, n] of next.nodes.entries()) {
    if (!positions.has(n.uid)) {
      const angle = (2 * Math.PI * i) / Math.max(1, next.nodes.length);
      positions.set(n.uid, {
        x: WIDTH / 2 + 150 * Math.cos(angle) + Math.random(),
        y: HEIGHT / 2 + 150 * Math.sin(angle) + Math.random(),
      });
    }
  }
  for (const uid of [...positions.keys()]) {
    if (!next.nodes.some((n) => n.uid === uid)) positions.delete(uid);
  }
  edgeLayer.replaceChildren(
    ...next.edges.map((e) => {
      const path = pathClass(e);
      const line = el("line", {
        class: `edge path-${path}`,
        "data-a": e.a,
        "data-b": e.b,
        "data-path": path,
        "data-source": e.source,
        "data-state": e.state ?? "unknown",
        "data-bytes": e.bytes,
        "stroke-width": edgeWidth(e).toFixed(1),
      });
      const title = el("title", {});
      title.textContent = `${path}${e.rttMs != null ? `, ${e.rttMs} ms` : ""}, ${e.bytes} bytes`;
      line.append(title);
      return line;
    }),
  );
  nodeLayer.replaceChildren(
    ...next.nodes.map((n) => {
      const g = el("g", { class: "node", "data-uid": n.uid });
      const circle = el("circle", {
        class: "node",
        r: n.self ? 16 : 12,
        "data-uid": n.uid,
        "data-online": n.online,
        "data-self": n.self,
      });
      const title = el("title", {});
      title.textContent = [n.jid, n.ipv4, n.ipv6, n.online ? "online" : "offline"].filter(Boolean).join("\n");
      circle.append(title);
      const text = el("text", { class: "label", dy: n.self ? 32 : 28 });
      text.textContent = label(n);
      g.append(circle, text);
      return g;
    }),
  );
  renderRefused(next.refused ?? []);
  frames = 300;
  place();
}

/** Roster contacts that are no members, with the policy's reason (names come from XMPP: text only). */
function renderRefused(refused) {
  refusedEl.hidden = refused.length === 0;
  refusedEl.querySelector("ul").replaceChildren(
    ...refused.map((r) => {
      const li = document.createElement("li");
      li.dataset.jid = r.jid;
      const who = document.createElement("strong");
      who.textContent = r.name ? `${r.name} (${r.jid})` : r.jid;
      li.append(who, document.createTextNode(`: ${r.reason}`));
      return li;
    }),
  );
}

/** One step of the force layout: edges pull, nodes push apart, a weak pull to the centre. */
function step() {
  const ids = model.nodes.map((n) => n.uid);
  const force = new Map(ids.map((id) => [id, { x: 0, y: 0 }]));
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      const a = positions.get(ids[i]);
      const b = positions.get(ids[j]);
      const dx = a.x - b.x;
      const dy = a.y - b.y;
      const d2 = Math.max(100, dx * dx + dy * dy);
      const f = 40000 / d2;
      const d = Math.sqrt(d2);
      force.get(ids[i]).x += (f * dx) / d;
      force.get(ids[i]).y += (f * dy) / d;
      force.get(ids[j]).x -= (f * dx) / d;
      force.get(ids[j]).y -= (f * dy) / d;
    }
  }
  for (const e of model.edges) {
    const a = positions.get(e.a);
    const b = positions.get(e.b);
    if (!a || !b) continue;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const d = Math.max(1, Math.hypot(dx, dy));
    const f = (d - 240) * 0.05;
    force.get(e.a).x += (f * dx) / d;
    force.get(e.a).y += (f * dy) / d;
    force.get(e.b).x -= (f * dx) / d;
    force.get(e.b).y -= (f * dy) / d;
  }
  for (const id of ids) {
    const p = positions.get(id);
    const f = force.get(id);
    f.x += (WIDTH / 2 - p.x) * 0.01;
    f.y += (HEIGHT / 2 - p.y) * 0.01;
    p.x = Math.min(WIDTH - 30, Math.max(30, p.x + Math.max(-10, Math.min(10, f.x))));
    p.y = Math.min(HEIGHT - 40, Math.max(30, p.y + Math.max(-10, Math.min(10, f.y))));
  }
}

function place() {
  for (const line of edgeLayer.children) {
    const a = positions.get(line.dataset.a);
    const b = positions.get(line.dataset.b);
    if (!a || !b) continue;
    line.setAttribute("x1", a.x.toFixed(1));
    line.setAttribute("y1", a.y.toFixed(1));
    line.setAttribute("x2", b.x.toFixed(1));
    line.setAttribute("y2", b.y.toFixed(1));
  }
  for (const g of nodeLayer.children) {
    const p = positions.get(g.dataset.uid);
    if (p) g.setAttribute("transform", `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})`);
  }
}

function animate() {
  if (frames > 0) {
    frames--;
    step();
    place();
    svg.dataset.settled = String(frames === 0);
  }
  requestAnimationFrame(animate);
}

function connect() {
  const events = new EventSource("/events");
  events.onopen = () => {
    statusEl.dataset.state = "live";
    statusEl.textContent = "live";
  };
  events.onmessage = (m) => render(JSON.parse(m.data));
  events.onerror = () => {
    statusEl.dataset.state = "down";
    statusEl.textContent = "controller not reachable; retrying";
  };
}

requestAnimationFrame(animate);
connect();
