import { describe, expect, it } from "vitest";
import { localTypeOf, onOwnSubnet, pathOf } from "./pair-types.js";

const LAN = (a: string) => a.startsWith("192.168.1.");
const pair = (remoteAddress: string) => ({ localAddress: "192.168.1.2", remoteAddress });

describe("naming the selected pair (libjuice reports our host candidate for every direct pair)", () => {
  it("our end is srflx when a STUN server saw us elsewhere and the peer is beyond our subnets", () => {
    expect(localTypeOf("host", pair("100.64.0.10"), ["100.64.0.11"], LAN)).toBe("srflx");
    expect(pathOf(["srflx", "host"], false)).toBe("srflx");
  });

  it("stays host for a peer on our own subnet, without NAT, or with no STUN answer", () => {
    expect(localTypeOf("host", pair("192.168.1.7"), ["100.64.0.11"], LAN)).toBe("host");
    // a public host: the STUN server saw the host address itself
    expect(
      localTypeOf(
        "host",
        { localAddress: "100.64.0.10", remoteAddress: "100.64.0.12" },
        ["100.64.0.10"],
        LAN,
      ),
    ).toBe("host");
    expect(localTypeOf("host", pair("100.64.0.10"), [], LAN)).toBe("host");
  });

  it("keeps what libjuice reports for relayed and reflexive ends", () => {
    expect(localTypeOf("relay", pair("100.64.0.10"), ["100.64.0.11"], LAN)).toBe("relay");
    expect(pathOf(["host", "prflx"], false)).toBe("prflx");
    expect(pathOf(["srflx", "prflx"], false)).toBe("prflx");
    expect(pathOf(["host", "host"], true)).toBe("relay");
    expect(pathOf(["host", "host"], false)).toBe("host");
  });

  it("reads this host's subnets", () => {
    expect(onOwnSubnet("127.0.0.2")).toBe(true);
    expect(onOwnSubnet("203.0.113.1")).toBe(false); // TEST-NET-3: on no interface of a test host
    expect(onOwnSubnet("not an address")).toBe(false);
  });
});
