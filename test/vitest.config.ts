import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// System tests: network namespaces, real prosody/coturn/iperf3. They need root and must not run in
// parallel (one process, one file at a time), and they are slow.
export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "test/compose.test.ts", "test/systemd.test.ts"], // pnpm test:compose runs them
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    fileParallelism: false,
    pool: "forks",
    poolOptions: { forks: { singleFork: true } },
  },
});
