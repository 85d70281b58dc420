import { describe, expect, it } from "vitest";
import { FakeFastNet } from "./fake-socket.js";
import type { FastSocketFactory } from "./socket.js";
import { FastTransport } from "./transport.js";

/** A factory over FakeFastNet whose bind fails like the kernel's for the ports (or family) given. */
function factory(taken: Set<number>, noIpv6 = false) {
  const net = new FakeFastNet();
  const tried: string[] = [];
  const open: FastSocketFactory = ({ address, port = 0 }) => {
    tried.push(`${address}:${port}`);
    if (noIpv6 && address === "::")
      throw Object.assign(new Error("Address family not supported"), { code: "EAFNOSUPPORT" });
    if (taken.has(port)) throw Object.assign(new Error("Address already in use"), { code: "EADDRINUSE" });
    return net.socket(address, port === 0 ? 50_000 : port);
  };
  return { open, tried };
}

function transport(
  open: FastSocketFactory,
  port: number,
  range: [number, number] | undefined,
  warnings: string[] = [],
): FastTransport {
  return new FastTransport({
    factory: open,
    port,
    portRange: () => range,
    excludeAddress: () => false,
    warn: (message) => warnings.push(message),
  });
}

describe("FastTransport's socket", () => {
  it("takes the highest free port of ice.portRange (libjuice takes them from the bottom)", () => {
    const { open, tried } = factory(new Set([41009, 41008]));
    const socket = transport(open, 0, [41000, 41009]).socketFor(4);
    expect(socket?.port).toBe(41007);
    expect(tried).toEqual([":::41009", ":::41008", ":::41007"]);
  });

  it("with every port of the range taken, warns once and leaves links on node-datachannel", () => {
    const { open, tried } = factory(new Set([41000, 41001, 41002]));
    const warnings: string[] = [];
    const t = transport(open, 0, [41000, 41002], warnings);
    expect(t.socketFor(4)).toBeNull();
    expect(t.socketFor(6)).toBeNull();
    // "::" takes IPv4 too: a port taken there is taken for 0.0.0.0 as well, so that is not tried.
    expect(tried).toEqual([":::41002", ":::41001", ":::41000"]);
    expect(warnings).toEqual(["fast path socket not opened: links stay on node-datachannel"]);
  });

  it("binds fastPathPort when set, whatever the range", () => {
    const { open } = factory(new Set());
    expect(transport(open, 5000, [41000, 41009]).socketFor(4)?.port).toBe(5000);
  });

  it("binds any port without a range", () => {
    const { open, tried } = factory(new Set());
    expect(transport(open, 0, undefined).socketFor(4)).not.toBeNull();
    expect(tried).toEqual([":::0"]);
  });

  it("falls back to 0.0.0.0 in the range where IPv6 is off, and then serves IPv4 only", () => {
    const { open, tried } = factory(new Set([42019]), true);
    const t = transport(open, 0, [42000, 42019]);
    expect(t.socketFor(4)?.port).toBe(42018);
    expect(t.socketFor(6)).toBeNull();
    expect(tried).toEqual([":::42019", "0.0.0.0:42019", "0.0.0.0:42018"]);
  });
});
