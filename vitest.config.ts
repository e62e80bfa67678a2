import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Connector tests open real files and servers; keep parallelism within the 2 cores.
    maxWorkers: 2,
    // .ci/run reads this report to prove that no test was skipped.
    reporters: process.env.FERRY_TEST_REPORT ? ["default", "json"] : ["default"],
    outputFile: process.env.FERRY_TEST_REPORT ? { json: process.env.FERRY_TEST_REPORT } : {},
  },
});
