import { conformance } from "./conformance.js";
import { startRedis, type TestRedis } from "./redis-server.js";

let server: TestRedis | undefined;

conformance({
  name: "redis",
  fresh: async () => {
    server ??= await startRedis();
    return server.fresh();
  },
  extraFields: [
    {
      field: { name: "big", type: "integer", nativeType: "integer" },
      values: [2n ** 63n - 1n, -(2n ** 63n), 0, 42, null],
    },
    {
      field: { name: "blob", type: "bytes", nativeType: "bytes" },
      values: [new Uint8Array([0, 1, 255]), new Uint8Array(0), null],
    },
    {
      field: { name: "at", type: "datetime", nativeType: "datetime", timezone: true },
      values: [new Date("2024-01-02T03:04:05.678Z"), null],
    },
  ],
  cleanup: async () => {
    await server?.stop();
  },
});
