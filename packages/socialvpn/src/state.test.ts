import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "@tincan/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { AddressBook } from "./addresses.js";
import { defaultStateFile, readStateFile, StateFileError, StateWriter } from "./state.js";

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "svpn-state-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("state file", () => {
  it("a missing file is an empty state", () => {
    expect(readStateFile(join(tmp(), "none.json"))).toEqual({ version: 2, devices: {} });
  });

  it("rejects a file that is not JSON or not the expected shape, naming the file and field", () => {
    const d = tmp();
    writeFileSync(join(d, "a.json"), "{not json");
    expect(() => readStateFile(join(d, "a.json"))).toThrow(StateFileError);
    expect(() => readStateFile(join(d, "a.json"))).toThrow(/a\.json: not valid JSON/);
    writeFileSync(join(d, "b.json"), JSON.stringify({ version: 1, buddies: { "bob@x": 7 } }));
    expect(() => readStateFile(join(d, "b.json"))).toThrow(/b\.json: buddies\.bob@x: /);
    writeFileSync(join(d, "c.json"), JSON.stringify({ version: 3, devices: {} }));
    expect(() => readStateFile(join(d, "c.json"))).toThrow(/version/);
  });

  it("reads a state file of before devices (version 1) as account addresses for the first device", () => {
    const f = join(tmp(), "old.json");
    writeFileSync(
      f,
      JSON.stringify({ version: 1, buddies: { "bob@x": "172.31.0.2", "carol@x": "172.31.0.3" } }),
    );
    const state = readStateFile(f);
    expect(state).toEqual({ version: 2, devices: { "bob@x": "172.31.0.2", "carol@x": "172.31.0.3" } });
    const book = new AddressBook("172.31.0.1/16", state.devices);
    // bob's first device keeps his address, the second gets a new one; carol keeps hers for later.
    expect(book.assign("bob@x/phone")).toEqual({
      address: "172.31.0.2",
      created: true,
      migratedFrom: "bob@x",
    });
    expect(book.assign("bob@x/laptop").address).toBe("172.31.0.4");
    expect(book.toRecord()).toEqual({
      "carol@x": "172.31.0.3",
      "bob@x/phone": "172.31.0.2",
      "bob@x/laptop": "172.31.0.4",
    });
    expect(book.assign("carol@x/desk").address).toBe("172.31.0.3");
  });

  it("writes atomically: the new content replaces the old, no temp file stays", async () => {
    const d = tmp();
    const f = join(d, "s.json");
    writeFileSync(f, "old");
    await writeFileAtomic(f, "new");
    expect(readFileSync(f, "utf8")).toBe("new");
    expect(readdirSync(d)).toEqual(["s.json"]);
  });

  it("a failed write leaves the old file intact and cleans up", async () => {
    const d = tmp();
    const f = join(d, "s.json");
    writeFileSync(f, "old");
    // The target is a non-empty directory where the file should be: rename fails after the temp is written.
    const g = join(d, "dir.json");
    mkdirSync(join(g, "x"), { recursive: true });
    await expect(writeFileAtomic(g, "new")).rejects.toThrow();
    expect(readdirSync(d).sort()).toEqual(["dir.json", "s.json"]);
    // The directory is not writable for the temp file: the old file is untouched.
    await expect(writeFileAtomic(join(d, "missing-dir", "s.json"), "new")).rejects.toThrow(/ENOENT/);
    expect(readFileSync(f, "utf8")).toBe("old");
  });

  it("StateWriter coalesces a burst of saves, writes the newest data, and reports errors", async () => {
    const d = tmp();
    const f = join(d, "s.json");
    const w = new StateWriter(f, (e) => {
      throw e;
    });
    let calls = 0;
    for (let i = 1; i <= 20; i++) {
      const n = i;
      w.save(() => {
        calls++;
        return {
          version: 2,
          devices: Object.fromEntries([...Array(n)].map((_, k) => [`u${k}@x/d`, `10.0.0.${k + 2}`])),
        };
      });
    }
    await w.flush();
    expect(calls).toBeLessThanOrEqual(2);
    expect(Object.keys(readStateFile(f).devices)).toHaveLength(20);
    const errors: Error[] = [];
    const bad = new StateWriter(join(d, "missing", "s.json"), (e) => errors.push(e));
    bad.save(() => ({ version: 2, devices: {} }));
    await bad.flush();
    expect(errors).toHaveLength(1);
  });
});

describe("defaultStateFile", () => {
  const user = (uid: number, username: string) => ({ uid, username, homedir: `/home/${username}` });

  it("is in /var/lib/tincan for root and the tincan user, named after the config", () => {
    expect(defaultStateFile("/etc/tincan/socialvpn.json", {}, user(0, "root"))).toBe(
      "/var/lib/tincan/socialvpn-state.json",
    );
    expect(defaultStateFile("/etc/tincan/work.json", {}, user(998, "tincan"))).toBe(
      "/var/lib/tincan/work-state.json",
    );
  });

  it("is in the XDG state dir for anyone else, not in the config directory", () => {
    expect(defaultStateFile("/home/ann/cfg/socialvpn.json", {}, user(1000, "ann"))).toBe(
      "/home/ann/.local/state/tincan/socialvpn-state.json",
    );
    expect(defaultStateFile("socialvpn.json", { XDG_STATE_HOME: "/x/state" }, user(1000, "ann"))).toBe(
      "/x/state/tincan/socialvpn-state.json",
    );
    // A relative XDG_STATE_HOME is invalid by the spec and ignored.
    expect(defaultStateFile("socialvpn.json", { XDG_STATE_HOME: "rel" }, user(1000, "ann"))).toBe(
      "/home/ann/.local/state/tincan/socialvpn-state.json",
    );
  });
});
