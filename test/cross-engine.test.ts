/**
 * Round trips between engines: PostgreSQL → MariaDB → PostgreSQL, PostgreSQL → SQLite →
 * PostgreSQL and MariaDB → PostgreSQL → MariaDB, on tables holding every type the issue
 * lists. Values must come back identical wherever the intermediate types can hold them,
 * and the type plan must name every place they cannot.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { MysqlConnector } from "../src/connectors/mysql/index.js";
import { PostgresConnector } from "../src/connectors/postgres/index.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import type { FerryEvent } from "../src/core/events.js";
import { plan } from "../src/core/plan.js";
import type { TypePlan } from "../src/core/type-plan.js";
import { encodeRow, type Row } from "../src/core/values.js";
import { ensurePgDatabase, myExec, pgQuery, readAll, tempDir } from "./helpers.js";
import { MY_DDL, MY_ROWS, PG_DDL } from "./type-fixtures.js";

const PG_DB = "ferry_test";
const PG = `postgres://postgres@127.0.0.1:5432/${PG_DB}`;
const MY = "mysql://root@127.0.0.1:3306";
const tag = randomBytes(3).toString("hex");
const schemas: string[] = [];
const databases: string[] = [];
const tmp = tempDir();
const pgExec = (sql: string, database = PG_DB) => pgQuery(database, sql);

/** A new PostgreSQL schema, optionally created with `ddl` (use `S` for the schema name). */
async function pgSchema(name: string, ddl?: string): Promise<string> {
  const s = `x_${tag}_${name}`;
  schemas.push(s);
  await pgExec(`DROP SCHEMA IF EXISTS ${s} CASCADE; CREATE SCHEMA ${s};`);
  if (ddl) await pgExec(`SET search_path TO ${s}; ${ddl}`);
  return `${PG}?schema=${s}`;
}

async function myDb(name: string, ddl?: string): Promise<string> {
  const d = `ferry_x_${tag}_${name}`;
  databases.push(d);
  await myExec(`DROP DATABASE IF EXISTS ${d}; CREATE DATABASE ${d} CHARACTER SET utf8mb4;`);
  if (ddl) await myExec(`USE ${d}; ${ddl}`);
  return `${MY}/${d}`;
}

beforeAll(async () => {
  await ensurePgDatabase(PG_DB);
});

afterAll(async () => {
  for (const s of schemas) await pgExec(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => {});
  for (const d of databases) await myExec(`DROP DATABASE IF EXISTS ${d}`).catch(() => {});
  tmp.cleanup();
});

/** Every row of every collection in canonical JSON, ordered by id. */
async function canonical(url: string, only?: string[]): Promise<Record<string, unknown[]>> {
  const all = await readAll(url);
  const out: Record<string, unknown[]> = {};
  for (const [name, rows] of Object.entries(all)) {
    if (only && !only.includes(name)) continue;
    out[name] = rows.map((r: Row) => encodeRow(r)).sort((a, b) => Number(a.id) - Number(b.id));
  }
  return out;
}

function levels(p: TypePlan, collection: string): Record<string, string> {
  const c = p.collections.find((x) => x.collection === collection);
  return Object.fromEntries((c?.fields ?? []).map((f) => [f.field, f.level]));
}

