import { describe, expect, it } from "vitest";
import { ControllerConfig, TincanConfig } from "./config.js";

const base = {
  xmpp: { domain: "lab.local", username: "alice", password: "x" },
  vnic: { ipv4: "10.0.0.1/24" },
};

describe("metrics.listen and log.format", () => {
  it("metrics are off by default; a loopback address is taken", () => {
    expect(ControllerConfig.parse(base).metrics.listen).toBeUndefined();
    expect(ControllerConfig.parse({ ...base, metrics: { listen: "127.0.0.1:9480" } }).metrics.listen).toBe(
      "127.0.0.1:9480",
    );
  });

  it.each(["0.0.0.0:9480", "100.64.0.10:9480", "localhost:9480", "127.0.0.1", ":9480"])(
    "refuses %s",
    (listen) => {
      const r = ControllerConfig.safeParse({ ...base, metrics: { listen } });
      expect(r.success).toBe(false);
      expect(r.error?.issues[0]?.path).toEqual(["metrics", "listen"]);
    },
  );

  it("log.format is text by default, json on request, nothing else", () => {
    expect(ControllerConfig.parse(base).log.format).toBe("text");
    expect(TincanConfig.parse({ log: { format: "json" } }).log.format).toBe("json");
    expect(TincanConfig.safeParse({ log: { format: "yaml" } }).success).toBe(false);
  });
});
