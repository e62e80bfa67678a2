import { join } from "node:path";
import { conformance } from "./conformance.js";
import { tempDir } from "./helpers.js";

const tmp = tempDir();
let n = 0;

conformance({
  name: "sqlite",
  fresh: () => `sqlite:${join(tmp.dir, `db-${++n}.db`)}`,
  extraFields: [
    {
      field: { name: "big", type: "integer", nativeType: "INTEGER" },
      values: [2n ** 63n - 1n, -(2n ** 63n), 0, 42, null],
    },
    {
      field: { name: "blob", type: "bytes", nativeType: "BLOB" },
      values: [new Uint8Array([0, 1, 255]), new Uint8Array(0), null],
    },
    {
      field: { name: "ratio", type: "float", nativeType: "REAL" },
      values: [0.1, 1e308, -2.5, Number.POSITIVE_INFINITY, 3],
    },
  ],
  cleanup: () => tmp.cleanup(),
});
