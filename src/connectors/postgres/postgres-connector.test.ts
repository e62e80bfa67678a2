import { randomBytes } from "node:crypto";
import fc from "fast-check";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { Checkpoint, JournalStore, ReadBatch, UndoRow, WriteOp } from "../../core/connector.js";
import { copy } from "../../core/copy.js";
import { isFerryError } from "../../core/errors.js";
import type { FerryEvent } from "../../core/events.js";
import type { Bookmark } from "../../core/messages.js";
import { openConnector } from "../../core/registry.js";
import type { CollectionSchema, FieldSchema } from "../../core/schema.js";
import { keyString, PreciseDate, type Row } from "../../core/values.js";
import "../index.js";
import { PostgresConnector, postgresFactory } from "./postgres-connector.js";
import { parsePostgresUrl } from "./postgres-url.js";

// The PostgreSQL on this machine (trust auth). Every test fails, never skips, when it is down.
const SERVER = { host: "127.0.0.1", port: 5432, user: "postgres" };
const DATABASE = "ferry_test";
const BASE = `postgres://${SERVER.user}@${SERVER.host}:${SERVER.port}/${DATABASE}`;

let admin: pg.Client;
const schemas: string[] = [];
const databases: string[] = [];

beforeAll(async () => {
  const root = new pg.Client({ ...SERVER, database: "postgres" });
  await root.connect();
  try {
    await root.query(`CREATE DATABASE ${DATABASE}`).catch((e: { code?: string }) => {
      if (e.code !== "42P04" && e.code !== "23505") throw e;
    });
  } finally {
    await root.end();
  }
  admin = new pg.Client({ ...SERVER, database: DATABASE });
  await admin.connect();
});

afterAll(async () => {
  for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(s)} CASCADE`);
  await admin.end();
  if (databases.length > 0) {
    const root = new pg.Client({ ...SERVER, database: "postgres" });
    await root.connect();
    for (const d of databases) await root.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(d)} WITH (FORCE)`);
    await root.end();
  }
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A new schema name (dropped after the tests), created with `sql` run in it when given. */
async function freshSchema(sql?: string): Promise<{ schema: string; url: string }> {
  const schema = `t_${randomBytes(6).toString("hex")}`;
  schemas.push(schema);
  if (sql !== undefined) {
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.query(`SET search_path = ${schema}; ${sql}; RESET search_path`);
  }
  return { schema, url: `${BASE}?schema=${schema}` };
}

async function rowsText(schema: string, table: string, order = "1"): Promise<string[]> {
  const r = await admin.query<{ t: string }>(`SELECT x::text AS t FROM ${schema}.${table} x ORDER BY ${order}`);
  return r.rows.map((row) => row.t);
}

async function open(url: string, options: { write?: boolean; readers?: number; writers?: number } = {}) {
  return (await openConnector(url, options)) as PostgresConnector;
}

async function schemaOf(c: PostgresConnector, name: string): Promise<CollectionSchema> {
  const s = (await c.discover()).find((x) => x.name === name);
  if (!s) throw new Error(`no collection ${name}`);
  return s;
}

