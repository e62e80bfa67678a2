/** Library-level behaviours of `copy` that no single connector owns. */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import { copy } from "../src/core/copy.js";
import { readAll, tempDir } from "./helpers.js";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe("copy never drops data silently", () => {
  // A schemaless .ndjson source: its schema is inferred from the first records only.
  const src = join(tmp.dir, "users.ndjson");
  const lines = [];
  for (let i = 1; i <= 1500; i++)
    lines.push(JSON.stringify(i === 1400 ? { id: i, name: `n${i}`, late: "surprise" } : { id: i, name: `n${i}` }));
  writeFileSync(src, `${lines.join("\n")}\n`);

  it("keeps a field that first appears after the inferred sample when the target can hold it", async () => {
    const r = await copy({ from: src, to: `${join(tmp.dir, "out")}/` });
    expect(r.total).toMatchObject({ copied: 1500, failed: 0 });
    expect(readFileSync(join(tmp.dir, "out", "users.ndjson"), "utf8")).toContain('"late":"surprise"');
  });

  it("reports such a record as refused, by key and reason, when the target cannot hold it", async () => {
    const r = await copy({ from: src, to: `sqlite:${join(tmp.dir, "late.db")}` });
    expect(r.status).toBe("failed");
    expect(r.total).toMatchObject({ copied: 1499, failed: 1 });
    expect(r.failures).toEqual([{ collection: "users", key: "id=1400", reason: expect.stringContaining("late") }]);
    const rows = (await readAll(`sqlite:${join(tmp.dir, "late.db")}`)).users ?? [];
    expect(rows).toHaveLength(1499);
  });
});
