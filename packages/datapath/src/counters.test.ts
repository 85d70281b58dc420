import { readdirSync, readFileSync } from "node:fs";
import { DROP_REASONS, DropReason } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { Counters } from "./counters.js";

const SRC = new URL(".", import.meta.url);
const PROTOCOL_README = new URL("../../protocol/README.md", import.meta.url);

/** Every reason the datapath's sources count: `drop("x"` and `onDrop("x"` with a literal reason. */
function reasonsCounted(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of readdirSync(SRC, { recursive: true, encoding: "utf8" }).filter(
    (f) => f.endsWith(".ts") && !f.endsWith(".test.ts"),
  )) {
    const text = readFileSync(new URL(file, SRC), "utf8");
    for (const m of text.matchAll(/\b(?:drop|onDrop)\(\s*"([^"]+)"/g)) found.set(m[1]!, file);
  }
  return found;
}

describe("drop reasons", () => {
  it("counts only reasons of the DropReason union, and every reason of it is counted somewhere", () => {
    const counted = reasonsCounted();
    const unknown = [...counted].filter(([reason]) => !DropReason.safeParse(reason).success);
    expect(unknown, "reasons counted but missing from DropReason in @tincan/protocol").toEqual([]);
    const unused = DROP_REASONS.filter((reason) => !counted.has(reason));
    expect(unused, "reasons in DropReason that the datapath never counts").toEqual([]);
  });

  it("are each documented in packages/protocol/README.md", () => {
    const readme = readFileSync(PROTOCOL_README, "utf8");
    const missing = DROP_REASONS.filter((reason) => !readme.includes(`- \`${reason}\`: `));
    expect(missing).toEqual([]);
  });

  it("snapshot lists only the reasons that dropped something", () => {
    const c = new Counters();
    c.drop("spoofed");
    c.drop("txQueue", 3);
    c.drop("spoofed");
    expect(c.snapshot().drops).toEqual({ spoofed: 2, txQueue: 3 });
  });
});
