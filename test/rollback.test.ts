/**
 * Rollback of an import (issue 6): for every engine and conflict mode, importing a package
 * into a target that already holds (other) data and rolling it back leaves the target as it
 * was, compared record by record; records changed since the import stop the rollback (listed)
 * unless forced; an interrupted rollback resumes; forget removes the run and its log.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import { history } from "../src/core/history.js";
import type { ConflictMode } from "../src/core/journal.js";
import { openConnector } from "../src/core/registry.js";
import { forget, rollback } from "../src/core/rollback.js";
import type { Row } from "../src/core/values.js";
import { exportPackage, importPackage, validatePackage } from "../src/package/package.js";
import { canonicalRecords, ensurePgDatabase, myExec, pgQuery, readAll, tempDir } from "./helpers.js";
import { client, startRedis, type TestRedis } from "./redis-server.js";

const SHOP = `sqlite:${join(import.meta.dirname, "..", "examples", "quickstart", "shop.db")}`;
const PG_DB = "ferry_test";
const tag = randomBytes(3).toString("hex");
const schemas: string[] = [];
const databases: string[] = [];
const tmp = tempDir();
const pgExec = (sql: string) => pgQuery(PG_DB, sql);
let redis: TestRedis;
let n = 0;
const file = (name: string): string => join(tmp.dir, `${n++}-${name}`);

/** A fresh, empty instance of `engine`. */
async function fresh(engine: string): Promise<string> {
  const id = `${tag}_${n++}`;
  switch (engine) {
    case "sqlite":
      return `sqlite:${file("t.db")}`;
    case "files":
      return `${file("dir")}/`;
    case "postgres": {
      const s = `rb_${id}`;
      schemas.push(s);
      await pgExec(`CREATE SCHEMA ${s}`);
      return `postgres://postgres@127.0.0.1:5432/${PG_DB}?schema=${s}`;
    }
    case "mysql": {
      const d = `ferry_rb_${id}`;
      databases.push(d);
      await myExec(`CREATE DATABASE ${d} CHARACTER SET utf8mb4`);
      return `mysql://root@127.0.0.1:3306/${d}`;
    }
    default:
      throw new Error(engine);
  }
}

beforeAll(async () => {
  await ensurePgDatabase(PG_DB);
  redis = await startRedis(64);
});

afterAll(async () => {
  for (const s of schemas) await pgExec(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => {});
  for (const d of databases) await myExec(`DROP DATABASE IF EXISTS ${d}`).catch(() => {});
  await redis?.stop();
  tmp.cleanup();
});

const canonical = canonicalRecords;

/** Applies ops to a collection of an instance (to make the target differ from the package). */
async function change(
  url: string,
  collection: string,
  ops: Parameters<Awaited<ReturnType<typeof openConnector>>["write"]>[1],
): Promise<void> {
  const c = await openConnector(url, { write: true });
  try {
    const schema = (await c.discover()).find((s) => s.name === collection);
    if (!schema) throw new Error(`no ${collection} at ${url}`);
    const r = await c.write(schema, ops);
    if (r.failures.length > 0) throw new Error(JSON.stringify(r.failures));
    await c.finish(schema);
  } finally {
    await c.close();
  }
}

let pkg: string;
beforeAll(async () => {
  pkg = file("shop.ferry");
  await exportPackage({ from: SHOP, output: pkg, collections: ["customers", "products"] });
});

/**
 * A target holding the shop's customers and products, but: customers 41–50 missing (an import
 * adds them), customers 1–10 with other names (overwrite and merge change them), and a customer
 * of its own (id 1000) that the package does not have.
 */
async function seededTarget(engine: string): Promise<string> {
  const to = await fresh(engine);
  await copy({ from: SHOP, to, collections: ["customers", "products"] });
  await change(to, "customers", [
    ...Array.from({ length: 10 }, (_, i) => ({ op: "delete" as const, match: { id: 41 + i } })),
    ...Array.from({ length: 10 }, (_, i) => ({
      op: "update" as const,
      match: { id: 1 + i },
      record: { name: `Local ${i + 1}` },
    })),
    {
      op: "insert" as const,
      record: {
        id: 1000,
        email: "own@x.io",
        name: "Own",
        loyalty_points: 1,
        joined_at: new Date("2024-01-01T00:00:00Z"),
      },
    },
  ]);
  return to;
}