describe("cross-engine round trips", () => {
  it("PostgreSQL → MariaDB → PostgreSQL keeps every value; the plan names the zone it drops", async () => {
    const src = await pgSchema("pm_src", PG_DDL);
    const mid = await myDb("pm_mid");
    const p1 = await plan({ from: src, to: mid });
    const l1 = levels(p1, "everything");
    expect(l1.at).toBe("lossy"); // timestamptz → DATETIME(6): time zone
    expect(l1.exact).toBe("exact"); // numeric(30,10) → DECIMAL(30,10)
    expect(l1.big).toBe("exact");
    expect(l1.uid).toBe("exact");
    expect(l1.tags).toBe("exact"); // text[] → JSON (noted)
    expect(l1.doubled).toBeUndefined(); // generated: never written

    // Refused without --allow-lossy, naming the column; nothing written.
    const refused = await copy({ from: src, to: mid }).catch((e: unknown) => e);
    expect(isFerryError(refused, "E_LOSSY")).toBe(true);
    expect((refused as Error).message).toMatch(/everything\.at/);
    expect(await canonical(mid)).toEqual({});

    const r1 = await copy({ from: src, to: mid, allowLossy: true });
    expect(r1.status).toBe("done");
    expect(r1.total.copied).toBe(4);

    // Back into the original definition: every value identical.
    const back = await pgSchema("pm_back", PG_DDL.replace(/INSERT INTO[\s\S]*$/, ""));
    const r2 = await copy({ from: mid, to: back, allowLossy: true });
    expect(r2.status).toBe("done");
    expect(await canonical(back)).toEqual(await canonical(src));
  });

  it("PostgreSQL → SQLite → PostgreSQL keeps every value", async () => {
    const src = await pgSchema("ps_src", PG_DDL);
    const mid = `sqlite:${join(tmp.dir, "mid.db")}`;
    const r1 = await copy({ from: src, to: mid, allowLossy: true });
    expect(r1.status).toBe("done");
    const p = r1.types;
    const l = levels(p, "everything");
    expect(l.exact).toBe("exact"); // numeric(30,10) is kept as TEXT: SQLite's NUMERIC would round it
    const back = await pgSchema("ps_back", PG_DDL.replace(/INSERT INTO[\s\S]*$/, ""));
    const r2 = await copy({ from: mid, to: back, allowLossy: true });
    expect(r2.status).toBe("done");
    expect(await canonical(back)).toEqual(await canonical(src));
  });

  it("MariaDB → PostgreSQL → MariaDB keeps every value; tinyint(1) and zero dates are checked", async () => {
    const src = await myDb("mp_src", `${MY_DDL}\n${MY_ROWS}`);
    const mid = await pgSchema("mp_mid");
    const p = await plan({ from: src, to: mid });
    const l = levels(p, "things");
    expect(l.ubig).toBe("exact"); // bigint unsigned → numeric(20,0)
    expect(l.umed).toBe("exact"); // mediumint unsigned → integer
    expect(l.flag).toBe("checked"); // tinyint(1) → boolean: values other than 0/1 are refused
    expect(l.born).toBe("checked"); // zero dates have no PostgreSQL equivalent
    expect(l.stamp).toBe("checked"); // TIMESTAMP is an instant: timestamptz (zero dates checked)
    expect(l.kind).toBe("exact"); // enum → text
    const r1 = await copy({ from: src, to: mid });
    expect(r1.status).toBe("done");
    expect(r1.total.copied).toBe(3);

    // Back into the original definition: every value identical.
    const back = await myDb("mp_back", MY_DDL);
    const r2 = await copy({ from: mid, to: back, allowLossy: true });
    expect(r2.status).toBe("done");
    expect(await canonical(back)).toEqual(await canonical(src));
  });

  it("refuses zero dates into PostgreSQL by key, or stores NULL with --allow-lossy", async () => {
    const src = await myDb(
      "zero_src",
      `SET SESSION sql_mode = '';
       CREATE TABLE events (id int PRIMARY KEY, at datetime NULL, ok tinyint(1));
       INSERT INTO events VALUES (1, '2024-01-01 00:00:00', 1), (2, '0000-00-00 00:00:00', 0), (3, NULL, 5);`,
    );
    const dst = await pgSchema("zero_dst");
    const strict = await copy({ from: src, to: dst });
    expect(strict.status).toBe("failed");
    expect(strict.failures.map((f) => f.key).sort()).toEqual(["id=2", "id=3"]);
    expect(strict.failures.find((f) => f.key === "id=2")?.reason).toMatch(/field at: zero date/);
    expect(strict.failures.find((f) => f.key === "id=3")?.reason).toMatch(/field ok: 5 is not a boolean/);
    const dst2 = await pgSchema("zero_dst2");
    const lax = await copy({ from: src, to: dst2, allowLossy: true });
    expect(lax.total).toMatchObject({ copied: 2, failed: 1 });
    const rows = (await readAll(dst2)).events ?? [];
    expect(rows.find((r) => r.id === 2)?.at).toBeNull();
  });
});

