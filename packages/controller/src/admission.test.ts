import { describe, expect, it } from "vitest";
import { Admission, type RosterItem } from "./admission.js";
import type { Log } from "./logger.js";

function capture(): { log: Log; warnings: string[] } {
  const warnings: string[] = [];
  const log: Log = {
    error() {},
    info() {},
    debug() {},
    warn: (m, meta) => warnings.push(`${m} ${JSON.stringify(meta)}`),
  };
  return { log, warnings };
}

/** GroupVPN's rule, as its policy gives it. */
const inLab = (i: RosterItem) => (i.groups.includes("lab") ? null : 'not in roster group "lab"');

const roster: RosterItem[] = [
  { jid: "bob@lab.local", subscription: "both", groups: ["lab"] },
  { jid: "carol@lab.local", subscription: "both", groups: ["other"] },
  { jid: "dave@lab.local", subscription: "to", groups: ["lab"] },
  { jid: "erin@lab.local", subscription: "from", groups: [] },
];

describe("admission", () => {
  it("admits mutual subscriptions that the policy's rule does not refuse", () => {
    const a = new Admission({ refuse: inLab, log: capture().log });
    a.setRoster(roster);
    expect(a.isMember("bob@lab.local")).toBe(true);
    expect(a.isMember("BOB@lab.local")).toBe(true);
    expect(a.isMember("carol@lab.local")).toBe(false);
    expect(a.isMember("dave@lab.local")).toBe(false);
    expect(a.isMember("mallory@lab.local")).toBe(false);
    expect(a.members()).toEqual(["bob@lab.local"]);
  });

  it("admits the own account's other devices without a roster entry, whatever the rule", () => {
    const a = new Admission({ ownJid: "alice@lab.local", refuse: inLab, log: capture().log });
    a.setRoster(roster);
    expect(a.isMember("Alice@lab.local")).toBe(true);
    expect(a.allows("alice@lab.local", "presence")).toBe(true);
    expect(a.isMember("carol@lab.local")).toBe(false);
    expect(a.members()).toEqual(["bob@lab.local"]);
  });

  it("without a rule (SocialVPN) admits every mutual subscription", () => {
    const a = new Admission({ log: capture().log });
    a.setRoster(roster);
    expect(a.members().sort()).toEqual(["bob@lab.local", "carol@lab.local"]);
    expect(a.isMember("erin@lab.local")).toBe(false);
  });

  it("logs a refused JID once, not once per stanza", () => {
    const { log, warnings } = capture();
    const a = new Admission({ refuse: inLab, log });
    a.setRoster(roster);
    for (let i = 0; i < 5; i++) expect(a.allows("mallory@lab.local")).toBe(false);
    for (let i = 0; i < 3; i++) expect(a.allows("dave@lab.local")).toBe(false);
    expect(a.allows("bob@lab.local")).toBe(true);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain("mallory@lab.local");
    expect(warnings[1]).toContain('subscription is \\"to\\"');
  });

  it("logs again after a JID was admitted and then refused", () => {
    const { log, warnings } = capture();
    const a = new Admission({ refuse: inLab, log });
    a.setRoster(roster);
    a.allows("dave@lab.local");
    a.setRoster([
      ...roster.filter((i) => i.jid !== "dave@lab.local"),
      { jid: "dave@lab.local", subscription: "both", groups: ["lab"] },
    ]);
    expect(a.allows("dave@lab.local")).toBe(true);
    a.setRoster(roster);
    a.allows("dave@lab.local");
    expect(warnings).toHaveLength(2);
  });
});
