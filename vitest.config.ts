import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Connector tests open real files and servers; keep parallelism within the 2 cores.
    maxWorkers: 2,
  },
});
