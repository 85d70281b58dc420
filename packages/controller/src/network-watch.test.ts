import type { NetworkInterfaceInfo } from "node:os";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type AddressChange, localAddresses, NetworkWatch } from "./network-watch.js";

function iface(address: string, internal = false): NetworkInterfaceInfo {
  const v6 = address.includes(":");
  return {
    address,
    internal,
    family: v6 ? "IPv6" : "IPv4",
    netmask: v6 ? "ffff:ffff:ffff:ffff::" : "255.255.255.0",
    mac: "02:00:00:00:00:01",
    cidr: null,
    ...(v6 ? { scopeid: 0 } : {}),
  } as NetworkInterfaceInfo;
}

describe("localAddresses", () => {
  it("lists non-loopback addresses of interfaces not ignored, sorted and once each", () => {
    const got = localAddresses(
      {
        lo: [iface("127.0.0.1", true), iface("::1", true)],
        eth0: [iface("192.168.1.2"), iface("fe80::1")],
        wlan0: [iface("10.0.0.7"), iface("192.168.1.2")],
        tincan0: [iface("10.10.0.1")],
      },
      new Set(["tincan0"]),
    );
    expect(got).toEqual(["10.0.0.7", "192.168.1.2", "fe80::1"]);
  });
});

describe("NetworkWatch", () => {
  afterEach(() => vi.useRealTimers());

  it("emits added and removed addresses when they change, and nothing otherwise", () => {
    vi.useFakeTimers();
    let ifaces: Record<string, NetworkInterfaceInfo[]> = { eth0: [iface("192.168.1.2")] };
    const watch = new NetworkWatch({ intervalMs: 1000, source: () => ifaces });
    const changes: AddressChange[] = [];
    watch.on("change", (c: AddressChange) => changes.push(c));
    watch.start();
    vi.advanceTimersByTime(3000);
    expect(changes).toEqual([]);
    // The laptop moves: the old address goes, a new one comes (seen in one look).
    ifaces = { eth0: [iface("10.1.2.3")] };
    vi.advanceTimersByTime(1000);
    expect(changes).toEqual([{ added: ["10.1.2.3"], removed: ["192.168.1.2"], addresses: ["10.1.2.3"] }]);
    ifaces = { eth0: [iface("10.1.2.3"), iface("2001:db8::5")] };
    vi.advanceTimersByTime(1000);
    expect(changes[1]).toEqual({
      added: ["2001:db8::5"],
      removed: [],
      addresses: ["10.1.2.3", "2001:db8::5"],
    });
    watch.stop();
    ifaces = {};
    vi.advanceTimersByTime(5000);
    expect(changes).toHaveLength(2);
  });

  it("ignores its own vNIC, loopback, and a source that throws", () => {
    vi.useFakeTimers();
    let fail = false;
    let ifaces: Record<string, NetworkInterfaceInfo[]> = { eth0: [iface("192.168.1.2")] };
    const watch = new NetworkWatch({
      ignoreInterfaces: ["tincan0"],
      source: () => {
        if (fail) throw new Error("EMFILE");
        return ifaces;
      },
    });
    const changes: AddressChange[] = [];
    watch.on("change", (c: AddressChange) => changes.push(c));
    watch.start();
    ifaces = { ...ifaces, tincan0: [iface("10.10.0.1")], lo: [iface("127.0.0.1", true)] };
    vi.advanceTimersByTime(2000);
    fail = true;
    vi.advanceTimersByTime(2000);
    fail = false;
    vi.advanceTimersByTime(2000);
    expect(changes).toEqual([]);
    expect(watch.addresses()).toEqual(["192.168.1.2"]);
    watch.stop();
  });

  it("does not keep the process alive", () => {
    const watch = new NetworkWatch();
    watch.start();
    expect((watch as unknown as { timer: NodeJS.Timeout }).timer.hasRef()).toBe(false);
    watch.stop();
  });
});
