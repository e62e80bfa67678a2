/** Library-level behaviours of `copy` that no single connector owns. */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import type { FerryEvent } from "../src/core/events.js";
import { history } from "../src/core/history.js";
import type { Row } from "../src/core/values.js";
import { readAll, seed, tempDir } from "./helpers.js";

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

describe("review regressions", () => {
  const users = (rows: Row[]) => [
    {
      schema: {
        name: "users",
        fields: [
          { name: "id", type: "integer" as const },
          { name: "email", type: "text" as const },
        ],
        primaryKey: ["id"],
      },
      rows,
    },
  ];
  const logs = (rows: Row[]) => [
    { schema: { name: "logs", fields: [{ name: "msg", type: "text" as const }], primaryKey: [] }, rows },
  ];

  it("refuses a keyless collection into a non-empty target in every mode, overwrite included", async () => {
    const src = `${join(tmp.dir, "k-src")}/`;
    const dst = `${join(tmp.dir, "k-dst")}/`;
    await seed(src, logs([{ msg: "a" }, { msg: "b" }]));
    await seed(dst, logs([{ msg: "a" }]));
    for (const conflict of ["fail", "skip", "overwrite", "merge"] as const) {
      const err = await copy({ from: src, to: dst, conflict }).catch((e: unknown) => e);
      expect(isFerryError(err, "E_CONFIG"), conflict).toBe(true);
    }
    expect((await readAll(dst)).logs).toHaveLength(1);
  });

  it("matching by a natural key never duplicates a primary key: the colliding record is refused by name", async () => {
    const src = `${join(tmp.dir, "n-src")}/`;
    const dst = `${join(tmp.dir, "n-dst")}/`;
    await seed(
      src,
      users([
        { id: 1, email: "c@x" },
        { id: 2, email: "d@x" },
      ]),
    );
    await seed(dst, users([{ id: 1, email: "b@x" }]));
    const r = await copy({ from: src, to: dst, conflict: "skip", key: ["email"] });
    expect(r.total).toMatchObject({ copied: 1, failed: 1 });
    expect(r.failures[0]).toMatchObject({ key: 'email="c@x"', reason: expect.stringContaining("id=1 already exists") });
    const ids = ((await readAll(dst)).users ?? []).map((u) => u.id);
    expect(ids.sort()).toEqual([1, 2]);
  });

  it("records refused records in the journal entry saved with their batch", async () => {
    const src = `${join(tmp.dir, "j-src")}/`;
    const dst = join(tmp.dir, "j-dst.db");
    await seed(
      src,
      users([
        { id: 1, email: "a@x" },
        { id: 2, email: "a@x" },
      ]),
    );
    const db = new Database(dst);
    db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE)");
    db.close();
    const r = await copy({ from: src, to: `sqlite:${dst}` });
    expect(r.status).toBe("failed");
    const [run] = await history({ at: `sqlite:${dst}` });
    expect(run?.collections.users).toMatchObject({ copied: 1, failed: 1, failures: [{ key: "id=2" }] });
  });

  it("never shows a password given in the target URL, even in a dry run to a missing target", async () => {
    const events: FerryEvent[] = [];
    const src = `${join(tmp.dir, "p-src")}/`;
    await seed(src, users([{ id: 1, email: "a@x" }]));
    await copy({
      from: src,
      to: `sqlite:${join(tmp.dir, "none.db")}?password=hunter2`,
      dryRun: true,
      onEvent: (e) => events.push(e),
    }).catch(() => {});
    expect(JSON.stringify(events)).not.toContain("hunter2");
  });
});
