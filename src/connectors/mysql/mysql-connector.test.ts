/**
 * Integration tests against the MariaDB/MySQL server of the test machine (127.0.0.1:3306,
 * root without password). Each test makes its own `ferry_t_*` databases; they are dropped
 * at the end. When the server is down these tests fail, never skip.
 */
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Checkpoint, Connector, JournalStore, ReadBatch, UndoRow, WriteOp } from "../../core/connector.js";
import { copy } from "../../core/copy.js";
import { isFerryError } from "../../core/errors.js";
import type { Bookmark } from "../../core/messages.js";
import { openConnector } from "../../core/registry.js";
import type { CollectionSchema } from "../../core/schema.js";
import { encodeRow, encodeValue, PreciseDate, type Row, type Value } from "../../core/values.js";
import "./index.js";
import type { MysqlConnector } from "./mysql-connector.js";

const SERVER = { host: "127.0.0.1", port: 3306, user: "root" };
const databases: string[] = [];
const users: string[] = [];
let admin: mysql.Connection;

beforeAll(async () => {
  admin = await mysql.createConnection({
    ...SERVER,
    supportBigNumbers: true,
    dateStrings: true,
    jsonStrings: true,
  });
});

afterAll(async () => {
  for (const db of databases) await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
  for (const u of users) await admin.query(`DROP USER IF EXISTS '${u}'@'%'`);
  await admin.end();
});

function name(): string {
  const db = `ferry_t_${randomBytes(6).toString("hex")}`;
  databases.push(db);
  return db;
}

const urlOf = (db: string, user = "root"): string => `mysql://${user}@${SERVER.host}:${SERVER.port}/${db}`;

/** A new database made by `sql` (statements separated by `;` at line ends); its URL. */
async function makeDb(sql = ""): Promise<{ db: string; url: string }> {
  const db = name();
  await admin.query(`CREATE DATABASE \`${db}\` CHARACTER SET utf8mb4`);
  if (sql.trim() !== "") {
    const c = await mysql.createConnection({ ...SERVER, database: db, multipleStatements: true });
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }
  return { db, url: urlOf(db) };
}

async function rows(sql: string): Promise<Record<string, unknown>[]> {
  const [r] = await admin.query(sql);
  return r as Record<string, unknown>[];
}

async function open(url: string, options: Parameters<typeof openConnector>[1] = {}): Promise<MysqlConnector> {
  return (await openConnector(url, options)) as MysqlConnector;
}

async function schemaOf(c: Connector, table: string): Promise<CollectionSchema> {
  const s = (await c.discover()).find((x) => x.name === table);
  if (!s) throw new Error(`no table ${table}`);
  return s;
}

