import { readFileSync } from "node:fs";
import { GroupVpnConfig, SocialVpnConfig, TincanConfig } from "@tincan/protocol";
import { describe, expect, it } from "vitest";

const read = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../../configs/${name}`, import.meta.url), "utf8"));

describe("sample configs in configs/", () => {
  it("are valid against their schemas", () => {
    expect(TincanConfig.safeParse(read("tincan.json")).success).toBe(true);
    expect(GroupVpnConfig.safeParse(read("groupvpn.json")).error?.issues).toBeUndefined();
    expect(SocialVpnConfig.safeParse(read("socialvpn.json")).error?.issues).toBeUndefined();
  });
});