async function readAllRows(
  c: PostgresConnector,
  s: CollectionSchema,
  opts: { batchSize: number; after?: Bookmark; upTo?: Bookmark },
) {
  const out: Row[] = [];
  for await (const b of c.read(s, opts)) out.push(...b.records);
  return out;
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

const EVERYTHING = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
  CREATE TABLE parent (id int PRIMARY KEY, code text UNIQUE);
  CREATE TABLE everything (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    s serial,
    i2 smallint, i4 integer NOT NULL DEFAULT 7, i8 bigint,
    f4 real, f8 double precision, n numeric(12,2), nu numeric,
    b boolean, t text COLLATE "C", vc varchar(10), c char(3),
    by bytea, u uuid, j json, jb jsonb,
    d date, ts timestamp(3), tsz timestamptz,
    ia integer[], ta text[], m mood, ma mood[],
    tm time, iv interval, ip inet, p posint,
    g integer GENERATED ALWAYS AS (i4 * 2) STORED,
    parent_id int REFERENCES parent(id) ON DELETE CASCADE ON UPDATE SET NULL,
    CONSTRAINT pos CHECK (i4 > 0),
    UNIQUE (vc, c)
  );
  CREATE INDEX everything_ts_idx ON everything (ts DESC);
  CREATE INDEX everything_lower_idx ON everything (lower(t));
  CREATE INDEX everything_part_idx ON everything (i2) WHERE i2 > 0;
  INSERT INTO parent VALUES (1, 'a'), (2, 'b');
  INSERT INTO everything (i2, i4, i8, f4, f8, n, nu, b, t, vc, c, by, u, j, jb, d, ts, tsz, ia, ta, m, ma, tm, iv, ip, p, parent_id) VALUES
   (-32768, 1, 9223372036854775807, 'NaN', '-0', 1234567890.12, 'NaN', true, E'tab\\there\\nnew\\\\line', 'ab', 'x', '\\x00ff5c',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b":1,"a":[1,2.5]}', '{"b":1,"a":{"c":null}}', '0044-03-15 BC', '2024-01-02 03:04:05.123',
    '2024-01-02 03:04:05.123456+02', '{{1,2},{3,NULL}}', '{"a,b","c\\"d",NULL,"NULL",""}', 'happy', '{sad,ok}', '12:34:56.789',
    '1 year 2 mons 3 days 04:05:06.5', '192.168.0.1/24', 5, 1),
   (32767, 2, -9223372036854775808, 'Infinity', '-Infinity', -0.01, '-12345678901234567890.123456789', false, '', 'zzzzzzzzzz', 'ab', '',
    '00000000-0000-0000-0000-000000000000', '[]', '[]', 'infinity', '-infinity', 'infinity', '{}', '{}', 'sad', '{}', '00:00', '-1 days', '::1', 1, NULL),
   (NULL, 3, 9007199254740993, 1.17549435e-38, 1.7976931348623157e308, NULL, 'Infinity', NULL, 'żółć 日本 🚢', NULL, NULL, NULL, NULL,
    '{}', '"str"', '2000-02-29', '0001-01-01 00:00:00 BC', '1970-01-01 00:00:00.000001+00', '{NULL}', '{NULL}', NULL, '{NULL}', NULL, NULL, NULL, NULL, 2),
   (0, 4, 0, 0.1, 0.1, 0, 0, true, 'x', 'x', 'x', '\\x', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '{}', '{}', '-infinity', '2262-04-11 23:47:16.854',
    '4713-11-24 00:00:00+00 BC', '{-2147483648,2147483647}', '{"\\\\\\\\"}', 'ok', '{happy,happy}', '24:00', '0', '0.0.0.0', 2147483647, NULL)`;

describe("postgres URLs", () => {
  it("parses user, password, host, port, database and schema, without the environment", () => {
    expect(parsePostgresUrl("postgresql://app:p%40ss@db.example:6543/shop?schema=sales")).toMatchObject({
      host: "db.example",
      port: 6543,
      user: "app",
      password: "p@ss",
      database: "shop",
      schema: "sales",
      ssl: false,
    });
    expect(parsePostgresUrl("postgres://app:s3cr@t/x@[::1]/db")).toMatchObject({
      host: "::1",
      password: "s3cr@t/x",
      port: 5432,
    });
    expect(parsePostgresUrl("postgres://u@h/d")).toMatchObject({ schema: "public", password: "" });
    expect(parsePostgresUrl("postgres://u@/d?host=/run/postgresql").host).toBe("/run/postgresql");
    const e = (() => {
      try {
        parsePostgresUrl("postgres://u:hunter2@h/d?bogus=1");
      } catch (err) {
        return err;
      }
    })();
    expect(isFerryError(e, "E_CONFIG")).toBe(true);
    expect((e as Error).message).not.toContain("hunter2");
  });

  it("takes nothing from PG* environment variables", async () => {
    const { url } = await freshSchema(
      "CREATE TABLE t (id int PRIMARY KEY, at timestamptz); INSERT INTO t VALUES (1, '2024-01-01 00:00:00+00')",
    );
    const env = {
      PGHOST: "192.0.2.1",
      PGPORT: "1",
      PGUSER: "nobody",
      PGPASSWORD: "from-env",
      PGDATABASE: "nowhere",
      PGOPTIONS: "-c search_path=nowhere -c TimeZone=Asia/Tokyo",
      PGSSLMODE: "require",
      PGSSLNEGOTIATION: "direct",
      PGREPLICATION: "database",
      PGCLIENT_ENCODING: "LATIN1",
      PGAPPNAME: "not-ferry",
      PGCONNECT_TIMEOUT: "1",
    };
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      const c = await open(url);
      const s = await schemaOf(c, "t");
      const rows = await readAllRows(c, s, { batchSize: 10 });
      expect((rows[0]!.at as Date).toISOString()).toBe("2024-01-01T00:00:00.000Z");
      await c.close();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it("displays the URL without the password, and identifies host:port/db/schema", async () => {
    const c = await open("postgres://app:Sup3rS3cret@127.0.0.1:5432/shop?schema=s1", { write: true });
    expect(c.displayUrl).toBe("postgres://app:***@127.0.0.1:5432/shop?schema=s1");
    expect(c.identity).toBe("127.0.0.1:5432/shop/s1");
    await c.close();
  });
});

describe("connection errors", () => {
  it("says E_CONNECTION on a closed port, with pg_isready, and never the password", async () => {
    const url = "postgres://ferry:Sup3rS3cret@127.0.0.1:1/db";
    const err = await errorOf(open(url));
    expect(isFerryError(err, "E_CONNECTION")).toBe(true);
    const target = await open(url, { write: true });
    const err2 = await errorOf(target.check());
    await target.close();
    expect(isFerryError(err2, "E_CONNECTION")).toBe(true);
    expect((err2 as Error).message).not.toContain("Sup3rS3cret");
    const e = err as Error & { details: unknown };
    expect(e.message).toContain("pg_isready -h 127.0.0.1 -p 1");
    expect(e.message).toContain("postgres://ferry:***@127.0.0.1:1/db");
    expect(e.message).not.toContain("Sup3rS3cret");
    expect(JSON.stringify(e.details)).not.toContain("Sup3rS3cret");
    const viaCopy = await errorOf(copy({ from: url, to: `${BASE}?schema=nowhere` }));
    expect(isFerryError(viaCopy, "E_CONNECTION")).toBe(true);
    expect((viaCopy as Error).message).not.toContain("Sup3rS3cret");
  });

  it("a missing database is E_CONNECTION with missing: true read-only, and created for writing", async () => {
    const db = `ferry_new_${randomBytes(4).toString("hex")}`;
    databases.push(db);
    const url = `postgres://postgres@127.0.0.1:5432/${db}?schema=fresh`;
    const err = await errorOf(open(url));
    expect(isFerryError(err, "E_CONNECTION")).toBe(true);
    expect((err as { details: { missing?: boolean } }).details.missing).toBe(true);
    expect((err as Error).message).toContain(`createdb -h 127.0.0.1 -p 5432 -U postgres ${db}`);

    const writer = await open(url, { write: true });
    await writer.check();
    await writer.close();
    const again = await open(url);
    await again.check(); // database and schema exist now
    expect(await again.discover()).toEqual([]);
    expect(await again.journal().list()).toEqual([]);
    await again.close();
  });

  it("a refused privilege is E_PERMISSION naming schema.table and what to grant", async () => {
    const role = `ferry_np_${randomBytes(4).toString("hex")}`;
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    try {
      const { schema, url } = await freshSchema("CREATE TABLE secret (id int PRIMARY KEY)");
      await admin.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`);
      const asRole = url.replace("postgres://postgres@", `postgres://${role}@`);
      const c = await open(asRole);
      const s = await schemaOf(c, "secret");
      const err = await errorOf(readAllRows(c, s, { batchSize: 10 }));
      expect(isFerryError(err, "E_PERMISSION")).toBe(true);
      expect((err as Error).message).toContain(`${schema}.secret`);
      expect((err as Error).message).toContain(`GRANT SELECT ON "${schema}"."secret" TO "${role}"`);
      expect(await c.discover()).toHaveLength(1); // the snapshot is still usable
      await c.close();
      const target = await open(asRole, { write: true });
      const denied = await errorOf(target.prepare({ ...s, name: "other", native: undefined, engine: undefined }));
      expect(isFerryError(denied, "E_PERMISSION")).toBe(true);
      expect((denied as Error).message).toContain(`GRANT USAGE, CREATE ON SCHEMA "${schema}" TO "${role}"`);
      await target.close();
    } finally {
      await admin.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it("reads the same values whatever the server's session defaults", async () => {
    const db = `ferry_odd_${randomBytes(4).toString("hex")}`;
    databases.push(db);
    const root = new pg.Client({ ...SERVER, database: "postgres" });
    await root.connect();
    await root.query(`CREATE DATABASE ${db}`);
    for (const set of [
      "TimeZone = 'America/New_York'",
      "DateStyle = 'SQL, DMY'",
      "extra_float_digits = 0",
      "bytea_output = 'escape'",
      "IntervalStyle = 'sql_standard'",
      "search_path = nowhere",
    ]) {
      await root.query(`ALTER DATABASE ${db} SET ${set}`);
    }
    await root.end();
    const odd = new pg.Client({ ...SERVER, database: db });
    await odd.connect();
    await odd.query(`CREATE TABLE public.t (id int PRIMARY KEY, ts timestamptz, d date, f float8, b bytea, iv interval);
      INSERT INTO public.t VALUES (1, '2024-07-01 12:00:00.5+00', '2024-07-01', 1.0/3, '\\x00ff', '1 day 2 hours')`);
    await odd.end();
    const c = await open(`postgres://postgres@127.0.0.1:5432/${db}`);
    const [row] = await readAllRows(c, await schemaOf(c, "t"), { batchSize: 10 });
    await c.close();
    expect((row!.ts as Date).toISOString()).toBe("2024-07-01T12:00:00.500Z");
    expect((row!.d as Date).toISOString()).toBe("2024-07-01T00:00:00.000Z");
    expect(row?.f).toBe(1 / 3);
    expect(row?.b).toEqual(Buffer.from([0, 255]));
    expect(row?.iv).toBe("1 day 02:00:00");
  });

  it("a read-only instance whose schema is missing is E_CONNECTION with missing: true", async () => {
    const c = await open(`${BASE}?schema=no_such_schema_here`);
    const err = await errorOf(c.check());
    expect((err as { details: { missing?: boolean } }).details.missing).toBe(true);
    expect(await c.discover()).toEqual([]);
    await c.close();
  });
});

describe("discovery", () => {
  it("describes every column type with its attributes, keys, indexes and native DDL", async () => {
    const { schema, url } = await freshSchema(EVERYTHING);
    const c = await open(url);
    const all = await c.discover();
    expect(all.map((s) => s.name)).toEqual(["everything", "parent"]);
    const s = all.find((x) => x.name === "everything") as CollectionSchema;
    const f = (name: string) => s.fields.find((x) => x.name === name) as FieldSchema;
    expect(s.fields.map((x) => x.name)).toEqual([
      "id", "s", "i2", "i4", "i8", "f4", "f8", "n", "nu", "b", "t", "vc", "c", "by", "u", "j", "jb", "d", "ts", "tsz",
      "ia", "ta", "m", "ma", "tm", "iv", "ip", "p", "g", "parent_id",
    ]); // biome-ignore format: a list
    expect(f("id")).toEqual({
      name: "id",
      type: "integer",
      nativeType: "bigint",
      size: 8,
      nullable: false,
      autoIncrement: true,
    });
    expect(f("s")).toMatchObject({ type: "integer", size: 4, autoIncrement: true, nullable: false });
    expect(f("i2")).toEqual({ name: "i2", type: "integer", nativeType: "smallint", size: 2, nullable: true });
    expect(f("i4")).toMatchObject({ type: "integer", size: 4, nullable: false });
    expect(f("f4")).toMatchObject({ type: "float", size: 4, nativeType: "real" });
    expect(f("f8")).toMatchObject({ type: "float", size: 8, nativeType: "double precision" });
    expect(f("n")).toMatchObject({ type: "decimal", precision: 12, scale: 2, nativeType: "numeric(12,2)" });
    expect(f("nu")).toEqual({ name: "nu", type: "decimal", nativeType: "numeric", nullable: true });
    expect(f("b")).toMatchObject({ type: "boolean" });
    expect(f("t")).toEqual({ name: "t", type: "text", nativeType: "text", nullable: true });
    expect(f("vc")).toMatchObject({ type: "text", maxLength: 10, nativeType: "character varying(10)" });
    expect(f("vc").fixedLength).toBeUndefined();
    expect(f("c")).toMatchObject({ type: "text", maxLength: 3, fixedLength: true, nativeType: "character(3)" });
    expect(f("by")).toMatchObject({ type: "bytes", nativeType: "bytea" });
    expect(f("u")).toMatchObject({ type: "uuid" });
    expect(f("j")).toMatchObject({ type: "json", nativeType: "json" });
    expect(f("jb")).toMatchObject({ type: "json", nativeType: "jsonb" });
    expect(f("d")).toMatchObject({ type: "date", nativeType: "date" });
    expect(f("ts")).toMatchObject({
      type: "datetime",
      timezone: false,
      fractionDigits: 3,
      nativeType: "timestamp(3) without time zone",
    });
    expect(f("tsz")).toMatchObject({
      type: "datetime",
      timezone: true,
      fractionDigits: 6,
      nativeType: "timestamp with time zone",
    });
    expect(f("ia")).toMatchObject({ type: "json", arrayOf: "integer", nativeType: "integer[]" });
    expect(f("ta")).toMatchObject({ type: "json", arrayOf: "text", nativeType: "text[]" });
    expect(f("m")).toMatchObject({ type: "text", enumValues: ["sad", "ok", "happy"], nativeType: "mood" });
    expect(f("ma")).toMatchObject({ type: "json", arrayOf: "text", nativeType: "mood[]" });
    expect(f("tm")).toMatchObject({ type: "text", nativeType: "time without time zone" });
    expect(f("iv")).toMatchObject({ type: "text", nativeType: "interval" });
    expect(f("ip")).toMatchObject({ type: "text", nativeType: "inet" });
    expect(f("p")).toMatchObject({ type: "integer", size: 4, nativeType: "posint" });
    expect(f("g")).toMatchObject({ type: "integer", generated: true });
    expect(s.primaryKey).toEqual(["id"]);
    expect(s.uniqueKeys).toEqual([["vc", "c"]]);
    expect(s.foreignKeys).toEqual([
      {
        fields: ["parent_id"],
        references: { collection: "parent", fields: ["id"] },
        onDelete: "CASCADE",
        onUpdate: "SET NULL",
      },
    ]);
    expect(s.indexes).toEqual([
      { name: "everything_part_idx", fields: ["i2"], unique: false },
      { name: "everything_ts_idx", fields: ["ts"], unique: false },
    ]);
    expect(s.engine).toBe("postgres");
    expect(s.namespace).toBe(schema);
    const ddl = s.native?.ddl ?? [];
    expect(s.native?.engine).toBe("postgres");
    expect(ddl.join("\n")).not.toContain(schema);
    expect(ddl).toContain("-- post-data");
    const pre = ddl.slice(0, ddl.indexOf("-- post-data")).join("\n");
    const post = ddl.slice(ddl.indexOf("-- post-data") + 1).join("\n");
    expect(pre).toContain("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')");
    expect(pre).toContain("CREATE DOMAIN posint AS integer");
    expect(pre).toContain('"id" bigint GENERATED ALWAYS AS IDENTITY');
    expect(pre).toContain(`"s" integer DEFAULT nextval('everything_s_seq'::regclass) NOT NULL`);
    expect(pre).toContain('"g" integer GENERATED ALWAYS AS ((i4 * 2)) STORED');
    expect(pre).toContain('CONSTRAINT "pos" CHECK ((i4 > 0))');
    expect(pre).toContain('"t" text COLLATE pg_catalog."C"');
    expect(pre).not.toMatch(/PRIMARY KEY|UNIQUE|REFERENCES|CREATE INDEX/);
    expect(post).toContain('ADD CONSTRAINT "everything_pkey" PRIMARY KEY (id)');
    expect(post).toContain("CREATE INDEX everything_lower_idx ON everything USING btree (lower(t))");
    expect(post).toContain("CREATE INDEX everything_part_idx ON everything USING btree (i2) WHERE (i2 > 0)");
    expect(post).toContain("FOREIGN KEY (parent_id) REFERENCES parent(id) ON UPDATE SET NULL ON DELETE CASCADE");
    expect(await c.count(s)).toBe(4);
    await c.close();
  });

  it("never lists Ferry's own tables", async () => {
    const { url } = await freshSchema("CREATE TABLE a (id int); CREATE TABLE _ferry_journal (id text)");
    const c = await open(url);
    expect((await c.discover()).map((s) => s.name)).toEqual(["a"]);
    await c.close();
  });
});

describe("values", () => {
  it("reads every type into the value model", async () => {
    const { url } = await freshSchema(EVERYTHING);
    const c = await open(url);
    const rows = await readAllRows(c, await schemaOf(c, "everything"), { batchSize: 3 });
    const [r1, r2, r3, r4] = rows as [Row, Row, Row, Row];
    expect(r1).toMatchObject({
      id: 1,
      s: 1,
      i2: -32768,
      i4: 1,
      i8: 2n ** 63n - 1n,
      n: "1234567890.12",
      nu: "NaN",
      b: true,
    });
    expect(Number.isNaN(r1.f4)).toBe(true);
    expect(Object.is(r1.f8, -0)).toBe(true);
    expect(r1.t).toBe("tab\there\nnew\\line");
    expect(r1.c).toBe("x  ");
    expect(r1.by).toEqual(Buffer.from([0, 0xff, 0x5c]));
    expect(r1.u).toBe("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    expect(r1.j).toEqual({ b: 1, a: [1, 2.5] });
    expect(r1.jb).toEqual({ a: { c: null }, b: 1 });
    expect((r1.d as Date).toISOString()).toBe("-000043-03-15T00:00:00.000Z");
    expect((r1.ts as Date).toISOString()).toBe("2024-01-02T03:04:05.123Z");
    expect(r1.tsz).toBeInstanceOf(PreciseDate);
    expect((r1.tsz as Date).toISOString()).toBe("2024-01-02T01:04:05.123456Z");
    expect(r1.ia).toEqual([
      [1, 2],
      [3, null],
    ]);
    expect(r1.ta).toEqual(["a,b", 'c"d', null, "NULL", ""]);
    expect(r1).toMatchObject({
      m: "happy",
      ma: ["sad", "ok"],
      tm: "12:34:56.789",
      iv: "1 year 2 mons 3 days 04:05:06.5",
    });
    expect(r1).toMatchObject({ ip: "192.168.0.1/24", p: 5, g: 2, parent_id: 1 });
    expect(r2).toMatchObject({
      i8: -(2n ** 63n),
      f4: Number.POSITIVE_INFINITY,
      f8: Number.NEGATIVE_INFINITY,
      n: "-0.01",
    });
    expect(r2).toMatchObject({ nu: "-12345678901234567890.123456789", t: "", ia: [], ta: [], ma: [], j: [], jb: [] });
    expect((r2.d as Date).getTime()).toBe(8.64e15);
    expect((r2.ts as Date).getTime()).toBe(-8.64e15);
    expect((r2.tsz as Date).getTime()).toBe(8.64e15);
    expect(r2.by).toEqual(Buffer.alloc(0));
    expect(r3).toMatchObject({ i8: 2n ** 53n + 1n, f4: 1.1754944e-38, f8: 1.7976931348623157e308, nu: "Infinity" });
    expect(r3).toMatchObject({ t: "żółć 日本 🚢", jb: "str", ia: [null], ta: [null], ma: [null], m: null });
    expect((r3.ts as Date).toISOString()).toBe("0000-01-01T00:00:00.000Z");
    expect((r3.tsz as Date).toISOString()).toBe("1970-01-01T00:00:00.000001Z");
    expect(r4).toMatchObject({
      i8: 0,
      f4: 0.1,
      f8: 0.1,
      n: "0.00",
      nu: "0",
      ia: [-2147483648, 2147483647],
      ta: ["\\\\"],
    });
    expect((r4.tsz as Date).toISOString()).toBe("-004712-11-24T00:00:00.000Z");
    await c.close();
  });

  it("copies every type exactly PostgreSQL → PostgreSQL on the bulk path; sequences continue after the max", async () => {
    const { schema: a, url: from } = await freshSchema(EVERYTHING);
    const { schema: b, url: to } = await freshSchema();
    const bulk = vi.spyOn(PostgresConnector.prototype, "bulkCopyFrom");
    const write = vi.spyOn(PostgresConnector.prototype, "write");
    const r = await copy({ from, to, batchSize: 3 });
    expect(r.status).toBe("done");
    expect(r.total.copied).toBe(6);
    expect(bulk).toHaveBeenCalled();
    expect(write).not.toHaveBeenCalled();
    for (const t of ["parent", "everything"]) expect(await rowsText(b, t)).toEqual(await rowsText(a, t));
    // Keys, indexes and constraints were built after the data.
    const defs = async (s: string) =>
      (
        await admin.query<{ d: string }>(
          `SELECT indexdef AS d FROM pg_indexes WHERE schemaname = $1
           UNION ALL SELECT conname || ' ' || pg_get_constraintdef(c.oid) FROM pg_constraint c
           JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 ORDER BY 1`,
          [s],
        )
      ).rows
        .map((x) => x.d.replaceAll(`${s}.`, ""))
        .filter((d) => !d.includes("_ferry_journal"));
    expect(await defs(b)).toEqual(await defs(a));
    const next = await admin.query(`INSERT INTO ${b}.everything (i4) VALUES (9) RETURNING id, s, g`);
    expect(next.rows[0]).toEqual({ id: "5", s: 5, g: 18 });
    // finish again (as after a resume) is harmless.
    const target = await open(to, { write: true });
    const source = await open(from);
    for (const s of await source.discover()) await target.finish(s);
    await source.close();
    await target.close();
  });

  it("copies every type exactly on the record path too (the same values read and written back)", async () => {
    const { schema: a, url: from } = await freshSchema(EVERYTHING);
    const { schema: b, url: to } = await freshSchema();
    vi.spyOn(PostgresConnector.prototype, "canBulkCopyFrom").mockReturnValue(false);
    const write = vi.spyOn(PostgresConnector.prototype, "write");
    const r = await copy({ from, to, batchSize: 3 });
    expect(r.failures).toEqual([]);
    expect(r.status).toBe("done");
    expect(write).toHaveBeenCalled();
    for (const t of ["parent", "everything"]) expect(await rowsText(b, t)).toEqual(await rowsText(a, t));
    const next = await admin.query(`INSERT INTO ${b}.everything (i4) VALUES (9) RETURNING id, s`);
    expect(next.rows[0]).toEqual({ id: "5", s: 5 });
  });

  it("writes values of other types converted where exact, and refuses the rest by field", async () => {
    const { schema, url } = await freshSchema(
      "CREATE TABLE t (id int PRIMARY KEY, i int, tx text, d date, ts timestamptz, js jsonb, u uuid, arr int[], b boolean)",
    );
    const c = await open(url, { write: true });
    const s = await schemaOf(c, "t");
    const r = await c.write(s, [
      { op: "insert", record: { id: 1, i: "42", tx: 3.5, d: new Date(Date.UTC(2024, 1, 29)), js: "a string", b: 1 } },
      { op: "insert", record: { id: 2, i: 1.5 } },
      { op: "insert", record: { id: 3, tx: "nul\u0000here" } },
      { op: "insert", record: { id: 4, d: new Date(Number.NaN) } },
      {
        op: "insert",
        record: {
          id: 5,
          u: new Uint8Array(16).fill(0xab),
          arr: [
            [1, 2],
            [3, null],
          ],
          ts: new PreciseDate(Date.UTC(2020, 0, 1), 7),
        },
      },
      { op: "insert", record: { id: 6, i: 2n ** 40n } },
      { op: "insert", record: { id: 7, no_such_column: 1 } },
      { op: "insert", record: { id: 8, d: "not a date" } },
    ]);
    expect(r.failures.map((f) => f.index)).toEqual([1, 2, 3, 5, 6, 7]);
    expect(r.failures[5]?.reason).toMatch(/invalid input syntax for type date: "not a date" \(column t\.d\)/);
    expect(r.failures[0]?.reason).toMatch(/field i: 1.5 is not an integer/);
    expect(r.failures[1]?.reason).toMatch(/field tx: .*NUL/);
    expect(r.failures[2]?.reason).toMatch(/field d: zero date/);
    expect(r.failures[3]?.reason).toMatch(/field i: 1099511627776 is outside/);
    expect(r.failures[4]?.reason).toMatch(/no column no_such_column/);
    expect(await rowsText(schema, "t")).toEqual([
      '(1,42,3.5,2024-02-29,,"""a string""",,,t)',
      '(5,,,,"2020-01-01 00:00:00.000007+00",,abababab-abab-abab-abab-abababababab,"{{1,2},{3,NULL}}",)',
    ]);
    await c.close();
  });
});

describe("writes", () => {
  const TABLE = `CREATE TABLE m (id int PRIMARY KEY, email text UNIQUE, qty int NOT NULL DEFAULT 0 CHECK (qty >= 0), note text NOT NULL DEFAULT 'none')`;

  it("a refused record becomes a failure naming the constraint; the rest of the batch and the checkpoint land", async () => {
    const { schema, url } = await freshSchema(TABLE);
    const c = await open(url, { write: true });
    const s = await schemaOf(c, "m");
    const ops = Array.from({ length: 40 }, (_, i) => ({
      op: "insert" as const,
      record: { id: i + 1, email: `u${i + 1}@x`, qty: i === 12 ? -1 : i, note: i === 30 ? null : "n" },
    }));
    const seen: unknown[] = [];
    const r = await c.write(s, ops, {
      runId: "run1",
      id: "run1/m/0",
      entry: (result) => {
        seen.push(result);
        return { startedAt: "2026-01-01T00:00:00Z", failures: result.failures.map((f) => f.index) };
      },
    });
    expect(r.failures.map((f) => f.index)).toEqual([12, 30]);
    expect(r.failures[0]?.reason).toMatch(/violates check constraint "m_qty_check"/);
    expect(r.failures[1]?.reason).toMatch(/null value in column "note" of relation "m" violates not-null constraint/);
    expect(seen).toEqual([r]);
    expect((await admin.query(`SELECT count(*)::int AS n FROM ${schema}.m`)).rows[0].n).toBe(38);
    expect(await c.journal().get("run1/m/0")).toEqual({ startedAt: "2026-01-01T00:00:00Z", failures: [12, 30] });
    await c.close();
  });

  it("replace upserts on the key (absent columns take their default); update sets fields; no match is a failure", async () => {
    const { schema, url } = await freshSchema(`${TABLE}; CREATE TABLE k (a int, b text, v text)`);
    await admin.query(
      `INSERT INTO ${schema}.m VALUES (1, 'a@x', 5, 'keep'), (2, 'b@x', 6, 'old'); INSERT INTO ${schema}.k VALUES (1, 'x', 'v1'), (1, 'y', 'v2')`,
    );
    const c = await open(url, { write: true });
    const m = await schemaOf(c, "m");
    const r = await c.write(m, [
      { op: "replace", match: { id: 1 }, record: { id: 1, email: "a2@x" } },
      { op: "update", match: { email: "b@x" }, record: { qty: 60 } },
      { op: "update", match: { email: "nobody@x" }, record: { qty: 1 } },
      { op: "replace", match: { id: 2 }, record: { id: 2, email: "b@x", qty: -5 } },
      { op: "update", match: { id: 2 }, record: { note: "new" } },
      { op: "update", match: { id: 2 }, record: { note: "newer" } },
    ]);
    expect(r.failures.map((f) => f.index)).toEqual([2, 3]);
    expect(r.failures[0]?.reason).toMatch(/no record of m matches email="nobody@x": nothing to update/);
    expect(r.failures[1]?.reason).toMatch(/check constraint/);
    expect(await rowsText(schema, "m")).toEqual(["(1,a2@x,0,none)", "(2,b@x,60,newer)"]);
    // Without a unique key on the match fields, replace and update run as UPDATE.
    const k = await schemaOf(c, "k");
    const r2 = await c.write(k, [
      { op: "replace", match: { a: 1, b: "y" }, record: { a: 1, b: "y", v: "v2b" } },
      { op: "replace", match: { a: 9, b: "y" }, record: { a: 9, b: "y", v: "none" } },
    ]);
    expect(r2.failures.map((f) => f.index)).toEqual([1]);
    expect(await rowsText(schema, "k", "x::text")).toEqual(["(1,x,v1)", "(1,y,v2b)"]);
    await c.close();
  });

  it("deletes by key in order with the other ops; a key not there is no failure", async () => {
    const { schema, url } = await freshSchema(
      `${TABLE}; CREATE TABLE k (a bigint, b uuid, v text, PRIMARY KEY (a, b));
       INSERT INTO m SELECT x, 'u' || x || '@x' FROM generate_series(1, 1200) x;
       INSERT INTO k VALUES (9007199254740993, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'big'), (1, '00000000-0000-0000-0000-000000000000', 'one')`,
    );
    const c = await open(url, { write: true });
    const m = await schemaOf(c, "m");
    // Every odd id (and ids that are not there), then id 5 back and id 7 deleted, then the reverse.
    const ops: WriteOp[] = [];
    for (let i = 1; i <= 1300; i += 2) ops.push({ op: "delete", match: { id: i } });
    ops.push({ op: "insert", record: { id: 5, email: "back5" } }, { op: "delete", match: { id: 7 } });
    ops.push({ op: "insert", record: { id: 7, email: "back7" } }, { op: "delete", match: { id: 5 } });
    ops.push({ op: "delete", match: { email: "u2@x" } }, { op: "delete", match: { id: 4 } });
    ops.push({ op: "delete", match: {} }, { op: "delete", match: { nope: 1 } }, { op: "delete", match: { id: "x" } });
    const r = await c.write(m, ops);
    const last = ops.length - 1;
    expect(r.failures).toEqual([
      { index: last - 2, reason: "delete without match fields: nothing to match" },
      { index: last - 1, reason: "no column nope in table m: cannot match on it" },
      { index: last, reason: expect.stringMatching(/integer/) },
    ]);
    const ids = (await admin.query<{ id: number }>(`SELECT id FROM ${schema}.m ORDER BY id`)).rows.map((x) => x.id);
    expect(ids).toEqual([...Array.from({ length: 598 }, (_, k) => 2 * (k + 3)), 7].sort((x, y) => x - y));
    // A composite key, its values encoded as replace and update encode them (a uuid in capitals, a bigint).
    const k = await schemaOf(c, "k");
    const r2 = await c.write(k, [
      { op: "delete", match: { a: 2n ** 53n + 1n, b: "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11" } },
      { op: "delete", match: { a: 1, b: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" } },
    ]);
    expect(r2.failures).toEqual([]);
    expect(await rowsText(schema, "k")).toEqual(["(1,00000000-0000-0000-0000-000000000000,one)"]);
    await c.close();
  });

  it("a delete of a record a foreign key still references becomes a failure naming it; the rest applies", async () => {
    const { schema, url } = await freshSchema(
      `CREATE TABLE parent (id int PRIMARY KEY, name text);
       CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
       INSERT INTO parent VALUES (1, 'one'), (2, 'two'), (3, 'three'); INSERT INTO child VALUES (10, 1)`,
    );
    const c = await open(url, { write: true });
    const parent = await schemaOf(c, "parent");
    const r = await c.write(
      parent,
      [
        { op: "delete", match: { id: 2 } },
        { op: "delete", match: { id: 1 } },
        { op: "insert", record: { id: 4, name: "four" } },
        { op: "delete", match: { id: 3 } },
      ],
      { runId: "rb", id: "rb", entry: (result) => ({ failed: result.failures.map((f) => f.index) }) },
    );
    expect(r.failures).toEqual([
      {
        index: 1,
        reason: expect.stringMatching(
          /violates foreign key constraint "child_parent_id_fkey" on table "child".*still referenced/,
        ),
      },
    ]);
    expect(await rowsText(schema, "parent")).toEqual(["(1,one)", "(4,four)"]);
    expect(await c.journal().get("rb")).toEqual({ failed: [1] });
    // Deleting the child first lets the parent go (as a rollback undoes an import).
    expect((await c.write(await schemaOf(c, "child"), [{ op: "delete", match: { id: 10 } }])).failures).toEqual([]);
    expect((await c.write(parent, [{ op: "delete", match: { id: 1 } }])).failures).toEqual([]);
    expect(await rowsText(schema, "parent")).toEqual(["(4,four)"]);
    await c.close();
  });

  it("copy names each refused record by its key and copies the others (bulk path falls back)", async () => {
    const { url: from } = await freshSchema(
      "CREATE TABLE m (id int PRIMARY KEY, qty int, note text); INSERT INTO m SELECT x, CASE WHEN x = 5 THEN -1 ELSE x END, CASE WHEN x = 17 THEN NULL ELSE 'n' END FROM generate_series(1, 30) x",
    );
    const { schema: dst, url: to } = await freshSchema(
      "CREATE TABLE m (id int PRIMARY KEY, qty int CHECK (qty >= 0), note text NOT NULL)",
    );
    const bulk = vi.spyOn(PostgresConnector.prototype, "bulkCopyFrom");
    const r = await copy({ from, to, batchSize: 10 });
    expect(bulk).toHaveBeenCalled();
    expect(r.status).toBe("failed");
    expect(r.collections.m).toMatchObject({ copied: 28, failed: 2 });
    expect(r.failures.map((f) => f.key)).toEqual(["id=5", "id=17"]);
    expect(r.failures[0]?.reason).toMatch(/check constraint "m_qty_check"/);
    expect(r.failures[1]?.reason).toMatch(/column "note"/);
    expect((await admin.query(`SELECT count(*)::int AS n FROM ${dst}.m`)).rows[0].n).toBe(28);
  });

  it("throws, having committed nothing, when the transaction fails", async () => {
    const { schema, url } = await freshSchema(TABLE);
    const c = await open(url, { write: true });
    const s = await schemaOf(c, "m");
    const err = await errorOf(
      c.write(s, [{ op: "insert", record: { id: 1, email: "a" } }], {
        runId: "r",
        id: "r",
        entry: () => {
          throw new Error("boom");
        },
      }),
    );
    expect(err).toBeInstanceOf(Error);
    expect((await admin.query(`SELECT count(*)::int AS n FROM ${schema}.m`)).rows[0].n).toBe(0);
    await c.close();
  });
});

describe("lookup", () => {
  it("finds existing rows by incoming keys, decoded as read decodes them", async () => {
    const { url } = await freshSchema(
      "CREATE TABLE t (id bigint, u uuid, v text, PRIMARY KEY (id, u)); INSERT INTO t VALUES (9007199254740993, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'x'), (2, '00000000-0000-0000-0000-000000000000', 'y')",
    );
    const c = await open(url, { write: true });
    const s = await schemaOf(c, "t");
    const keys = [
      [2n ** 53n + 1n, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"],
      [2, "00000000-0000-0000-0000-000000000000"],
      [3, "not a uuid"],
      [2, null],
    ];
    const found = await c.lookup(s, ["id", "u"], keys);
    expect(found.size).toBe(2);
    expect(found.get(keyString(keys[0] as Row[string][]))).toEqual({
      id: 2n ** 53n + 1n,
      u: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      v: "x",
    });
    const read = await readAllRows(c, s, { batchSize: 10 });
    expect(found.get(keyString(keys[1] as Row[string][]))).toEqual(read[0]);
    await c.close();
  });
});

describe("key ranges", () => {
  const keysOf = (rows: Row[], key: string[]) => rows.map((r) => keyString(key.map((k) => r[k] ?? null)));

  async function checkRanges(url: string, table: string, key: string[], total: number) {
    const c = await open(url);
    const s = await schemaOf(c, table);
    const all = keysOf(await readAllRows(c, s, { batchSize: 1000 }), key);
    expect(all.length).toBe(total);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 9 }), fc.integer({ min: 1, max: 150 }), async (parts, batchSize) => {
        const bounds = await c.split(s, parts);
        expect(bounds.length).toBeLessThanOrEqual(parts - 1);
        expect(JSON.parse(JSON.stringify(bounds))).toEqual(bounds);
        const ranges = [...bounds, undefined].map((upTo, i) => ({ after: bounds[i - 1], upTo }));
        const got: string[] = [];
        for (const r of ranges) {
          const opts = { batchSize, ...(r.after ? { after: r.after } : {}), ...(r.upTo ? { upTo: r.upTo } : {}) };
          const batches: ReadBatch[] = [];
          for await (const b of c.read(s, opts)) batches.push(b);
          for (const b of batches) expect(b.records.length).toBeLessThanOrEqual(batchSize);
          got.push(...batches.flatMap((b) => keysOf(b.records, key)));
          // Resuming from any batch's bookmark yields exactly the rest of the range.
          if (batches.length > 1) {
            const rest = await readAllRows(c, s, { ...opts, after: (batches[0] as ReadBatch).bookmark });
            expect(keysOf(rest, key)).toEqual(batches.slice(1).flatMap((b) => keysOf(b.records, key)));
          }
        }
        expect(got).toEqual(all);
      }),
      { numRuns: 15 },
    );
    await c.close();
  }

  it("covers every row exactly once over any split, by offsets and by the statistics' histogram", async () => {
    const { schema, url } = await freshSchema(
      "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT x * 3, 'v' || x FROM generate_series(1, 700) x",
    );
    await checkRanges(url, "t", ["id"], 700);
    await admin.query(`ANALYZE ${schema}.t`);
    const hist = await admin.query(
      `SELECT histogram_bounds IS NOT NULL AS h FROM pg_stats WHERE schemaname = $1 AND tablename = 't'`,
      [schema],
    );
    expect(hist.rows[0]?.h).toBe(true);
    await checkRanges(url, "t", ["id"], 700);
  });

  it("splits composite and text keys", async () => {
    const { url } = await freshSchema(
      `CREATE TABLE t (a text, b int, PRIMARY KEY (a, b)); INSERT INTO t SELECT 'k' || (x % 37) || E' \\t,"', x FROM generate_series(1, 500) x`,
    );
    await checkRanges(url, "t", ["a", "b"], 500);
  });

  it("reads a table without a primary key in physical order, resumed by offset", async () => {
    const { url } = await freshSchema("CREATE TABLE t (v int); INSERT INTO t SELECT x FROM generate_series(1, 95) x");
    const c = await open(url);
    const s = await schemaOf(c, "t");
    expect(await c.split(s, 4)).toEqual([]);
    const batches: ReadBatch[] = [];
    for await (const b of c.read(s, { batchSize: 10 })) batches.push(b);
    expect(batches.map((b) => b.bookmark)).toEqual([
      ...Array.from({ length: 9 }, (_, i) => ({ offset: (i + 1) * 10 })),
      { offset: 95 },
    ]);
    const rest = await readAllRows(c, s, { batchSize: 50, after: { offset: 40 } });
    expect(rest.map((r) => r.v)).toEqual(Array.from({ length: 55 }, (_, i) => i + 41));
    await c.close();
  });
});

describe("snapshots", () => {
  it("every reader sees the snapshot taken when the source was opened", async () => {
    const { schema, url } = await freshSchema(
      "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT x, x FROM generate_series(1, 300) x",
    );
    const c = await open(url, { readers: 3 });
    await admin.query(
      `INSERT INTO ${schema}.t SELECT x, x FROM generate_series(301, 400) x; DELETE FROM ${schema}.t WHERE id <= 10; UPDATE ${schema}.t SET v = -1`,
    );
    const s = await schemaOf(c, "t");
    expect(await c.count(s)).toBe(300);
    const bounds = await c.split(s, 3);
    expect(bounds.length).toBe(2);
    const ranges = [...bounds, undefined].map((upTo, i) => ({ after: bounds[i - 1], upTo }));
    const parts = await Promise.all(
      ranges.map((r) =>
        readAllRows(c, s, {
          batchSize: 7,
          ...(r.after ? { after: r.after } : {}),
          ...(r.upTo ? { upTo: r.upTo } : {}),
        }),
      ),
    );
    const rows = parts.flat();
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(rows.every((r) => r.v === r.id)).toBe(true);
    await c.close();
    const later = await open(url);
    expect(await later.count(await schemaOf(later, "t"))).toBe(390);
    await later.close();
  });

  it("an abandoned read leaves the source usable", async () => {
    const { url } = await freshSchema(
      "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 20000)",
    );
    const c = await open(url);
    const s = await schemaOf(c, "t");
    for await (const b of c.read(s, { batchSize: 10 })) {
      expect(b.records.length).toBe(10);
      break;
    }
    expect(await c.count(s)).toBe(20000);
    expect((await readAllRows(c, s, { batchSize: 5000 })).length).toBe(20000);
    await c.close();
    await c.close(); // idempotent
  });
});

describe("bulk transfer", () => {
  it("is used PostgreSQL → PostgreSQL in parallel ranges, and resumes after an abort", async () => {
    const { schema: a, url: from } = await freshSchema(
      `CREATE TABLE t (id bigint PRIMARY KEY, u uuid, v text, n numeric(12,2), at timestamptz, doc jsonb);
       INSERT INTO t SELECT x, md5(x::text)::uuid, 'v' || x, x / 7.0, '2024-01-01'::timestamptz + x * interval '1.5 s', jsonb_build_object('x', x)
       FROM generate_series(1, 3000) x`,
    );
    const { schema: b, url: to } = await freshSchema();
    const bulk = vi.spyOn(PostgresConnector.prototype, "bulkCopyFrom");
    const write = vi.spyOn(PostgresConnector.prototype, "write");
    const controller = new AbortController();
    let progress = 0;
    const onEvent = (e: FerryEvent) => {
      if (e.type === "progress" && ++progress === 5) controller.abort();
    };
    const opts = { from, to, batchSize: 100, jobs: 2 };
    const err = await errorOf(copy({ ...opts, signal: controller.signal, onEvent }));
    expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
    const partial = (await admin.query(`SELECT count(*)::int AS n FROM ${b}.t`)).rows[0].n as number;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(3000);
    const r = await copy({ ...opts, resume: true });
    expect(r.status).toBe("done");
    expect(r.collections.t).toMatchObject({ copied: 3000, failed: 0 });
    expect(write).not.toHaveBeenCalled();
    expect(bulk.mock.calls.length).toBeGreaterThanOrEqual(30);
    // Both ranges copied concurrently from the snapshot's readers.
    const ranges = new Set(bulk.mock.calls.map((call) => JSON.stringify(call[2].upTo ?? null)));
    expect(ranges.size).toBe(2);
    expect(await rowsText(b, "t")).toEqual(await rowsText(a, "t"));
  });

  it("copies a table without a primary key by offsets, and resumes without duplicates", async () => {
    const { schema: a, url: from } = await freshSchema(
      "CREATE TABLE log (at int, msg text); INSERT INTO log SELECT x % 7, 'm' || x FROM generate_series(1, 250) x",
    );
    const { schema: b, url: to } = await freshSchema();
    const bulk = vi.spyOn(PostgresConnector.prototype, "bulkCopyFrom");
    const controller = new AbortController();
    const onEvent = (e: FerryEvent) => {
      if (e.type === "progress") controller.abort();
    };
    const err = await errorOf(copy({ from, to, batchSize: 100, signal: controller.signal, onEvent }));
    expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
    const r = await copy({ from, to, batchSize: 100, resume: true });
    expect(r.collections.log).toMatchObject({ copied: 250, failed: 0 });
    expect(bulk.mock.results.some((x) => x.type === "return")).toBe(true);
    const all = (s: string) => rowsText(s, "log", "x::text");
    expect(await all(b)).toEqual(await all(a));
  });

  it("only for PostgreSQL sources with the same written columns", async () => {
    const { url: from } = await freshSchema("CREATE TABLE t (id int PRIMARY KEY, v text)");
    const { url: to } = await freshSchema("CREATE TABLE t (id int PRIMARY KEY, v varchar(5))");
    const source = await open(from);
    const target = await open(to, { write: true });
    const s = await schemaOf(source, "t");
    await target.prepare(s);
    expect(target.canBulkCopyFrom(source, s)).toBe(false);
    const sqlite = await openConnector("sqlite::memory:", { write: true });
    expect(target.canBulkCopyFrom(sqlite, s)).toBe(false);
    await sqlite.close();
    await source.close();
    await target.close();
  });
});

describe("cross-engine targets", () => {
  it("maps logical fields to PostgreSQL types", () => {
    const c: CollectionSchema = { name: "x", fields: [], primaryKey: [] };
    const map = (f: Omit<FieldSchema, "name">) => postgresFactory.mapField?.({ name: "f", ...f }, c);
    expect(map({ type: "integer", size: 1 })).toMatchObject({ nativeType: "smallint", size: 2 });
    expect(map({ type: "integer", size: 2, unsigned: true })).toMatchObject({ nativeType: "integer", size: 4 });
    expect(map({ type: "integer", size: 3 })).toMatchObject({ nativeType: "integer", size: 4 });
    expect(map({ type: "integer", size: 4, unsigned: true })).toMatchObject({ nativeType: "bigint", size: 8 });
    expect(map({ type: "integer" })).toMatchObject({ nativeType: "bigint", size: 8 });
    expect(map({ type: "integer", size: 8, unsigned: true })).toEqual({
      name: "f",
      type: "decimal",
      nativeType: "numeric(20,0)",
      precision: 20,
      scale: 0,
    });
    expect(map({ type: "float", nativeType: "REAL" })).toMatchObject({ nativeType: "double precision", size: 8 });
    expect(map({ type: "float", size: 4 })).toMatchObject({ nativeType: "real", size: 4 });
    expect(map({ type: "decimal", precision: 10, scale: 2 })).toMatchObject({ nativeType: "numeric(10,2)" });
    expect(map({ type: "decimal" })).toEqual({ name: "f", type: "decimal", nativeType: "numeric" });
    expect(map({ type: "text", maxLength: 40, charset: "latin1" })).toEqual({
      name: "f",
      type: "text",
      nativeType: "character varying(40)",
      maxLength: 40,
    });
    expect(map({ type: "text", maxLength: 2, fixedLength: true })).toMatchObject({ nativeType: "character(2)" });
    expect(map({ type: "text", enumValues: ["a"] })).toEqual({ name: "f", type: "text", nativeType: "text" });
    expect(map({ type: "bytes", maxLength: 16 })).toEqual({ name: "f", type: "bytes", nativeType: "bytea" });
    expect(map({ type: "json" })).toMatchObject({ nativeType: "jsonb" });
    expect(map({ type: "json", arrayOf: "integer" })).toMatchObject({ nativeType: "bigint[]", arrayOf: "integer" });
    expect(map({ type: "datetime", timezone: true })).toMatchObject({
      nativeType: "timestamp with time zone",
      timezone: true,
      fractionDigits: 6,
    });
    expect(map({ type: "datetime", fractionDigits: 3 })).toMatchObject({
      nativeType: "timestamp(3) without time zone",
      timezone: false,
      fractionDigits: 3,
    });
    expect(map({ type: "any" })).toMatchObject({ type: "text", nativeType: "text" });
    expect(map({ type: "integer", nullable: false, autoIncrement: true })).toMatchObject({
      nullable: false,
      autoIncrement: true,
    });
    const pgCollection: CollectionSchema = { ...c, engine: "postgres" };
    expect(postgresFactory.mapField?.({ name: "f", type: "text", nativeType: "citext" }, pgCollection)).toEqual({
      name: "f",
      type: "text",
      nativeType: "citext",
    });
  });

  it("creates a table of another engine's schema, then keys, indexes, foreign keys and identity after the data", async () => {
    const { schema, url } = await freshSchema();
    const c = await open(url, { write: true });
    const teams: CollectionSchema = {
      name: "teams",
      fields: [
        { name: "id", type: "integer", nativeType: "INTEGER", nullable: false, autoIncrement: true },
        { name: "name", type: "text", nativeType: "VARCHAR(20)", maxLength: 20 },
      ],
      primaryKey: ["id"],
      uniqueKeys: [["name"]],
      indexes: [{ name: "idx_name", fields: ["name", "id"], unique: false }],
      engine: "sqlite",
    };
    const members: CollectionSchema = {
      name: "members",
      fields: [
        { name: "id", type: "integer", size: 4, unsigned: true, nullable: false },
        { name: "team_id", type: "integer" },
        { name: "missing_id", type: "integer" },
      ],
      primaryKey: ["id"],
      foreignKeys: [
        { fields: ["team_id"], references: { collection: "teams", fields: ["id"] }, onDelete: "CASCADE" },
        { fields: ["missing_id"], references: { collection: "nowhere", fields: ["id"] } },
      ],
      // MySQL index names are per table: this one clashes with the teams index.
      indexes: [{ name: "idx_name", fields: ["team_id"], unique: false }],
      engine: "mysql",
    };
    for (const [s, rows] of [
      [teams, [1, 2, 3].map((id) => ({ id, name: `t${id}` }))],
      [members, [{ id: 1, team_id: 2, missing_id: 7 }]],
    ] as const) {
      const p = await c.prepare(s);
      expect(p.created).toBe(true);
      expect(p.schema.primaryKey).toEqual(s.primaryKey);
      expect(
        (
          await c.write(
            p.schema,
            rows.map((record) => ({ op: "insert" as const, record })),
          )
        ).failures,
      ).toEqual([]);
      await c.finish(s);
      await c.finish(s); // again, as after a resume
    }
    const t = await schemaOf(c, "teams");
    expect(t.primaryKey).toEqual(["id"]);
    expect(t.uniqueKeys).toEqual([["name"]]);
    expect(t.indexes).toEqual([{ name: "idx_name", fields: ["name", "id"], unique: false }]);
    expect(t.fields.map((f) => f.nativeType)).toEqual(["bigint", "character varying(20)"]);
    const m = await schemaOf(c, "members");
    expect(m.fields.map((f) => f.nativeType)).toEqual(["bigint", "bigint", "bigint"]);
    expect(m.indexes).toEqual([{ name: "members_idx_name", fields: ["team_id"], unique: false }]);
    expect(m.foreignKeys).toEqual([
      { fields: ["team_id"], references: { collection: "teams", fields: ["id"] }, onDelete: "CASCADE" },
    ]);
    expect((await c.prepare(teams)).created).toBe(false);
    await c.close();
    const next = await admin.query(`INSERT INTO ${schema}.teams (name) VALUES ('t4') RETURNING id`);
    expect(next.rows[0].id).toBe("4");
  });
});

describe("journal", () => {
  it("lists nothing without a table, then entries newest first", async () => {
    const { url } = await freshSchema();
    const c = await open(url, { write: true });
    expect(await c.journal().list()).toEqual([]);
    expect(await c.journal().get("x")).toBeUndefined();
    await c.journal().save("a", { id: "a", startedAt: "2026-01-01T00:00:00Z", note: "nul\u0000" });
    await c.journal().save("b", { id: "b", startedAt: "2026-02-01T00:00:00Z" });
    await c.journal().save("a", { id: "a", startedAt: "2026-01-01T00:00:00Z", status: "done" });
    expect(await c.journal().list()).toEqual([
      { id: "b", startedAt: "2026-02-01T00:00:00Z" },
      { id: "a", startedAt: "2026-01-01T00:00:00Z", status: "done" },
    ]);
    await c.close();
    const reader = await open(url);
    expect((await reader.journal().list()).length).toBe(2);
    expect(await reader.discover()).toEqual([]);
    await reader.close();
  });
});

describe("undo log", () => {
  const TABLE = "CREATE TABLE t (id int PRIMARY KEY, v text)";

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

  async function table(
    sql = TABLE,
  ): Promise<{ schema: string; url: string; c: PostgresConnector; s: CollectionSchema }> {
    const { schema, url } = await freshSchema(sql);
    const c = await open(url, { write: true });
    return { schema, url, c, s: await schemaOf(c, "t") };
  }

  const hasUndoTable = async (schema: string): Promise<boolean> =>
    (await admin.query("SELECT to_regclass($1) AS t", [`${schema}._ferry_undo`])).rows[0].t !== null;

  it("saves a batch's undo row with its checkpoint; undo() yields it, list() never does, read-only too", async () => {
    const { schema, url, c, s } = await table();
    const { undo: _, ...plain } = undoCheckpoint("r1", "r1", undefined);
    await c.write(s, [{ op: "insert", record: { id: 1, v: "a" } }], plain);
    // No checkpoint asked for an undo log yet: no undo table either.
    expect(await hasUndoTable(schema)).toBe(false);
    await c.write(s, [], undoCheckpoint("r1", "r1", undefined));
    expect((await admin.query(`SELECT count(*)::int AS n FROM ${schema}._ferry_undo`)).rows[0].n).toBe(0);
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

    const ro = await open(url);
    expect(await undoOf(ro.journal(), "r1")).toEqual([{ runId: "r1", seq: 7, entry }]);
    expect(await ro.journal().list()).toHaveLength(1);
    expect(isFerryError(await errorOf(ro.journal().forget("r1")), "E_UNSUPPORTED")).toBe(true);
    await ro.close();
  });

  it("finds no undo rows, and forgets nothing, where there is no journal", async () => {
    const { url } = await freshSchema(TABLE);
    const ro = await open(url);
    expect(await undoOf(ro.journal(), "r1")).toEqual([]);
    await ro.close();
    const c = await open(url, { write: true });
    expect(await undoOf(c.journal(), "r1")).toEqual([]);
    await c.journal().forget("r1");
    expect(await c.journal().list()).toEqual([]);
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
    const { schema, c, s } = await table(
      "CREATE TABLE t (id int PRIMARY KEY, v text, CONSTRAINT v_once UNIQUE (v) DEFERRABLE INITIALLY DEFERRED)",
    );
    await c.write(s, [{ op: "insert", record: { id: 1 } }], undoCheckpoint("r", "r", 1));
    // The commit fails (a deferred constraint), after the ops, the checkpoint and the undo row were written.
    const deferred = await errorOf(
      c.write(
        s,
        [
          { op: "insert", record: { id: 2, v: "same" } },
          { op: "insert", record: { id: 3, v: "same" } },
        ],
        undoCheckpoint("r", "r/t/0", 2),
      ),
    );
    expect(isFerryError(deferred, "E_WRITE")).toBe(true);
    // The undo row itself fails it: a seq already logged.
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
    expect(await rowsText(schema, "t", "x.id")).toEqual(["(1,)"]);
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
    const gone = ["run-1", "a_b", "50%", "b\\c"];
    for (const run of gone) {
      await j.forget(run);
      expect(await undoOf(j, run)).toEqual([]);
    }
    await j.forget("never-there");
    const kept = runs.filter((r) => !gone.includes(r));
    expect(await ids()).toEqual(all.filter((x) => kept.some((r) => x === r || x.startsWith(`${r}/`))));
    for (const run of kept) {
      expect(await undoOf(j, run)).toHaveLength(3);
      expect(await j.get(run)).toBeDefined();
    }
    expect(await j.get("run-1")).toBeUndefined();
    await c.close();
  });

  it("refuses an undo log on the bulk path (E_INTERNAL), writing nothing", async () => {
    const { url: from } = await freshSchema(`${TABLE}; INSERT INTO t VALUES (1, 'a'), (2, 'b')`);
    const { schema, url: to } = await freshSchema(TABLE);
    const src = await open(from);
    const dst = await open(to, { write: true });
    const s = await schemaOf(src, "t");
    await dst.prepare(s);
    expect(dst.canBulkCopyFrom(src, s)).toBe(true);
    const err = await errorOf(
      dst.bulkCopyFrom(src, s, { limit: 10 }, () => ({ ...undoCheckpoint("r", "r", 0), entry: () => ({}) })),
    );
    expect(isFerryError(err, "E_INTERNAL")).toBe(true);
    expect((await admin.query(`SELECT count(*)::int AS n FROM ${schema}.t`)).rows[0].n).toBe(0);
    expect(await dst.journal().list()).toEqual([]);
    await src.close();
    await dst.close();
  });
});