const ENGINES = ["sqlite", "postgres", "mysql", "files"] as const;
const MODES: ConflictMode[] = ["skip", "overwrite", "merge"];

describe("rollback restores the target exactly", () => {
  for (const engine of ENGINES) {
    for (const mode of MODES) {
      it(`${engine}, --conflict ${mode}`, async () => {
        const to = await seededTarget(engine);
        const before = await canonical(to);
        const r = await importPackage({ input: pkg, to, conflict: mode });
        expect(r.status).toBe("done");
        expect(r.collections.customers?.copied).toBe(10);
        const after = await canonical(to);
        if (mode !== "skip") expect(after).not.toEqual(before);
        const rb = await rollback({ at: to, id: r.runId });
        expect(rb.removed).toBe(10);
        expect(rb.restored).toBe(mode === "skip" ? 0 : 50 - 10 + 20); // customers 1–40 and the 20 products
        expect(await canonical(to)).toEqual(before);
        // The import is marked, the rollback recorded; a second rollback is refused.
        const runs = await history({ at: to });
        expect(runs.find((x) => x.id === r.runId)?.rolledBack?.by).toBe(rb.runId);
        expect(runs.find((x) => x.id === rb.runId)).toMatchObject({
          command: "rollback",
          status: "done",
          undoes: r.runId,
        });
        const again = await rollback({ at: to, id: r.runId }).catch((e: unknown) => e);
        expect(isFerryError(again, "E_USAGE")).toBe(true);
      });
    }
  }

  it("an import into an empty target (fail mode) is rolled back to empty", async () => {
    const to = await fresh("sqlite");
    const r = await importPackage({ input: pkg, to });
    const rb = await rollback({ at: to, id: r.runId });
    expect(rb.removed).toBe(70);
    const left = await readAll(to);
    expect(left.customers ?? []).toEqual([]);
    expect(left.products ?? []).toEqual([]);
  });

  it("Redis: keys added, overwritten (TTLs included) and merged come back as they were", async () => {
    const from = await redis.fresh();
    const to = await redis.fresh();
    const s = client(from);
    const t = client(to);
    try {
      await s.hset("h:1", { a: "new", b: "new" });
      await s.set("s:1", "new");
      await s.set("s:2", "added");
      await t.hset("h:1", { a: "old", c: "kept" });
      await t.pexpireat("h:1", Date.now() + 3_600_000);
      await t.set("s:1", "old");
      await t.set("own", "mine");
    } finally {
      s.disconnect();
    }
    const out = file("redis.ferry");
    await exportPackage({ from, output: out });
    for (const mode of ["overwrite", "merge"] as ConflictMode[]) {
      const before = await canonical(to);
      const ttl = await t.pexpiretime("h:1");
      const r = await importPackage({ input: out, to, conflict: mode });
      expect(await t.get("s:2")).toBe("added");
      await rollback({ at: to, id: r.runId });
      expect(await canonical(to)).toEqual(before);
      expect(await t.exists("s:2")).toBe(0);
      expect(Math.abs((await t.pexpiretime("h:1")) - ttl)).toBeLessThan(1000);
    }
    t.disconnect();
  });
});

