import { defineConfig } from "vitest/config";

// Unit tests live beside each package's sources. System tests (network namespaces) are in test/.
export default defineConfig({
  test: {
    include: ["packages/*/src/**/*.test.ts", "bench/*.test.ts", "bench/sim/*.test.ts"],
    testTimeout: 20_000,
  },
});
