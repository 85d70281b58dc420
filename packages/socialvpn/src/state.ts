import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { basename, join } from "node:path";
import { describeIssues, writeFileAtomic } from "@tincan/protocol";
import { z } from "zod";
import { SavedScore } from "./profile.js";

/** `stateFile` of before devices (version 1): one address per buddy account. */
const SocialVpnStateV1 = z.strictObject({
  version: z.literal(1),
  /** bare JID -> IPv4 address, in allocation order. */
  buddies: z.record(z.string().min(3), z.string()),
});

/** `stateFile`: which address of our range each device has, kept across restarts. */
export const SocialVpnState = z.strictObject({
  version: z.literal(2),
  /**
   * `<bare JID>/<resource>` -> IPv4 address, in allocation order. A key without "/" is an account's
   * address from version 1, not yet taken over by a device of that account (see addresses.ts).
   */
  devices: z.record(z.string().min(3), z.string()),
  /** Device key -> decayed traffic score (the social profile, see profile.ts). */
  scores: z.record(z.string().min(3), SavedScore).optional(),
});
export type SocialVpnState = z.infer<typeof SocialVpnState>;

/** Version 1 read as version 2: each account's address waits for the account's first device. */
function parseState(json: unknown) {
  const v1 = typeof json === "object" && json !== null && (json as { version?: unknown }).version === 1;
  if (!v1) return SocialVpnState.safeParse(json);
  const parsed = SocialVpnStateV1.safeParse(json);
  if (!parsed.success) return parsed;
  return { success: true as const, data: { version: 2 as const, devices: parsed.data.buddies } };
}

/** Where system services keep state (the package creates it, owned by the tincan user). */
export const SYSTEM_STATE_DIR = "/var/lib/tincan";

/**
 * The `stateFile` when the config gives none: `<config name>-state.json` (so `socialvpn@work` keeps its
 * own) in /var/lib/tincan for a system user (root or the tincan user), else in the XDG state dir
 * ($XDG_STATE_HOME/tincan, or ~/.local/state/tincan).
 */
export function defaultStateFile(
  configFile: string,
  env: NodeJS.ProcessEnv = process.env,
  user: { uid: number; username: string; homedir: string } = currentUser(),
): string {
  const name = `${basename(configFile).replace(/\.json$/, "")}-state.json`;
  if (user.uid === 0 || user.username === "tincan") return join(SYSTEM_STATE_DIR, name);
  const stateHome = env.XDG_STATE_HOME?.startsWith("/")
    ? env.XDG_STATE_HOME
    : join(user.homedir, ".local/state");
  return join(stateHome, "tincan", name);
}

function currentUser(): { uid: number; username: string; homedir: string } {
  const uid = process.getuid?.() ?? -1;
  try {
    const u = userInfo();
    return { uid, username: u.username, homedir: process.env.HOME ?? u.homedir };
  } catch {
    // A uid without a passwd entry (e.g. a container's): no name, HOME if set.
    return { uid, username: "", homedir: process.env.HOME ?? "/" };
  }
}

export class StateFileError extends Error {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = "StateFileError";
  }
}

/**
 * Reads the state file. A missing file is an empty state; a file that is not valid JSON or not of the
 * expected shape is an error (it is only ever written atomically, so that means someone edited it: we
 * do not silently renumber every buddy).
 */
export function readStateFile(file: string): SocialVpnState {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 2, devices: {} };
    throw new StateFileError(file, `cannot read the state file: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(file, `not valid JSON: ${(err as Error).message}`);
  }
  const parsed = parseState(json);
  if (!parsed.success) throw new StateFileError(file, describeIssues(parsed.error));
  return parsed.data;
}

/**
 * Saves the state file in the background, one write at a time: a save requested while one runs is
 * done once after it with the newest data (so a burst of new buddies is one or two writes).
 */
export class StateWriter {
  private running: Promise<void> | null = null;
  private pending: (() => SocialVpnState) | null = null;

  constructor(
    readonly file: string,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Asks for a save of what `snapshot()` returns when the write starts. */
  save(snapshot: () => SocialVpnState): void {
    this.pending = snapshot;
    if (!this.running) this.running = this.drain();
  }

  /** Resolves when every requested save is written (or failed). */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending) {
        const snapshot = this.pending;
        this.pending = null;
        try {
          await writeFileAtomic(this.file, `${JSON.stringify(snapshot(), null, 2)}\n`, 0o644);
        } catch (err) {
          this.onError(err as Error);
        }
      }
    } finally {
      this.running = null;
    }
  }
}
