/**
 * `Connector.size`: the bytes a collection takes at its instance (what `ferry collections`
 * shows), on every engine against the real servers: a plausible positive figure that grows
 * when records are added, exact where the engine can be asked independently.
 */
import { randomBytes } from "node:crypto";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import mysql from "mysql2/promise";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import type { Connector } from "../src/core/connector.js";
import { openConnector } from "../src/core/registry.js";
import { ensurePgDatabase, tempDir } from "./helpers.js";
import { startRedis, type TestRedis, withClient } from "./redis-server.js";

const tag = randomBytes(4).toString("hex");
const tmp = tempDir();
const PG_DB = "ferry_test";
const PG_SCHEMA = `size_${tag}`;
const MY_DB = `ferry_size_${tag}`;
const MYSQL = { host: "127.0.0.1", port: 3306, user: "root" };
let redis: TestRedis;

/** 100 characters of text per row, so sizes have something to grow by. */
const PAD = "x".repeat(100);

beforeAll(async () => {
  redis = await startRedis(8);
  await ensurePgDatabase(PG_DB);
});

afterAll(async () => {
  await redis?.stop();
  await pgQuery(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`).catch(() => {});
  await myQuery(`DROP DATABASE IF EXISTS \`${MY_DB}\``).catch(() => {});
  tmp.cleanup();
});

