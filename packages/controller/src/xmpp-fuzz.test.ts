// Property-based fuzzing of the XMPP payload parsers: whatever a peer or server sends, they return
// a result (ok:false with a reason for bad input) and never throw.
import { MAX_SIGNAL_BYTES, PRESENCE_NS, SIGNAL_NS, type Signal, uidForJid } from "@tincan/protocol";
import { type Element, xml } from "@xmpp/client";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ParseResult,
  parsePresenceTincan,
  parseRosterItem,
  parseSignalMessage,
  parseSignalText,
} from "./xmpp.js";

const RUNS = { numRuns: 10_000 };
/** 10,000 runs with inputs up to 60 KB take 10-20 s on a loaded 2-core machine. */
const FUZZ_TIMEOUT_MS = 180_000;

const alice = uidForJid("alice@lab.local");
const bob = uidForJid("bob@lab.local");
const offer: Signal = {
  type: "offer",
  from: alice,
  to: bob,
  setup: "abc",
  relayOnly: false,
  description: { type: "offer", sdp: "v=0\r\n" },
};

function expectResult<T>(r: ParseResult<T> | null): void {
  if (r === null) return;
  if (!r.ok) {
    expect(typeof r.error).toBe("string");
    expect(r.error.length).toBeGreaterThan(0);
    expect(r.error.length).toBeLessThan(4000); // a clear message, not a dump of the input
  }
}

/** `[[[[…]]]]` / `{"a":{"a":…}}` nested `depth` deep around `inner`. */
function nested(depth: number, kind: "array" | "object", inner = "0"): string {
  return kind === "array"
    ? `${"[".repeat(depth)}${inner}${"]".repeat(depth)}`
    : `${'{"a":'.repeat(depth)}${inner}${"}".repeat(depth)}`;
}

const deepJson = fc
  .tuple(fc.integer({ min: 1, max: 200_000 }), fc.constantFrom("array" as const, "object" as const))
  .map(([d, k]) => nested(d, k));

const hugeValue = fc.oneof(
  fc.integer({ min: 0, max: 3 * MAX_SIGNAL_BYTES }).map((n) => "x".repeat(n)),
  fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER * 4, 5e-324, "9".repeat(400)),
  fc.integer({ min: 1, max: 20_000 }).map((n) => nested(n, "array")),
);

/** A valid offer with one field replaced (or added) by something arbitrary. */
const mutatedSignal = fc
  .tuple(
    fc.constantFrom(
      "type",
      "from",
      "to",
      "setup",
      "relayOnly",
      "description",
      "candidate",
      "__proto__",
      "extra",
    ),
    fc.oneof(fc.jsonValue({ maxDepth: 6 }), hugeValue),
  )
  .map(([key, value]) => {
    const base = JSON.stringify(offer);
    const v = typeof value === "string" && value.startsWith("[") ? value : JSON.stringify(value);
    return `${base.slice(0, -1)},${JSON.stringify(key)}:${v ?? "null"}}`;
  });

describe("parseSignalText never throws", () => {
  it(
    "arbitrary text, arbitrary JSON, deep nesting, huge values, mutated signals",
    () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.string({ unit: "binary", maxLength: 200 }),
            fc.jsonValue({ maxDepth: 10 }).map((v) => JSON.stringify(v) ?? "null"),
            deepJson,
            hugeValue.map((v) => (typeof v === "string" ? v : String(v))),
            mutatedSignal,
          ),
          (text) => {
            const r = parseSignalText(text);
            expectResult(r);
          },
        ),
        RUNS,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it("says why: too large, not JSON, or the schema field", () => {
    const tooBig = parseSignalText(nested(MAX_SIGNAL_BYTES, "array"));
    expect(tooBig).toMatchObject({ ok: false, error: expect.stringMatching(/too large/) });
    const deep = parseSignalText(nested(3000, "object"));
    expect(deep).toMatchObject({ ok: false, error: expect.stringMatching(/invalid signal/) });
    expect(parseSignalText("")).toMatchObject({ ok: false, error: expect.stringMatching(/not JSON/) });
  });
});

