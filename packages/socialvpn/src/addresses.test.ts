import { describe, expect, it } from "vitest";
import { AddressBook, AddressExhaustedError } from "./addresses.js";

describe("AddressBook", () => {
  it("hands out .2, .3, ... in the order buddies appear, and the same address again", () => {
    const book = new AddressBook("172.31.0.1/16");
    expect(book.assign("bob@lab.local")).toEqual({ address: "172.31.0.2", created: true });
    expect(book.assign("Carol@Lab.Local").address).toBe("172.31.0.3");
    expect(book.assign("dave@lab.local").address).toBe("172.31.0.4");
    expect(book.assign("bob@lab.local")).toEqual({ address: "172.31.0.2", created: false });
    expect(book.lookup("carol@lab.local")).toBe("172.31.0.3");
    expect(book.owner("172.31.0.4")).toBe("dave@lab.local");
    expect(book.owner("junk")).toBeUndefined();
  });

  it("keeps the mapping across a reload of its record", () => {
    const a = new AddressBook("10.1.0.1/24");
    for (const j of ["x@d", "y@d", "z@d"]) a.assign(j);
    const b = new AddressBook("10.1.0.1/24", JSON.parse(JSON.stringify(a.toRecord())));
    expect(b.toRecord()).toEqual(a.toRecord());
    expect(b.dropped).toEqual([]);
    // New buddies after the reload get the next free address, never a held one.
    expect(b.assign("w@d").address).toBe("10.1.0.5");
  });

  it("never hands out the own, network or broadcast address (own address in the middle)", () => {
    const book = new AddressBook("192.168.5.2/29"); // .0 network, .7 broadcast, own .2
    const got = ["a", "b", "c", "d", "e"].map((u) => book.assign(`${u}@x`).address);
    expect(got).toEqual(["192.168.5.1", "192.168.5.3", "192.168.5.4", "192.168.5.5", "192.168.5.6"]);
    expect(() => book.assign("f@x")).toThrow(AddressExhaustedError);
  });

  it("gives a clear error when a small range is full", () => {
    const book = new AddressBook("10.9.9.1/30"); // only .2 is free
    expect(book.assign("a@x").address).toBe("10.9.9.2");
    expect(() => book.assign("b@x")).toThrow(
      /no free address left in 10\.9\.9\.0\/30 for b@x .*larger vnic\.ipv4 range/,
    );
  });

  it("reuses the address of the oldest former buddy when the range is full", () => {
    const book = new AddressBook("10.9.9.1/29"); // .2 .. .6 free
    for (const u of ["a", "b", "c", "d", "e"]) book.assign(`${u}@x`);
    const stillBuddies = new Set(["a@x", "c@x", "d@x", "e@x", "f@x"]);
    const r = book.assign("f@x", (j) => stillBuddies.has(j));
    expect(r).toEqual({ address: "10.9.9.3", created: true, reclaimedFrom: "b@x" });
    expect(book.lookup("b@x")).toBeUndefined();
    expect(() => book.assign("g@x", (j) => stillBuddies.has(j))).toThrow(AddressExhaustedError);
  });

  it("drops saved entries it cannot use and says why", () => {
    const book = new AddressBook("172.31.0.1/16", {
      "own@x": "172.31.0.1",
      "net@x": "172.31.0.0",
      "bc@x": "172.31.255.255",
      "out@x": "10.0.0.2",
      "junk@x": "nope",
      "ok@x": "172.31.0.9",
      "dup@x": "172.31.0.9",
    });
    expect(book.toRecord()).toEqual({ "ok@x": "172.31.0.9" });
    expect(book.dropped.map((d) => [d.jid, d.why])).toEqual([
      ["own@x", "our own address"],
      ["net@x", "network or broadcast address"],
      ["bc@x", "network or broadcast address"],
      ["out@x", "outside 172.31.0.0/16"],
      ["junk@x", "not an IPv4 address"],
      ["dup@x", "address already held by ok@x"],
    ]);
    // .9 stays held; the free ones below it are handed out first.
    expect(book.assign("new@x").address).toBe("172.31.0.2");
  });
});
