import { describe, expect, it } from "vitest";
import { PROACTIVE_MAX, PROACTIVE_MIN_SCORE, SCORE_HALF_LIFE_MS, SocialProfile } from "./profile.js";

const MiB = 1024 * 1024;
const keys: Record<string, string> = { a: "bob@x/desk", b: "bob@x/phone", c: "carol@x/pc" };
const keyOf = (uid: string) => keys[uid];

describe("SocialProfile", () => {
  it("adds each link's bytes since the last sample to its device's score", () => {
    const p = new SocialProfile();
    expect(p.sample([{ peerUid: "a", rxBytes: MiB, txBytes: MiB }], keyOf, 0)).toBe(true);
    expect(p.sample([{ peerUid: "a", rxBytes: MiB, txBytes: 2 * MiB }], keyOf, 0)).toBe(true);
    expect(p.score("bob@x/desk", 0)).toBe(3 * MiB);
    // No new bytes, an unknown peer: nothing changes.
    expect(
      p.sample(
        [
          { peerUid: "a", rxBytes: MiB, txBytes: 2 * MiB },
          { peerUid: "z", rxBytes: 9, txBytes: 9 },
        ],
        keyOf,
        0,
      ),
    ).toBe(false);
    // A link set up again counts from 0.
    p.sample([{ peerUid: "a", rxBytes: 10, txBytes: 0 }], keyOf, 0);
    expect(p.score("bob@x/desk", 0)).toBe(3 * MiB + 10);
  });

  it("decays with the half life, and only devices above the minimum are frequent, highest first", () => {
    const p = new SocialProfile();
    p.sample(
      [
        { peerUid: "a", rxBytes: 4 * MiB, txBytes: 0 },
        { peerUid: "b", rxBytes: 1.5 * MiB, txBytes: 0 },
        { peerUid: "c", rxBytes: PROACTIVE_MIN_SCORE / 2, txBytes: 0 },
      ],
      keyOf,
      0,
    );
    expect(p.frequent(0)).toEqual(["bob@x/desk", "bob@x/phone"]);
    expect(p.score("bob@x/desk", SCORE_HALF_LIFE_MS)).toBeCloseTo(2 * MiB);
    // A week later the phone has faded below the minimum.
    expect(p.frequent(SCORE_HALF_LIFE_MS)).toEqual(["bob@x/desk"]);
    expect(p.isFrequent("carol@x/pc", 0)).toBe(false);
  });

  it("survives a restart through its record, and keeps at most PROACTIVE_MAX frequent devices", () => {
    const p = new SocialProfile();
    const many = [...Array(PROACTIVE_MAX + 3)].map((_, i) => ({
      peerUid: `u${i}`,
      rxBytes: (i + 1) * MiB,
      txBytes: 0,
    }));
    p.sample(many, (uid) => `d@x/${uid}`, 0);
    const q = new SocialProfile(JSON.parse(JSON.stringify(p.toRecord())));
    expect(q.frequent(0)).toHaveLength(PROACTIVE_MAX);
    expect(q.frequent(0)[0]).toBe(`d@x/u${PROACTIVE_MAX + 2}`);
  });
});