describe("rollback edge cases", () => {
  it("files: the data file itself is rewritten, not only Ferry's view of it", async () => {
    const to = await seededTarget("files");
    const path = join(to, "customers.ndjson");
    const lines = () => readFileSync(path, "utf8").trim().split("\n").length;
    const before = lines();
    const r = await importPackage({ input: pkg, to, conflict: "overwrite" });
    await rollback({ at: to, id: r.runId });
    expect(lines()).toBe(before);
    expect(readFileSync(path, "utf8")).not.toMatch(/"id":45,/);
  });

  it("files: a resumed rollback finishes the collections the interrupted one had done", async () => {
    const to = await seededTarget("files");
    const before = await canonical(to);
    const r = await importPackage({ input: pkg, to, conflict: "overwrite", batchSize: 10 });
    const controller = new AbortController();
    let rows = 0;
    await rollback({
      at: to,
      id: r.runId,
      signal: controller.signal,
      onEvent: (e) => {
        // The products' rows come first (newest); stop inside the customers'.
        if (e.type === "progress" && ++rows === 4) controller.abort();
      },
    }).catch(() => {});
    await rollback({ at: to, id: r.runId, resume: true });
    expect(await canonical(to)).toEqual(before);
    expect(readdirSync(to).filter((f) => f.includes("pending"))).toEqual([]);
  });

  it("an overwrite matched on a natural key that changed the primary key is put back under the old one", async () => {
    const to = await fresh("sqlite");
    await copy({ from: SHOP, to, collections: ["customers"] });
    // The target knows customer 5's email under id 905.
    const c5 = ((await readAll(SHOP)).customers ?? []).find((c) => c.id === 5) as Row;
    await change(to, "customers", [
      { op: "delete", match: { id: 5 } },
      { op: "insert", record: { ...c5, id: 905, name: "Local five" } },
    ]);
    const before = await canonical(to);
    const r = await importPackage({
      input: pkg,
      to,
      collections: ["customers"],
      conflict: "overwrite",
      key: ["email"],
    });
    expect(r.collections.customers).toMatchObject({ overwritten: 50 });
    expect((await readAll(to)).customers?.some((c) => c.id === 905)).toBe(false);
    await rollback({ at: to, id: r.runId });
    expect(await canonical(to)).toEqual(before);
  });

  it("a parent deleted before a child that references it (a later batch) is deleted once the child is gone", async () => {
    const src = `sqlite:${file("tree.db")}`;
    const db = new Database(src.slice("sqlite:".length));
    db.exec(`CREATE TABLE staff (id INTEGER PRIMARY KEY, boss INTEGER REFERENCES staff(id), name TEXT);
      INSERT INTO staff VALUES (1, 3, 'a'), (2, 3, 'b'), (3, NULL, 'boss');`);
    db.close();
    const out = file("tree.ferry");
    await exportPackage({ from: src, output: out });
    const to = await fresh("sqlite");
    const r = await importPackage({ input: out, to, batchSize: 1 });
    const rb = await rollback({ at: to, id: r.runId });
    expect(rb).toMatchObject({ removed: 3, failures: [] });
    expect((await readAll(to)).staff ?? []).toEqual([]);
  });

  it("forget refuses a run whose rollback is unfinished", async () => {
    const to = await seededTarget("sqlite");
    const r = await importPackage({ input: pkg, to, conflict: "overwrite", batchSize: 10 });
    const controller = new AbortController();
    await rollback({
      at: to,
      id: r.runId,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress") controller.abort();
      },
    }).catch(() => {});
    const err = await forget({ at: to, id: r.runId }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_DIRTY")).toBe(true);
    expect((err as Error).message).toMatch(/has an unfinished rollback/);
    await rollback({ at: to, id: r.runId, resume: true });
  });
});

describe("validate --against previews an import", () => {
  it("counts per collection the records new, identical, and changed (to overwrite), writing nothing", async () => {
    const to = await seededTarget("postgres");
    const before = await canonical(to);
    const { preview } = await validatePackage({ input: pkg, against: to, conflict: "overwrite" });
    expect(preview.collections.customers).toMatchObject({ copied: 10, overwritten: 40, identical: 30 });
    expect(preview.collections.products).toMatchObject({ copied: 0, overwritten: 20, identical: 20 });
    expect(await canonical(to)).toEqual(before);
  });
});

