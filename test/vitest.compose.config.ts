import { defineConfig } from "vitest/config";
import system from "./vitest.config.js";

// `pnpm test:compose`: the container tests (they build images: minutes on a cold cache): the compose
// stack, and the Debian package under systemd.
export default defineConfig({
  ...system,
  test: {
    ...system.test,
    include: ["test/compose.test.ts", "test/systemd.test.ts"],
    exclude: ["**/node_modules/**"],
  },
});
