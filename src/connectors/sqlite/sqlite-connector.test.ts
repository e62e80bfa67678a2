import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { Checkpoint, JournalStore, ReadBatch, UndoRow, WriteOp } from "../../core/connector.js";
import { isFerryError } from "../../core/errors.js";
import type { Bookmark } from "../../core/messages.js";
import { openConnector } from "../../core/registry.js";
import type { CollectionSchema } from "../../core/schema.js";
import { keyString, type Row } from "../../core/values.js";
import "./index.js";
import { SqliteConnector, sqliteFactory } from "./sqlite-connector.js";
import { parseSqliteUrl } from "./sqlite-url.js";

const tmp = mkdtempSync(join(tmpdir(), "ferry-sqlite-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
function dbPath(name = "db"): string {
  return join(tmp, `${name}-${++counter}.db`);
}

/** A database file made with `sql` (and `fill`), closed again. */
function makeDb(sql: string, fill?: (db: Database.Database) => void): string {
  const path = dbPath();
  const db = new Database(path);
  db.exec(sql);
  if (fill) db.transaction(fill)(db);
  db.close();
  return path;
}

/** Runs `fn` on a separate read-only connection (safe integers on), closed after. */
function peek<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path, { readonly: true });
  db.defaultSafeIntegers(true);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** All rows of `sql`, as arrays, read on a separate connection. */
function rowsOf(path: string, sql: string): unknown[][] {
  return peek(path, (db) => db.prepare(sql).raw(true).all() as unknown[][]);
}

/** The first column of the first row of `sql`, read on a separate connection. */
function scalar(path: string, sql: string): unknown {
  return peek(path, (db) => db.prepare(sql).pluck().get());
}

const source = (path: string) => SqliteConnector.open(`sqlite:${path}`, {});
const target = (path: string) => SqliteConnector.open(`sqlite:${path}`, { write: true });

async function schemaOf(c: SqliteConnector, name: string): Promise<CollectionSchema> {
  const s = (await c.discover()).find((x) => x.name === name);
  if (!s) throw new Error(`no collection ${name}`);
  return s;
}

async function batches(c: SqliteConnector, s: CollectionSchema, batchSize: number, after?: Bookmark) {
  const out: ReadBatch[] = [];
  for await (const b of c.read(s, after === undefined ? { batchSize } : { batchSize, after })) out.push(b);
  return out;
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

/** Copies every collection through the connector contract, failing on any refused record. */
async function copyAll(from: SqliteConnector, to: SqliteConnector, batchSize = 7): Promise<void> {
  for (const s of await from.discover()) {
    const { schema } = await to.prepare(s);
    for await (const b of from.read(s, { batchSize })) {
      const r = await to.write(
        schema,
        b.records.map((record) => ({ op: "insert" as const, record })),
      );
      expect(r.failures).toEqual([]);
    }
    await to.finish(s);
  }
}

describe("sqlite URLs", () => {
  it("accepts the documented forms", () => {
    expect(parseSqliteUrl("sqlite:./app.db")).toEqual({ path: "./app.db", memory: false });
    expect(parseSqliteUrl("sqlite:app.db")).toEqual({ path: "app.db", memory: false });
    expect(parseSqliteUrl("sqlite:/abs/app.db")).toEqual({ path: "/abs/app.db", memory: false });
    expect(parseSqliteUrl("sqlite:///abs/app.db")).toEqual({ path: "/abs/app.db", memory: false });
    expect(parseSqliteUrl("sqlite:///abs/my%20app.db")).toEqual({ path: "/abs/my app.db", memory: false });
    expect(parseSqliteUrl("sqlite://localhost/abs/app.db")).toEqual({ path: "/abs/app.db", memory: false });
    expect(parseSqliteUrl("sqlite::memory:")).toEqual({ path: ":memory:", memory: true });
  });

  it("refuses a URL without a path", () => {
    for (const url of ["sqlite:", "sqlite://", "sqlite:  "]) {
      expect(() => parseSqliteUrl(url)).toThrow(/without a path/);
    }
  });
});

describe("opening", () => {
  it("registers the sqlite: scheme", async () => {
    expect(sqliteFactory.schemes).toEqual(["sqlite"]);
    expect(sqliteFactory.usage).toBe("sqlite:PATH");
    const path = makeDb("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    const c = await openConnector(`sqlite:${path}`);
    expect(c).toBeInstanceOf(SqliteConnector);
    expect(c.engine).toBe("sqlite");
    await c.close();
  });

  it("refuses a source that does not exist with E_CONNECTION naming the path", async () => {
    const path = join(tmp, "nope", "missing.db");
    const err = await errorOf(source(path));
    expect(isFerryError(err, "E_CONNECTION")).toBe(true);
    expect((err as Error).message).toMatch(`sqlite database not found: ${path}: check the path`);
    expect((err as { details: Record<string, unknown> }).details.missing).toBe(true);
    expect(existsSync(path)).toBe(false);
  });

  it("refuses a file that is not a SQLite database", async () => {
    const path = join(tmp, "not-a-db.db");
    writeFileSync(path, "this is not a database, just some text that is long enough to have a header".repeat(20));
    for (const write of [false, true]) {
      const err = await errorOf(SqliteConnector.open(`sqlite:${path}`, { write }));
      expect(isFerryError(err, "E_CONNECTION")).toBe(true);
      expect((err as Error).message).toMatch(/not a SQLite database/);
    }
  });

  it("refuses a directory", async () => {
    const err = await errorOf(source(tmp));
    expect(isFerryError(err, "E_CONNECTION")).toBe(true);
  });

  it("gives the same identity to every spelling of one file", async () => {
    const path = makeDb("CREATE TABLE t (x)");
    const a = await source(path);
    const b = await SqliteConnector.open(`sqlite://${path}`, {});
    const c = await SqliteConnector.open(`sqlite:${relative(process.cwd(), path)}`, {});
    expect(a.identity).toBe(realpathSync(path));
    expect(b.identity).toBe(a.identity);
    expect(c.identity).toBe(a.identity);
    const m1 = await SqliteConnector.open("sqlite::memory:", {});
    const m2 = await SqliteConnector.open("sqlite::memory:", {});
    expect(m1.identity).not.toBe(m2.identity);
    for (const x of [a, b, c, m1, m2]) await x.close();
  });

  it("creates a target (and its directories) only when something is written", async () => {
    const path = join(tmp, "deep", "er", "target.db");
    const t = await target(path);
    await t.check();
    expect(await t.discover()).toEqual([]);
    expect(await t.journal().list()).toEqual([]);
    expect(existsSync(path)).toBe(false);
    const s: CollectionSchema = { name: "t", fields: [{ name: "id", type: "integer" }], primaryKey: ["id"] };
    expect((await t.lookup(s, ["id"], [[1]])).size).toBe(0);
    expect((await t.prepare(s)).created).toBe(true);
    expect(existsSync(path)).toBe(true);
    await t.close();
  });

  it("never writes to a source", async () => {
    const path = makeDb("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    const c = await source(path);
    const s = await schemaOf(c, "t");
    const err = await errorOf(c.write(s, [{ op: "insert", record: { id: 1 } }]));
    expect(isFerryError(err, "E_UNSUPPORTED")).toBe(true);
    expect(isFerryError(await errorOf(c.journal().save("r", {})), "E_UNSUPPORTED")).toBe(true);
    await c.close();
  });
});

const SHOP = `
CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created DATETIME DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE members (
  team_id INTEGER NOT NULL REFERENCES teams ON DELETE CASCADE,
  seq INT NOT NULL,
  email VARCHAR(80) COLLATE NOCASE,
  born DATE,
  active BOOLEAN DEFAULT 1,
  meta JSON,
  score DOUBLE PRECISION CHECK (score >= 0),
  price DECIMAL(10,2),
  photo BLOB,
  misc,
  email_lower TEXT GENERATED ALWAYS AS (lower(email)) VIRTUAL,
  doubled REAL GENERATED ALWAYS AS (score * 2) STORED,
  PRIMARY KEY (team_id, seq),
  UNIQUE (email)
);
CREATE INDEX members_born ON members (born, active);
CREATE UNIQUE INDEX members_meta ON members (meta);
CREATE INDEX members_expr ON members (lower(email));
CREATE INDEX members_partial ON members (score) WHERE score > 0;
CREATE TABLE tags (a TEXT, b INTEGER, note, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE links (
  id INTEGER PRIMARY KEY,
  parent INTEGER REFERENCES links (id),
  ta TEXT,
  tb INTEGER,
  FOREIGN KEY (ta, tb) REFERENCES tags (a, b) ON UPDATE CASCADE
);
CREATE TRIGGER links_touch AFTER UPDATE ON links BEGIN SELECT 1; END;
CREATE TABLE counters (id INTEGER PRIMARY KEY AUTOINCREMENT, v ANY) STRICT;
CREATE TABLE _ferry_journal (id TEXT PRIMARY KEY, started_at TEXT, entry TEXT NOT NULL);
CREATE VIEW team_names AS SELECT name FROM teams;
`;

function fillShop(db: Database.Database): void {
  // JSON columns hold documents: the record path writes them compact (as JSON.stringify does).
  db.exec(`
    INSERT INTO teams (id, name) VALUES (1, 'red'), (2, 'blue');
    INSERT INTO members (team_id, seq, email, born, active, meta, score, price, photo, misc) VALUES
      (1, 1, 'Ann@x', '1990-01-02', 1, '{"a":1}', 1.5, 10.25, x'00ff', 7),
      (1, 2, 'bob@x', NULL, 0, '[1,2]', 0, 3, NULL, 'text'),
      (2, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    INSERT INTO tags VALUES ('x', 1, 'one'), ('x', 2, NULL), ('a', 9, 1.5);
    INSERT INTO links VALUES (1, NULL, 'x', 1), (2, 3, 'x', 2), (3, 1, 'a', 9);
    INSERT INTO counters (v) VALUES (1), ('two'), (x'03');
  `);
}

describe("discover", () => {
  it("describes tables, keys, foreign keys, unique keys, indexes and generated columns", async () => {
    const c = await source(makeDb(SHOP, fillShop));
    const all = await c.discover();
    expect(all.map((s) => s.name)).toEqual(["teams", "members", "tags", "links", "counters"]);
    const by = (n: string) => all.find((s) => s.name === n) as CollectionSchema;

    const members = by("members");
    expect(members.fields).toEqual([
      { name: "team_id", type: "integer", nativeType: "INTEGER", nullable: false },
      { name: "seq", type: "integer", nativeType: "INT", nullable: false },
      { name: "email", type: "text", nativeType: "VARCHAR(80)", nullable: true, maxLength: 80 },
      { name: "born", type: "date", nativeType: "DATE", nullable: true },
      { name: "active", type: "boolean", nativeType: "BOOLEAN", nullable: true },
      { name: "meta", type: "json", nativeType: "JSON", nullable: true },
      { name: "score", type: "float", nativeType: "DOUBLE PRECISION", nullable: true },
      { name: "price", type: "decimal", nativeType: "DECIMAL(10,2)", nullable: true, precision: 10, scale: 2 },
      { name: "photo", type: "bytes", nativeType: "BLOB", nullable: true },
      { name: "misc", type: "any", nullable: true },
      { name: "email_lower", type: "text", nativeType: "TEXT", nullable: true, generated: true },
      { name: "doubled", type: "float", nativeType: "REAL", nullable: true, generated: true },
    ]);
    expect(members.primaryKey).toEqual(["team_id", "seq"]);
    expect(members.uniqueKeys).toEqual([["email"]]);
    expect(members.foreignKeys).toEqual([
      { fields: ["team_id"], references: { collection: "teams", fields: ["id"] }, onDelete: "CASCADE" },
    ]);
    // Expression and partial indexes cannot be described by field lists: only `native` has them.
    expect(members.indexes).toEqual([
      { name: "members_born", fields: ["born", "active"], unique: false },
      { name: "members_meta", fields: ["meta"], unique: true },
    ]);
    const ddl = members.native?.ddl ?? [];
    expect(members.native?.engine).toBe("sqlite");
    expect(ddl[0]).toMatch(/^CREATE TABLE members \(/);
    expect(ddl.slice(1).map((s) => /INDEX (\w+)/.exec(s)?.[1])).toEqual([
      "members_born",
      "members_meta",
      "members_expr",
      "members_partial",
    ]);

    const teams = by("teams");
    expect(teams.primaryKey).toEqual(["id"]);
    expect(teams.uniqueKeys).toEqual([["name"]]);
    expect(teams.fields.map((f) => [f.name, f.type, f.nullable])).toEqual([
      ["id", "integer", false],
      ["name", "text", false],
      ["created", "datetime", true],
    ]);

    const tags = by("tags");
    expect(tags.primaryKey).toEqual(["a", "b"]);
    expect(tags.fields.map((f) => f.nullable)).toEqual([false, false, true]);
    expect(tags.native?.ddl[0]).toMatch(/WITHOUT ROWID$/);

    const links = by("links");
    expect(links.foreignKeys).toEqual([
      { fields: ["parent"], references: { collection: "links", fields: ["id"] } },
      { fields: ["ta", "tb"], references: { collection: "tags", fields: ["a", "b"] }, onUpdate: "CASCADE" },
    ]);
    expect(links.native?.ddl.at(-1)).toMatch(/^CREATE TRIGGER links_touch/);

    expect(by("counters").fields[1]).toEqual({ name: "v", type: "any", nativeType: "ANY", nullable: true });
    expect(await c.count(members)).toBe(3);
    expect(await c.count(by("counters"))).toBe(3);
    await c.close();
  });

  it("says which table is missing", async () => {
    const c = await source(makeDb("CREATE TABLE t (x)"));
    const ghost: CollectionSchema = { name: "ghost", fields: [{ name: "x", type: "any" }], primaryKey: [] };
    expect(isFerryError(await errorOf(c.count(ghost)), "E_NOT_FOUND")).toBe(true);
    expect(isFerryError(await errorOf(batches(c, ghost, 10)), "E_NOT_FOUND")).toBe(true);
    await c.close();
  });
});

/** Tables of every key kind, with the SQL that reads them in the order `read` must follow. */
const KINDS = {
  integer: {
    ddl: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
    order: "SELECT id, v FROM t ORDER BY id",
    row: fc.tuple(
      fc.oneof(fc.integer({ min: -1e6, max: 1e6 }), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
      fc.string(),
    ),
    key: (r: unknown[]) => String(r[0]),
  },
  composite: {
    ddl: "CREATE TABLE t (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID",
    order: "SELECT a, b, v FROM t ORDER BY a, b",
    row: fc.tuple(fc.constantFrom("", "a", "b", "ä", "🚢", "a\u0000b"), fc.integer({ min: -5, max: 5 }), fc.integer()),
    key: (r: unknown[]) => `${r[0]}|${r[1]}`,
  },
  rowid: {
    ddl: "CREATE TABLE t (v TEXT, w INTEGER)",
    order: "SELECT v, w FROM t ORDER BY rowid",
    row: fc.tuple(fc.constantFrom("x", "y", null), fc.integer()),
    key: () => Math.random().toString(),
  },
  "nullable key": {
    ddl: "CREATE TABLE t (k TEXT PRIMARY KEY, j INTEGER)",
    order: "SELECT k, j FROM t ORDER BY k, rowid",
    row: fc.tuple(fc.option(fc.constantFrom("a", "b", "c", "d", "e", "f"), { freq: 2 }), fc.integer()),
    key: (r: unknown[]) => (r[0] === null ? Math.random().toString() : String(r[0])),
  },
} as const;

describe("read", () => {
  for (const [kind, spec] of Object.entries(KINDS)) {
    it(`pages a ${kind} table in key order and resumes from any bookmark without gaps or duplicates`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(spec.row as fc.Arbitrary<unknown[]>, { maxLength: 60, selector: spec.key }),
          fc.integer({ min: 1, max: 13 }),
          fc.nat(),
          async (rows, batchSize, resumeAt) => {
            const path = makeDb(spec.ddl, (db) => {
              const cols = (rows[0] ?? []).map(() => "?").join(", ");
              const insert = rows.length > 0 ? db.prepare(`INSERT INTO t VALUES (${cols})`) : undefined;
              for (const r of rows) insert?.run(...r);
            });
            const expected = rowsOf(path, spec.order).map((r) =>
              r.map((v) =>
                typeof v === "bigint" && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)
                  ? Number(v)
                  : v,
              ),
            );
            const c = await source(path);
            try {
              const s = await schemaOf(c, "t");
              const names = s.fields.map((f) => f.name);
              const all = await batches(c, s, batchSize);
              const flat = all.flatMap((b) => b.records.map((r) => names.map((n) => r[n])));
              expect(flat).toEqual(expected);
              expect(all.every((b, i) => b.records.length === batchSize || i === all.length - 1)).toBe(true);
              if (all.length === 0) return;
              const k = resumeAt % all.length;
              // Bookmarks are stored as JSON in the journal.
              const bookmark = JSON.parse(JSON.stringify((all[k] as ReadBatch).bookmark)) as Bookmark;
              const rest = await batches(c, s, batchSize, bookmark);
              expect(rest.flatMap((b) => b.records)).toEqual(all.slice(k + 1).flatMap((b) => b.records));
            } finally {
              await c.close();
            }
          },
        ),
        { numRuns: 25 },
      );
    });
  }

  it("reads a subset of fields and still resumes by the key", async () => {
    const path = makeDb("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", (db) => {
      const ins = db.prepare("INSERT INTO t VALUES (?, ?)");
      for (let i = 1; i <= 10; i++) ins.run(i * 10, `v${i}`);
    });
    const c = await source(path);
    const s = await schemaOf(c, "t");
    const first = await batches(c, { ...s }, 4);
    const vOnly: ReadBatch[] = [];
    for await (const b of c.read(s, { batchSize: 4, fields: ["v"], after: (first[0] as ReadBatch).bookmark })) {
      vOnly.push(b);
    }
    expect(vOnly.flatMap((b) => b.records)).toEqual([5, 6, 7, 8, 9, 10].map((i) => ({ v: `v${i}` })));
    expect(vOnly[0]?.bookmark).toEqual({ after: [80] });
    await c.close();
  });

  it("refuses a bookmark that does not fit the table", async () => {
    const c = await source(makeDb("CREATE TABLE t (a, b, PRIMARY KEY (a, b))"));
    const s = await schemaOf(c, "t");
    expect(isFerryError(await errorOf(batches(c, s, 5, { after: [1] })), "E_CONFIG")).toBe(true);
    await c.close();
  });
});

describe("values", () => {
  const TYPES =
    "CREATE TABLE v (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, u, n NUMERIC, flag BOOLEAN)";
  const ROWS: unknown[][] = [
    [1, 2n ** 63n - 1n, 0.1, "héllo 🚢 日本 \u2028", Buffer.from([0, 1, 255]), 3n, 1.5, 1n],
    [2, -(2n ** 63n), 1e308, "", Buffer.alloc(0), 3.5, 100n, 0n],
    [3, 2n ** 53n + 1n, -0, "nul\u0000inside", Buffer.from("blob"), -0, "1.10x", null],
    [4, 42n, Number.POSITIVE_INFINITY, "x", null, Number.NEGATIVE_INFINITY, null, 2n],
    [5, -7n, 3, "3", null, "text", 7n, null],
    [6, null, Number.NEGATIVE_INFINITY, null, null, Buffer.from([9]), null, null],
    [7, 9007199254740991n, 5e-324, "'quoted'", null, 2n ** 62n, 2n ** 62n, null],
  ];
  const makeValues = () =>
    makeDb(TYPES, (db) => {
      const ins = db.prepare("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
      for (const r of ROWS) ins.run(...r);
    });

  it("reads canonical values", async () => {
    const c = await source(makeValues());
    const s = await schemaOf(c, "v");
    const rows = (await batches(c, s, 3)).flatMap((b) => b.records);
    expect(rows[0]).toEqual({
      id: 1,
      i: 2n ** 63n - 1n,
      r: 0.1,
      t: "héllo 🚢 日本 \u2028",
      b: Buffer.from([0, 1, 255]),
      u: 3,
      n: 1.5,
      flag: true,
    });
    expect(rows[1]).toMatchObject({ i: -(2n ** 63n), r: 1e308, t: "", u: 3.5, n: 100, flag: false });
    expect(rows[1]?.b).toEqual(Buffer.alloc(0));
    expect(rows[2]).toMatchObject({ i: 2n ** 53n + 1n, t: "nul\u0000inside", n: "1.10x", flag: null });
    // SQLite itself stores a REAL −0.0 as 0 (integral reals are kept as integers on disk)…
    expect(Object.is(rows[2]?.r, 0)).toBe(true);
    // …but keeps it in an untyped column.
    expect(Object.is(rows[2]?.u, -0)).toBe(true);
    expect(rows[3]).toMatchObject({ i: 42, r: Number.POSITIVE_INFINITY, u: Number.NEGATIVE_INFINITY, flag: 2 });
    expect(rows[4]).toMatchObject({ r: 3, t: "3", u: "text", n: 7 });
    expect(rows[6]).toMatchObject({ i: Number.MAX_SAFE_INTEGER, r: 5e-324, u: 2n ** 62n, n: 2n ** 62n });
    await c.close();
  });

  it("reads 0 and 1 of BOOLEAN columns as booleans, and keeps anything else", async () => {
    const path = makeDb("CREATE TABLE f (id INTEGER PRIMARY KEY, on_ BOOLEAN, r REAL)", (db) => {
      db.exec("INSERT INTO f VALUES (1, 1, NULL), (2, 0, -1.5), (3, 2, 1e300), (4, 'yes', NULL), (5, NULL, NULL)");
    });
    const c = await source(path);
    const rows = (await batches(c, await schemaOf(c, "f"), 2)).flatMap((b) => b.records);
    expect(rows.map((r) => r.on_)).toEqual([true, false, 2, "yes", null]);
    expect(rows[2]?.r).toBe(1e300);
    await c.close();
  });

  it("turns an integral REAL of an untyped column into an INTEGER: the value model has one number type", async () => {
    const from = makeDb("CREATE TABLE n (id INTEGER PRIMARY KEY, u)", (db) => {
      db.prepare("INSERT INTO n VALUES (1, ?), (2, ?), (3, ?)").run(3, 3n, 3.25);
    });
    const to = dbPath("untyped");
    const a = await source(from);
    const b = await target(to);
    await copyAll(a, b);
    await a.close();
    await b.close();
    const q = "SELECT typeof(u) FROM n ORDER BY id";
    expect(rowsOf(from, q).flat()).toEqual(["real", "integer", "real"]);
    expect(rowsOf(to, q).flat()).toEqual(["integer", "integer", "real"]);
  });

  it("copies every value to the same storage class and bytes", async () => {
    const from = makeValues();
    const to = dbPath("values-copy");
    const a = await source(from);
    const b = await target(to);
    await copyAll(a, b, 2);
    await a.close();
    await b.close();
    const q =
      "SELECT id, typeof(i), quote(i), typeof(r), quote(r), typeof(t), quote(t), typeof(b), quote(b), typeof(u), quote(u), typeof(n), quote(n), typeof(flag), quote(flag) FROM v ORDER BY id";
    const before = rowsOf(from, q);
    const after = rowsOf(to, q);
    expect(after).toHaveLength(before.length);
    for (let r = 0; r < before.length; r++) {
      const row = before[r] as unknown[];
      // None of the rows has an integral REAL in an untyped column (see the test above).
      expect(after[r]).toEqual(row);
    }
    // Integral floats in a REAL column stay REAL.
    expect(scalar(to, "SELECT typeof(r) FROM v WHERE id = 5")).toBe("real");
  });

  it("binds foreign values by column type", async () => {
    const path = dbPath("bind");
    const c = await target(path);
    const s: CollectionSchema = {
      name: "x",
      fields: [
        { name: "id", type: "integer", nullable: false },
        { name: "t", type: "text" },
        { name: "u", type: "any" },
        { name: "r", type: "float" },
        { name: "i", type: "integer" },
        { name: "flag", type: "boolean" },
        { name: "at", type: "datetime" },
        { name: "doc", type: "json" },
        { name: "bytes", type: "bytes" },
      ],
      primaryKey: ["id"],
    };
    const { schema } = await c.prepare(s);
    const rec: Row = {
      id: 1,
      t: 3,
      u: 3,
      r: 3,
      i: 3,
      flag: true,
      at: new Date("2024-05-06T07:08:09.010Z"),
      doc: { a: [1, "b"] },
      bytes: new Uint8Array([1, 2, 3]).subarray(1),
    };
    expect((await c.write(schema, [{ op: "insert", record: rec }])).failures).toEqual([]);
    expect((await c.write(schema, [{ op: "insert", record: { id: 2, u: 2.5, t: 0.5, r: -0 } }])).failures).toEqual([]);
    await c.close();
    const q = "SELECT typeof(t), t, typeof(u), typeof(r), typeof(i), typeof(flag), flag, at, doc, hex(bytes) FROM x";
    expect(rowsOf(path, `${q} WHERE id = 1`)[0]).toEqual([
      "text",
      "3",
      "integer",
      "real",
      "integer",
      "integer",
      1n,
      "2024-05-06T07:08:09.010Z",
      '{"a":[1,"b"]}',
      "0203",
    ]);
    expect(rowsOf(path, "SELECT typeof(u), t FROM x WHERE id = 2")[0]).toEqual(["real", "0.5"]);
  });
});

describe("write", () => {
  const PEOPLE = `CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT,
    nick TEXT DEFAULT 'anon',
    shout TEXT GENERATED ALWAYS AS (upper(name)) STORED
  );
  INSERT INTO people (id, email, name, nick) VALUES (1, 'a@x', 'ann', 'A'), (2, 'b@x', 'bob', 'B'), (3, 'c@x', 'cid', 'C');`;

  async function people(): Promise<{ path: string; c: SqliteConnector; s: CollectionSchema }> {
    const path = makeDb(PEOPLE);
    const c = await target(path);
    return { path, c, s: await schemaOf(c, "people") };
  }

  const all = (path: string) =>
    peek(path, (db) => db.prepare("SELECT id, email, name, nick, shout FROM people ORDER BY id").all());

  it("applies inserts, replaces and updates, and reports each refused op while the rest applies", async () => {
    const { path, c, s } = await people();
    const ops: WriteOp[] = [
      { op: "insert", record: { id: 4, email: "d@x", name: "dan", shout: "ignored: generated" } },
      { op: "insert", record: { id: 5, email: "a@x", name: "dup" } },
      { op: "replace", match: { id: 2 }, record: { id: 2, email: "b2@x", name: "bea" } },
      { op: "update", match: { id: 3 }, record: { name: "cyd" } },
      { op: "insert", record: { id: 6, email: null } },
      { op: "replace", match: { id: 99 }, record: { id: 99, email: "z@x" } },
      { op: "update", match: { email: "a@x" }, record: { nick: "Annie" } },
      { op: "insert", record: { id: 7, email: "g@x", nope: 1 } },
    ];
    const r = await c.write(s, ops);
    expect(r.failures.map((f) => f.index)).toEqual([1, 4, 5, 7]);
    expect(r.failures[0]?.reason).toBe("UNIQUE constraint failed: people.email");
    expect(r.failures[1]?.reason).toBe("NOT NULL constraint failed: people.email");
    expect(r.failures[2]?.reason).toMatch(/no record matches id/);
    expect(r.failures[3]?.reason).toMatch(/no column named nope/);
    await c.close();
    expect(all(path)).toEqual([
      { id: 1n, email: "a@x", name: "ann", nick: "Annie", shout: "ANN" },
      // A replace makes the record whole: the column it lacks gets its default.
      { id: 2n, email: "b2@x", name: "bea", nick: "anon", shout: "BEA" },
      // An update keeps what it does not set.
      { id: 3n, email: "c@x", name: "cyd", nick: "C", shout: "CYD" },
      { id: 4n, email: "d@x", name: "dan", nick: "anon", shout: "DAN" },
    ]);
  });

  it("finds the one refused record of a multi-row insert", async () => {
    const { path, c, s } = await people();
    const ops: WriteOp[] = Array.from({ length: 160 }, (_, i) => ({
      op: "insert" as const,
      record: { id: 10 + i, email: i === 57 ? "b@x" : `${i}@y`, name: `n${i}` },
    }));
    const r = await c.write(s, ops);
    expect(r.failures).toEqual([{ index: 57, reason: "UNIQUE constraint failed: people.email" }]);
    await c.close();
    expect(all(path)).toHaveLength(3 + 159);
  });

  it("does not enforce foreign keys, so collections and records load in any order", async () => {
    const path = makeDb(
      "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id), up INTEGER REFERENCES child (id))",
    );
    const c = await target(path);
    const s = await schemaOf(c, "child");
    const r = await c.write(s, [
      { op: "insert", record: { id: 1, parent_id: 7, up: 2 } },
      { op: "insert", record: { id: 2, parent_id: 8, up: 3 } },
    ]);
    expect(r.failures).toEqual([]);
    await c.close();
  });

  it("deletes by key in chunks, in order with the other ops; a key not there is no failure", async () => {
    const path = makeDb(
      `CREATE TABLE t (a INTEGER, b TEXT, v TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
       CREATE TABLE n (id INTEGER PRIMARY KEY, v TEXT)`,
      (db) => {
        const ins = db.prepare("INSERT INTO n (id, v) VALUES (?, ?)");
        for (let i = 1; i <= 1200; i++) ins.run(i, `v${i}`);
        db.prepare("INSERT INTO t VALUES (1, 'x', 'a'), (1, 'y', 'b'), (2, 'x', 'c')").run();
      },
    );
    const c = await target(path);
    const n = await schemaOf(c, "n");
    // Every odd id (and ids that are not there) deleted, then id 5 inserted again, then deleted again.
    const ops: WriteOp[] = [];
    for (let i = 1; i <= 1300; i += 2) ops.push({ op: "delete", match: { id: i } });
    ops.push({ op: "insert", record: { id: 5, v: "back" } }, { op: "delete", match: { id: 7 } });
    ops.push({ op: "insert", record: { id: 7, v: "back" } }, { op: "delete", match: { id: 5 } });
    ops.push({ op: "delete", match: {} }, { op: "delete", match: { nope: 1 } });
    const r = await c.write(n, ops);
    const last = ops.length - 1;
    expect(r.failures).toEqual([
      { index: last - 1, reason: "delete without match fields: nothing to match" },
      { index: last, reason: expect.stringMatching(/no such column: "?nope/) },
    ]);
    const t = await schemaOf(c, "t");
    const r2 = await c.write(t, [
      { op: "delete", match: { a: 1, b: "x" } },
      { op: "delete", match: { a: 2, b: "y" } },
      // The match fields in another order (another statement), the integer as a bigint.
      { op: "delete", match: { b: "x", a: 2n } },
    ]);
    expect(r2.failures).toEqual([]);
    await c.close();
    const ids = rowsOf(path, "SELECT id FROM n ORDER BY id").map((row) => Number(row[0]));
    expect(ids).toEqual([...Array.from({ length: 600 }, (_, k) => 2 * (k + 1)), 7].sort((x, y) => x - y));
    expect(rowsOf(path, "SELECT a, b FROM t")).toEqual([[1n, "y"]]);
  });

  it("refuses a delete of a record a foreign key still references, naming it, and applies the rest", async () => {
    const path = makeDb(
      `PRAGMA foreign_keys = OFF;
       CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
       CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id) ON DELETE CASCADE);
       CREATE TABLE node (id INTEGER PRIMARY KEY, up INTEGER REFERENCES node (id));
       CREATE TABLE orphan (id INTEGER PRIMARY KEY, gone_id INTEGER REFERENCES gone (id));
       INSERT INTO parent VALUES (1, 'one'), (2, 'two'), (3, 'three');
       INSERT INTO child VALUES (10, 1);
       INSERT INTO node VALUES (1, NULL), (2, 1), (3, 2), (4, 4), (5, NULL), (6, 5);
       INSERT INTO orphan VALUES (1, 1), (2, 2);`,
    );
    const c = await target(path);
    const parent = await schemaOf(c, "parent");
    const r = await c.write(parent, [
      { op: "delete", match: { id: 2 } },
      { op: "delete", match: { id: 1 } },
      { op: "insert", record: { id: 4, name: "four" } },
      { op: "delete", match: { id: 3 } },
    ]);
    expect(r.failures).toEqual([
      { index: 1, reason: "FOREIGN KEY constraint failed: child (parent_id) still references the record" },
    ]);
    // Deleting the children first lets the parent go (as a rollback undoes an import).
    const r2 = await c.write(await schemaOf(c, "child"), [{ op: "delete", match: { id: 10 } }]);
    expect(r2.failures).toEqual([]);
    const r3 = await c.write(parent, [{ op: "delete", match: { id: 1 } }]);
    expect(r3.failures).toEqual([]);
    // A tree: a node deleted with all that reference it in one statement, or one that references only itself, goes.
    const node = await schemaOf(c, "node");
    const r4 = await c.write(node, [
      { op: "delete", match: { id: 3 } },
      { op: "delete", match: { id: 2 } },
      { op: "delete", match: { id: 4 } },
      { op: "delete", match: { id: 5 } },
    ]);
    expect(r4.failures).toEqual([
      { index: 3, reason: "FOREIGN KEY constraint failed: node (up) still references the record" },
    ]);
    // A table whose parent table is not in the database (a subset was copied) deletes as any other.
    const r5 = await c.write(await schemaOf(c, "orphan"), [{ op: "delete", match: { id: 1 } }]);
    expect(r5.failures).toEqual([]);
    await c.close();
    expect(rowsOf(path, "SELECT id FROM parent ORDER BY id")).toEqual([[4n]]);
    expect(rowsOf(path, "SELECT id FROM child")).toEqual([]);
    expect(rowsOf(path, "SELECT id FROM node ORDER BY id")).toEqual([[1n], [5n], [6n]]);
    expect(rowsOf(path, "SELECT id FROM orphan")).toEqual([[2n]]);
  });

  it("saves the checkpoint with the batch, and neither when the batch fails", async () => {
    const { path, c, s } = await people();
    const db = new Database(path);
    db.exec(
      "CREATE TRIGGER boom BEFORE INSERT ON people WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END",
    );
    db.close();
    const r1 = await c.write(s, [{ op: "insert", record: { id: 4, email: "d@x" } }], {
      runId: "run1",
      id: "run1",
      entry: () => ({ id: "run1", startedAt: "2026-01-01T00:00:00Z", step: 1 }),
    });
    expect(r1.failures).toEqual([]);
    // Durable and visible to another connection once write resolved.
    expect(scalar(path, "SELECT count(*) FROM people")).toBe(4n);
    expect(await c.journal().get("run1")).toEqual({ id: "run1", startedAt: "2026-01-01T00:00:00Z", step: 1 });

    const err = await errorOf(
      c.write(
        s,
        [
          { op: "insert", record: { id: 5, email: "e@x" } },
          { op: "insert", record: { id: 6, email: "f@x", name: "boom" } },
        ],
        { runId: "run1", id: "run1", entry: () => ({ id: "run1", startedAt: "2026-01-01T00:00:00Z", step: 2 }) },
      ),
    );
    expect(isFerryError(err, "E_WRITE")).toBe(true);
    expect((err as Error).message).toMatch(/boom/);
    expect(scalar(path, "SELECT count(*) FROM people")).toBe(4n);
    expect(await c.journal().get("run1")).toMatchObject({ step: 1 });
    await c.close();
  });

  it("writes in WAL mode and puts the journal mode back on close", async () => {
    const { path, c, s } = await people();
    await c.write(s, [{ op: "insert", record: { id: 4, email: "d@x" } }]);
    expect(scalar(path, "PRAGMA journal_mode")).toBe("wal");
    expect(scalar(path, "SELECT value FROM _ferry_sqlite WHERE name = 'journal_mode'")).toBe("delete");
    await c.close();
    expect(scalar(path, "PRAGMA journal_mode")).toBe("delete");
    expect(existsSync(`${path}-wal`)).toBe(false);
    expect(rowsOf(path, "SELECT name FROM sqlite_master WHERE name = '_ferry_sqlite'")).toEqual([]);

    // What a run killed while writing leaves: WAL on, the mode to go back to saved.
    const killed = makeDb(
      `CREATE TABLE t (id INTEGER PRIMARY KEY); PRAGMA journal_mode = WAL;
       CREATE TABLE _ferry_sqlite (name TEXT PRIMARY KEY, value TEXT NOT NULL);
       INSERT INTO _ferry_sqlite VALUES ('journal_mode', 'truncate');`,
    );
    const resumed = await target(killed);
    expect((await resumed.discover()).map((x) => x.name)).toEqual(["t"]);
    await resumed.write(await schemaOf(resumed, "t"), [{ op: "insert", record: { id: 1 } }]);
    await resumed.close();
    // Only WAL persists in the file; out of it, a new connection starts in the default mode.
    expect(scalar(killed, "PRAGMA journal_mode")).toBe("delete");
    expect(existsSync(`${killed}-wal`)).toBe(false);
    expect(rowsOf(killed, "SELECT name FROM sqlite_master WHERE name = '_ferry_sqlite'")).toEqual([]);

    const walPath = makeDb("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY)");
    const w = await target(walPath);
    await w.write(await schemaOf(w, "t"), [{ op: "insert", record: { id: 1 } }]);
    await w.close();
    expect(scalar(walPath, "PRAGMA journal_mode")).toBe("wal");
  });
});

describe("prepare and finish", () => {
  it("recreates tables, indexes and triggers exactly from the source's own DDL", async () => {
    const from = makeDb(SHOP, fillShop);
    const to = dbPath("shop-copy");
    const a = await source(from);
    const b = await target(to);
    await copyAll(a, b);
    // finish is idempotent
    for (const s of await a.discover()) await b.finish(s);
    await a.close();
    await b.close();
    const q = `SELECT type, name, tbl_name, sql FROM sqlite_master
      WHERE tbl_name NOT LIKE '\\_ferry%' ESCAPE '\\' AND type <> 'view' ORDER BY type, name`;
    expect(rowsOf(to, q)).toEqual(rowsOf(from, q));
    for (const t of ["teams", "members", "tags", "links", "counters", "sqlite_sequence"]) {
      const all = `SELECT * FROM ${t} ORDER BY 1, 2`;
      expect(rowsOf(to, all)).toEqual(rowsOf(from, all));
    }
  });

  it("leaves an existing table as it is", async () => {
    const path = makeDb("CREATE TABLE t (id INTEGER PRIMARY KEY, extra TEXT)");
    const c = await target(path);
    const s: CollectionSchema = { name: "t", fields: [{ name: "id", type: "integer" }], primaryKey: ["id"] };
    const r = await c.prepare(s);
    expect(r.created).toBe(false);
    expect(r.schema.fields.map((f) => f.name)).toEqual(["id", "extra"]);
    await c.close();
  });

  it("generates tables from a foreign schema and builds its indexes in finish", async () => {
    const path = dbPath("foreign");
    const c = await target(path);
    const s: CollectionSchema = {
      name: "orders",
      fields: [
        { name: "tenant", type: "text", nativeType: "character varying(40)", nullable: false },
        { name: "no", type: "integer", nativeType: "bigint", nullable: false },
        { name: "uid", type: "uuid", nativeType: "uuid" },
        { name: "total", type: "decimal", nativeType: "numeric(12,2)", precision: 12, scale: 2 },
        { name: "ratio", type: "float", nativeType: "double precision" },
        { name: "paid", type: "boolean", nativeType: "tinyint(1)" },
        { name: "at", type: "datetime", nativeType: "timestamp with time zone" },
        { name: "day", type: "date" },
        { name: "doc", type: "json", nativeType: "jsonb" },
        { name: "raw", type: "bytes", nativeType: "bytea" },
        { name: "anything", type: "any" },
        { name: "weird", type: "text", nativeType: "text[]" },
      ],
      primaryKey: ["tenant", "no"],
      uniqueKeys: [["uid"]],
      foreignKeys: [
        { fields: ["tenant"], references: { collection: "tenants", fields: ["name"] }, onDelete: "cascade" },
      ],
      indexes: [{ name: "orders_at", fields: ["at", "paid"], unique: false }],
    };
    const r = await c.prepare(s);
    expect(r.created).toBe(true);
    expect(r.schema.fields).toEqual([
      { name: "tenant", type: "text", nativeType: "character varying(40)", nullable: false, maxLength: 40 },
      { name: "no", type: "integer", nativeType: "bigint", nullable: false },
      { name: "uid", type: "uuid", nativeType: "uuid", nullable: true },
      { name: "total", type: "decimal", nativeType: "numeric(12,2)", nullable: true, precision: 12, scale: 2 },
      { name: "ratio", type: "float", nativeType: "double precision", nullable: true },
      { name: "paid", type: "boolean", nativeType: "BOOLEAN", nullable: true },
      { name: "at", type: "datetime", nativeType: "timestamp with time zone", nullable: true, timezone: true },
      { name: "day", type: "date", nativeType: "DATE", nullable: true },
      { name: "doc", type: "json", nativeType: "jsonb", nullable: true },
      { name: "raw", type: "bytes", nativeType: "BLOB", nullable: true },
      { name: "anything", type: "any", nullable: true },
      { name: "weird", type: "text", nativeType: "TEXT", nullable: true },
    ]);
    expect(r.schema.primaryKey).toEqual(["tenant", "no"]);
    expect(r.schema.uniqueKeys).toEqual([["uid"]]);
    expect(r.schema.foreignKeys).toEqual([
      { fields: ["tenant"], references: { collection: "tenants", fields: ["name"] }, onDelete: "CASCADE" },
    ]);
    expect(r.schema.indexes).toEqual([]);
    await c.finish(s);
    await c.finish(s);
    expect((await schemaOf(c, "orders")).indexes).toEqual(s.indexes);
    await c.close();
  });

  it("generates the table when the native DDL does not fit the collection", async () => {
    const c = await target(dbPath("renamed"));
    const s: CollectionSchema = {
      name: "renamed",
      fields: [{ name: "id", type: "integer", nativeType: "INTEGER" }],
      primaryKey: ["id"],
      native: { engine: "sqlite", ddl: ["CREATE TABLE original (id INTEGER PRIMARY KEY)"] },
    };
    const r = await c.prepare(s);
    expect(r.created).toBe(true);
    expect((await c.discover()).map((x) => x.name)).toEqual(["renamed"]);
    await c.close();
  });

  it("runs nothing but CREATE INDEX and CREATE TRIGGER from native DDL", async () => {
    const c = await target(dbPath("evil"));
    const s: CollectionSchema = {
      name: "t",
      fields: [{ name: "id", type: "integer" }],
      primaryKey: ["id"],
      native: { engine: "sqlite", ddl: ["CREATE TABLE t (id INTEGER PRIMARY KEY)", "DROP TABLE t"] },
    };
    await c.prepare(s);
    expect(isFerryError(await errorOf(c.finish(s)), "E_UNSUPPORTED")).toBe(true);
    expect(await c.discover()).toHaveLength(1);
    await c.close();
  });
});

describe("lookup", () => {
  it("finds existing records by composite keys, in chunks, keyed by keyString", async () => {
    const path = makeDb("CREATE TABLE t (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID", (db) => {
      const ins = db.prepare("INSERT INTO t VALUES (?, ?, ?)");
      for (let i = 0; i < 3000; i += 2) ins.run(`k${i % 7}`, i, i * 10);
    });
    const c = await target(path);
    const s = await schemaOf(c, "t");
    const keys = Array.from({ length: 2500 }, (_, i) => [`k${i % 7}`, i]);
    const found = await c.lookup(s, ["a", "b"], keys);
    expect(found.size).toBe(1250);
    expect(found.get(keyString(["k4", 4]))).toEqual({ a: "k4", b: 4, v: 40 });
    expect(found.has(keyString(["k3", 3]))).toBe(false);
    // A key in another JS form still matches the column's value, and is reported as given.
    const loose = await c.lookup(s, ["b"], [[2n], [4]]);
    expect([...loose.keys()]).toEqual([keyString([2]), keyString([4])]);
    const none = await c.lookup({ ...s, name: "ghost" }, ["a"], [["x"]]);
    expect(none.size).toBe(0);
    await c.close();
  });

  it("matches by a natural key of another type affinity", async () => {
    const path = makeDb("CREATE TABLE u (id INTEGER PRIMARY KEY, code TEXT, flag BOOLEAN)", (db) => {
      db.exec("INSERT INTO u VALUES (1, '5', 1), (2, 'x', 0)");
    });
    const c = await target(path);
    const s = await schemaOf(c, "u");
    const found = await c.lookup(s, ["code"], [[5], ["x"], ["y"]]);
    expect([...found.keys()]).toEqual([keyString([5]), keyString(["x"])]);
    expect(found.get(keyString([5]))).toEqual({ id: 1, code: "5", flag: true });
    const byFlag = await c.lookup(s, ["flag"], [[false]]);
    expect(byFlag.get(keyString([false]))?.id).toBe(2);
    await c.close();
  });
});

describe("journal", () => {
  it("saves, gets and lists entries newest first", async () => {
    const path = dbPath("journal");
    const c = await target(path);
    const j = c.journal();
    expect(await j.list()).toEqual([]);
    expect(await j.get("x")).toBeUndefined();
    await j.save("a", { id: "a", startedAt: "2026-01-01T00:00:00Z" });
    await j.save("c", { id: "c", startedAt: "2026-03-01T00:00:00Z" });
    await j.save("b", { id: "b", startedAt: "2026-02-01T00:00:00Z" });
    await j.save("a", { id: "a", startedAt: "2026-01-01T00:00:00Z", status: "done" });
    expect(await j.get("a")).toEqual({ id: "a", startedAt: "2026-01-01T00:00:00Z", status: "done" });
    expect(((await j.list()) as { id: string }[]).map((e) => e.id)).toEqual(["c", "b", "a"]);
    expect(await c.discover()).toEqual([]);
    await c.close();

    const ro = await source(path);
    expect(await ro.journal().list()).toHaveLength(3);
    await ro.close();
  });

  it("finds nothing in a source without a journal", async () => {
    const c = await source(makeDb("CREATE TABLE t (x)"));
    expect(await c.journal().list()).toEqual([]);
    expect(await c.journal().get("any")).toBeUndefined();
    await c.close();
  });
});

describe("undo log", () => {
  const TABLE = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)";

  /** A checkpoint of `id` (run `runId`) whose `undo` gives a row of `seq` (none when undefined). */
  function undoCheckpoint(runId: string, id: string, seq: number | undefined, entry: unknown = { seq }): Checkpoint {
    return {
      runId,
      id,
      entry: (result) => ({ id, startedAt: "2026-01-01T00:00:00Z", failed: result.failures.length }),
      undo: () => (seq === undefined ? undefined : { runId, seq, entry }),
    };
  }

  async function undoOf(j: JournalStore, runId: string): Promise<UndoRow[]> {
    const out: UndoRow[] = [];
    for await (const row of j.undo(runId)) out.push(row);
    return out;
  }

  async function table(): Promise<{ path: string; c: SqliteConnector; s: CollectionSchema }> {
    const path = makeDb(TABLE);
    const c = await target(path);
    return { path, c, s: await schemaOf(c, "t") };
  }

  it("saves a batch's undo row with its checkpoint; undo() yields it, list() never does, read-only too", async () => {
    const { path, c, s } = await table();
    const { undo: _, ...plain } = undoCheckpoint("r1", "r1", undefined);
    await c.write(s, [{ op: "insert", record: { id: 1, v: "a" } }], plain);
    // No checkpoint asked for an undo log yet: no undo table either.
    expect(scalar(path, "SELECT count(*) FROM sqlite_master WHERE name = '_ferry_undo'")).toBe(0n);
    // One that asks, but whose batch changed nothing to undo.
    await c.write(s, [], undoCheckpoint("r1", "r1", undefined));
    expect(scalar(path, "SELECT count(*) FROM _ferry_undo")).toBe(0n);
    const entry = { added: [[2]], prior: [{ id: 1, v: "a" }], text: "żółć 🚢 'q' \"dq\" \\ \u0000 \u2028" };
    const calls: string[] = [];
    const r = await c.write(
      s,
      [
        { op: "insert", record: { id: 2, v: "b" } },
        { op: "insert", record: { id: 1 } },
      ],
      {
        runId: "r1",
        id: "r1",
        entry: (result) => {
          calls.push("entry");
          return { id: "r1", startedAt: "2026-01-01T00:00:00Z", failed: result.failures.length };
        },
        undo: (result) => {
          calls.push(`undo ${result.failures.length}`);
          return { runId: "r1", seq: 7, entry };
        },
      },
    );
    expect(r.failures.map((f) => f.index)).toEqual([1]);
    expect(calls).toEqual(["entry", "undo 1"]);
    expect(await undoOf(c.journal(), "r1")).toEqual([{ runId: "r1", seq: 7, entry }]);
    expect(await undoOf(c.journal(), "r2")).toEqual([]);
    expect(await c.journal().list()).toEqual([{ id: "r1", startedAt: "2026-01-01T00:00:00Z", failed: 1 }]);
    expect((await c.discover()).map((x) => x.name)).toEqual(["t"]);
    await c.close();

    const ro = await source(path);
    expect(await undoOf(ro.journal(), "r1")).toEqual([{ runId: "r1", seq: 7, entry }]);
    expect(await ro.journal().list()).toHaveLength(1);
    expect(isFerryError(await errorOf(ro.journal().forget("r1")), "E_UNSUPPORTED")).toBe(true);
    await ro.close();
  });

  it("finds no undo rows, and forgets nothing, where there is no journal; creates no file", async () => {
    const path = dbPath("no-undo");
    const c = await target(path);
    expect(await undoOf(c.journal(), "r1")).toEqual([]);
    await c.journal().forget("r1");
    expect(existsSync(path)).toBe(false);
    await c.close();
    const ro = await source(makeDb(TABLE));
    expect(await undoOf(ro.journal(), "r1")).toEqual([]);
    await ro.close();
  });

  it("yields a run's rows highest seq first, a page at a time, large rows included", async () => {
    const { c, s } = await table();
    const big = "x".repeat(3_000_000);
    const seqs = Array.from({ length: 130 }, (_, i) => i * 2);
    for (const seq of seqs) {
      const entry = { seq, pad: seq % 40 === 0 ? big : "" };
      await c.write(s, [{ op: "insert", record: { id: seq + 1 } }], undoCheckpoint("run", "run/t/0", seq, entry));
      // Another run whose id the first run's is a prefix of, interleaved.
      if (seq % 10 === 0) {
        await c.write(s, [{ op: "insert", record: { id: seq + 2 } }], undoCheckpoint("run1", "run1", seq + 1));
      }
    }
    const rows = await undoOf(c.journal(), "run");
    expect(rows.map((r) => r.seq)).toEqual([...seqs].reverse());
    expect(rows.every((r) => r.runId === "run" && (r.entry as { seq: number }).seq === r.seq)).toBe(true);
    expect((rows.find((r) => r.seq === 80)!.entry as { pad: string }).pad).toBe(big);
    expect((await undoOf(c.journal(), "run1")).map((r) => r.seq)).toEqual(
      seqs
        .filter((q) => q % 10 === 0)
        .map((q) => q + 1)
        .reverse(),
    );
    // Read lazily: rows forgotten after the first one was yielded are not yielded.
    let seen = 0;
    for await (const _ of c.journal().undo("run")) {
      if (seen++ === 0) await c.journal().forget("run");
    }
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThan(seqs.length);
    await c.close();
  });

  it("a batch whose transaction fails leaves no undo row, nor its records or checkpoint", async () => {
    const { path, c, s } = await table();
    const db = new Database(path);
    db.exec("CREATE TRIGGER boom BEFORE INSERT ON t WHEN NEW.v = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END");
    db.close();
    await c.write(s, [{ op: "insert", record: { id: 1 } }], undoCheckpoint("r", "r", 1));
    // The ops fail the transaction.
    const boom = await errorOf(
      c.write(s, [{ op: "insert", record: { id: 2, v: "boom" } }], undoCheckpoint("r", "r/t/0", 2)),
    );
    expect(isFerryError(boom, "E_WRITE")).toBe(true);
    // The undo row itself fails it, after the ops and the checkpoint were written: a seq already logged.
    const dup = await errorOf(c.write(s, [{ op: "insert", record: { id: 3 } }], undoCheckpoint("r", "r/t/1", 1)));
    expect(isFerryError(dup, "E_WRITE")).toBe(true);
    // `undo` throws.
    const thrown = await errorOf(
      c.write(s, [{ op: "insert", record: { id: 4 } }], {
        ...undoCheckpoint("r", "r/t/2", 4),
        undo: () => {
          throw new Error("no undo");
        },
      }),
    );
    expect((thrown as Error).message).toMatch(/no undo/);
    expect(rowsOf(path, "SELECT id FROM t")).toEqual([[1n]]);
    expect((await undoOf(c.journal(), "r")).map((r) => r.seq)).toEqual([1]);
    expect(await c.journal().list()).toEqual([{ id: "r", startedAt: "2026-01-01T00:00:00Z", failed: 0 }]);
    await c.close();
  });

  it("forget removes a run's entry, its ranges' rows and undo rows, and nothing of other runs", async () => {
    const { c, s } = await table();
    const runs = ["run-1", "run-10", "run-1x", "a_b", "aXb", "50%", "50%x", "5000", "b\\c", "b\\\\c"];
    let id = 0;
    for (const run of runs) {
      for (const part of [run, `${run}/t/0`, `${run}/t/1`]) {
        id++;
        await c.write(s, [{ op: "insert", record: { id } }], undoCheckpoint(run, part, id));
      }
    }
    const j = c.journal();
    const ids = async () => ((await j.list()) as { id: string }[]).map((e) => e.id).sort();
    const all = await ids();
    expect(all).toHaveLength(runs.length * 3);
    for (const gone of ["run-1", "a_b", "50%", "b\\c"]) {
      await j.forget(gone);
      expect(await undoOf(j, gone)).toEqual([]);
    }
    await j.forget("never-there");
    const kept = runs.filter((r) => !["run-1", "a_b", "50%", "b\\c"].includes(r));
    expect(await ids()).toEqual(all.filter((x) => kept.some((r) => x === r || x.startsWith(`${r}/`))));
    for (const run of kept) {
      expect(await undoOf(j, run)).toHaveLength(3);
      expect(await j.get(run)).toBeDefined();
    }
    expect(await j.get("run-1")).toBeUndefined();
    await c.close();
  });

  it("refuses an undo log on the bulk path (E_INTERNAL), writing nothing", async () => {
    const from = makeDb(`${TABLE}; INSERT INTO t VALUES (1, 'a'), (2, 'b')`);
    const to = makeDb(TABLE);
    const src = await source(from);
    const dst = await target(to);
    const s = await schemaOf(src, "t");
    expect(dst.canBulkCopyFrom(src, s)).toBe(true);
    const err = await errorOf(
      dst.bulkCopyFrom(src, s, { limit: 10 }, () => ({ ...undoCheckpoint("r", "r", 0), entry: () => ({}) })),
    );
    expect(isFerryError(err, "E_INTERNAL")).toBe(true);
    expect(rowsOf(to, "SELECT count(*) FROM t")).toEqual([[0n]]);
    expect(await dst.journal().list()).toEqual([]);
    await src.close();
    await dst.close();
  });
});

describe("in-memory databases", () => {
  it("work as scratch targets", async () => {
    const m = await SqliteConnector.open("sqlite::memory:", { write: true });
    const s: CollectionSchema = {
      name: "t",
      fields: [
        { name: "id", type: "integer", nullable: false },
        { name: "v", type: "text" },
      ],
      primaryKey: ["id"],
    };
    const { schema } = await m.prepare(s);
    await m.write(schema, [{ op: "insert", record: { id: 1, v: "x" } }]);
    expect((await batches(m, schema, 10))[0]?.records).toEqual([{ id: 1, v: "x" }]);
    await m.close();
    mkdirSync(join(tmp, "unused"), { recursive: true });
  });
});