async function pgQuery(sql: string): Promise<void> {
  const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: PG_DB });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function myQuery(sql: string): Promise<void> {
  const c = await mysql.createConnection({ ...MYSQL, multipleStatements: true });
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** The size of `name` as a fresh source connector of `url` sees it (with its count). */
async function sizeAt(url: string, name: string): Promise<{ bytes: number | undefined; records: number | undefined }> {
  const c: Connector = await openConnector(url, { write: false });
  try {
    const s = (await c.discover()).find((x) => x.name === name);
    if (!s) throw new Error(`no collection ${name} at ${url}`);
    expect(c.size).toBeTypeOf("function");
    return { bytes: await c.size?.(s), records: await c.count(s) };
  } finally {
    await c.close();
  }
}

describe("size() per engine", () => {
  it("PostgreSQL: pg_total_relation_size of the schema's table (heap, TOAST, indexes), growing with rows", async () => {
    // A mixed-case name: the connector quotes it as count() does.
    await pgQuery(
      `CREATE SCHEMA ${PG_SCHEMA};
       CREATE TABLE ${PG_SCHEMA}."Items" (id int PRIMARY KEY, note text);
       CREATE INDEX ON ${PG_SCHEMA}."Items" (note);
       INSERT INTO ${PG_SCHEMA}."Items" SELECT i, '${PAD}' FROM generate_series(1, 10) i;`,
    );
    const url = `postgres://postgres@127.0.0.1:5432/${PG_DB}?schema=${PG_SCHEMA}`;
    const small = await sizeAt(url, "Items");
    expect(small.records).toBe(10);
    // A heap page and two index pages at least.
    expect(small.bytes).toBeGreaterThanOrEqual(3 * 8192);
    await pgQuery(`INSERT INTO ${PG_SCHEMA}."Items" SELECT i, '${PAD}' || i FROM generate_series(11, 20000) i`);
    const big = await sizeAt(url, "Items");
    expect(big.records).toBe(20000);
    // 20,000 rows of 100+ bytes in the heap and again in the index on note.
    expect(big.bytes).toBeGreaterThan(2 * 20000 * 100);
    expect(big.bytes).toBeLessThan(20 * 20000 * 100);
  });

  it("MariaDB/MySQL: DATA_LENGTH + INDEX_LENGTH, growing with rows (after ANALYZE TABLE)", async () => {
    await myQuery(
      `CREATE DATABASE \`${MY_DB}\`; USE \`${MY_DB}\`;
       CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(200), KEY (note)) ENGINE=InnoDB;
       INSERT INTO items SELECT seq, '${PAD}' FROM seq_1_to_10;
       ANALYZE TABLE items;`,
    );
    const url = `mysql://root@127.0.0.1:3306/${MY_DB}`;
    const small = await sizeAt(url, "items");
    expect(small.records).toBe(10);
    // One 16 KB page for the rows and one for the index on note.
    expect(small.bytes).toBeGreaterThanOrEqual(2 * 16384);
    await myQuery(
      `USE \`${MY_DB}\`; INSERT INTO items SELECT seq, CONCAT('${PAD}', seq) FROM seq_11_to_20000; ANALYZE TABLE items;`,
    );
    const big = await sizeAt(url, "items");
    expect(big.records).toBe(20000);
    expect(big.bytes).toBeGreaterThan(2 * 20000 * 100);
    expect(big.bytes).toBeLessThan(20 * 20000 * 100);
  });

  it("SQLite: the pages of the table and its indexes (dbstat), growing with rows", async () => {
    const path = join(tmp.dir, "size.db");
    const db = new Database(path);
    db.exec(
      "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT UNIQUE); CREATE INDEX items_note ON items (note); CREATE TABLE other (id INTEGER PRIMARY KEY, blob BLOB)",
    );
    const add = db.prepare("INSERT INTO items (id, note) VALUES (?, ?)");
    for (let i = 1; i <= 10; i++) add.run(i, `${PAD}${i}`);
    db.prepare("INSERT INTO other VALUES (1, ?)").run(Buffer.alloc(200_000));
    db.close();
    const url = `sqlite:${path}`;
    const small = await sizeAt(url, "items");
    expect(small.records).toBe(10);
    // The table, the UNIQUE constraint's automatic index and items_note: a page each, and
    // nothing of the 200 KB in `other`.
    expect(small.bytes).toBe(3 * 4096);
    const other = await sizeAt(url, "other");
    expect(other.bytes).toBeGreaterThan(200_000);
    const w = new Database(path);
    const more = w.prepare("INSERT INTO items (id, note) VALUES (?, ?)");
    w.transaction(() => {
      for (let i = 11; i <= 5000; i++) more.run(i, `${PAD}${i}`);
    })();
    w.close();
    const big = await sizeAt(url, "items");
    expect(big.records).toBe(5000);
    // Each note is in the table and in both indexes.
    expect(big.bytes).toBeGreaterThan(3 * 5000 * 100);
    expect(big.bytes).toBeLessThan(10 * 5000 * 100);
    expect(big.bytes ?? 0).toBeLessThan(statSync(path).size);
  });

  it("files: the collection's own file in a directory and as a .ndjson file, growing with records", async () => {
    const dir = join(tmp.dir, "backup");
    const lines = (n: number, from = 1) =>
      Array.from({ length: n }, (_, i) => `${JSON.stringify({ id: from + i, note: `${PAD}é` })}\n`).join("");
    const { mkdirSync, appendFileSync } = await import("node:fs");
    mkdirSync(dir);
    writeFileSync(join(dir, "items.ndjson"), lines(10));
    writeFileSync(join(dir, "other.ndjson"), lines(1000));
    const small = await sizeAt(`${dir}/`, "items");
    expect(small.records).toBe(10);
    expect(small.bytes).toBe(statSync(join(dir, "items.ndjson")).size);
    appendFileSync(join(dir, "items.ndjson"), lines(90, 11));
    const big = await sizeAt(`${dir}/`, "items");
    expect(big.records).toBe(100);
    expect(big.bytes).toBe(statSync(join(dir, "items.ndjson")).size);
    expect(big.bytes).toBeGreaterThan(100 * 100);

    const file = join(tmp.dir, "users.ndjson");
    writeFileSync(file, lines(7));
    const one = await sizeAt(file, "users");
    expect(one).toEqual({ records: 7, bytes: statSync(file).size });
  });

  it("files: in a .json document, the UTF-8 bytes of the collection's own array", async () => {
    const file = join(tmp.dir, "accounts.json");
    const accounts = [
      { email: "zoë@example.com", name: "Zoë" },
      { email: "li@example.com", name: "李" },
    ];
    const arrayText = JSON.stringify(accounts, null, 2).replace(/\n/g, "\n  ");
    const text = `{\n  "schema_version": "1.0.0",\n  "accounts": ${arrayText},\n  "apiKeys": [{"id": 1}]\n}\n`;
    writeFileSync(file, text);
    const a = await sizeAt(file, "accounts");
    expect(a.records).toBe(2);
    expect(a.bytes).toBe(Buffer.byteLength(arrayText, "utf8"));
    expect(a.bytes).toBeGreaterThan(arrayText.length); // ë and 李 take more than one byte
    expect((await sizeAt(file, "apiKeys")).bytes).toBe(Buffer.byteLength('[{"id": 1}]'));
    // A document that is one array: the whole file.
    const list = join(tmp.dir, "people.json");
    writeFileSync(list, JSON.stringify(accounts));
    expect(await sizeAt(list, "people")).toEqual({ records: 2, bytes: statSync(list).size });
  });

  it("Redis: MEMORY USAGE summed over the collection's keys only (globs, exclusions, several batches)", async () => {
    const url = await redis.fresh();
    const usage = async (keys: string[]): Promise<number> =>
      withClient(url, async (c) => {
        const p = c.pipeline();
        for (const k of keys) p.memory("USAGE", k);
        return ((await p.exec()) ?? []).reduce((n, [, v]) => n + Number(v), 0);
      });
    const users = Array.from({ length: 2500 }, (_, i) => `user:${i}`);
    const idx = ["user:idx:a", "user:idx:b"];
    await withClient(url, async (c) => {
      const p = c.pipeline();
      for (const k of users) p.set(k, `${PAD}${k}`);
      for (const k of idx) p.sadd(k, ...Array.from({ length: 50 }, (_, i) => `member-${i}`));
      p.hset("other:1", "f", PAD);
      await p.exec();
    });
    const c = await openConnector(url, { write: false });
    try {
      const all = await c.discover();
      const user = all.find((s) => s.name === "user");
      if (!user || !c.resolve || !c.size) throw new Error("redis connector without user collection, resolve or size");
      // The prefix collection: every user key, in 3 rounds of MEMORY USAGE.
      expect(await c.size(user)).toBe(await usage([...users, ...idx]));
      // A glob less an exclusion: the index sets are left out.
      const [glob] = await c.resolve(["user:*", "!user:idx:*"]);
      if (!glob) throw new Error("no glob collection");
      expect(await c.count(glob)).toBe(2500);
      const bytes = await c.size(glob);
      expect(bytes).toBe(await usage(users));
      expect(bytes).toBeGreaterThan(2500 * 100);
    } finally {
      await c.close();
    }
    await withClient(url, (r) => r.set("user:more", PAD.repeat(50)));
    const grown = await sizeAt(url, "user");
    expect(grown.records).toBe(2503);
    expect(grown.bytes).toBe(await usage([...users, ...idx, "user:more"]));
  });
});
