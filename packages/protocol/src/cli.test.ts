import { afterEach, describe, expect, it, vi } from "vitest";
import { effectiveConfigJson, parseCli, VERSION } from "./cli.js";

const spec = {
  prog: "demo",
  usage: "--config FILE",
  description: "A demo binary.",
  options: { config: { type: "string", short: "c" } },
  optionHelp: "  -c, --config FILE     the config",
  checkConfig: true,
} as const;

/** Runs parseCli with process.exit and the output captured. */
function run(argv: string[], cli: Parameters<typeof parseCli>[0] = spec) {
  let out = "";
  let err = "";
  vi.spyOn(process.stdout, "write").mockImplementation((s) => {
    out += String(s);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((s) => {
    err += String(s);
    return true;
  });
  vi.spyOn(process, "exit").mockImplementation((code) => {
    throw new Error(`exit ${code}`);
  });
  let result: unknown;
  let exit: string | null = null;
  try {
    result = parseCli(cli, argv);
  } catch (e) {
    exit = (e as Error).message;
  }
  vi.restoreAllMocks();
  return { out, err, exit, result };
}

afterEach(() => vi.restoreAllMocks());

describe("parseCli", () => {
  it("answers --version and -V with the program and version, exit 0", () => {
    for (const flag of ["--version", "-V"]) {
      expect(run([flag])).toMatchObject({ out: `demo ${VERSION}\n`, exit: "exit 0" });
    }
  });

  it("answers -h and --help with the usage, own flags and the common ones", () => {
    for (const flag of ["-h", "--help"]) {
      const r = run([flag]);
      expect(r.exit).toBe("exit 0");
      expect(r.out).toMatch(/^Usage: demo --config FILE\n\nA demo binary\.\n/);
      expect(r.out).toMatch(/--check-config/);
      expect(r.out).toMatch(/-V, --version/);
    }
  });

  it("exits 2 on an unknown flag with a hint", () => {
    const r = run(["--nope"]);
    expect(r.exit).toBe("exit 2");
    expect(r.err).toMatch(/^demo: Unknown option '--nope'\nTry 'demo --help'\.\n$/);
  });

  it("reports --check-config, and refuses it for a binary without a config", () => {
    expect(run(["-c", "x.json", "--check-config"]).result).toMatchObject({
      values: { config: "x.json" },
      checkConfig: true,
    });
    const r = run(["--check-config"], { ...spec, checkConfig: false });
    expect(r.exit).toBe("exit 2");
    expect(r.err).toMatch(/Unknown option '--check-config'/);
  });
});

describe("effectiveConfigJson", () => {
  it("hides passwords and TURN credentials, keeps the rest", () => {
    const json = effectiveConfigJson({
      xmpp: { password: "s3cret", passwordFile: "/etc/tincan/a.password" },
      ice: { turn: [{ username: "u", credential: "c3" }] },
    });
    expect(json).not.toMatch(/s3cret|"c3"/);
    expect(JSON.parse(json)).toEqual({
      xmpp: { password: "(hidden)", passwordFile: "/etc/tincan/a.password" },
      ice: { turn: [{ username: "u", credential: "(hidden)" }] },
    });
  });
});
