import { join } from "node:path";
import { conformance } from "./conformance.js";
import { tempDir } from "./helpers.js";

const tmp = tempDir();
let n = 0;

conformance({
  name: "files (directory)",
  fresh: () => `${join(tmp.dir, `dir-${++n}`)}/`,
  extraFields: [
    { field: { name: "big", type: "integer" }, values: [2n ** 63n - 1n, -(2n ** 63n), 0, null] },
    { field: { name: "blob", type: "bytes" }, values: [new Uint8Array([0, 1, 255]), new Uint8Array(0), null] },
    { field: { name: "at", type: "datetime" }, values: [new Date("2024-02-29T12:34:56.789Z"), null] },
    { field: { name: "odd", type: "float" }, values: [Number.NaN, Number.NEGATIVE_INFINITY, -0, 0.1] },
    { field: { name: "doc", type: "json" }, values: [{ a: [1, { b: null }] }, [1, "two"], { $int: "1" }, null] },
  ],
  cleanup: () => tmp.cleanup(),
});
