import type { RouteInfo } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import { RPC_TIMEOUT, RpcError } from "./datapath-client.js";
import { nullLog } from "./logger.js";
import { RouteTable } from "./route-table.js";

const A = "a".repeat(32);
const B = "b".repeat(32);
const C = "c".repeat(32);

/**
 * A datapath whose route RPCs can be made to go unanswered: the request is still applied, but
 * only when `late()` is called (it waited in a busy datapath's socket), and the caller sees a timeout.
 */
function fakeDatapath() {
  const table = new Map<string, RouteInfo>();
  const delayed: (() => void)[] = [];
  let unanswered = 0;
  let refuse = false;
  let removeGate: Promise<void> | null = null;
  const apply = (method: string, p: any) => {
    if (method === "route.set")
      table.set(p.prefix, {
        prefix: p.prefix,
        peerUid: p.peerUid,
        via: p.via ?? null,
        mapTo: p.mapTo ?? null,
      });
    if (method === "route.remove" && !table.delete(p.prefix))
      throw new RpcError(method, -32004, `prefix: no route for ${p.prefix}`);
  };
  return {
    table,
    dropNextAnswers(n: number) {
      unanswered = n;
    },
    refuseNext() {
      refuse = true;
    },
    late() {
      for (const f of delayed.splice(0)) f();
    },
    /** The next route.remove waits until the returned function is called. */
    holdNextRemove(): () => void {
      let release = () => {};
      removeGate = new Promise((r) => {
        release = r;
      });
      return release;
    },
    async call(method: string, params: any): Promise<any> {
      if (method === "route.query") return [...table.values()];
      if (method === "route.remove" && removeGate) {
        const gate = removeGate;
        removeGate = null;
        await gate;
      }
      if (refuse) {
        refuse = false;
        throw new RpcError(method, -32602, "invalid params");
      }
      if (unanswered > 0) {
        unanswered--;
        delayed.push(() => {
          try {
            apply(method, params);
          } catch {}
        });
        throw new RpcError(method, RPC_TIMEOUT, "no answer from the datapath");
      }
      apply(method, params);
      return {};
    },
  };
}

describe("RouteTable", () => {
  it("sets right a via route that was applied after the direct one replaced it", async () => {
    const dp = fakeDatapath();
    const routes = new RouteTable(dp as never, nullLog, 60_000);
    dp.dropNextAnswers(1);
    await expect(routes.set({ prefix: "10.0.0.3/32", peerUid: C, via: B })).rejects.toThrow(/no answer/);
    await routes.set({ prefix: "10.0.0.3/32", peerUid: C }); // the link came up: direct
    dp.late(); // the via request is applied only now
    expect(dp.table.get("10.0.0.3/32")?.via).toBe(B);
    await routes.check();
    expect(dp.table.get("10.0.0.3/32")).toEqual({
      prefix: "10.0.0.3/32",
      peerUid: C,
      via: null,
      mapTo: null,
    });
  });

  it("checks by itself some time after a route RPC went unanswered", async () => {
    const dp = fakeDatapath();
    const routes = new RouteTable(dp as never, nullLog, 20);
    dp.dropNextAnswers(1);
    await expect(routes.set({ prefix: "10.0.0.3/32", peerUid: C, via: B })).rejects.toThrow();
    await routes.set({ prefix: "10.0.0.3/32", peerUid: C });
    dp.late();
    await new Promise((r) => setTimeout(r, 100));
    expect(dp.table.get("10.0.0.3/32")?.via).toBe(null);
    routes.stop();
  });

  it("counts a route as ours from the moment it is asked for, and removes what it did not ask for", async () => {
    const dp = fakeDatapath();
    const routes = new RouteTable(dp as never, nullLog, 60_000);
    await routes.set({ prefix: "10.0.0.2/32", peerUid: B });
    dp.dropNextAnswers(1);
    await expect(routes.set({ prefix: "10.0.0.4/32", peerUid: C, via: B })).rejects.toThrow();
    expect(routes.list().map((r) => r.prefix)).toEqual(["10.0.0.2/32", "10.0.0.4/32"]);
    dp.table.set("10.0.0.9/32", { prefix: "10.0.0.9/32", peerUid: A, via: null, mapTo: null });
    await routes.check(); // the unanswered one never arrived; a stray one is there
    expect([...dp.table.keys()].sort()).toEqual(["10.0.0.2/32", "10.0.0.4/32"]);
  });

  it("forgets a route the datapath refused, unless it was changed since", async () => {
    const dp = fakeDatapath();
    const routes = new RouteTable(dp as never, nullLog, 60_000);
    await routes.set({ prefix: "10.0.0.2/32", peerUid: B });
    dp.refuseNext();
    await expect(routes.set({ prefix: "10.0.0.2/32", peerUid: B, via: C })).rejects.toThrow(/invalid/);
    expect(routes.list()).toEqual([{ prefix: "10.0.0.2/32", peerUid: B }]);
    dp.refuseNext();
    await expect(routes.set({ prefix: "10.0.0.5/32", peerUid: C })).rejects.toThrow();
    expect(routes.list().map((r) => r.prefix)).toEqual(["10.0.0.2/32"]);
  });

  it("takes a removal the datapath answers with 'not found' as done (an earlier attempt was applied)", async () => {
    const dp = fakeDatapath();
    const routes = new RouteTable(dp as never, nullLog, 60_000);
    await routes.set({ prefix: "10.0.0.2/32", peerUid: B });
    dp.table.delete("10.0.0.2/32"); // the first, unanswered attempt of the removal was applied
    await routes.remove("10.0.0.2/32");
    expect(routes.list()).toEqual([]);
  });

  it("leaves a route that changed while a check ran to that change", async () => {
    const dp = fakeDatapath();
    const routes = new RouteTable(dp as never, nullLog, 60_000);
    await routes.set({ prefix: "10.0.0.3/32", peerUid: C, via: B });
    dp.table.clear(); // route.query lists a stray route first, then ours, different
    dp.table.set("10.0.0.9/32", { prefix: "10.0.0.9/32", peerUid: A, via: null, mapTo: null });
    dp.table.set("10.0.0.3/32", { prefix: "10.0.0.3/32", peerUid: C, via: null, mapTo: null });
    const release = dp.holdNextRemove();
    const checking = routes.check(); // removes the stray first, and waits there
    await new Promise((r) => setTimeout(r, 10));
    await routes.set({ prefix: "10.0.0.3/32", peerUid: C }); // meanwhile the link came up: direct
    release();
    await checking;
    expect(dp.table.get("10.0.0.3/32")?.via).toBe(null); // not the via route the check started with
    expect(dp.table.has("10.0.0.9/32")).toBe(false);
  });

  it("compares IPv6 prefixes in canonical text", async () => {
    const dp = fakeDatapath();
    const changes: string[] = [];
    const counting = {
      call: (method: string, params: unknown) => {
        if (method !== "route.query") changes.push(method);
        return dp.call(method, params);
      },
    };
    const routes = new RouteTable(counting as never, nullLog, 60_000);
    await routes.set({ prefix: "FD53:7670:6E00:0:0:0:0:1/128", peerUid: B });
    // the datapath names it canonically
    const r = dp.table.get("FD53:7670:6E00:0:0:0:0:1/128") as RouteInfo;
    dp.table.clear();
    dp.table.set("fd53:7670:6e00::1/128", { ...r, prefix: "fd53:7670:6e00::1/128" });
    changes.length = 0;
    await routes.check();
    expect(changes).toEqual([]);
  });
});
