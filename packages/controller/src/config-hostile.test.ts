// Property-based test: groupvpn.json and socialvpn.json with hostile content load or give a ConfigError.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GroupVpnConfig, SocialVpnConfig } from "@tincan/protocol";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SLOW = 180_000;
const PROTO_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf"];
const dir = mkdtempSync(join(tmpdir(), "tincan-config-hostile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Arbitrary values, deep nesting, huge numbers and strings, `__proto__`-keyed objects (as JSON text). */
function hostileJsonText(): fc.Arbitrary<string> {
  const plain = fc.jsonValue({ maxDepth: 3, size: "small" }).map((v) => JSON.stringify(v));
  const deep = fc
    .tuple(fc.integer({ min: 1, max: 25_000 }), fc.constantFrom(["[", "]"], ['{"__proto__":', "}"]))
    .map(([n, [open, close]]) => `${open.repeat(n)}0${close.repeat(n)}`);
  const huge = fc.oneof(
    fc.constantFrom("1e400", "-1e400", "-0", "123456789012345678901234567890"),
    fc.integer({ min: 1000, max: 50_000 }).map((n) => JSON.stringify("x".repeat(n))),
  );
  const protoObject = fc
    .array(fc.tuple(fc.constantFrom(...PROTO_KEYS, "ipv4", "level", "urls"), plain), { maxLength: 4 })
    .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`);
  return fc.oneof(
    { weight: 6, arbitrary: plain },
    { weight: 3, arbitrary: protoObject },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: huge },
  );
}

const good = {
  datapath: { rpc: "127.0.0.1:5800", tokenFile: "t.token", watchdogSec: 30, restartOnHang: false },
  xmpp: { service: "xmpp://10.0.0.1:5222", domain: "lab.local", username: "alice", password: "secret" },
  vnic: { name: "tincan0", ipv4: "10.10.0.5/16", mtu: 1280 },
  ice: {
    stun: ["stun:10.0.0.1:3478"],
    turn: [{ urls: "turn:10.0.0.1:3478", username: "u", credential: "c" }],
  },
  links: { policy: "on-demand", maxLinks: 64, idleTimeoutSec: 300 },
  log: { level: "info" },
};

/** A good config with hostile values at a few top-level or second-level keys (texts spliced in). */
function configText(extra: Record<string, unknown>): fc.Arbitrary<string> {
  const base = { ...good, ...extra } as Record<string, Record<string, unknown>>;
  const sections = Object.keys(base);
  const edit = fc.tuple(
    fc.constantFrom(...sections, ...PROTO_KEYS),
    fc.option(
      fc.constantFrom(
        "rpc",
        "tokenFile",
        "watchdogSec",
        "ipv4",
        "turn",
        "maxLinks",
        "level",
        "password",
        "passwordFile",
        ...PROTO_KEYS,
      ),
      { nil: undefined },
    ),
    hostileJsonText(),
  );
  return fc.array(edit, { maxLength: 3 }).map((edits) => {
    const texts = new Map<string, string>(sections.map((k) => [k, JSON.stringify(base[k])]));
    for (const [section, key, value] of edits) {
      const current = base[section];
      if (key === undefined || typeof current !== "object" || current === null) {
        texts.set(section, value);
        continue;
      }
      const inner = JSON.stringify(current).slice(1, -1);
      texts.set(section, `{${inner}${inner ? "," : ""}${JSON.stringify(key)}:${value}}`);
    }
    return `{${[...texts].map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
  });
}

function load(
  file: string,
  text: string | Uint8Array,
  schema: typeof GroupVpnConfig | typeof SocialVpnConfig,
) {
  writeFileSync(file, text);
  try {
    loadConfig(file, schema);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    expect(err.message.startsWith(`${file}: `)).toBe(true);
  }
}

describe.each([
  ["groupvpn.json", GroupVpnConfig, { group: "lab" }],
  ["socialvpn.json", SocialVpnConfig, { dns: { suffix: "svpn" } }],
] as const)("%s under hostile content", (name, schema, extra) => {
  it(
    `loads ${RUNS} hostile configs or throws only a ConfigError that names the file`,
    async () => {
      const file = join(dir, name);
      const input = fc.oneof(
        { weight: 6, arbitrary: configText(extra) },
        { weight: 1, arbitrary: hostileJsonText() },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
      );
      // Runs yield to the event loop now and then: tens of seconds of synchronous work starve the test
      // worker's RPC with vitest ("Timeout calling onTaskUpdate") on a loaded host.
      let runs = 0;
      await fc.assert(
        fc.asyncProperty(input, async (text) => {
          if (++runs % 250 === 0) await new Promise(setImmediate);
          load(file, text, schema);
        }),
        { numRuns: RUNS },
      );
      expect(Object.keys(Object.prototype)).toEqual([]);
    },
    SLOW,
  );
});