// MariaDB → PostgreSQL into an empty table takes the text path: the server spells numbers,
// dates and bytes, text is escaped in Node, and COPY reads it. It must write exactly what
// the record path writes, and fall back to it (naming records) where PostgreSQL refuses.
describe("MariaDB → PostgreSQL text path", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  const SPELLED_DDL = `CREATE TABLE spelled (
    id bigint PRIMARY KEY, i int, flag tinyint(1), ubig bigint unsigned, price decimal(30,10), d double,
    name varchar(200), latin varchar(60) CHARACTER SET latin1, body longtext, fixed char(5),
    kind enum('a','b','c'), perms set('r','w','x'), bin varbinary(64), blobby blob, doc json,
    born date, at datetime(6), stamp timestamp(3) NULL, yr year, u uuid
  ) ENGINE=InnoDB`;
  const special = fc.constantFrom("a", "\\", "\t", "\n", "\r", "N", "\\N", " ", '"', "'", ",", "é");
  const text = (unit: fc.Arbitrary<string>, maxLength: number) => fc.string({ unit, maxLength });
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const row = fc.record({
    i: fc.option(fc.integer()),
    flag: fc.option(fc.constantFrom(0, 1)),
    ubig: fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String)),
    price: fc.option(
      fc.bigInt({ min: -(10n ** 30n) + 1n, max: 10n ** 30n - 1n }).map((n) => {
        const t = (n < 0n ? -n : n).toString().padStart(11, "0");
        return `${n < 0n ? "-" : ""}${t.slice(0, -10)}.${t.slice(-10)}`;
      }),
    ),
    d: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true })),
    name: fc.option(text(fc.oneof(special, fc.constantFrom("ż", "🚢", "日")), 40)),
    latin: fc.option(text(special, 30)),
    body: fc.option(text(fc.oneof(special, fc.constantFrom("\u0001", "\b", "\f", "\v")), 200)),
    fixed: fc.option(text(fc.constantFrom("a", "b", "\\", "\t"), 5)),
    kind: fc.option(fc.constantFrom("a", "b", "c")),
    perms: fc.option(fc.constantFrom("", "r", "r,w", "r,w,x")),
    bin: fc.option(fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))),
    blobby: fc.option(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b))),
    doc: fc.option(fc.json({ maxDepth: 2 })),
    born: fc.option(
      fc
        .tuple(fc.integer({ min: 1000, max: 9999 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 28 }))
        .map(([y, m, d]) => `${y}-${pad(m)}-${pad(d)}`),
    ),
    at: fc.option(
      fc
        .tuple(
          fc.integer({ min: 1000, max: 9999 }),
          fc.integer({ min: 0, max: 31_535_999 }),
          fc.integer({ min: 0, max: 999_999 }),
        )
        .map(([y, sec, us]) => {
          const t = new Date(Date.UTC(y, 0, 1) + sec * 1000);
          return `${t.toISOString().slice(0, 19).replace("T", " ")}.${pad(us, 6)}`;
        }),
    ),
    stamp: fc.option(
      fc
        .integer({ min: 1, max: 2_000_000_000 })
        .map((sec) => new Date(sec * 1000).toISOString().slice(0, 23).replace("T", " ")),
    ),
    yr: fc.option(fc.integer({ min: 1901, max: 2155 })),
    u: fc.option(fc.uuid({ version: 4 })),
  });

  it("writes exactly what the record path writes, for every type it spells", async () => {
    const rows = fc.sample(row, { numRuns: 300, seed: 20261121 });
    const src = await myDb("tp_src", SPELLED_DDL);
    const columns = Object.keys(rows[0] ?? {});
    await myExec(
      `SET time_zone = '+00:00'; INSERT INTO ${src.split("/").pop()}.spelled (id, ${columns.join(", ")}) VALUES ?`,
      [rows.map((r, n) => [n + 1, ...columns.map((c) => (r as Record<string, unknown>)[c])])],
    );
    const viaText = await pgSchema("tp_text");
    const exportText = vi.spyOn(MysqlConnector.prototype, "exportText");
    const write = vi.spyOn(PostgresConnector.prototype, "write");
    const r1 = await copy({ from: src, to: viaText, batchSize: 100, jobs: 2 });
    expect(r1.status).toBe("done");
    expect(r1.total.copied).toBe(rows.length);
    expect(exportText).toHaveBeenCalled();
    expect(write).not.toHaveBeenCalled();

    vi.restoreAllMocks();
    vi.spyOn(PostgresConnector.prototype, "canBulkCopyFrom").mockReturnValue(false);
    const viaRecords = await pgSchema("tp_records");
    const r2 = await copy({ from: src, to: viaRecords, batchSize: 100 });
    expect(r2.total.copied).toBe(rows.length);
    expect(await canonical(viaText)).toEqual(await canonical(viaRecords));
  });

  it("names each record PostgreSQL refuses, then goes on in bulk; --allow-lossy stores zero dates as NULL", async () => {
    const src = await myDb(
      "tp_bad",
      `SET SESSION sql_mode = '';
       CREATE TABLE events (id int PRIMARY KEY, at datetime NULL, ok tinyint(1), note text);
       INSERT INTO events SELECT seq, '2024-01-01' + INTERVAL seq MINUTE, seq % 2, concat('n', seq) FROM seq_1_to_1000;
       UPDATE events SET at = '0000-00-00 00:00:00' WHERE id = 150;
       UPDATE events SET ok = 5 WHERE id = 720;`,
    );
    const exportText = vi.spyOn(MysqlConnector.prototype, "exportText");
    const dst = await pgSchema("tp_bad_dst");
    const strict = await copy({ from: src, to: dst, batchSize: 100, jobs: 1 });
    expect(strict.status).toBe("failed");
    expect(strict.total).toMatchObject({ copied: 998, failed: 2 });
    expect(strict.failures.map((f) => f.key).sort()).toEqual(["id=150", "id=720"]);
    // After each refused batch was redone record by record, the text path went on.
    const starts = exportText.mock.calls.map((c) => Number((c[1].after?.after as number[] | undefined)?.[0] ?? 0));
    expect(starts).toContain(800);
    expect(starts).toContain(900);
    const copied = (await readAll(dst)).events ?? [];
    expect(copied.map((r) => Number(r.id)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 1000 }, (_, n) => n + 1).filter((id) => id !== 150 && id !== 720),
    );

    const dst2 = await pgSchema("tp_bad_dst2");
    const lax = await copy({ from: src, to: dst2, batchSize: 100, jobs: 1, allowLossy: true });
    expect(lax.total).toMatchObject({ copied: 999, failed: 1 });
    expect((await readAll(dst2)).events?.find((r) => r.id === 150)?.at).toBeNull();
  });

  it("resumes an interrupted text-path copy in each range, without duplicates", async () => {
    const src = await myDb(
      "tp_resume",
      `CREATE TABLE t (id bigint PRIMARY KEY, v varchar(20), at datetime(6), doc json);
       INSERT INTO t SELECT seq, concat('v', seq), '2024-01-01' + INTERVAL seq SECOND, json_object('x', seq) FROM seq_1_to_3000;`,
    );
    const dst = await pgSchema("tp_resume_dst");
    const controller = new AbortController();
    let progress = 0;
    const onEvent = (e: FerryEvent) => {
      if (e.type === "progress" && ++progress === 5) controller.abort();
    };
    const opts = { from: src, to: dst, batchSize: 100, jobs: 2 };
    const err = await copy({ ...opts, signal: controller.signal, onEvent }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
    const partial = (await readAll(dst)).t?.length ?? 0;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(3000);
    const write = vi.spyOn(PostgresConnector.prototype, "write");
    const r = await copy({ ...opts, resume: true });
    expect(r.status).toBe("done");
    expect(r.collections.t).toMatchObject({ copied: 3000, failed: 0 });
    expect(write).not.toHaveBeenCalled();
    expect(await canonical(dst)).toEqual(await canonical(src));
  });

  it("leaves tables with a FLOAT or BIT column to the record path", async () => {
    const src = await myDb(
      "tp_float",
      "CREATE TABLE f (id int PRIMARY KEY, x float, b bit(3)); INSERT INTO f VALUES (1, 0.1, b'101'), (2, NULL, NULL);",
    );
    const exportText = vi.spyOn(MysqlConnector.prototype, "exportText");
    const dst = await pgSchema("tp_float_dst");
    const r = await copy({ from: src, to: dst });
    expect(r.total.copied).toBe(2);
    expect(exportText).not.toHaveBeenCalled();
    expect((await readAll(dst)).f?.find((x) => x.id === 1)?.x).toBe(0.1);
  });
});
