import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pagesOnceMB } from "./memory.js";

const rssMb = (pid: number) =>
  Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)/m)?.[1]) / 1024;

describe.skipIf(process.getuid?.() !== 0)("pagesOnceMB (root: pagemap PFNs)", () => {
  const children: ChildProcess[] = [];
  let p1 = 0;
  let p2 = 0;

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) {
      children.push(spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" }));
    }
    [p1, p2] = children.map((c) => c.pid as number) as [number, number];
    // On a loaded machine a child may still be starting: wait until both RSS figures hold still.
    const deadline = Date.now() + 20_000;
    let last = [0, 0];
    for (;;) {
      await new Promise((r) => setTimeout(r, 300));
      const now = [rssMb(p1), rssMb(p2)];
      if (
        (now.every((mb, i) => Math.abs(mb - (last[i] as number)) < 0.1) && now[0]! > 20) ||
        Date.now() > deadline
      )
        break;
      last = now;
    }
  });

  afterAll(() => {
    for (const c of children) c.kill();
  });

  it("counts one process as its RSS", () => {
    expect(Math.abs((pagesOnceMB([p1]) as number) - rssMb(p1))).toBeLessThan(1);
    expect(pagesOnceMB([p1, p1])).toBe(pagesOnceMB([p1]));
  });

  it("counts the pages of the node binary two processes share once", () => {
    const both = pagesOnceMB([p1, p2]) as number;
    expect(both).toBeGreaterThan(Math.max(rssMb(p1), rssMb(p2)));
    expect(both).toBeLessThan(rssMb(p1) + rssMb(p2) - 15);
  });
});
