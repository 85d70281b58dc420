// Property-based tests of the datapath's parsers of hostile input: RPC datagrams and tincan.json.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_RPC_DATAGRAM, RPC_METHODS, uidForIpv4 } from "@tincan/protocol";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import winston from "winston";
import { loadTincanConfig, TincanConfigError } from "./config.js";
import { Datapath } from "./datapath.js";
import { RpcServer } from "./rpc-server.js";
import { fakeVnicFactory } from "./testing.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
/** 10,000 runs take 10-60 s on a loaded 2-core machine. */
const SLOW = 180_000;
const TOKEN = "fuzz-token-0123456789abcdef";
const silent = winston.createLogger({ silent: true });

/** Keys that pollute prototypes when an object is merged carelessly. */
const PROTO_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf"];

/**
 * JSON texts a hostile sender would try: arbitrary values, nesting tens of thousands deep, numbers and
 * strings beyond every limit, objects keyed `__proto__` and friends.
 */
function hostileJsonText(): fc.Arbitrary<string> {
  const plain = fc.jsonValue({ maxDepth: 3, size: "small" }).map((v) => JSON.stringify(v));
  const deep = fc
    .tuple(
      fc.integer({ min: 1, max: 25_000 }),
      fc.constantFrom(["[", "]"], ['{"a":', "}"], ['{"__proto__":', "}"]),
    )
    .map(([n, [open, close]]) => `${open.repeat(n)}0${close.repeat(n)}`);
  const hugeNumber = fc.oneof(
    fc.constantFrom("1e400", "-1e400", "1e-400", "-0", "123456789012345678901234567890", "9007199254740993"),
    fc.integer({ min: 1, max: 20_000 }).map((n) => "9".repeat(n)),
  );
  const hugeString = fc.integer({ min: 1000, max: 50_000 }).map((n) => JSON.stringify("x".repeat(n)));
  const protoObject = fc
    .array(fc.tuple(fc.constantFrom(...PROTO_KEYS, "auth", "peerUid", "prefix", "level"), plain), {
      maxLength: 4,
    })
    .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`);
  return fc.oneof(
    { weight: 6, arbitrary: plain },
    { weight: 3, arbitrary: protoObject },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: hugeNumber },
    { weight: 1, arbitrary: hugeString },
  );
}

/** A request envelope whose every part may be hostile (or plausible, to get deeper). */
function envelopeText(): fc.Arbitrary<string> {
  const hostile = hostileJsonText();
  const method = fc.oneof(
    fc.constantFrom(...RPC_METHODS, ...PROTO_KEYS).map((m) => JSON.stringify(m)),
    hostile,
  );
  const params = fc.oneof(
    hostile,
    // Authenticated, with hostile values for real and prototype keys: reaches the zod schemas.
    fc
      .array(
        fc.tuple(
          fc.constantFrom(
            ...PROTO_KEYS,
            "peerUid",
            "prefix",
            "controller",
            "description",
            "offset",
            "limit",
            "data",
          ),
          hostile,
        ),
        { maxLength: 3 },
      )
      .map((kv) => `{"auth":"${TOKEN}"${kv.map(([k, v]) => `,"${k}":${v}`).join("")}}`),
  );
  const one = fc
    .record({
      jsonrpc: fc.oneof(fc.constant('"2.0"'), hostile),
      id: fc.option(fc.oneof(fc.constant("1"), fc.constant('"a"'), hostile), { nil: undefined }),
      method,
      params: fc.option(params, { nil: undefined }),
    })
    .map(
      (r) =>
        `{"jsonrpc":${r.jsonrpc}${r.id === undefined ? "" : `,"id":${r.id}`},"method":${r.method}${r.params === undefined ? "" : `,"params":${r.params}`}}`,
    );
  return fc.oneof(
    { weight: 4, arbitrary: one },
    {
      weight: 1,
      arbitrary: fc.array(fc.oneof(one, hostile), { maxLength: 40 }).map((a) => `[${a.join(",")}]`),
    },
    { weight: 1, arbitrary: hostile },
  );
}

/** A reply is nothing, or a JSON-RPC 2.0 response (or a non-empty array of them) that fits a datagram. */
function expectWellFormed(reply: string | null): void {
  if (reply === null) return;
  expect(Buffer.byteLength(reply)).toBeLessThanOrEqual(MAX_RPC_DATAGRAM);
  const json = JSON.parse(reply) as unknown;
  const all = Array.isArray(json) ? json : [json];
  expect(all.length).toBeGreaterThan(0);
  for (const r of all as Record<string, unknown>[]) {
    expect(r.jsonrpc).toBe("2.0");
    expect(
      r.id === null || typeof r.id === "number" || (typeof r.id === "string" && r.id.length <= 256),
    ).toBe(true);
    const error = r.error as { code?: unknown; message?: unknown } | undefined;
    expect("result" in r !== (error !== undefined)).toBe(true);
    if (error) {
      expect(Number.isInteger(error.code)).toBe(true);
      expect(typeof error.message).toBe("string");
    }
  }
}

describe("RPC server under hostile datagrams", () => {
  let datapath: Datapath;
  let server: RpcServer;
  const state = () =>
    JSON.stringify([datapath.methods["link.query"]({}), datapath.methods["route.query"]({})]);
  let before: string;

  beforeAll(async () => {
    datapath = new Datapath({ vnicFactory: fakeVnicFactory(), logger: silent, notify: () => {} });
    server = new RpcServer(datapath, TOKEN, silent);
    await server.listen("127.0.0.1:0");
    datapath.methods["vnic.configure"]({ uid: uidForIpv4("10.10.0.1"), ipv4: "10.10.0.1/16" });
    for (const ip of ["10.10.0.2", "10.10.0.3"])
      datapath.methods["route.set"]({ prefix: `${ip}/32`, peerUid: uidForIpv4(ip) });
    await datapath.methods["link.create"]({ peerUid: uidForIpv4("10.10.0.2") });
    before = state();
  });

  afterAll(() => {
    server.close();
    datapath.close();
  });

  it(
    `answers ${RUNS} hostile requests and batches with well-formed replies and changes nothing`,
    async () => {
      await fc.assert(
        fc.asyncProperty(envelopeText(), async (text) => {
          expectWellFormed(await server.handle(Buffer.from(text)));
          expect(state()).toBe(before);
        }),
        { numRuns: RUNS },
      );
      expect(Object.keys(Object.prototype)).toEqual([]);
      expect(server.faults.internal).toBe(0);
    },
    SLOW,
  );

  it(
    `answers ${RUNS} datagrams of arbitrary bytes and changes nothing`,
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ maxLength: 2000 }),
            // Around the size limit: a random pattern repeated (generating 60 kB byte by byte is slow).
            fc
              .tuple(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.integer({ min: 59_990, max: 60_010 }))
              .map(([pattern, size]) => Buffer.alloc(size, Buffer.from(pattern))),
          ),
          async (bytes) => {
            expectWellFormed(await server.handle(Buffer.from(bytes)));
            expect(state()).toBe(before);
          },
        ),
        { numRuns: RUNS },
      );
      expect(server.faults.internal).toBe(0);
    },
    SLOW,
  );
});

describe("tincan.json under hostile content", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "tincan-config-fuzz-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Loads the text as tincan.json: a config or a TincanConfigError, nothing else. */
  function load(text: string | Uint8Array): void {
    const file = join(dir, "tincan.json");
    writeFileSync(file, text);
    try {
      const config = loadTincanConfig(file);
      expect(config.rpc.startsWith("127.")).toBe(true);
    } catch (err) {
      if (!(err instanceof TincanConfigError)) throw err;
      expect(err.message.startsWith(file)).toBe(true);
    }
  }

  it(
    `loads ${RUNS} hostile configs or names the problem`,
    () => {
      const key = fc.constantFrom("rpc", "tokenFile", "maxLinks", "log", "tune", ...PROTO_KEYS);
      const value = fc.oneof(
        hostileJsonText(),
        fc.constantFrom(
          '"127.0.0.1:5800"',
          '"/run/t.token"',
          "64",
          '{"level":"debug"}',
          '{"__proto__":{}}',
          '{"rxQueueMs":0}',
        ),
      );
      const config = fc
        .array(fc.tuple(key, value), { maxLength: 5 })
        .map((kv) => `{${kv.map(([k, v]) => `"${k}":${v}`).join(",")}}`);
      fc.assert(
        fc.property(
          fc.oneof({ weight: 3, arbitrary: config }, hostileJsonText(), fc.uint8Array({ maxLength: 200 })),
          load,
        ),
        { numRuns: RUNS },
      );
      expect(Object.keys(Object.prototype)).toEqual([]);
    },
    SLOW,
  );
});
