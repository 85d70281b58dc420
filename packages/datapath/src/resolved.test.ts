import { uidForIpv4 } from "@tincan/protocol";
import { describe, expect, it } from "vitest";
import winston from "winston";
import { Datapath } from "./datapath.js";
import { registerLinkDns } from "./resolved.js";
import { fakeVnicFactory } from "./testing.js";

function recorder(failOn?: string) {
  const calls: string[][] = [];
  const resolvectl = async (args: string[]) => {
    calls.push(args);
    if (args[0] === failOn) throw new Error(`resolvectl ${args.join(" ")}: Failed to set DNS configuration`);
  };
  return { calls, resolvectl };
}

describe("registerLinkDns", () => {
  it("sets the link's server, its routing domain, and keeps other names off the link", async () => {
    const r = recorder();
    const out = await registerLinkDns(
      "tincan0",
      { server: "172.31.0.1:5353", domains: ["~svpn"] },
      r.resolvectl,
    );
    expect(out).toEqual({ registered: true });
    expect(r.calls).toEqual([
      ["dns", "tincan0", "172.31.0.1:5353"],
      ["domain", "tincan0", "~svpn"],
      ["default-route", "tincan0", "false"],
    ]);
  });

  it("null withdraws the registration", async () => {
    const r = recorder();
    expect(await registerLinkDns("tincan0", null, r.resolvectl)).toEqual({ registered: false });
    expect(r.calls).toEqual([["revert", "tincan0"]]);
  });

  it("a refusal is reported, not thrown, and stops at the failed step", async () => {
    const r = recorder("dns");
    const out = await registerLinkDns(
      "tincan0",
      { server: "172.31.0.1:53", domains: ["~svpn"] },
      r.resolvectl,
    );
    expect(out.registered).toBe(false);
    expect(out.error).toContain("Failed to set DNS configuration");
    expect(r.calls).toHaveLength(1);
  });

  it("without resolvectl on the host, says so", async () => {
    const out = await registerLinkDns("tincan0", null, async () => {
      throw new Error("resolvectl revert tincan0: spawn resolvectl ENOENT");
    });
    expect(out.error).toMatch(/ENOENT/);
  });
});

describe("vnic.configure {dns}", () => {
  const make = (resolvectl: (args: string[]) => Promise<void>) =>
    new Datapath({
      vnicFactory: fakeVnicFactory(),
      logger: winston.createLogger({ silent: true }),
      notify: () => {},
      resolvectl,
    });

  it("registers the vNIC by its name and returns the outcome; without dns resolvectl is not run", async () => {
    const r = recorder();
    const dp = make(r.resolvectl);
    const uid = uidForIpv4("172.31.0.1");
    expect(await dp.methods["vnic.configure"]({ uid, name: "svpn7", ipv4: "172.31.0.1/16" })).toEqual({
      name: "svpn7",
      mtu: 1280,
    });
    expect(r.calls).toEqual([]);
    const out = await dp.methods["vnic.configure"]({
      uid,
      dns: { server: "172.31.0.1:5353", domains: ["~svpn"] },
    });
    expect(out).toEqual({ name: "svpn7", mtu: 1280, dns: { registered: true } });
    expect(r.calls[0]).toEqual(["dns", "svpn7", "172.31.0.1:5353"]);
    dp.close();
  });

  it("a refused registration still configures the vNIC", async () => {
    const dp = make(recorder("dns").resolvectl);
    const out = await dp.methods["vnic.configure"]({
      uid: uidForIpv4("172.31.0.1"),
      ipv4: "172.31.0.1/16",
      dns: { server: "172.31.0.1:5353", domains: ["~svpn"] },
    });
    expect(out.dns?.registered).toBe(false);
    expect(dp.methods["vnic.query"]({})).toMatchObject({ ipv4: "172.31.0.1/16" });
    dp.close();
  });
});
