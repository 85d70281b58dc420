import {
  chmodSync,
  chownSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "@tincan/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkSecretDirectory, readEndpointFile, UnsafeDirectoryError } from "./secure-files.js";
import { resolveTokenGroup, writeToken } from "./token.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tincan-files-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const isRoot = process.getuid?.() === 0;

describe("writeFileAtomic", () => {
  it("replaces a planted symlink instead of writing through it", async () => {
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    const file = join(dir, "t.token");
    symlinkSync(victim, file);
    await writeFileAtomic(file, "secret\n");
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(readFileSync(file, "utf8")).toBe("secret\n");
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("never uses a planted file of the old predictable temp name, and leaves no temp file", async () => {
    const file = join(dir, "t.token");
    const planted = `${file}.${process.pid}.tmp`;
    writeFileSync(planted, "planted\n", { mode: 0o666 });
    chmodSync(planted, 0o666);
    const { token } = await writeToken(file);
    expect(readFileSync(planted, "utf8")).toBe("planted\n");
    expect(readFileSync(file, "utf8")).toBe(`${token}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).sort()).toEqual(["t.token", `t.token.${process.pid}.tmp`]);
  });
});

describe("checkSecretDirectory", () => {
  it("creates a missing directory 0700", async () => {
    const d = join(dir, "run", "tincan");
    await checkSecretDirectory(d);
    expect(statSync(d).mode & 0o7777).toBe(0o700);
  });

  it("refuses a directory writable by others without the sticky bit, accepts one with it", async () => {
    chmodSync(dir, 0o777);
    await expect(checkSecretDirectory(dir)).rejects.toThrow(UnsafeDirectoryError);
    await expect(checkSecretDirectory(dir)).rejects.toThrow(/writable by others \(mode 0777\)/);
    chmodSync(dir, 0o1777);
    await expect(checkSecretDirectory(dir)).resolves.toBeUndefined();
  });

  it.skipIf(!isRoot)("refuses a directory owned by another user than root or us", async () => {
    chownSync(dir, 4242, 4242);
    await expect(checkSecretDirectory(dir)).rejects.toThrow(/belongs to uid 4242/);
  });
});

describe("readEndpointFile", () => {
  const file = () => join(dir, "t.token.controller");

  it("reads a valid endpoint, and reports a missing file as missing", async () => {
    expect(await readEndpointFile(file())).toEqual({ missing: true });
    writeFileSync(file(), JSON.stringify({ host: "127.0.0.1", port: 5801 }), { mode: 0o600 });
    expect(await readEndpointFile(file())).toEqual({ endpoint: { host: "127.0.0.1", port: 5801 } });
  });

  it.each([
    ["empty", "", /not valid JSON/],
    ["garbage", "\u0000{{", /not valid JSON/],
    ["another host", JSON.stringify({ host: "127.0.0.2", port: 80 }), /is not \{/],
    ["a deep nesting", `${"[".repeat(100_000)}${"]".repeat(100_000)}`, /larger than|not/],
  ])("gives a problem for %s content, never throws", async (_what, content, problem) => {
    writeFileSync(file(), content, { mode: 0o600 });
    const got = await readEndpointFile(file());
    expect("problem" in got && got.problem).toMatch(problem);
  });

  it("does not follow a symlink, nor read a file others can write", async () => {
    const target = join(dir, "elsewhere");
    writeFileSync(target, JSON.stringify({ host: "127.0.0.1", port: 9 }), { mode: 0o600 });
    symlinkSync(target, file());
    expect(await readEndpointFile(file())).toEqual({ problem: "is a symlink" });
    rmSync(file());
    writeFileSync(file(), JSON.stringify({ host: "127.0.0.1", port: 9 }));
    chmodSync(file(), 0o666);
    expect(await readEndpointFile(file())).toEqual({ problem: "is writable by others (mode 0666)" });
  });

  it.skipIf(!isRoot)("does not use a file planted by another user", async () => {
    writeFileSync(file(), JSON.stringify({ host: "127.0.0.1", port: 22 }), { mode: 0o600 });
    chownSync(file(), 4242, 4242);
    expect(await readEndpointFile(file())).toEqual({ problem: "belongs to uid 4242, neither root nor us" });
  });
});

describe.skipIf(!isRoot)("writeToken with a tokenGroup", () => {
  const group = { name: "4243", gid: 4243 };

  it("creates a missing directory 0750 of that group and writes the token 0640 of that group", async () => {
    const file = join(dir, "run", "t.token");
    const { token, warning } = await writeToken(file, group);
    expect(warning).toBeNull();
    const st = statSync(file);
    expect([st.mode & 0o777, st.gid]).toEqual([0o640, 4243]);
    const d = statSync(join(dir, "run"));
    expect([d.mode & 0o777, d.gid]).toEqual([0o750, 4243]);
    expect(readFileSync(file, "utf8")).toBe(`${token}\n`);
  });

  it("warns when the group cannot reach the token through an existing directory", async () => {
    chmodSync(dir, 0o700);
    const { warning } = await writeToken(join(dir, "t.token"), group);
    expect(warning).toMatch(/group 4243 cannot reach the token: .* is mode 0700.*chmod 0750/);
  });
});

describe("resolveTokenGroup", () => {
  it("takes a number as a gid, a name through getent, and refuses an unknown name", () => {
    expect(resolveTokenGroup("4243")).toEqual({ name: "4243", gid: 4243 });
    expect(resolveTokenGroup("root")).toEqual({ name: "root", gid: 0 });
    expect(() => resolveTokenGroup("no-such-group-x")).toThrow(/no group "no-such-group-x"/);
  });
});