/** An element tree `depth` deep (children named like the real ones, to reach the parsers' lookups). */
function deepElement(depth: number, name: string, ns: string): Element {
  let el: Element = xml(name, { xmlns: ns }, "x");
  for (let i = 0; i < depth; i++) el = xml(i % 2 ? name : "group", { xmlns: ns }, el);
  return el;
}

// Attributes from the wire are strings (the XML parser makes them so).
const attrValue = fc.oneof(
  fc.string({ unit: "binary", maxLength: 80 }),
  hugeValue.map(String),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? ""),
);
const attrs = fc.dictionary(
  fc.oneof(
    fc.constantFrom("uid", "ipv4", "ipv6", "xmlns", "jid", "subscription", "name", "__proto__"),
    fc.string(),
  ),
  attrValue,
  { maxKeys: 6 },
);
const child: fc.Arbitrary<Element> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        fc.constantFrom("signal", "tincan", "group", "item", "x"),
        fc.constantFrom(SIGNAL_NS, PRESENCE_NS, "jabber:iq:roster", ""),
        fc.oneof(
          fc.string({ unit: "binary", maxLength: 100 }),
          mutatedSignal,
          deepJson,
          hugeValue.map(String),
        ),
        attrs,
      )
      .map(([name, ns, text, a]) => xml(name, { ...a, xmlns: ns }, text)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 3000 }), fc.constantFrom("signal", "tincan", "group"))
      .map(([d, name]) => deepElement(d, name, name === "signal" ? SIGNAL_NS : PRESENCE_NS)),
  },
);
const stanza = (name: string) =>
  fc
    .tuple(attrs, fc.array(child, { maxLength: 4 }), fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }))
    .map(([a, kids, texts]) => xml(name, a as Record<string, string>, ...kids, ...texts));

describe("stanza parsers never throw", () => {
  it(
    "parseSignalMessage",
    () => {
      fc.assert(
        fc.property(stanza("message"), (m) => {
          expectResult(parseSignalMessage(m));
        }),
        RUNS,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    "parsePresenceTincan",
    () => {
      fc.assert(
        fc.property(stanza("presence"), (p) => {
          expectResult(parsePresenceTincan(p));
        }),
        RUNS,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it(
    "parseRosterItem",
    () => {
      fc.assert(
        fc.property(stanza("item"), (item) => {
          const r = parseRosterItem(item);
          expectResult(r);
          if (r.ok) {
            expect(["none", "to", "from", "both", "remove"]).toContain(r.value.subscription);
            expect(r.value.jid).toBe(r.value.jid.toLowerCase());
          }
        }),
        RUNS,
      );
    },
    FUZZ_TIMEOUT_MS,
  );

  it("tell what is wrong with a bad presence or roster item", () => {
    const huge = xml("presence", null, xml("tincan", { xmlns: PRESENCE_NS, uid: "f".repeat(100_000) }));
    expect(parsePresenceTincan(huge)).toMatchObject({ ok: false, error: expect.stringMatching(/uid/) });
    const noUid = xml("presence", null, xml("tincan", { xmlns: PRESENCE_NS, ipv4: "10.0.0.1" }));
    expect(parsePresenceTincan(noUid)).toMatchObject({ ok: false, error: expect.stringMatching(/uid/) });
    expect(parseRosterItem(xml("item", { jid: "@" }))).toMatchObject({ ok: false, error: /invalid jid/ });
    const two = xml(
      "message",
      null,
      xml("signal", { xmlns: SIGNAL_NS }, "{}"),
      xml("signal", { xmlns: SIGNAL_NS }, "{}"),
    );
    expect(parseSignalMessage(two)).toEqual({ ok: false, error: "more than one signal element" });
  });
});