describe("records changed since the import", () => {
  it("stop the rollback, listed, until --force; then everything is restored", async () => {
    const to = await seededTarget("sqlite");
    const before = await canonical(to);
    const r = await importPackage({ input: pkg, to, conflict: "overwrite" });
    await change(to, "customers", [
      { op: "update", match: { id: 2 }, record: { name: "Edited after the import" } },
      { op: "delete", match: { id: 45 } },
    ]);
    const changed = await canonical(to);
    const err = await rollback({ at: to, id: r.runId }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_CONFLICT")).toBe(true);
    expect((err as Error).message).toMatch(/2 record\(s\) written by run .* changed since, nothing was rolled back/);
    expect((err as Error).message).toMatch(/customers id=2: changed since the run wrote it/);
    expect((err as Error).message).toMatch(/customers id=45: removed since the run wrote it/);
    expect(await canonical(to)).toEqual(changed);
    const dry = await rollback({ at: to, id: r.runId, dryRun: true, force: true });
    expect(dry).toMatchObject({ dryRun: true, removed: 10, restored: 60, changedCount: 2 });
    expect(await canonical(to)).toEqual(changed);
    await rollback({ at: to, id: r.runId, force: true });
    expect(await canonical(to)).toEqual(before);
  });
});

describe("an import whose connection is killed mid-way", () => {
  it("is recorded as unfinished, finished by --resume, and undone by rollback (PostgreSQL)", async () => {
    const db = "ferry_kill_test";
    await ensurePgDatabase(db);
    const schema = `kill_${tag}`;
    await pgQuery(db, `DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
    const to = `postgres://postgres@127.0.0.1:5432/${db}?schema=${schema}`;
    try {
      await copy({ from: SHOP, to, collections: ["customers", "products"] });
      await change(to, "customers", [{ op: "update", match: { id: 1 }, record: { name: "Local" } }]);
      const before = await canonical(to);
      let killed: Promise<unknown> | undefined;
      const err = await importPackage({
        input: pkg,
        to,
        conflict: "overwrite",
        batchSize: 10,
        jobs: 1,
        onEvent: (e) => {
          // Every connection to the database but the killer's, as a failing server would.
          if (e.type === "progress" && killed === undefined) {
            killed = pgQuery(
              db,
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
              [db],
            );
          }
        },
      }).catch((e: unknown) => e);
      await killed;
      // A Ferry error naming the lost connection, not an internal one.
      expect(isFerryError(err) && err.code !== "E_INTERNAL", String(err)).toBe(true);
      const [run] = await history({ at: to });
      expect(run).toMatchObject({ command: "import" });
      // "running" when the final save could not reach the server either (the connection is gone).
      expect(["running", "failed", "interrupted"]).toContain(run?.status);
      expect(Object.values(run?.collections ?? {}).some((c) => !c.done)).toBe(true);
      const done = await importPackage({ input: pkg, to, conflict: "overwrite", resume: true });
      expect(done.runId).toBe(run?.id);
      expect(done.status).toBe("done");
      // Every record once, each the package's (customer 1 overwritten).
      const after = (await readAll(to)).customers ?? [];
      expect(after).toHaveLength(50);
      expect(after.find((c) => c.id === 1)?.name).not.toBe("Local");
      await rollback({ at: to, id: done.runId });
      expect(await canonical(to)).toEqual(before);
    } finally {
      await pgQuery(db, `DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    }
  });
});

describe("an interrupted rollback, and forget", () => {
  it("resumes where it stopped and ends exactly; forget removes the run and its log", async () => {
    const to = await seededTarget("sqlite");
    const before = await canonical(to);
    const r = await importPackage({ input: pkg, to, conflict: "overwrite", batchSize: 10 });
    const controller = new AbortController();
    let batches = 0;
    const stopped = await rollback({
      at: to,
      id: r.runId,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress" && ++batches === 3) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(isFerryError(stopped, "E_INTERRUPTED")).toBe(true);
    const blocked = await rollback({ at: to, id: r.runId }).catch((e: unknown) => e);
    expect(isFerryError(blocked, "E_DIRTY")).toBe(true);
    const done = await rollback({ at: to, id: r.runId, resume: true });
    expect(done.removed + done.restored).toBeGreaterThan(0);
    expect(await canonical(to)).toEqual(before);

    const kept = await importPackage({ input: pkg, to, conflict: "skip" });
    await forget({ at: to, id: kept.runId });
    expect((await history({ at: to })).map((x) => x.id)).not.toContain(kept.runId);
    const gone = await rollback({ at: to, id: kept.runId }).catch((e: unknown) => e);
    expect(isFerryError(gone, "E_NOT_FOUND")).toBe(true);
  });

  it("an import with rollback off cannot be rolled back, and says why", async () => {
    const to = await fresh("sqlite");
    const r = await importPackage({ input: pkg, to, rollback: false });
    const err = await rollback({ at: to, id: r.runId }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_UNSUPPORTED")).toBe(true);
    expect((err as Error).message).toMatch(/kept no undo log/);
  });
});

describe("a PostgreSQL package imported into PostgreSQL on the bulk path", () => {
  /** A PostgreSQL schema with a parent and a child table, both keyed; `rows` parents. */
  async function pgSource(rows: number): Promise<string> {
    const url = await fresh("postgres");
    const s = new URL(url).searchParams.get("schema") as string;
    await pgExec(`SET search_path TO ${s};
      CREATE TABLE authors (id bigint PRIMARY KEY, name text, doc jsonb, at timestamptz, price numeric(10,2));
      CREATE TABLE posts (id integer PRIMARY KEY, author bigint REFERENCES authors(id), title text);
      INSERT INTO authors SELECT x, E'a\\t' || x, jsonb_build_object('n', x), '2024-01-01'::timestamptz + x * interval '1 s', x / 7.0
        FROM generate_series(1, ${rows}) x;
      INSERT INTO posts SELECT x, 1 + x % ${rows}, 'p' || x FROM generate_series(1, ${rows * 2}) x;`);
    return url;
  }

  it("keeps row versions, not digests: changed and removed records stop the rollback, others' records stay", async () => {
    const src = await pgSource(1200);
    const out = file("pg-bulk.ferry");
    const e = await exportPackage({ from: src, output: out });
    // Kept as PostgreSQL's COPY text, not as records.
    expect(e.manifest.collections.map((c) => c.text?.fields)).toEqual([
      ["id", "name", "doc", "at", "price"],
      ["id", "author", "title"],
    ]);
    const to = await fresh("postgres");
    const r = await importPackage({ input: out, to, batchSize: 500 });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(src));
    const schema = new URL(to).searchParams.get("schema") as string;
    const rows = await pgExec(`SELECT entry FROM ${schema}._ferry_undo ORDER BY seq`);
    const entries = rows.map((x) => (typeof x.entry === "string" ? JSON.parse(x.entry) : x.entry)) as {
      bulk?: { keys: unknown[] };
      added: unknown[];
    }[];
    // Batches of at most 500 rows, each with its keys and no per-record digest.
    expect(entries.length).toBeGreaterThanOrEqual(8);
    expect(entries.every((x) => x.bulk !== undefined && x.added.length === 0)).toBe(true);
    expect(entries.reduce((s, x) => s + (x.bulk?.keys.length ?? 0), 0)).toBe(3600);

    // Someone else's record (a key the package does not hold) is not the run's: it stays.
    await pgExec(`INSERT INTO ${schema}.authors (id, name) VALUES (99999, 'later')`);
    await pgExec(`UPDATE ${schema}.authors SET price = price WHERE id = 7`); // rewritten alike: a new version
    await pgExec(`DELETE FROM ${schema}.posts WHERE id = 11`);
    const err = await rollback({ at: to, id: r.runId }).catch((x: unknown) => x);
    expect(isFerryError(err, "E_CONFLICT")).toBe(true);
    expect((err as Error).message).toMatch(/^2 record\(s\) written by run/);
    expect((err as Error).message).toMatch(/authors id=7: changed since the run wrote it/);
    expect((err as Error).message).toMatch(/posts id=11: removed since the run wrote it/);
    const forced = await rollback({ at: to, id: r.runId, force: true });
    expect(forced.removed).toBe(3600);
    const left = await canonical(to);
    expect(left.posts).toEqual([]);
    expect(left.authors).toHaveLength(1);
    expect(left.authors?.[0]).toMatch(/"id":99999/);
  });

  it("into an empty table keyed otherwise, the undo log keys the target's key (record path), and rolls back", async () => {
    const src = await pgSource(300);
    const out = file("pg-otherkey.ferry");
    await exportPackage({ from: src, output: out, collections: ["authors"] });
    const to = await fresh("postgres");
    const schema = new URL(to).searchParams.get("schema") as string;
    await pgExec(`CREATE TABLE ${schema}.authors (id bigint NOT NULL, name text NOT NULL, doc jsonb,
      at timestamptz, price numeric(10,2), PRIMARY KEY (name, id))`);
    const r = await importPackage({ input: out, to });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual({ authors: (await canonical(src)).authors });
    const [row] = await pgExec(`SELECT count(*)::int AS n FROM ${schema}._ferry_undo WHERE entry::jsonb ? 'bulk'`);
    expect(row?.n).toBe(0);
    await rollback({ at: to, id: r.runId });
    expect(await canonical(to)).toEqual({ authors: [] });
  });

  it("a PostgreSQL → PostgreSQL copy that keeps an undo log takes the text path, and rolls back", async () => {
    const src = await pgSource(700);
    const to = await fresh("postgres");
    const r = await copy({ from: src, to, undo: true, batchSize: 200 });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(src));
    const schema = new URL(to).searchParams.get("schema") as string;
    const [row] = await pgExec(`SELECT count(*)::int AS n FROM ${schema}._ferry_undo WHERE entry::jsonb ? 'bulk'`);
    expect(row?.n).toBeGreaterThan(0);
    await rollback({ at: to, id: r.runId });
    expect(await canonical(to)).toEqual({ authors: [], posts: [] });
  });

  it("a bulk import whose connections are killed mid-way loses nothing: it finishes or resumes, and rolls back exactly", async () => {
    const src = await pgSource(6000);
    const out = file("pg-kill.ferry");
    await exportPackage({ from: src, output: out });
    const db = "ferry_kill_test";
    await ensurePgDatabase(db);
    const schema = `killbulk_${tag}`;
    await pgQuery(db, `DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
    const to = `postgres://postgres@127.0.0.1:5432/${db}?schema=${schema}`;
    try {
      let killed: Promise<{ pg_terminate_backend: boolean }[]> | undefined;
      const outcome = await importPackage({
        input: out,
        to,
        batchSize: 100,
        jobs: 1,
        onEvent: (e) => {
          if (e.type === "progress" && killed === undefined) {
            killed = pgQuery(
              db,
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
              [db],
            ) as Promise<{ pg_terminate_backend: boolean }[]>;
          }
        },
      }).catch((e: unknown) => e);
      expect((await killed)?.some((r) => r.pg_terminate_backend)).toBe(true);
      // A batch whose connection died was rolled back by the server: the bulk path takes it as
      // refused and redoes it on the record path over a new connection, so the import may
      // finish; when that fails too, the run is unfinished and --resume finishes it.
      let runId: string;
      if (outcome instanceof Error) {
        expect(isFerryError(outcome) && outcome.code !== "E_INTERNAL", String(outcome)).toBe(true);
        const [run] = await history({ at: to });
        expect(["running", "failed", "interrupted"]).toContain(run?.status);
        const done = await importPackage({ input: out, to, batchSize: 100, resume: true });
        expect(done.runId).toBe(run?.id);
        expect(done.status).toBe("done");
        runId = done.runId;
      } else {
        expect((outcome as { status: string }).status).toBe("done");
        runId = (outcome as { runId: string }).runId;
      }
      expect(await canonical(to)).toEqual(await canonical(src));
      await rollback({ at: to, id: runId });
      expect(await canonical(to)).toEqual({ authors: [], posts: [] });
    } finally {
      await pgQuery(db, `DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    }
  });

  it("an interrupted bulk import resumes from its last batch, and the rollback empties the tables", async () => {
    const src = await pgSource(900);
    const out = file("pg-resume.ferry");
    await exportPackage({ from: src, output: out });
    const to = await fresh("postgres");
    const controller = new AbortController();
    const first = await importPackage({
      input: out,
      to,
      batchSize: 200,
      signal: controller.signal,
      onEvent: (ev) => {
        if (ev.type === "progress") controller.abort();
      },
    }).catch((x: unknown) => x);
    expect(isFerryError(first, "E_INTERRUPTED")).toBe(true);
    const partial = await canonical(to);
    expect((partial.authors?.length ?? 0) + (partial.posts?.length ?? 0)).toBeLessThan(2700);
    const done = await importPackage({ input: out, to, batchSize: 200, resume: true });
    expect(done.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(src));
    await rollback({ at: to, id: done.runId });
    expect(await canonical(to)).toEqual({ authors: [], posts: [] });
  });
});
