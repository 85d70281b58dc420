import { readFileSync } from "node:fs";
import { describeIssues, writeFileAtomic } from "@tincan/protocol";
import { z } from "zod";

/** `stateFile`: which address of our range each buddy has, kept across restarts. */
export const SocialVpnState = z.strictObject({
  version: z.literal(1),
  /** bare JID -> IPv4 address, in allocation order. */
  buddies: z.record(z.string().min(3), z.string()),
});
export type SocialVpnState = z.infer<typeof SocialVpnState>;

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
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, buddies: {} };
    throw new StateFileError(file, `cannot read the state file: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(file, `not valid JSON: ${(err as Error).message}`);
  }
  const parsed = SocialVpnState.safeParse(json);
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