async function readAll(c: Connector, s: CollectionSchema, batchSize = 1000, after?: Bookmark): Promise<ReadBatch[]> {
  const out: ReadBatch[] = [];
  for await (const b of c.read(s, { batchSize, ...(after ? { after } : {}) })) out.push(b);
  return out;
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

const EVERYTHING = `
CREATE TABLE parent (id INT NOT NULL PRIMARY KEY, label VARCHAR(10));
CREATE TABLE everything (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  parent_id INT NULL,
  t_bool TINYINT(1), t_tiny TINYINT, t_small SMALLINT UNSIGNED, t_medium MEDIUMINT, t_int INT,
  t_big BIGINT, t_ubig BIGINT UNSIGNED,
  t_float FLOAT, t_double DOUBLE, t_dec DECIMAL(12,2), t_dec_big DECIMAL(65,30),
  t_char CHAR(10), t_varchar VARCHAR(40) NOT NULL DEFAULT '', t_text TEXT, t_tinytext TINYTEXT,
  t_mediumtext MEDIUMTEXT, t_longtext LONGTEXT, t_latin1 VARCHAR(20) CHARACTER SET latin1,
  t_binary BINARY(4), t_varbinary VARBINARY(16), t_blob BLOB, t_longblob LONGBLOB,
  t_bit1 BIT(1), t_bit12 BIT(12),
  t_enum ENUM('small','medium','large'), t_set SET('a','b','c'),
  t_json JSON,
  t_date DATE, t_datetime DATETIME, t_datetime6 DATETIME(6), t_timestamp TIMESTAMP(3) NULL DEFAULT NULL,
  t_year YEAR, t_time TIME(2),
  t_uuid UUID, t_inet4 INET4, t_inet6 INET6,
  t_gen INT AS (t_int * 2) VIRTUAL,
  t_gen_stored VARCHAR(50) AS (CONCAT(t_varchar, '!')) STORED,
  UNIQUE KEY uq_varchar (t_varchar),
  KEY ix_int (t_int, t_small),
  KEY ix_text (t_text(10)),
  CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE SET NULL
) ENGINE=InnoDB;
SET SESSION sql_mode = 'STRICT_ALL_TABLES', time_zone = '+00:00';
INSERT INTO parent VALUES (1, 'one'), (2, 'two');
INSERT INTO everything (id, parent_id, t_bool, t_tiny, t_small, t_medium, t_int, t_big, t_ubig, t_float, t_double,
  t_dec, t_dec_big, t_char, t_varchar, t_text, t_tinytext, t_mediumtext, t_longtext, t_latin1, t_binary,
  t_varbinary, t_blob, t_longblob, t_bit1, t_bit12, t_enum, t_set, t_json, t_date, t_datetime, t_datetime6,
  t_timestamp, t_year, t_time, t_uuid, t_inet4, t_inet6) VALUES
 (1, 1, 5, -128, 65535, -8388608, 2147483647, -9223372036854775808, 18446744073709551615, 1.2345678, 0.1,
  1234567890.12, '12345678901234567890123456789012345.123456789012345678901234567890', 'abc', 'uniq1',
  'żółć 日本 🚢 line\\nbreak', 'tiny', 'medium', 'long', 'café', X'00ff0010', X'', X'deadbeef', X'00',
  1, b'101010101010', 'large', 'a,c', '{"a": [1, 2.5, "x"], "b": null}', '0000-00-00', '0000-00-00 00:00:00',
  '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.999', 2155, '838:59:59.99',
  '123e4567-e89b-12d3-a456-426614174000', '192.168.0.1', '2001:db8::1'),
 (2, 2, 0, 0, 0, 0, 0, 9007199254740993, 0, -3.4e38, 1.7976931348623157e308, -0.01, '0', '', 'uniq2',
  '', '', '', '', '', X'00000000', X'0102', X'', X'', 0, b'0', 'small', '', '"just a string"', '1000-01-01',
  '1000-01-01 00:00:00', '1000-01-01 00:00:00.000001', '0000-00-00 00:00:00', 1901, '-12:00:00', NULL, NULL, NULL),
 (10, NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'uniq3', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO everything (id, t_varchar) VALUES (20, 'gone');
DELETE FROM everything WHERE id = 20;
`;

describe("discovery", () => {
  it("describes every column type with its attributes, keys and native DDL", async () => {
    const { db, url } = await makeDb(EVERYTHING);
    const c = await open(url);
    try {
      const found = await c.discover();
      expect(found.map((s) => s.name)).toEqual(["everything", "parent"]);
      const s = found[0] as CollectionSchema;
      const f = Object.fromEntries(s.fields.map((x) => [x.name, x]));
      expect(s).toMatchObject({ engine: "mysql", namespace: db, primaryKey: ["id"], uniqueKeys: [["t_varchar"]] });
      expect(s.indexes).toEqual([
        { name: "fk_parent", fields: ["parent_id"], unique: false },
        { name: "ix_int", fields: ["t_int", "t_small"], unique: false },
      ]);
      expect(s.foreignKeys).toEqual([
        {
          fields: ["parent_id"],
          references: { collection: "parent", fields: ["id"] },
          onDelete: "SET NULL",
          onUpdate: "RESTRICT",
        },
      ]);
      expect(s.native?.engine).toBe("mysql");
      expect(s.native?.ddl[0]).toMatch(/^CREATE TABLE `everything` \(/);
      expect(f.id).toMatchObject({ type: "integer", size: 4, unsigned: true, autoIncrement: true, nullable: false });
      expect(f.t_bool).toMatchObject({ type: "boolean", nativeType: "tinyint(1)", size: 1 });
      expect(f.t_tiny).toMatchObject({ type: "integer", size: 1 });
      expect(f.t_small).toMatchObject({ type: "integer", size: 2, unsigned: true, nativeType: "smallint(5) unsigned" });
      expect(f.t_medium).toMatchObject({ type: "integer", size: 3 });
      expect(f.t_big).toMatchObject({ type: "integer", size: 8 });
      expect(f.t_ubig).toMatchObject({ type: "integer", size: 8, unsigned: true });
      expect(f.t_float).toMatchObject({ type: "float", size: 4 });
      expect(f.t_double).toMatchObject({ type: "float", size: 8 });
      expect(f.t_dec).toMatchObject({ type: "decimal", precision: 12, scale: 2, nativeType: "decimal(12,2)" });
      expect(f.t_char).toMatchObject({ type: "text", maxLength: 10, fixedLength: true });
      expect(f.t_varchar).toMatchObject({ type: "text", maxLength: 40, nullable: false });
      expect(f.t_text).toMatchObject({ type: "text", maxLength: 65535 });
      expect(f.t_tinytext).toMatchObject({ type: "text", maxLength: 255 });
      expect(f.t_mediumtext?.maxLength).toBeUndefined();
      expect(f.t_longtext?.maxLength).toBeUndefined();
      expect(f.t_text?.charset).toBeUndefined();
      expect(f.t_latin1).toMatchObject({ type: "text", maxLength: 20, charset: "latin1" });
      expect(f.t_binary).toMatchObject({ type: "bytes", maxLength: 4, fixedLength: true });
      expect(f.t_varbinary).toMatchObject({ type: "bytes", maxLength: 16 });
      expect(f.t_blob).toMatchObject({ type: "bytes", maxLength: 65535 });
      expect(f.t_longblob?.maxLength).toBeUndefined();
      expect(f.t_bit1).toMatchObject({ type: "boolean", nativeType: "bit(1)" });
      expect(f.t_bit1?.size).toBeUndefined();
      expect(f.t_bit12).toMatchObject({ type: "bytes", maxLength: 2 });
      expect(f.t_enum).toMatchObject({ type: "text", enumValues: ["small", "medium", "large"] });
      expect(f.t_set).toMatchObject({ type: "text", setValues: ["a", "b", "c"] });
      expect(f.t_json).toMatchObject({ type: "json", nativeType: "json" });
      expect(f.t_date).toMatchObject({ type: "date", zeroDates: true });
      expect(f.t_datetime).toMatchObject({ type: "datetime", timezone: false, fractionDigits: 0, zeroDates: true });
      expect(f.t_datetime6).toMatchObject({ type: "datetime", timezone: false, fractionDigits: 6 });
      expect(f.t_timestamp).toMatchObject({ type: "datetime", timezone: true, fractionDigits: 3 });
      expect(f.t_year).toMatchObject({ type: "integer", size: 2 });
      expect(f.t_time).toMatchObject({ type: "text", nativeType: "time(2)" });
      expect(f.t_uuid).toMatchObject({ type: "uuid" });
      expect(f.t_inet4).toMatchObject({ type: "text", maxLength: 15 });
      expect(f.t_inet6).toMatchObject({ type: "text", maxLength: 39 });
      expect(f.t_gen).toMatchObject({ generated: true });
      expect(f.t_gen_stored).toMatchObject({ generated: true });
      expect(await c.count(s)).toBe(3);
    } finally {
      await c.close();
    }
  });

  it("reads each type as the value model says", async () => {
    const { url } = await makeDb(EVERYTHING);
    const c = await open(url);
    try {
      const s = await schemaOf(c, "everything");
      const [batch] = await readAll(c, s);
      const [r1, r2, r3] = batch!.records;
      expect(r1).toMatchObject({
        id: 1,
        t_bool: 5,
        t_tiny: -128,
        t_small: 65535,
        t_int: 2147483647,
        t_big: -(2n ** 63n),
        t_ubig: 2n ** 64n - 1n,
        t_float: 1.2345678,
        t_double: 0.1,
        t_dec: "1234567890.12",
        t_dec_big: "12345678901234567890123456789012345.123456789012345678901234567890",
        t_text: "żółć 日本 🚢 line\nbreak",
        t_latin1: "café",
        t_bit1: true,
        t_enum: "large",
        t_set: "a,c",
        t_json: { a: [1, 2.5, "x"], b: null },
        t_year: 2155,
        t_time: "838:59:59.99",
        t_uuid: "123e4567-e89b-12d3-a456-426614174000",
        t_inet6: "2001:db8::1",
        t_gen_stored: "uniq1!",
      });
      expect(r1?.t_binary).toBeInstanceOf(Uint8Array);
      expect([...(r1!.t_binary as Uint8Array)]).toEqual([0, 255, 0, 16]);
      expect([...(r1!.t_bit12 as Uint8Array)]).toEqual([0x0a, 0xaa]);
      expect(Number.isNaN((r1!.t_date as Date).getTime())).toBe(true);
      expect(Number.isNaN((r1!.t_datetime as Date).getTime())).toBe(true);
      expect(r1?.t_datetime6).toBeInstanceOf(PreciseDate);
      expect((r1!.t_datetime6 as Date).toISOString()).toBe("2024-02-29T23:59:59.999999Z");
      expect((r1!.t_timestamp as Date).toISOString()).toBe("2038-01-19T03:14:07.999Z");
      expect(r2).toMatchObject({ t_bool: false, t_big: 2n ** 53n + 1n, t_float: -3.4e38, t_json: "just a string" });
      expect(r2).toMatchObject({ t_double: 1.7976931348623157e308, t_bit1: false, t_set: "", t_time: "-12:00:00.00" });
      expect((r2!.t_date as Date).toISOString()).toBe("1000-01-01T00:00:00.000Z");
      expect(Number.isNaN((r2!.t_timestamp as Date).getTime())).toBe(true);
      expect(r3).toMatchObject({ id: 10, t_bool: true, t_json: null, t_date: null, t_varbinary: null });
      expect(batch?.bookmark).toEqual({ after: [10] });
    } finally {
      await c.close();
    }
  });
});

/** Every column of a table as text, by id (binary as hex, FLOAT exactly, JSON normalised). */
async function dump(db: string, table: string): Promise<unknown[]> {
  const cols = await rows(
    `SELECT COLUMN_NAME AS c, DATA_TYPE AS t FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '${db}' AND TABLE_NAME = '${table}' ORDER BY ORDINAL_POSITION`,
  );
  const exprs = cols.map(({ c, t }) => {
    const q = `\`${c}\``;
    if (/binary|blob|bit/.test(String(t))) return `HEX(${q})`;
    if (t === "float") return `${q} + 0e0`;
    if (c === "t_json") return `JSON_COMPACT(${q})`;
    return q;
  });
  return (await rows(`SELECT ${exprs.join(", ")} FROM \`${db}\`.\`${table}\` ORDER BY 1`)).map((r) => Object.values(r));
}

describe("copy MySQL → MySQL", () => {
  it("copies every value exactly, with generated and auto-increment columns", async () => {
    const a = await makeDb(EVERYTHING);
    const b = name();
    const r = await copy({ from: a.url, to: urlOf(b), batchSize: 2 });
    expect(r.status).toBe("done");
    expect(r.total).toMatchObject({ copied: 5, failed: 0 });
    expect(r.types.collections.every((c) => c.fields.every((f) => f.level === "exact"))).toBe(true);
    expect(await dump(b, "everything")).toEqual(await dump(a.db, "everything"));
    expect(await dump(b, "parent")).toEqual(await dump(a.db, "parent"));
    // The same table, indexes and foreign key included (the deferred index was added by finish).
    const ddl = async (db: string) =>
      String((await rows(`SHOW CREATE TABLE \`${db}\`.everything`))[0]?.["Create Table"])
        .replace(/AUTO_INCREMENT=\d+ /, "")
        .split("\n")
        .map((l) => l.replace(/,$/, ""))
        .sort();
    expect(await ddl(b)).toEqual(await ddl(a.db));
    // AUTO_INCREMENT continues after the source's counter (21: row 20 was deleted there).
    await admin.query(`INSERT INTO \`${b}\`.everything (t_varchar) VALUES ('new')`);
    expect((await rows(`SELECT MAX(id) AS m FROM \`${b}\`.everything`))[0]?.m).toBe(21);
  });

  it("sets AUTO_INCREMENT above the copied maximum for tables it creates from fields", async () => {
    const { url, db } = await makeDb();
    const c = await open(url, { write: true });
    try {
      const schema: CollectionSchema = {
        name: "seq",
        fields: [
          { name: "id", type: "integer", autoIncrement: true, nullable: false },
          { name: "v", type: "text" },
        ],
        primaryKey: ["id"],
      };
      const { schema: t, created } = await c.prepare(schema);
      expect(created).toBe(true);
      const ops: WriteOp[] = Array.from({ length: 30 }, (_, i) => ({
        op: "insert",
        record: { id: i * 10 + 5, v: `v${i}` },
      }));
      expect((await c.write(t, ops)).failures).toEqual([]);
      await c.finish(schema);
      await c.finish(schema);
    } finally {
      await c.close();
    }
    await admin.query(`INSERT INTO \`${db}\`.seq (v) VALUES ('next')`);
    expect((await rows(`SELECT id FROM \`${db}\`.seq WHERE v = 'next'`))[0]?.id).toBe(296);
  });

  it("resumes an aborted copy of a table without a primary key", async () => {
    const a = await makeDb(
      "CREATE TABLE log (at INT, msg VARCHAR(20)); INSERT INTO log SELECT seq, CONCAT('m', seq) FROM seq_1_to_2000;",
    );
    const b = name();
    const controller = new AbortController();
    let batches = 0;
    const err = await errorOf(
      copy({
        from: a.url,
        to: urlOf(b),
        batchSize: 100,
        jobs: 1,
        signal: controller.signal,
        onEvent: (e) => {
          if (e.type === "progress" && ++batches === 4) controller.abort();
        },
      }),
    );
    expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
    expect((await rows(`SELECT COUNT(*) AS n FROM \`${b}\`.log`))[0]?.n).toBe(400);
    const r = await copy({ from: a.url, to: urlOf(b), batchSize: 100, resume: true });
    expect(r.collections.log).toMatchObject({ copied: 2000, failed: 0 });
    expect(await dump(b, "log")).toEqual(await dump(a.db, "log"));
  });
});

describe("write", () => {
  const TARGET = `
CREATE TABLE people (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(5) NOT NULL,
  age INT CHECK (age >= 0),
  email VARCHAR(50) NULL UNIQUE,
  note VARCHAR(20) NOT NULL DEFAULT 'none'
);`;

  it("names each refused record by the server's reason, and applies the rest with the checkpoint", async () => {
    const { db, url } = await makeDb(TARGET);
    const c = await open(url, { write: true });
    try {
      const s = await schemaOf(c, "people");
      const ops: WriteOp[] = Array.from({ length: 60 }, (_, i) => ({
        op: "insert",
        record: { id: i + 1, name: `p${i}`, age: i, email: `p${i}@x` },
      }));
      (ops[3] as { record: Row }).record.name = null;
      (ops[17] as { record: Row }).record.age = -1;
      (ops[30] as { record: Row }).record.name = "much too long";
      (ops[41] as { record: Row }).record.email = "p0@x";
      let seen: unknown;
      const result = await c.write(s, ops, {
        runId: "r1",
        id: "r1/people/0",
        entry: (r) => {
          seen = r;
          return { startedAt: "2026-01-01T00:00:00Z", refused: r.failures.map((f) => f.index) };
        },
      });
      expect(result.failures.map((f) => f.index)).toEqual([3, 17, 30, 41]);
      expect(seen).toEqual(result);
      const [nul, chk, long, dup] = result.failures.map((f) => f.reason);
      expect(nul).toBe(`${db}.people.name: Column 'name' cannot be null`);
      expect(chk).toMatch(new RegExp(`CONSTRAINT .* failed for \`${db}\`\\.\`people\``));
      expect(long).toBe(`${db}.people.name: Data too long for column 'name'`);
      expect(dup).toMatch(new RegExp(`^${db}\\.people: Duplicate entry 'p0@x'`));
      expect((await rows(`SELECT COUNT(*) AS n FROM \`${db}\`.people`))[0]?.n).toBe(56);
      expect(await c.journal().get("r1/people/0")).toEqual({
        startedAt: "2026-01-01T00:00:00Z",
        refused: [3, 17, 30, 41],
      });
    } finally {
      await c.close();
    }
  });

  it("refuses records by key through copy() while the rest of the batch lands", async () => {
    const src = await makeDb(`
CREATE TABLE people (id INT NOT NULL PRIMARY KEY, name VARCHAR(5), age INT, email VARCHAR(50), note VARCHAR(20) NOT NULL DEFAULT 'x');
INSERT INTO people (id, name, age, email) SELECT seq, CONCAT('p', seq), seq, CONCAT('p', seq, '@x') FROM seq_1_to_100;
UPDATE people SET name = NULL WHERE id = 7;
UPDATE people SET age = -5 WHERE id = 50;`);
    const dst = await makeDb(TARGET);
    const r = await copy({ from: src.url, to: dst.url, batchSize: 100 });
    expect(r.collections.people).toMatchObject({ copied: 98, failed: 2 });
    expect(r.failures.map((f) => f.key)).toEqual(["id=7", "id=50"]);
    expect(r.failures[0]?.reason).toContain("name");
    expect(r.failures[1]?.reason).toMatch(/CONSTRAINT/);
    expect((await rows(`SELECT COUNT(*) AS n FROM \`${dst.db}\`.people`))[0]?.n).toBe(98);
  });

  it("writes row by row into tables that cannot undo a statement (MyISAM)", async () => {
    const { db, url } = await makeDb(
      "CREATE TABLE m (id INT NOT NULL PRIMARY KEY, name VARCHAR(3) NOT NULL) ENGINE=MyISAM;",
    );
    const c = await open(url, { write: true });
    try {
      const s = await schemaOf(c, "m");
      const ops: WriteOp[] = Array.from({ length: 40 }, (_, i) => ({
        op: "insert",
        record: { id: i, name: i === 25 ? "toolong" : "ok" },
      }));
      const result = await c.write(s, ops);
      expect(result.failures.map((f) => f.index)).toEqual([25]);
      expect((await rows(`SELECT COUNT(*) AS n FROM \`${db}\`.m`))[0]?.n).toBe(39);
    } finally {
      await c.close();
    }
  });

  it("replaces and updates by key, taking defaults for fields a replacing record lacks", async () => {
    const { db, url } = await makeDb(`${TARGET}
INSERT INTO people VALUES (1, 'a', 1, 'a@x', 'keep'), (2, 'b', 2, 'b@x', 'keep'), (3, 'c', 3, NULL, 'keep');`);
    const c = await open(url, { write: true });
    try {
      const s = await schemaOf(c, "people");
      const result = await c.write(s, [
        { op: "replace", match: { id: 1 }, record: { id: 1, name: "A", age: 10 } },
        { op: "replace", match: { email: "b@x" }, record: { id: 2, name: "B", email: "b@x" } },
        { op: "update", match: { id: 3 }, record: { age: 33 } },
        { op: "update", match: { id: 99 }, record: { age: 1 } },
        { op: "replace", match: { name: "zz" }, record: { name: "zz" } },
      ]);
      expect(result.failures).toEqual([
        { index: 3, reason: "no record matches id: nothing to update" },
        { index: 4, reason: "no record matches name: nothing to replace" },
      ]);
      expect(await rows(`SELECT id, name, age, email, note FROM \`${db}\`.people ORDER BY id`)).toEqual([
        { id: 1, name: "A", age: 10, email: null, note: "none" },
        { id: 2, name: "B", age: null, email: "b@x", note: "none" },
        { id: 3, name: "c", age: 33, email: null, note: "keep" },
      ]);
    } finally {
      await c.close();
    }
  });

  it("deletes by key in chunks, in order with the other ops; a key not there is no failure", async () => {
    const { db, url } = await makeDb(`${TARGET}
INSERT INTO people (id, name) SELECT seq, CONCAT('p', seq) FROM seq_1_to_2400;
CREATE TABLE k (n INT NOT NULL, size ENUM('small', 'large') NOT NULL, v INT, PRIMARY KEY (n, size));
INSERT INTO k VALUES (1, 'small', 1), (1, 'large', 2), (2, 'small', 3);`);
    const c = await open(url, { write: true });
    try {
      const s = await schemaOf(c, "people");
      // Every odd id (and ids that are not there), then id 5 back and id 7 deleted, then the reverse.
      const ops: WriteOp[] = [];
      for (let i = 1; i <= 2600; i += 2) ops.push({ op: "delete", match: { id: i } });
      ops.push({ op: "insert", record: { id: 5, name: "back" } }, { op: "delete", match: { id: 7 } });
      ops.push({ op: "insert", record: { id: 7, name: "back" } }, { op: "delete", match: { id: 5 } });
      ops.push({ op: "delete", match: { name: "p2" } }, { op: "delete", match: { id: 4 } });
      ops.push({ op: "delete", match: {} }, { op: "delete", match: { nope: 1 } });
      const result = await c.write(s, ops);
      const last = ops.length - 1;
      expect(result.failures).toEqual([
        { index: last - 1, reason: "delete without match fields: nothing to match" },
        { index: last, reason: `${db}.people.nope: Unknown column 'nope' in 'WHERE'` },
      ]);
      const ids = (await rows(`SELECT id FROM \`${db}\`.people ORDER BY id`)).map((r) => r.id);
      expect(ids).toEqual([...Array.from({ length: 1198 }, (_, i) => 2 * (i + 3)), 7].sort((x, y) => x - y));
      // A composite key with an ENUM, its values spelled as replace and update spell them.
      const k = await schemaOf(c, "k");
      const r2 = await c.write(k, [
        { op: "delete", match: { n: 1, size: "large" } },
        { op: "delete", match: { size: "small", n: 2 } },
        { op: "delete", match: { n: 3, size: "small" } },
      ]);
      expect(r2.failures).toEqual([]);
      expect(await rows(`SELECT n, size FROM \`${db}\`.k`)).toEqual([{ n: 1, size: "small" }]);
    } finally {
      await c.close();
    }
  });

  it("a delete of a record a foreign key still references becomes a failure naming it; the rest applies", async () => {
    const { db, url } = await makeDb(`
CREATE TABLE parent (id INT NOT NULL PRIMARY KEY, name VARCHAR(10)) ENGINE=InnoDB;
CREATE TABLE child (id INT NOT NULL PRIMARY KEY, parent_id INT, FOREIGN KEY (parent_id) REFERENCES parent (id)) ENGINE=InnoDB;
INSERT INTO parent VALUES (1, 'one'), (2, 'two'), (3, 'three');
INSERT INTO child VALUES (10, 1);`);
    const c = await open(url, { write: true });
    try {
      const parent = await schemaOf(c, "parent");
      const child = await schemaOf(c, "child");
      const result = await c.write(
        parent,
        [
          { op: "delete", match: { id: 2 } },
          { op: "delete", match: { id: 1 } },
          { op: "insert", record: { id: 4, name: "four" } },
          { op: "delete", match: { id: 3 } },
        ],
        { runId: "rb", id: "rb", entry: (r) => ({ failed: r.failures.map((f) => f.index) }) },
      );
      expect(result.failures).toEqual([
        {
          index: 1,
          reason: `${db}.parent: Cannot delete or update a parent row: a foreign key constraint fails (\`${db}\`.\`child\`, CONSTRAINT \`child_ibfk_1\` FOREIGN KEY (\`parent_id\`) REFERENCES \`parent\` (\`id\`))`,
        },
      ]);
      expect(await rows(`SELECT id FROM \`${db}\`.parent ORDER BY id`)).toEqual([{ id: 1 }, { id: 4 }]);
      expect(await c.journal().get("rb")).toEqual({ failed: [1] });
      // Other ops still load without checks afterwards (a child before its parent).
      expect((await c.write(child, [{ op: "insert", record: { id: 11, parent_id: 9 } }])).failures).toEqual([]);
      // Deleting the children first lets the parent go (as a rollback undoes an import).
      const r2 = await c.write(child, [
        { op: "delete", match: { id: 10 } },
        { op: "delete", match: { id: 11 } },
      ]);
      expect(r2.failures).toEqual([]);
      expect((await c.write(parent, [{ op: "delete", match: { id: 1 } }])).failures).toEqual([]);
      expect(await rows(`SELECT id FROM \`${db}\`.parent ORDER BY id`)).toEqual([{ id: 4 }]);
    } finally {
      await c.close();
    }
  });

  it("looks up existing records, decoded as read() decodes them", async () => {
    const { url } = await makeDb(EVERYTHING);
    const c = await open(url, { write: true });
    try {
      const s = await schemaOf(c, "everything");
      const found = await c.lookup(s, ["id"], [[1], [3], [10]]);
      expect([...found.keys()]).toEqual(["[1]", "[10]"]);
      const [read] = await readAll(c, s);
      expect(encodeRow(found.get("[1]") as Row)).toEqual(encodeRow(read?.records[0] as Row));
      const byTwo = await c.lookup(
        s,
        ["t_ubig", "t_enum"],
        [
          [2n ** 64n - 1n, "large"],
          [0, "small"],
          [null, null],
        ],
      );
      expect(byTwo.size).toBe(2);
      // NULL matches nothing, as in SQL (and the other connectors).
      expect((await c.lookup(s, ["t_tiny"], [[null]])).size).toBe(0);
    } finally {
      await c.close();
    }
  });

  it("creates a missing target database, and keeps a journal listed newest first", async () => {
    const db = name();
    const c = await open(urlOf(db), { write: true });
    try {
      await c.check();
      expect((await rows(`SHOW DATABASES LIKE '${db}'`)).length).toBe(1);
      expect(await c.journal().list()).toEqual([]);
      await c.journal().save("a", { id: "a", startedAt: "2026-01-01T00:00:00Z" });
      await c.journal().save("b", { id: "b", startedAt: "2026-02-01T00:00:00Z" });
      await c.journal().save("a", { id: "a", startedAt: "2026-01-01T00:00:00Z", status: "done" });
      expect(await c.journal().list()).toEqual([
        { id: "b", startedAt: "2026-02-01T00:00:00Z" },
        { id: "a", startedAt: "2026-01-01T00:00:00Z", status: "done" },
      ]);
      expect((await c.discover()).map((s) => s.name)).toEqual([]);
    } finally {
      await c.close();
      await c.close();
    }
  });
});

describe("connection errors", () => {
  it("names a closed port and the fix, never the password", async () => {
    const url = "mysql://root:Sup3rSecret@127.0.0.1:1/anything";
    for (const options of [{}, { write: true }]) {
      const err = await errorOf(
        (async () => {
          const c = await openConnector(url, options);
          try {
            await c.check();
          } finally {
            await c.close();
          }
        })(),
      );
      expect(isFerryError(err, "E_CONNECTION")).toBe(true);
      const message = (err as Error).message;
      expect(message).toContain("mysql://root:***@127.0.0.1:1/anything");
      expect(message).toContain("is the server running");
      expect(message).not.toContain("Sup3rSecret");
      expect(JSON.stringify((err as { details: unknown }).details)).not.toContain("Sup3rSecret");
    }
  });

  it("reports a missing source database as missing, and wrong credentials as access denied", async () => {
    const missing = await errorOf(openConnector(urlOf(`ferry_t_missing_${randomBytes(4).toString("hex")}`), {}));
    expect(isFerryError(missing, "E_CONNECTION")).toBe(true);
    expect((missing as { details: { missing?: boolean } }).details.missing).toBe(true);
    const denied = await errorOf(openConnector(`mysql://nobody_${randomBytes(3).toString("hex")}:pw@127.0.0.1/x`, {}));
    expect(isFerryError(denied, "E_CONNECTION")).toBe(true);
    expect((denied as Error).message).toMatch(/access denied .*check the user and password/);
  });
});

describe("split and ranged reads", () => {
  it("covers every record exactly once, in key order, for any number of parts", async () => {
    const { url } = await makeDb(`
CREATE TABLE dense (id INT NOT NULL PRIMARY KEY, v INT);
INSERT INTO dense SELECT seq, seq % 7 FROM seq_1_to_60000;
CREATE TABLE pairs (a INT NOT NULL, b VARCHAR(10) NOT NULL, v INT, PRIMARY KEY (a, b));
INSERT INTO pairs SELECT seq DIV 3, CONCAT('k', seq % 3), seq FROM seq_0_to_74999;
DELETE FROM pairs WHERE a % 5 = 0;
CREATE TABLE small (id INT PRIMARY KEY);
INSERT INTO small VALUES (1), (2);
CREATE TABLE nokey (v INT);`);
    const c = await open(url, { readers: 3 });
    try {
      const all = await c.discover();
      const table = (n: string) => all.find((s) => s.name === n) as CollectionSchema;
      expect(await c.split(table("small"), 4)).toEqual([]);
      expect(await c.split(table("nokey"), 4)).toEqual([]);
      for (const t of ["dense", "pairs"]) {
        const s = table(t);
        const keyOf = (r: Row): string => JSON.stringify(s.primaryKey.map((k) => encodeValue(r[k] as Value)));
        const whole: string[] = [];
        for await (const b of c.read(s, { batchSize: 7000, fields: s.primaryKey })) whole.push(...b.records.map(keyOf));
        expect(whole.length).toBe(60000);
        await fc.assert(
          fc.asyncProperty(
            fc.integer({ min: 2, max: 9 }),
            fc.integer({ min: 500, max: 9000 }),
            async (parts, batchSize) => {
              const bounds = await c.split(s, parts);
              expect(bounds.length).toBe(parts - 1);
              const ranges = [...bounds, undefined].map((upTo, i) => ({ after: bounds[i - 1], upTo }));
              // The ranges are read concurrently, as parallel jobs read them.
              const parts_ = await Promise.all(
                ranges.map(async (r) => {
                  const got: string[] = [];
                  const opts = {
                    batchSize,
                    ...(r.after ? { after: r.after } : {}),
                    ...(r.upTo ? { upTo: r.upTo } : {}),
                  };
                  for await (const b of c.read(s, opts)) got.push(...b.records.map(keyOf));
                  return got;
                }),
              );
              for (const p of parts_) expect(p.length).toBeGreaterThan(0);
              expect(parts_.flat()).toEqual(whole);
            },
          ),
          { numRuns: 6 },
        );
      }
    } finally {
      await c.close();
    }
  });
});

describe("snapshots", () => {
  it("reads one snapshot with N readers: rows committed after open are not seen", async () => {
    const { db, url } = await makeDb(
      "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v INT); INSERT INTO t SELECT seq, seq FROM seq_1_to_60000;",
    );
    const c = await open(url, { readers: 3 });
    try {
      expect(c.readers).toBe(3);
      await admin.query(`INSERT INTO \`${db}\`.t SELECT seq, seq FROM \`${db}\`.seq_60001_to_60100`);
      await admin.query(`UPDATE \`${db}\`.t SET v = -1 WHERE id <= 10`);
      const s = await schemaOf(c, "t");
      expect(await c.count(s)).toBe(60000);
      const bounds = await c.split(s, 3);
      const counts = await Promise.all(
        [...bounds, undefined].map(async (upTo, i) => {
          let n = 0;
          let changed = 0;
          const after = bounds[i - 1];
          for await (const b of c.read(s, {
            batchSize: 5000,
            ...(after ? { after } : {}),
            ...(upTo ? { upTo } : {}),
          })) {
            n += b.records.length;
            changed += b.records.filter((r) => r.v === -1).length;
          }
          return { n, changed };
        }),
      );
      expect(counts.reduce((a, x) => a + x.n, 0)).toBe(60000);
      expect(counts.reduce((a, x) => a + x.changed, 0)).toBe(0);
      expect((await c.lookup(s, ["id"], [[60001]])).size).toBe(0);
    } finally {
      await c.close();
    }
    const fresh = await open(url);
    try {
      expect(await fresh.count(await schemaOf(fresh, "t"))).toBe(60100);
    } finally {
      await fresh.close();
    }
  });

  it("shares one session when FLUSH TABLES WITH READ LOCK is refused, and names missing grants", async () => {
    const { db, url } = await makeDb(
      "CREATE TABLE t (id INT NOT NULL PRIMARY KEY); INSERT INTO t SELECT seq FROM seq_1_to_3000;",
    );
    const user = `ferry_t_u${randomBytes(3).toString("hex")}`;
    users.push(user);
    await admin.query(`CREATE USER '${user}'@'%' IDENTIFIED BY 'pw'`);
    await admin.query(`GRANT SELECT ON \`${db}\`.* TO '${user}'@'%'`);
    const asUser = url.replace("mysql://root@", `mysql://${user}:pw@`);
    const c = await open(asUser, { readers: 3 });
    try {
      expect(c.readers).toBe(1);
      expect(c.readersFallback).toMatch(/RELOAD/);
      const s = await schemaOf(c, "t");
      const reads = await Promise.all(
        [0, 1, 2].map(async () => {
          let n = 0;
          for await (const b of c.read(s, { batchSize: 500 })) n += b.records.length;
          return n;
        }),
      );
      expect(reads).toEqual([3000, 3000, 3000]);
    } finally {
      await c.close();
    }
    const w = await open(asUser, { write: true });
    try {
      const s = await schemaOf(w, "t");
      const err = await errorOf(w.write(s, [{ op: "insert", record: { id: 5000 } }]));
      expect(isFerryError(err, "E_PERMISSION")).toBe(true);
      expect((err as Error).message).toContain(`${db}.t`);
      expect((err as Error).message).toMatch(/GRANT .*INSERT/);
      expect((err as Error).message).not.toContain(":pw@");
    } finally {
      await w.close();
    }
  });
});

describe("reads that stop early", () => {
  it("resume after a bookmark, keyed and keyless, and leave the session usable", async () => {
    const { url } = await makeDb(`
CREATE TABLE log (at INT, msg VARCHAR(20));
INSERT INTO log SELECT seq, CONCAT('m', seq) FROM seq_1_to_30000;
CREATE TABLE k (id BIGINT UNSIGNED NOT NULL PRIMARY KEY);
INSERT INTO k SELECT seq * 1000000000000 FROM seq_1_to_3000;`);
    const c = await open(url);
    try {
      for (const t of ["log", "k"]) {
        const s = await schemaOf(c, t);
        const whole = (await readAll(c, s, 1000)).flatMap((b) => b.records);
        let bookmark: Bookmark | undefined;
        const first: Row[] = [];
        for await (const b of c.read(s, { batchSize: 1000 })) {
          first.push(...b.records);
          bookmark = b.bookmark;
          if (first.length >= 2000) break;
        }
        expect(bookmark).toEqual(t === "log" ? { offset: 2000 } : { after: [2000000000000000] });
        const rest = (await readAll(c, s, 700, bookmark)).flatMap((b) => b.records);
        expect([...first, ...rest].map((r) => encodeRow(r))).toEqual(whole.map((r) => encodeRow(r)));
      }
    } finally {
      await c.close();
    }
  });
});

describe("undo log", () => {
  const TABLE = "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v VARCHAR(20) NULL)";

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

  async function table(): Promise<{ db: string; url: string; c: MysqlConnector; s: CollectionSchema }> {
    const { db, url } = await makeDb(TABLE);
    const c = await open(url, { write: true });
    return { db, url, c, s: await schemaOf(c, "t") };
  }

  const undoTables = async (db: string): Promise<number> =>
    Number(
      (
        await rows(
          `SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${db}' AND TABLE_NAME = '_ferry_undo'`,
        )
      )[0]?.n,
    );

  it("saves a batch's undo row with its checkpoint; undo() yields it, list() never does, read-only too", async () => {
    const { db, url, c, s } = await table();
    const { undo: _, ...plain } = undoCheckpoint("r1", "r1", undefined);
    await c.write(s, [{ op: "insert", record: { id: 1, v: "a" } }], plain);
    // No checkpoint asked for an undo log yet: no undo table either.
    expect(await undoTables(db)).toBe(0);
    await c.write(s, [], undoCheckpoint("r1", "r1", undefined));
    expect(await rows(`SELECT * FROM \`${db}\`._ferry_undo`)).toEqual([]);
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
    // Exactly the run: `=` on a _bin column would find "r1" for "r1 " too.
    expect(await undoOf(c.journal(), "r1 ")).toEqual([]);
    expect(await c.journal().list()).toEqual([{ id: "r1", startedAt: "2026-01-01T00:00:00Z", failed: 1 }]);
    expect((await c.discover()).map((x) => x.name)).toEqual(["t"]);
    await c.close();

    const ro = await open(url);
    expect(await undoOf(ro.journal(), "r1")).toEqual([{ runId: "r1", seq: 7, entry }]);
    expect(await ro.journal().list()).toHaveLength(1);
    expect(isFerryError(await errorOf(ro.journal().forget("r1")), "E_UNSUPPORTED")).toBe(true);
    await ro.close();
  });

  it("finds no undo rows, and forgets nothing, where there is no journal", async () => {
    const { db, url } = await makeDb(TABLE);
    const ro = await open(url);
    expect(await undoOf(ro.journal(), "r1")).toEqual([]);
    await ro.close();
    const c = await open(url, { write: true });
    expect(await undoOf(c.journal(), "r1")).toEqual([]);
    await c.journal().forget("r1");
    expect(await c.journal().list()).toEqual([]);
    expect(await undoTables(db)).toBe(0);
    await c.close();
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
    const got = await undoOf(c.journal(), "run");
    expect(got.map((r) => r.seq)).toEqual([...seqs].reverse());
    expect(got.every((r) => r.runId === "run" && (r.entry as { seq: number }).seq === r.seq)).toBe(true);
    expect((got.find((r) => r.seq === 80)!.entry as { pad: string }).pad).toBe(big);
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

  it("saves and reads back a row larger than max_allowed_packet, in parts", async () => {
    const { db, c, s } = await table();
    const packet = Number((await rows("SELECT @@GLOBAL.max_allowed_packet AS p"))[0]?.p);
    // Four UTF-8 bytes per emoji (a surrogate pair: parts never split one), quotes and backslashes escaped.
    const entry = { text: `${"🚢".repeat(Math.ceil(packet / 4) + 1000)}'"\\`, n: 1 };
    await c.write(s, [{ op: "insert", record: { id: 1 } }], undoCheckpoint("big", "big", 3, entry));
    await c.write(s, [{ op: "insert", record: { id: 2 } }], undoCheckpoint("big", "big", 4, { small: true }));
    const parts = await rows(`SELECT COUNT(*) AS n FROM \`${db}\`._ferry_undo WHERE seq = 3`);
    expect(Number(parts[0]?.n)).toBeGreaterThan(1);
    const got = await undoOf(c.journal(), "big");
    expect(got.map((r) => r.seq)).toEqual([4, 3]);
    expect(got[1]?.entry).toEqual(entry);
    await c.journal().forget("big");
    expect(await rows(`SELECT seq FROM \`${db}\`._ferry_undo`)).toEqual([]);
    await c.close();
  });

  it("a batch whose transaction fails leaves no undo row, nor its records or checkpoint", async () => {
    const { db, c, s } = await table();
    await c.write(s, [{ op: "insert", record: { id: 1 } }], undoCheckpoint("r", "r", 1));
    // The undo row fails it, after the ops and the checkpoint were written: a seq already logged.
    const dup = await errorOf(c.write(s, [{ op: "insert", record: { id: 4 } }], undoCheckpoint("r", "r/t/1", 1)));
    expect(isFerryError(dup, "E_WRITE")).toBe(true);
    // `undo` throws.
    const thrown = await errorOf(
      c.write(s, [{ op: "insert", record: { id: 5 } }], {
        ...undoCheckpoint("r", "r/t/2", 5),
        undo: () => {
          throw new Error("no undo");
        },
      }),
    );
    expect((thrown as Error).message).toMatch(/no undo/);
    // A later part of a large row fails (its place is taken): the parts before it go with the batch.
    await admin.query(`INSERT INTO \`${db}\`._ferry_undo (run_id, seq, part, size, entry) VALUES ('r', 9, 1, 0, '')`);
    const packet = Number((await rows("SELECT @@GLOBAL.max_allowed_packet AS p"))[0]?.p);
    const long = await errorOf(
      c.write(s, [{ op: "insert", record: { id: 6 } }], undoCheckpoint("r", "r/t/3", 9, "x".repeat(packet))),
    );
    expect(isFerryError(long, "E_WRITE")).toBe(true);
    expect(await rows(`SELECT seq, part FROM \`${db}\`._ferry_undo ORDER BY seq, part`)).toEqual([
      { seq: 1, part: 0 },
      { seq: 9, part: 1 },
    ]);
    await admin.query(`DELETE FROM \`${db}\`._ferry_undo WHERE seq = 9`);
    expect(await rows(`SELECT id FROM \`${db}\`.t`)).toEqual([{ id: 1 }]);
    expect((await undoOf(c.journal(), "r")).map((r) => r.seq)).toEqual([1]);
    expect(await rows(`SELECT COUNT(*) AS n FROM \`${db}\`._ferry_undo`)).toEqual([{ n: 1 }]);
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
    const gone = ["run-1", "a_b", "50%", "b\\c"];
    for (const run of gone) {
      await j.forget(run);
      expect(await undoOf(j, run)).toEqual([]);
    }
    await j.forget("never-there");
    await j.forget("run-1 ");
    const kept = runs.filter((r) => !gone.includes(r));
    expect(await ids()).toEqual(all.filter((x) => kept.some((r) => x === r || x.startsWith(`${r}/`))));
    for (const run of kept) {
      expect(await undoOf(j, run)).toHaveLength(3);
      expect(await j.get(run)).toBeDefined();
    }
    expect(await j.get("run-1")).toBeUndefined();
    await c.close();
  });
});
