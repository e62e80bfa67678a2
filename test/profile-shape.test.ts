/**
 * The profile's say over a collection's shape and order, through the library: `rename` (the
 * target's name, foreign keys following it), `key` (the identity of a collection whose
 * instance declares none), `dependsOn` (order the instance does not declare), and the natural
 * key's uniqueness under `skipInvalid`.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import type { FerryEvent } from "../src/core/events.js";
import { ensurePgDatabase, readAll, tempDir } from "./helpers.js";

const SHOP_FILE = join(import.meta.dirname, "..", "examples", "quickstart", "shop.db");
const SHOP = `sqlite:${SHOP_FILE}`;
const PG_DB = "ferry_profile_shape";
const PG_SCHEMA = `shape_${process.pid}`;
const PG = `postgres://postgres@127.0.0.1:5432/${PG_DB}?schema=${PG_SCHEMA}`;
const tmp = tempDir();

async function pgQuery<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: PG_DB });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  await ensurePgDatabase(PG_DB);
});

afterAll(async () => {
  await pgQuery(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`).catch(() => {});
  tmp.cleanup();
});

function ndjson(name: string, rows: object[]): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, rows.map((r) => `${JSON.stringify(r)}\n`).join(""));
  return path;
}

function order(events: FerryEvent[]): string[] {
  return events.flatMap((e) => (e.type === "collection-end" ? [e.collection] : []));
}

describe("rename", () => {
  it("writes a collection under its new name, with the foreign keys of its children following it (SQLite)", async () => {
    const to = `sqlite:${join(tmp.dir, "renamed.db")}`;
    const specs = { customers: { rename: "clients" } };
    const r = await copy({ from: SHOP, to, collections: ["customers", "orders"], collectionSpecs: specs });
    expect(r.status).toBe("done");
    const db = new Database(join(tmp.dir, "renamed.db"), { readonly: true });
    try {
      const tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_ferry%' ORDER BY name")
        .all() as { name: string }[];
      expect(tables.map((t) => t.name)).toEqual(["clients", "orders"]);
      expect((db.prepare("SELECT count(*) AS n FROM clients").get() as { n: number }).n).toBe(50);
      const fks = db.prepare("PRAGMA foreign_key_list(orders)").all() as { table: string; from: string }[];
      expect(fks).toEqual([expect.objectContaining({ table: "clients", from: "customer_id" })]);
    } finally {
      db.close();
    }
    // The renamed collection is matched at its new name: a second copy finds every record there.
    const again = await copy({ from: SHOP, to, collections: ["customers"], collectionSpecs: specs, conflict: "skip" });
    expect(again.collections.customers).toMatchObject({ copied: 0, skipped: 50 });
  });

  it("renames into PostgreSQL, foreign key included", async () => {
    const specs = { customers: { rename: "clients" } };
    const r = await copy({ from: SHOP, to: PG, collections: ["customers", "orders"], collectionSpecs: specs });
    expect(r.status).toBe("done");
    const refs = await pgQuery<{ parent: string }>(
      `SELECT ccu.table_name AS parent FROM information_schema.table_constraints tc
       JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name
       WHERE tc.table_schema = $1 AND tc.table_name = 'orders' AND tc.constraint_type = 'FOREIGN KEY'`,
      [PG_SCHEMA],
    );
    expect(refs.map((x) => x.parent)).toEqual(["clients"]);
    const got = await readAll(PG);
    expect(got.clients).toHaveLength(50);
    expect(got.customers).toBeUndefined();
  });

  it("a resumed run writes to the names it started with, whatever the profile says then", async () => {
    const file = join(tmp.dir, "resumed.db");
    const controller = new AbortController();
    const err = await copy({
      from: SHOP,
      to: `sqlite:${file}`,
      collections: ["customers"],
      collectionSpecs: { customers: { rename: "clients" } },
      batchSize: 10,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress") controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
    const r = await copy({ from: SHOP, to: `sqlite:${file}`, resume: true, batchSize: 10 });
    expect(r.status).toBe("done");
    const got = await readAll(`sqlite:${file}`);
    expect(got.clients).toHaveLength(50);
    expect(got.customers).toBeUndefined();
  });

  it("a foreign key follows a renamed parent that is not selected", async () => {
    const file = join(tmp.dir, "orders-only.db");
    await copy({
      from: SHOP,
      to: `sqlite:${file}`,
      collections: ["orders"],
      collectionSpecs: { customers: { rename: "clients" } },
    });
    const db = new Database(file, { readonly: true });
    try {
      const fks = db.prepare("PRAGMA foreign_key_list(orders)").all() as { table: string }[];
      expect(fks.map((f) => f.table)).toEqual(["clients"]);
    } finally {
      db.close();
    }
  });

  it("a run begun without a rename resumes to the same names after the profile adds one", async () => {
    const file = join(tmp.dir, "no-rename.db");
    const controller = new AbortController();
    const err = await copy({
      from: SHOP,
      to: `sqlite:${file}`,
      collections: ["customers"],
      batchSize: 10,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress") controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
    await copy({
      from: SHOP,
      to: `sqlite:${file}`,
      resume: true,
      collectionSpecs: { customers: { rename: "clients" } },
    });
    const got = await readAll(`sqlite:${file}`);
    expect(got.customers).toHaveLength(50);
    expect(got.clients).toBeUndefined();
  });

  it("refuses two collections renamed to one name", async () => {
    const err = await copy({
      from: SHOP,
      to: join(tmp.dir, "clash/"),
      collections: ["customers", "products"],
      collectionSpecs: { customers: { rename: "things" }, products: { rename: "things" } },
    }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_CONFIG")).toBe(true);
    expect((err as Error).message).toMatch(/customers and products would both be written to things/);
  });
});

describe("key", () => {
  const people = [
    { code: "a1", name: "Ada" },
    { code: "b2", name: "Brian" },
    { code: "c3", name: "Chen" },
  ];

  it("gives a collection without a primary key its identity: the target's primary key, matching on a second run", async () => {
    const from = ndjson("people.ndjson", people);
    const file = join(tmp.dir, "people.db");
    const specs = { people: { key: ["code"] } };
    const first = await copy({ from, to: `sqlite:${file}`, collectionSpecs: specs });
    expect(first.collections.people).toMatchObject({ copied: 3 });
    const db = new Database(file, { readonly: true });
    try {
      const cols = db.prepare("PRAGMA table_info(people)").all() as { name: string; pk: number }[];
      expect(cols.filter((c) => c.pk > 0).map((c) => c.name)).toEqual(["code"]);
    } finally {
      db.close();
    }
    const second = await copy({ from, to: `sqlite:${file}`, collectionSpecs: specs, conflict: "skip" });
    expect(second.collections.people).toMatchObject({ copied: 0, skipped: 3 });
  });

  it("refuses incoming data that repeats the key, naming the records, and writes nothing", async () => {
    const from = ndjson("people-dup.ndjson", [...people, { code: "b2", name: "Bea" }]);
    const to = join(tmp.dir, "people-dup/");
    const err = await copy({ from, to, collectionSpecs: { "people-dup": { key: ["code"] } } }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_VALIDATION")).toBe(true);
    expect((err as Error).message).toMatch(
      /code="b2" appears more than once in the incoming data \(the profile's key is unique\)/,
    );
    expect(await readAll(to).catch(() => ({}))).toEqual({});
  });

  it("refuses a key the collection lacks, and one that contradicts the source's primary key", async () => {
    const missing = await copy({
      from: SHOP,
      to: join(tmp.dir, "k1/"),
      collections: ["customers"],
      collectionSpecs: { customers: { key: ["uuid"] } },
    }).catch((e: unknown) => e);
    expect(isFerryError(missing, "E_CONFIG")).toBe(true);
    expect((missing as Error).message).toMatch(/the profile's key of customers \(uuid\) is not among its fields/);
    const contradicts = await copy({
      from: SHOP,
      to: join(tmp.dir, "k2/"),
      collections: ["customers"],
      collectionSpecs: { customers: { key: ["email"] } },
    }).catch((e: unknown) => e);
    expect(isFerryError(contradicts, "E_CONFIG")).toBe(true);
    expect((contradicts as Error).message).toMatch(/key of customers is email but its primary key at the source is id/);
  });
});

describe("dependsOn", () => {
  async function collectionOrder(options: Partial<Parameters<typeof copy>[0]>, to: string): Promise<string[]> {
    const events: FerryEvent[] = [];
    await copy({
      from: SHOP,
      to,
      collections: ["customers", "products"],
      jobs: 1,
      onEvent: (e) => events.push(e),
      ...options,
    });
    return order(events);
  }

  it("copies a collection after those the profile says it depends on, by profile name or by table", async () => {
    expect(await collectionOrder({}, join(tmp.dir, "d0/"))).toEqual(["customers", "products"]);
    expect(await collectionOrder({ dependsOn: { customers: ["products"] } }, join(tmp.dir, "d1/"))).toEqual([
      "products",
      "customers",
    ]);
    // A profile collection over a table: its name in dependsOn stands for the table.
    const specs = { clients: { table: "customers" }, catalog: { table: "products" } };
    const byProfile = await collectionOrder(
      { collections: ["clients", "catalog"], collectionSpecs: specs, dependsOn: { clients: ["catalog"] } },
      join(tmp.dir, "d2/"),
    );
    expect(byProfile).toEqual(["products", "customers"]);
  });

  it("runs a dependency to its end before starting the dependent collection when copying in parallel", async () => {
    const events: FerryEvent[] = [];
    await copy({
      from: SHOP,
      to: PG.replace(PG_SCHEMA, `${PG_SCHEMA}_dep`),
      collections: ["customers", "products"],
      jobs: 4,
      batchSize: 5,
      dependsOn: { customers: ["products"] },
      onEvent: (e) => events.push(e),
    });
    const firstCustomer = events.findIndex((e) => e.type === "progress" && e.collection === "customers");
    const productsEnd = events.findIndex((e) => e.type === "collection-end" && e.collection === "products");
    expect(productsEnd).toBeGreaterThanOrEqual(0);
    expect(firstCustomer).toBeGreaterThan(productsEnd);
    await pgQuery(`DROP SCHEMA IF EXISTS ${PG_SCHEMA}_dep CASCADE`);
  });
});

describe("natural key with skipInvalid", () => {
  it("writes the first record of a repeated natural key and refuses the others as invalid, not as conflicts", async () => {
    const from = ndjson("accounts.ndjson", [
      { id: 1, email: "a@x.io" },
      { id: 2, email: "b@x.io" },
      { id: 3, email: "a@x.io" },
      { id: 4, email: "c@x.io" },
    ]);
    const to = join(tmp.dir, "accounts/");
    const r = await copy({
      from,
      to,
      collectionSpecs: { accounts: { naturalKey: ["email"] } },
      skipInvalid: true,
      conflict: "merge",
      batchSize: 2,
    });
    expect(r.collections.accounts).toMatchObject({ copied: 3, merged: 0, failed: 1 });
    expect(r.failures).toEqual([
      expect.objectContaining({ key: 'email="a@x.io"', reason: expect.stringMatching(/appears more than once/) }),
    ]);
    const got = await readAll(to);
    expect(got.accounts?.map((a) => a.id)).toEqual([1, 2, 4]);
  });
});
