import { defineConfig } from "vitest/config";
import system from "./vitest.config.js";

// `pnpm test:compose`: the container stack test alone (it builds images: minutes on a cold cache).
export default defineConfig({
  ...system,
  test: { ...system.test, include: ["test/compose.test.ts"], exclude: ["**/node_modules/**"] },
});
