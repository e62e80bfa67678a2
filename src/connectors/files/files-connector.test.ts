import { spawn } from "node:child_process";
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "../../../test/cli.js";
import { conformance } from "../../../test/conformance.js";
import { tempDir } from "../../../test/helpers.js";
import type { Connector, WriteOp } from "../../core/connector.js";
import { isFerryError } from "../../core/errors.js";
import { factoryFor, openConnector } from "../../core/registry.js";
import type { CollectionSchema } from "../../core/schema.js";
import type { Row, Value } from "../../core/values.js";
import { filesFactory } from "./index.js";
import { countLines } from "./line-reader.js";
import { NdjsonStore } from "./ndjson-store.js";
import { encodeLine } from "./record-codec.js";

const tmp = tempDir("ferry-files-");
afterAll(() => tmp.cleanup());
let seq = 0;
/** A fresh path under the test's temp dir: `kind` is "dir", ".ndjson", ".jsonl" or ".json". */
function fresh(kind: "dir" | ".ndjson" | ".jsonl" | ".json", base = "data"): string {
  const d = join(tmp.dir, `t${++seq}`);
  mkdirSync(d);
  return kind === "dir" ? join(d, `${base}/`) : join(d, `${base}${kind}`);
}

function schemaFor(name: string, rows: Row[], primaryKey: string[] = []): CollectionSchema {
  const names = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) names.add(k);
  return { name, fields: [...names].map((n) => ({ name: n, type: "any" as const })), primaryKey };
}

async function writeAll(url: string, schema: CollectionSchema, rows: Row[], batch = 100): Promise<void> {
  const c = await openConnector(url, { write: true });
  try {
    const { schema: s } = await c.prepare(schema);
    for (let i = 0; i < rows.length; i += batch) {
      const ops: WriteOp[] = rows.slice(i, i + batch).map((record) => ({ op: "insert", record }));
      const r = await c.write(s, ops, { runId: "r1", id: "r1", entry: () => ({ id: "r1", status: "running", i }) });
      expect(r.failures).toEqual([]);
    }
    await c.finish(s);
  } finally {
    await c.close();
  }
}

async function readRows(c: Connector, schema: CollectionSchema, batchSize = 1000): Promise<Row[]> {
  const out: Row[] = [];
  for await (const b of c.read(schema, { batchSize })) out.push(...b.records);
  return out;
}

async function readBack(url: string): Promise<Record<string, Row[]>> {
  const c = await openConnector(url);
  try {
    const out: Record<string, Row[]> = {};
    for (const s of await c.discover()) out[s.name] = await readRows(c, s);
    return out;
  } finally {
    await c.close();
  }
}

/** Canonical text of rows: equal exactly when every value is equal under the value model. */
const canon = (rows: Row[]) => rows.map(encodeLine);

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error("expected a failure");
    },
    (e: unknown) => e,
  );
}

// ---- the conformance suite (the directory layout runs it in test/conformance-files.test.ts) ----

conformance({
  name: "files (.json document)",
  fresh: () => fresh(".json"),
  extraFields: [
    { field: { name: "blob", type: "bytes" }, values: [new Uint8Array([0, 255, 128]), new Uint8Array(), null] },
    { field: { name: "big", type: "integer" }, values: [2n ** 63n - 1n, -(2n ** 63n), 42] },
    { field: { name: "doc", type: "json" }, values: [{ $int: "1" }, { a: [1, { b: null }] }, [1, "x"]] },
  ],
});

// ---- values ----

const fieldName = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom("__proto__", "id", "$int", "constructor", "") },
);
const jsonDoc = fc.json({ maxDepth: 3 }).map((t) => JSON.parse(t) as Value);
const value: fc.Arbitrary<Value> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.constantFrom(2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n, -(2n ** 53n) - 1n),
  fc.double(),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 5e-324),
  fc.string({ unit: "binary" }),
  fc.constantFrom("\u2028\u2029", "🚢 astral 𝄞", "\ud800 lone", "line\nbreak\r\n", ""),
  fc.uint8Array({ maxLength: 24 }),
  fc.constantFrom(new Uint8Array(), new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28])),
  fc.date(),
  jsonDoc,
  fc.constantFrom<Value>({ $int: "1" }, { $bytes: "AA==" }, { $json: { $int: "2" } }, [{ $date: "x" }], {
    a: { $float: "NaN" },
  }),
);
const record = fc.dictionary(fieldName, value, { maxKeys: 7 });

describe("value round trip", () => {
  for (const kind of ["dir", ".ndjson", ".json"] as const) {
    it(`keeps every value kind exactly through ${kind}`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(record, { minLength: 1, maxLength: 30 }), async (rows) => {
          const url = fresh(kind, "things");
          await writeAll(url, schemaFor("things", rows), rows, 7);
          const back = await readBack(url);
          expect(Object.keys(back)).toEqual(["things"]);
          expect(canon(back.things ?? [])).toEqual(canon(rows));
        }),
        { numRuns: kind === "dir" ? 40 : 25 },
      );
    });
  }

  it("decodes the edge values to their canonical forms", async () => {
    const url = fresh(".ndjson");
    const row: Row = {
      max: 2n ** 63n - 1n,
      min: -(2n ** 63n),
      safe: 2n ** 40n,
      bytes: new Uint8Array([0xff, 0, 0x80]),
      empty: new Uint8Array(),
      when: new Date("2026-01-02T03:04:05.678Z"),
      nan: Number.NaN,
      inf: Number.NEGATIVE_INFINITY,
      negZero: -0,
      text: "a\u2028b 🚢",
      tagLike: { $int: "1" },
      nested: { a: [1, { $bytes: "x" }] },
    };
    await writeAll(url, schemaFor("data", [row]), [row]);
    const [back] = (await readBack(url)).data ?? [];
    expect(back?.max).toBe(2n ** 63n - 1n);
    expect(back?.min).toBe(-(2n ** 63n));
    expect(back?.safe).toBe(2 ** 40);
    expect(back?.bytes).toEqual(new Uint8Array([0xff, 0, 0x80]));
    expect(back?.empty).toEqual(new Uint8Array());
    expect(back?.when).toEqual(new Date("2026-01-02T03:04:05.678Z"));
    expect(back?.nan).toBeNaN();
    expect(back?.inf).toBe(Number.NEGATIVE_INFINITY);
    expect(Object.is(back?.negZero, -0)).toBe(true);
    expect(back?.text).toBe("a\u2028b 🚢");
    expect(back?.tagLike).toEqual({ $int: "1" });
    expect(back?.nested).toEqual({ a: [1, { $bytes: "x" }] });
    // Ordinary values stay plain JSON in the file.
    expect(readFileSync(url, "utf8")).toContain('"tagLike":{"$json":{"$int":"1"}}');
  });
});

// ---- layouts ----

describe("layouts", () => {
  it("claims directories, .ndjson, .jsonl and .json paths, and file: URLs", () => {
    expect(filesFactory.claimsPath?.("./backup/")).toBe(true);
    expect(filesFactory.claimsPath?.(tmp.dir)).toBe(true);
    expect(filesFactory.claimsPath?.("x.ndjson")).toBe(true);
    expect(filesFactory.claimsPath?.("x.JSONL")).toBe(true);
    expect(filesFactory.claimsPath?.("x.json")).toBe(true);
    expect(filesFactory.claimsPath?.("x.csv")).toBe(false);
    expect(factoryFor("file:./x.ndjson")).toBe(filesFactory);
  });

  it("opens file:/// URLs and refuses a missing source with details.missing", async () => {
    const url = fresh(".ndjson");
    writeFileSync(url, '{"id":1}\n');
    const c = await openConnector(`file://${url}`);
    expect(c.identity).toBe(url);
    expect(await c.count((await c.discover())[0] as CollectionSchema)).toBe(1);
    await c.close();
    const err = await failure(openConnector(join(tmp.dir, "nope.ndjson")));
    expect(isFerryError(err, "E_CONNECTION")).toBe(true);
    expect((err as { details: { missing?: boolean } }).details.missing).toBe(true);
  });

  it("infers a schema for an .ndjson file without a sidecar, and counts lines fast", async () => {
    const url = fresh(".jsonl", "people");
    writeFileSync(
      url,
      '\ufeff{"id":1,"name":"a","score":1,"tags":["x"],"b":{"$bytes":"AA=="}}\r\n\n  \n{"id":2,"name":null,"score":1.5,"when":{"$date":"2026-01-01T00:00:00.000Z"}}\n{"id":3,"name":"c","score":2}',
    );
    const c = await openConnector(url);
    const [s] = await c.discover();
    expect(s?.name).toBe("people");
    expect(s?.primaryKey).toEqual(["id"]);
    expect(Object.fromEntries(s?.fields.map((f) => [f.name, f.type]) ?? [])).toEqual({
      id: "integer",
      name: "text",
      score: "float",
      tags: "json",
      b: "bytes",
      when: "datetime",
    });
    expect(await c.count(s as CollectionSchema)).toBe(3);
    expect((await readRows(c, s as CollectionSchema)).map((r) => r.id)).toEqual([1, 2, 3]);
    await c.close();
  });

  it("a directory lists its collections, never the journal, pending, schema or temp files", async () => {
    const url = fresh("dir");
    const rows = [{ id: 1 }, { id: 2 }];
    await writeAll(url, schemaFor("a/b:c", rows, ["id"]), rows);
    const c = await openConnector(url, { write: true });
    const s = { ...schemaFor("zeta", rows, ["id"]) };
    await c.prepare(s);
    await c.write(s, [{ op: "replace", match: { id: 1 }, record: { id: 1, x: 1 } }], {
      runId: "r2",
      id: "r2",
      entry: () => ({ id: "r2" }),
    });
    writeFileSync(join(url, "zeta.ndjson.ferry-tmp"), "junk");
    writeFileSync(join(url, "hand.jsonl"), '{"k":1}\n');
    const names = (await c.discover()).map((x) => x.name);
    expect(names).toEqual(["a/b:c", "zeta", "hand"]);
    expect(readdirSync(url).sort()).toEqual(
      [
        ".ferry-journal.json",
        "a%2Fb%3Ac.ndjson",
        "ferry.schema.json",
        "hand.jsonl",
        "zeta.ndjson",
        "zeta.ndjson.ferry-pending",
        "zeta.ndjson.ferry-tmp",
      ].sort(),
    );
    const doc = JSON.parse(readFileSync(join(url, "ferry.schema.json"), "utf8"));
    expect(doc).toMatchObject({ format: "ferry-dir", version: 1 });
    expect(doc.collections.map((x: CollectionSchema) => x.name)).toEqual(["a/b:c", "zeta"]);
    await c.close();
  });

  it("stores schemas verbatim, native included", async () => {
    const url = fresh("dir");
    const schema: CollectionSchema = {
      name: "users",
      fields: [{ name: "id", type: "integer", nativeType: "INTEGER", nullable: false }],
      primaryKey: ["id"],
      indexes: [{ name: "ix", fields: ["id"], unique: true }],
      native: { engine: "sqlite", ddl: ["CREATE TABLE users (id INTEGER PRIMARY KEY)"] },
    };
    await writeAll(url, schema, [{ id: 1 }]);
    const c = await openConnector(url);
    expect(await c.discover()).toEqual([schema]);
    await c.close();
  });

  it("an .ndjson file holds one collection: it takes the written one's name and refuses a second", async () => {
    const url = fresh(".ndjson", "out");
    await writeAll(url, schemaFor("users", [{ id: 1 }], ["id"]), [{ id: 1 }]);
    const c = await openConnector(url, { write: true });
    expect((await c.discover()).map((s) => s.name)).toEqual(["users"]);
    const err = await failure(c.prepare(schemaFor("orders", [{ id: 1 }])));
    expect(isFerryError(err, "E_CONFIG")).toBe(true);
    expect(String(err)).toMatch(/holds the collection "users"/);
    await c.close();
    expect(JSON.parse(readFileSync(`${url}.schema.json`, "utf8"))).toMatchObject({ format: "ferry-schema" });
  });

  it("a read-only connector refuses to prepare or write", async () => {
    const url = fresh(".ndjson");
    writeFileSync(url, "");
    const c = await openConnector(url);
    expect(isFerryError(await failure(c.prepare(schemaFor("data", []))), "E_UNSUPPORTED")).toBe(true);
    await c.close();
  });

  it("names the file and line of a malformed record", async () => {
    const url = fresh(".ndjson");
    writeFileSync(url, '{"id":1}\n\n{"id":2}\n{"id":3,\n{"id":4}\n');
    const c = await openConnector(url);
    const [s] = await c.discover().catch(() => [schemaFor("data", [])]);
    const err = await failure(readRows(c, s as CollectionSchema, 1));
    expect(isFerryError(err, "E_VALIDATION")).toBe(true);
    expect((err as Error).message).toMatch(
      new RegExp(`^${url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:4: not valid JSON`),
    );
    writeFileSync(url, '{"id":1}\n[1,2]\n');
    const err2 = await failure(readRows(c, s as CollectionSchema));
    expect((err2 as Error).message).toContain(":2: not a JSON object");
    await c.close();
  });
});

// ---- resume ----

describe("resume from a bookmark", () => {
  it("yields every record exactly once, whatever the batch sizes and where it stops", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 1, max: 17 }),
        fc.integer({ min: 1, max: 17 }),
        fc.integer({ min: 0, max: 8 }),
        fc.constantFrom("\n", "\r\n"),
        fc.boolean(),
        fc.boolean(),
        async (n, b1, b2, stopAfter, eol, blanks, finalEol) => {
          const url = fresh(".ndjson");
          const lines = Array.from({ length: n }, (_, i) => `{"id":${i},"s":"é${"x".repeat(i % 5)}"}`);
          let text = lines.map((l, i) => (blanks && i % 4 === 0 ? `${eol}${l}` : l)).join(eol);
          if (finalEol && n > 0) text += eol;
          writeFileSync(url, text);
          const c = await openConnector(url);
          const s = schemaFor("data", []);
          const seen: number[] = [];
          let bookmark: Record<string, unknown> | undefined;
          let batches = 0;
          if (stopAfter > 0) {
            for await (const b of c.read(s, { batchSize: b1 })) {
              seen.push(...b.records.map((r) => r.id as number));
              bookmark = b.bookmark;
              if (++batches >= stopAfter) break;
            }
          }
          const d = await openConnector(url);
          for await (const b of d.read(s, { batchSize: b2, ...(bookmark ? { after: bookmark } : {}) })) {
            seen.push(...b.records.map((r) => r.id as number));
          }
          await d.close();
          await c.close();
          expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
          expect(await countLines(url)).toBe(n);
        },
      ),
      { numRuns: 120 },
    );
  });

  it("resumes a .json collection by index", async () => {
    const url = fresh(".json");
    writeFileSync(url, JSON.stringify({ v: 1, items: Array.from({ length: 10 }, (_, id) => ({ id })) }));
    const c = await openConnector(url);
    const [s] = await c.discover();
    const it1 = c.read(s as CollectionSchema, { batchSize: 4 })[Symbol.asyncIterator]();
    const first = (await it1.next()).value;
    const rest: Row[] = [];
    for await (const b of c.read(s as CollectionSchema, { batchSize: 3, after: first.bookmark }))
      rest.push(...b.records);
    expect([...first.records, ...rest].map((r) => r.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await c.close();
  });

  it("refuses a bookmark that is not at a line start", async () => {
    const url = fresh(".ndjson");
    writeFileSync(url, '{"id":1}\n{"id":2}\n');
    const c = await openConnector(url);
    const err = await failure(
      readRows(c, schemaFor("data", [])).then(() =>
        c
          .read(schemaFor("data", []), { batchSize: 1, after: { offset: 3, line: 1 } })
          [Symbol.asyncIterator]()
          .next(),
      ),
    );
    expect(isFerryError(err, "E_CONFIG")).toBe(true);
    await c.close();
  });
});

// ---- durability ----

function journalOf(url: string): { runs: Record<string, unknown>; offsets?: Record<string, { length: number }> } {
  const p = url.endsWith("/") ? join(url, ".ferry-journal.json") : `${url}.ferry-journal.json`;
  return JSON.parse(readFileSync(p, "utf8"));
}

describe("durability", () => {
  const schema = schemaFor("items", [{ id: 0, v: "" }], ["id"]);
  const rowsOf = (from: number, to: number): Row[] =>
    Array.from({ length: to - from }, (_, i) => ({ id: from + i, v: `v${from + i}` }));

  for (const kind of ["dir", ".ndjson"] as const) {
    it(`${kind}: preparing again cuts off bytes appended after the last checkpoint`, async () => {
      const url = fresh(kind, "items");
      const file = kind === "dir" ? join(url, "items.ndjson") : url;
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      await c.write(
        schema,
        rowsOf(0, 5).map((record) => ({ op: "insert", record })),
        { runId: "r1", id: "r1", entry: () => ({ id: "r1", status: "running", startedAt: "2026-01-01T00:00:00Z" }) },
      );
      const committed = statSync(file).size;
      // No checkpoint: these bytes (and a torn line a kill -9 could leave) are not committed.
      await c.write(
        schema,
        rowsOf(5, 8).map((record) => ({ op: "insert", record })),
      );
      await c.write(schema, [{ op: "update", match: { id: 1 }, record: { v: "changed" } }]);
      appendFileSync(file, '{"id":99,"v":"tor');
      await c.close(); // the process dies: no finish
      expect(statSync(file).size).toBeGreaterThan(committed);
      expect(existsSync(`${file}.ferry-pending`)).toBe(true);
      expect(journalOf(url).offsets?.["items.ndjson"]?.length).toBe(committed);

      const d = await openConnector(url, { write: true });
      await d.prepare(schema);
      expect(statSync(file).size).toBe(committed);
      expect(statSync(`${file}.ferry-pending`).size).toBe(0);
      // The resumed run goes on from its checkpoint: no gap, no duplicate.
      await d.write(
        schema,
        rowsOf(5, 8).map((record) => ({ op: "insert", record })),
        { runId: "r1", id: "r1", entry: () => ({ id: "r1", status: "running" }) },
      );
      await d.finish(schema);
      await d.close();
      expect(existsSync(`${file}.ferry-pending`)).toBe(false);
      expect(journalOf(url).offsets).toBeUndefined();
      expect((await readBack(url)).items).toEqual(rowsOf(0, 8));
    });
  }

  it("cuts back a write that never reached its first checkpoint (baseline)", async () => {
    const url = fresh(".ndjson", "items");
    writeFileSync(url, `${encodeLine({ id: 0, v: "v0" })}\n`);
    const before = statSync(url).size;
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(
      schema,
      rowsOf(1, 3).map((record) => ({ op: "insert", record })),
    );
    await c.close();
    const d = await openConnector(url, { write: true });
    await d.prepare(schema);
    expect(statSync(url).size).toBe(before);
    await d.close();
  });

  it("refuses to resume when a checkpointed file lost data, until the run is abandoned", async () => {
    const url = fresh(".ndjson", "items");
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(
      schema,
      rowsOf(0, 3).map((record) => ({ op: "insert", record })),
      { runId: "r1", id: "r1", entry: () => ({ id: "r1", status: "interrupted" }) },
    );
    await c.close();
    writeFileSync(url, "");
    const d = await openConnector(url, { write: true });
    expect(isFerryError(await failure(d.prepare(schema)), "E_CHECKSUM")).toBe(true);
    await d.journal().save("r1", { id: "r1", status: "abandoned" });
    await d.prepare(schema);
    expect(journalOf(url).offsets).toBeUndefined();
    await d.close();
  });

  it("readers see only what checkpoints committed, replace/update included", async () => {
    const url = fresh("dir");
    await writeAll(url, schema, rowsOf(0, 3));
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(
      schema,
      [
        { op: "insert", record: { id: 3, v: "v3" } },
        { op: "update", match: { id: 0 }, record: { v: "committed" } },
      ],
      { runId: "r1", id: "r1", entry: () => ({ id: "r1", status: "running" }) },
    );
    await c.write(schema, [
      { op: "insert", record: { id: 4, v: "v4" } },
      { op: "update", match: { id: 1 }, record: { v: "not committed" } },
    ]);
    const data = join(url, "items.ndjson");
    const size = statSync(data).size;
    appendFileSync(data, '{"id":5,"v":"tor'); // as another process's torn write would look
    const r = await openConnector(url);
    const expected = [{ id: 0, v: "committed" }, ...rowsOf(1, 4)];
    expect(await readRows(r, schema, 2)).toEqual(expected);
    expect(await r.count(schema)).toBe(4);
    expect([...(await r.lookup(schema, ["id"], [[3], [4], [5]])).keys()]).toEqual(["[3]"]);
    await r.close();
    truncateSync(data, size);
    // Preparing twice in one session keeps what the session wrote.
    await c.prepare(schema);
    await c.finish(schema);
    await c.close();
    expect((await readBack(url)).items?.map((x) => x.id)).toEqual([0, 1, 2, 3, 4]);
  });

  it("keeps lookups current with this session's inserts", async () => {
    const url = fresh("dir");
    await writeAll(url, schema, rowsOf(0, 3));
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    expect([...(await c.lookup(schema, ["id"], [[1], [5], [6]])).keys()]).toEqual(["[1]"]);
    await c.write(
      schema,
      rowsOf(5, 7).map((record) => ({ op: "insert", record })),
    );
    const found = await c.lookup(schema, ["id"], [[1], [5], [6], [7]]);
    expect([...found.values()]).toEqual([rowsOf(1, 2)[0], ...rowsOf(5, 7)]);
    expect(await c.lookup(schema, ["v"], [["v6"], ["nope"]])).toEqual(new Map([['["v6"]', { id: 6, v: "v6" }]]));
    await c.finish(schema);
    await c.close();
  });

  it("reports unencodable records as failures and applies the rest", async () => {
    const url = fresh(".ndjson", "items");
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    const bad = { id: 2, v: { nested: 1n } } as unknown as Row;
    const r = await c.write(schema, [
      { op: "insert", record: { id: 1 } },
      { op: "insert", record: bad },
      { op: "insert", record: { id: 3 } },
    ]);
    expect(r.failures.map((f) => f.index)).toEqual([1]);
    expect(r.failures[0]?.reason).toMatch(/BigInt/i);
    await c.finish(schema);
    await c.close();
    expect((await readBack(url)).items?.map((x) => x.id)).toEqual([1, 3]);
  });
});

// ---- replace / update ----

describe("replace and update", () => {
  const schema = schemaFor("items", [{ id: 0, v: "", n: 0 }], ["id"]);
  const base: Row[] = Array.from({ length: 6 }, (_, id) => ({ id, v: `v${id}`, n: id }));
  const ops: WriteOp[] = [
    { op: "update", match: { id: 1 }, record: { v: "one" } },
    { op: "replace", match: { id: 2 }, record: { id: 2, v: "two" } },
    { op: "update", match: { v: "v3" }, record: { n: 33, extra: { $int: "1" } } },
    { op: "update", match: { id: 1 }, record: { n: 11 } },
    { op: "replace", match: { id: 4 }, record: { id: 4, v: "four" } },
    { op: "update", match: { id: 4 }, record: { n: 44 } },
    { op: "update", match: { id: 404 }, record: { n: 0 } },
  ];
  const expected: Row[] = [
    { id: 0, v: "v0", n: 0 },
    { id: 1, v: "one", n: 11 },
    { id: 2, v: "two" },
    { id: 3, v: "v3", n: 33, extra: { $int: "1" } },
    { id: 4, v: "four", n: 44 },
    { id: 5, v: "v5", n: 5 },
    { id: 6, v: "new" },
  ];

  for (const kind of ["dir", ".ndjson", ".json"] as const) {
    it(`${kind}: applies pending operations in finish, idempotently`, async () => {
      const url = fresh(kind, "items");
      await writeAll(url, schema, base);
      const file = kind === "dir" ? join(url, "items.ndjson") : url;
      const original = readFileSync(file, "utf8");
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      await c.write(schema, [...ops, { op: "insert", record: { id: 6, v: "new" } }], {
        runId: "r1",
        id: "r1",
        entry: () => ({ id: "r1" }),
      });
      if (kind !== ".json") {
        // Nothing is changed in place before finish.
        expect(readFileSync(file, "utf8")).toBe(`${original}${encodeLine({ id: 6, v: "new" })}\n`);
      }
      await c.finish(schema);
      await c.finish(schema);
      await c.close();
      expect((await readBack(url)).items).toEqual(expected);
      if (kind !== ".json") {
        // Untouched lines are copied byte for byte.
        expect(readFileSync(file, "utf8").split("\n")[5]).toBe(original.split("\n")[5]);
        expect(existsSync(`${file}.ferry-pending`)).toBe(false);
      }
      expect(journalOf(url).offsets).toBeUndefined();
    });
  }

  for (const crash of ["before the rename", "after the rename"] as const) {
    it(`ndjson: a finish interrupted ${crash} is completed by the next prepare`, async () => {
      const url = fresh(".ndjson", "items");
      await writeAll(url, schema, base);
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      await c.write(schema, ops, { runId: "r1", id: "r1", entry: () => ({ id: "r1", status: "running" }) });
      await c.close();
      const pending = `${url}.ferry-pending`;
      const journal = `${url}.ferry-journal.json`;
      copyFileSync(pending, `${pending}.saved`);
      if (crash === "after the rename") {
        const d = await openConnector(url, { write: true });
        await d.finish(schema);
        await d.close();
        copyFileSync(`${pending}.saved`, pending); // the pending file was not removed yet
      }
      const j = JSON.parse(readFileSync(journal, "utf8"));
      j.offsets = { "items.ndjson": { runId: "r1", length: 1, finishing: true } };
      writeFileSync(journal, JSON.stringify(j));
      const e = await openConnector(url, { write: true });
      await e.prepare(schema);
      await e.finish(schema);
      await e.close();
      expect((await readBack(url)).items).toEqual(expected.slice(0, 6));
    });
  }

  it(".json: a finish interrupted after the rename is not applied twice", async () => {
    const url = fresh(".json", "items");
    await writeAll(url, schema, base);
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(schema, [{ op: "insert", record: { id: 6, v: "new" } }], {
      runId: "r1",
      id: "r1",
      entry: () => ({ id: "r1" }),
    });
    await c.close();
    const pending = `${url}.items.ferry-pending`;
    copyFileSync(pending, `${pending}.saved`);
    const d = await openConnector(url, { write: true });
    await d.finish(schema);
    await d.close();
    copyFileSync(`${pending}.saved`, pending);
    const { createHash } = await import("node:crypto");
    const journal = `${url}.ferry-journal.json`;
    const j = JSON.parse(readFileSync(journal, "utf8"));
    const sha = createHash("sha256").update(readFileSync(url)).digest("hex");
    j.offsets = { "items.json.items.ferry-pending": { runId: "r1", length: 1e9, finishing: sha } };
    writeFileSync(journal, JSON.stringify(j));
    const e = await openConnector(url, { write: true });
    await e.prepare(schema);
    await e.finish(schema);
    await e.close();
    expect((await readBack(url)).items?.map((r) => r.id)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });
});

// ---- delete ----

describe("delete", () => {
  const schema = schemaFor("items", [{ id: 0, v: "", n: 0 }], ["id"]);
  const base: Row[] = Array.from({ length: 6 }, (_, id) => ({ id, v: `v${id}`, n: id }));
  const cp = (id = "r1") => ({ runId: id, id, entry: () => ({ id, status: "running" }) });
  const fileOf = (kind: "dir" | ".ndjson", url: string) => (kind === "dir" ? join(url, "items.ndjson") : url);
  const ids = (rows: Row[] | undefined) => rows?.map((r) => r.id);
  // In order: a record inserted and deleted in the batch is gone; one deleted and inserted again stays.
  const ops: WriteOp[] = [
    { op: "delete", match: { id: 1 } },
    { op: "delete", match: { id: 404 } },
    { op: "insert", record: { id: 6, v: "brief" } },
    { op: "delete", match: { id: 6 } },
    { op: "delete", match: { id: 2 } },
    { op: "insert", record: { id: 2, v: "again" } },
    { op: "update", match: { id: 3 }, record: { n: 33 } },
    { op: "delete", match: { v: "v4" } },
  ];
  const expected: Row[] = [
    { id: 0, v: "v0", n: 0 },
    { id: 3, v: "v3", n: 33 },
    { id: 5, v: "v5", n: 5 },
    { id: 2, v: "again" },
  ];

  for (const kind of ["dir", ".ndjson", ".json"] as const) {
    it(`${kind}: deletes by key in order with the batch's other ops; lookups see it at once; read back after finish`, async () => {
      const url = fresh(kind, "items");
      await writeAll(url, schema, base);
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      // A lookup index built before the deletes is kept current by them.
      expect((await c.lookup(schema, ["id"], [[1]])).size).toBe(1);
      const r = await c.write(schema, ops, cp());
      expect(r.failures).toEqual([]);
      const found = await c.lookup(schema, ["id"], [[0], [1], [2], [4], [6], [404]]);
      expect([...found.keys()]).toEqual(["[0]", "[2]"]);
      expect(found.get("[2]")).toEqual({ id: 2, v: "again" });
      expect(await c.lookup(schema, ["v"], [["v4"], ["v5"]])).toEqual(new Map([['["v5"]', base[5]]]));
      await c.finish(schema);
      await c.close();
      expect((await readBack(url)).items).toEqual(expected);
      expect(journalOf(url).offsets).toBeUndefined();
      if (kind !== ".json") expect(existsSync(`${fileOf(kind, url)}.ferry-pending`)).toBe(false);

      // A rollback run again: the keys are gone, which is no failure, and nothing changes.
      const d = await openConnector(url, { write: true });
      await d.prepare(schema);
      const again = await d.write(
        schema,
        ops.filter((o) => o.op === "delete"),
        cp("r2"),
      );
      expect(again.failures).toEqual([]);
      expect(await d.count(schema)).toBe(expected.length - 1); // `again` (id 2) deleted this time
      await d.finish(schema);
      await d.close();
      expect((await readBack(url)).items).toEqual(expected.filter((x) => x.id !== 2));
    });
  }

  it("refuses a delete without match fields as a failure and applies the rest", async () => {
    const url = fresh(".ndjson", "items");
    await writeAll(url, schema, base);
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    const r = await c.write(schema, [
      { op: "delete", match: { id: 0 } },
      { op: "delete", match: {} },
      { op: "delete", match: { id: 5 } },
    ]);
    expect(r.failures.map((f) => f.index)).toEqual([1]);
    expect(r.failures[0]?.reason).toMatch(/delete without match fields/);
    await c.finish(schema);
    await c.close();
    expect(ids((await readBack(url)).items)).toEqual([1, 2, 3, 4]);
  });

  it("readers see committed deletes before finish, and not uncommitted ones", async () => {
    const url = fresh("dir");
    await writeAll(url, schema, base);
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(schema, [{ op: "delete", match: { id: 0 } }], cp());
    await c.write(schema, [{ op: "delete", match: { id: 1 } }]);
    const r = await openConnector(url);
    expect(ids(await readRows(r, schema, 2))).toEqual([1, 2, 3, 4, 5]);
    expect(await r.count(schema)).toBe(5);
    expect([...(await r.lookup(schema, ["id"], [[0], [1]])).keys()]).toEqual(["[1]"]);
    await r.close();
    await c.finish(schema);
    await c.close();
    expect(ids((await readBack(url)).items)).toEqual([2, 3, 4, 5]);
  });

  for (const kind of ["dir", ".ndjson"] as const) {
    it(`${kind}: a delete committed before a kill is applied once by the resumed run; an uncommitted one is cut off`, async () => {
      const url = fresh(kind, "items");
      const file = fileOf(kind, url);
      await writeAll(url, schema, base);
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      await c.write(
        schema,
        [
          { op: "delete", match: { id: 1 } },
          { op: "insert", record: { id: 6, v: "v6" } },
        ],
        cp(),
      );
      const committed = statSync(`${file}.ferry-pending`).size;
      await c.write(schema, [{ op: "delete", match: { id: 2 } }]); // no checkpoint
      await c.close(); // killed: no finish
      expect(statSync(`${file}.ferry-pending`).size).toBeGreaterThan(committed);

      const d = await openConnector(url, { write: true });
      await d.prepare(schema);
      expect(statSync(`${file}.ferry-pending`).size).toBe(committed);
      expect([...(await d.lookup(schema, ["id"], [[1], [2]])).keys()]).toEqual(["[2]"]);
      // The next run inserts the deleted key again (an import after a rollback): it stays.
      await d.write(
        schema,
        [
          { op: "insert", record: { id: 1, v: "back" } },
          { op: "delete", match: { id: 6 } },
        ],
        cp(),
      );
      await d.finish(schema);
      await d.finish(schema);
      await d.close();
      expect((await readBack(url)).items).toEqual([...base.filter((x) => x.id !== 1), { id: 1, v: "back" }]);
    });
  }

  for (const crash of ["before the rename", "after the rename"] as const) {
    it(`ndjson: a finish with deletes interrupted ${crash} is completed once by the next prepare`, async () => {
      const url = fresh(".ndjson", "items");
      await writeAll(url, schema, base);
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      await c.write(schema, ops, cp());
      await c.close();
      const pending = `${url}.ferry-pending`;
      const journal = `${url}.ferry-journal.json`;
      copyFileSync(pending, `${pending}.saved`);
      const saved = JSON.parse(readFileSync(journal, "utf8"));
      let mark = "0".repeat(64); // the new content's hash: not the data file's before the rename
      if (crash === "after the rename") {
        const d = await openConnector(url, { write: true });
        await d.finish(schema);
        await d.close();
        copyFileSync(`${pending}.saved`, pending); // the pending file was not removed yet
        const { createHash } = await import("node:crypto");
        mark = createHash("sha256").update(readFileSync(url)).digest("hex");
      }
      const offsets = saved.offsets as Record<string, { finishing?: string }>;
      offsets["items.ndjson"] = { ...offsets["items.ndjson"], finishing: mark };
      writeFileSync(journal, JSON.stringify(saved));
      // Readers see the finished content either way, with no delete applied twice.
      expect((await readBack(url)).items).toEqual(expected);
      const e = await openConnector(url, { write: true });
      await e.prepare(schema);
      await e.finish(schema);
      await e.close();
      expect((await readBack(url)).items).toEqual(expected);
      expect(existsSync(pending)).toBe(false);
      expect(journalOf(url).offsets).toBeUndefined();
    });
  }

  it("ndjson: finish records the SHA-256 of the rewritten file before renaming it", async () => {
    const url = fresh(".ndjson", "items");
    await writeAll(url, schema, base);
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(schema, ops, cp());
    await c.close();
    const store = new NdjsonStore(url, url);
    let recorded: string | undefined;
    await store.applyPending(async (sha) => {
      recorded = sha;
      expect(readFileSync(url, "utf8")).toContain('"v":"v1"'); // not renamed yet
    });
    await store.close();
    const { createHash } = await import("node:crypto");
    expect(recorded).toBe(createHash("sha256").update(readFileSync(url)).digest("hex"));
  });

  it(".json: a delete committed before a kill is replayed from the pending log; an uncommitted one is cut off", async () => {
    const url = fresh(".json", "items");
    await writeAll(url, schema, base);
    const before = readFileSync(url, "utf8");
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(
      schema,
      [
        { op: "delete", match: { id: 1 } },
        { op: "insert", record: { id: 6, v: "v6" } },
      ],
      cp(),
    );
    await c.write(schema, [{ op: "delete", match: { id: 2 } }]);
    await c.close(); // killed: the document is untouched, the log holds the batches
    expect(readFileSync(url, "utf8")).toBe(before);
    expect(ids((await readBack(url)).items)).toEqual([0, 2, 3, 4, 5, 6]);
    const d = await openConnector(url, { write: true });
    await d.prepare(schema);
    expect(await d.count(schema)).toBe(6);
    await d.write(
      schema,
      [
        { op: "insert", record: { id: 1, v: "back" } },
        { op: "delete", match: { id: 6 } },
      ],
      cp(),
    );
    await d.finish(schema);
    await d.close();
    expect((await readBack(url)).items).toEqual([...base.filter((x) => x.id !== 1), { id: 1, v: "back" }]);
  });

  it(".json: a finish with deletes interrupted after the rename is not applied twice", async () => {
    const url = fresh(".json", "items");
    await writeAll(url, schema, base);
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(schema, ops, cp());
    await c.close();
    const pending = `${url}.items.ferry-pending`;
    copyFileSync(pending, `${pending}.saved`);
    const d = await openConnector(url, { write: true });
    await d.finish(schema);
    await d.close();
    copyFileSync(`${pending}.saved`, pending);
    const { createHash } = await import("node:crypto");
    const journal = `${url}.ferry-journal.json`;
    const j = JSON.parse(readFileSync(journal, "utf8"));
    const sha = createHash("sha256").update(readFileSync(url)).digest("hex");
    j.offsets = { "items.json.items.ferry-pending": { runId: "r1", length: 1e9, finishing: sha } };
    writeFileSync(journal, JSON.stringify(j));
    const e = await openConnector(url, { write: true });
    await e.prepare(schema);
    await e.finish(schema);
    await e.close();
    expect((await readBack(url)).items).toEqual(expected);
  });
});

// ---- the .json layout ----

describe(".json documents", () => {
  const original = `{
  "schema_version": "1.0.0",
  "exported_at": 12345678901234567890,
  "accounts": [
    {"id": "a1", "email": "a@example.com", "expires_at": 1700000000, "seen": {"$date": "2026-01-01T00:00:00.000Z"}},
    {"id": "a2", "email": "b@example.com", "expires_at": 1700000001}
  ],
  "settings": {"theme": "dark"},
  "teams":   [ {"id": 1,   "name": "kept as is"} ]
}
`;

  it("finds the top-level arrays of objects as collections and decodes tags", async () => {
    const url = fresh(".json", "export");
    writeFileSync(url, original);
    const c = await openConnector(url);
    const found = await c.discover();
    expect(found.map((s) => s.name)).toEqual(["accounts", "teams"]);
    const accounts = found[0] as CollectionSchema;
    expect(await c.count(accounts)).toBe(2);
    const rows = await readRows(c, accounts);
    expect(rows[0]?.seen).toEqual(new Date("2026-01-01T00:00:00.000Z"));
    await c.close();
  });

  it("rewrites one collection and keeps schema_version and the other fields and collections verbatim", async () => {
    const url = fresh(".json", "export");
    writeFileSync(url, original);
    const accounts = schemaFor("accounts", [{ id: "", email: "" }], ["id"]);
    const c = await openConnector(url, { write: true });
    await c.prepare(accounts);
    await c.write(accounts, [
      { op: "replace", match: { email: "b@example.com" }, record: { id: "a2", email: "b@example.com", expires_at: 2 } },
      { op: "insert", record: { id: "a3", email: "c@example.com", blob: new Uint8Array([1, 2]) } },
    ]);
    const users = schemaFor("users", [{ id: 1 }], ["id"]);
    await c.prepare(users);
    await c.write(users, [{ op: "insert", record: { id: 1 } }]);
    await c.finish(accounts);
    await c.finish(users);
    await c.close();
    const text = readFileSync(url, "utf8");
    expect(text).toContain('"schema_version": "1.0.0"');
    expect(text).toContain('"exported_at": 12345678901234567890');
    expect(text).toContain('"settings": {"theme": "dark"}');
    expect(text).toContain('"teams":   [ {"id": 1,   "name": "kept as is"} ]');
    const doc = JSON.parse(text);
    expect(Object.keys(doc)).toEqual(["schema_version", "exported_at", "accounts", "settings", "teams", "users"]);
    expect(doc.accounts).toEqual([
      { id: "a1", email: "a@example.com", expires_at: 1700000000, seen: { $date: "2026-01-01T00:00:00.000Z" } },
      { id: "a2", email: "b@example.com", expires_at: 2 },
      { id: "a3", email: "c@example.com", blob: { $bytes: "AQI=" } },
    ]);
    expect(doc.users).toEqual([{ id: 1 }]);
  });

  it("keeps a top-level array a top-level array", async () => {
    const url = fresh(".json", "list");
    writeFileSync(url, '[{"id":1},{"id":2}]');
    const s = schemaFor("list", [{ id: 1 }], ["id"]);
    const c = await openConnector(url, { write: true });
    expect((await c.discover()).map((x) => x.name)).toEqual(["list"]);
    await c.prepare(s);
    await c.write(s, [{ op: "insert", record: { id: 3 } }]);
    await c.finish(s);
    expect(isFerryError(await failure(c.prepare(schemaFor("other", [])))), "E_CONFIG").toBe(true);
    await c.close();
    expect(JSON.parse(readFileSync(url, "utf8"))).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
  });

  it("resumes a .json write after a crash from its pending log", async () => {
    const url = fresh(".json", "export");
    writeFileSync(url, original);
    const accounts = schemaFor("accounts", [{ id: "" }], ["id"]);
    const c = await openConnector(url, { write: true });
    await c.prepare(accounts);
    await c.write(accounts, [{ op: "insert", record: { id: "a3" } }], {
      runId: "r1",
      id: "r1",
      entry: () => ({ id: "r1" }),
    });
    await c.write(accounts, [{ op: "insert", record: { id: "lost" } }]);
    await c.close(); // killed: the document is untouched, the log holds the batches
    expect(readFileSync(url, "utf8")).toBe(original);
    const d = await openConnector(url, { write: true });
    await d.prepare(accounts);
    expect(await d.count(accounts)).toBe(3);
    await d.write(accounts, [{ op: "insert", record: { id: "a4" } }], {
      runId: "r1",
      id: "r1",
      entry: () => ({ id: "r1" }),
    });
    await d.finish(accounts);
    await d.close();
    expect((await readBack(url)).accounts?.map((r) => r.id)).toEqual(["a1", "a2", "a3", "a4"]);
  });
});

describe("journal", () => {
  it("saves, gets and lists entries newest first", async () => {
    const url = fresh("dir");
    const c = await openConnector(url, { write: true });
    const j = c.journal();
    await j.save("b", { id: "b", startedAt: "2026-01-02T00:00:00Z" });
    await j.save("a", { id: "a", startedAt: "2026-01-01T00:00:00Z" });
    await j.save("c", { id: "c", startedAt: "2026-01-03T00:00:00Z" });
    await j.save("b", { id: "b", startedAt: "2026-01-02T00:00:00Z", status: "done" });
    expect(await j.get("b")).toEqual({ id: "b", startedAt: "2026-01-02T00:00:00Z", status: "done" });
    expect(await j.get("zz")).toBeUndefined();
    expect(((await j.list()) as { id: string }[]).map((e) => e.id)).toEqual(["c", "b", "a"]);
    expect(await c.discover()).toEqual([]);
    await c.close();
  });
});

// ---- undo log and forget ----

describe("undo log", () => {
  const schema = schemaFor("items", [{ id: 0, v: "" }], ["id"]);
  /** A checkpoint of run `runId` whose batch has undo row `seq` (entry `payload`, when given). */
  const withUndo = (runId: string, seq: number, payload?: unknown, id = runId) => ({
    runId,
    id,
    entry: () => ({ id, status: "running", seq }),
    undo: () => ({ runId, seq, entry: payload ?? { seq } }),
  });
  const insert = (id: number): WriteOp[] => [{ op: "insert", record: { id, v: `v${id}` } }];
  const undoDirOf = (url: string) => (url.endsWith("/") ? join(url, ".ferry-undo") : `${url}.ferry-undo`);
  /** The one undo log of a target that kept one run's. */
  const logOf = (url: string) => join(undoDirOf(url), readdirSync(undoDirOf(url))[0] as string);

  async function undoRows(c: Connector, runId: string): Promise<{ runId: string; seq: number; entry: unknown }[]> {
    const out = [];
    for await (const r of c.journal().undo(runId)) out.push(r);
    return out;
  }

  for (const kind of ["dir", ".ndjson", ".json"] as const) {
    it(`${kind}: keeps each batch's undo row with it and reads them back highest seq first, page by page`, async () => {
      const url = fresh(kind, "items");
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      // Seqs out of write order (read back by seq), a seq saved twice (the later one counts),
      // and rows larger than a read page (8 MB) between small ones.
      const big = (n: number) => ({ n, blob: String.fromCharCode(97 + n).repeat(3 * 1024 * 1024) });
      const seqs = [...Array.from({ length: 150 }, (_, i) => (i * 37) % 150), 150, 151, 152, 153, 7];
      let id = 0;
      for (const seq of seqs) {
        const payload = seq >= 150 ? big(seq - 150) : seq === 7 && id > 0 ? { seq, again: true } : undefined;
        const r = await c.write(schema, insert(id++), withUndo("imp-1", seq, payload));
        expect(r.failures).toEqual([]);
      }
      // A batch without an undo row, and another run's rows in the same journal.
      await c.write(schema, insert(id++), { runId: "imp-1", id: "imp-1", entry: () => ({ id: "imp-1" }) });
      await c.write(schema, insert(id++), withUndo("imp-2", 0));
      const rows = await undoRows(c, "imp-1");
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 154 }, (_, i) => 153 - i));
      expect(rows.every((r) => r.runId === "imp-1")).toBe(true);
      expect(rows[0]?.entry).toEqual(big(3));
      expect(rows.find((r) => r.seq === 7)?.entry).toEqual({ seq: 7, again: true });
      expect(rows.find((r) => r.seq === 8)?.entry).toEqual({ seq: 8 });
      await c.finish(schema);
      await c.close();

      // Read-only: undo and list work, nothing is listed or discovered that is not data.
      const r = await openConnector(url);
      expect((await undoRows(r, "imp-1")).map((x) => x.seq)).toEqual(rows.map((x) => x.seq));
      expect(await undoRows(r, "imp-2")).toEqual([{ runId: "imp-2", seq: 0, entry: { seq: 0 } }]);
      expect(await undoRows(r, "nope")).toEqual([]);
      expect(((await r.journal().list()) as { id: string }[]).map((e) => e.id).sort()).toEqual(["imp-1", "imp-2"]);
      expect((await r.discover()).map((s) => s.name)).toEqual(["items"]);
      expect(isFerryError(await failure(r.journal().forget("imp-1")), "E_UNSUPPORTED")).toBe(true);
      // Stopping early is fine.
      for await (const x of r.journal().undo("imp-1")) {
        expect(x.seq).toBe(153);
        break;
      }
      await r.close();
      expect(readdirSync(undoDirOf(url))).toHaveLength(2);
      expect(journalOf(url).offsets).toBeUndefined();
    }, 60_000);
  }

  it("a batch that fails or throws leaves no undo row: its line is cut off with its data", async () => {
    const url = fresh("dir");
    const data = join(url, "items.ndjson");
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(schema, insert(0), withUndo("imp-1", 0));
    const committed = { data: statSync(data).size, log: statSync(logOf(url)).size };

    // The checkpoint cannot be saved (the journal's temp file is a directory).
    const tmpFile = join(url, ".ferry-journal.json.ferry-tmp");
    mkdirSync(tmpFile);
    const err = await failure(c.write(schema, insert(1), withUndo("imp-1", 1)));
    expect(isFerryError(err, "E_WRITE")).toBe(true);
    expect(statSync(logOf(url)).size).toBe(committed.log);
    expect(statSync(data).size).toBe(committed.data);
    rmSync(tmpFile, { recursive: true });

    // Building the undo row throws: nothing of the batch is written.
    const throwing = {
      ...withUndo("imp-1", 1),
      undo: () => {
        throw new Error("no undo");
      },
    };
    expect(await failure(c.write(schema, insert(1), throwing))).toMatchObject({ message: "no undo" });
    // An undo entry that is not JSON is a bug of the caller: refused before anything is written.
    const bigint = await failure(c.write(schema, insert(1), withUndo("imp-1", 1, { n: 1n })));
    expect(isFerryError(bigint, "E_INTERNAL")).toBe(true);
    expect(statSync(logOf(url)).size).toBe(committed.log);
    expect(statSync(data).size).toBe(committed.data);
    expect((await undoRows(c, "imp-1")).map((r) => r.seq)).toEqual([0]);

    // The next batch goes on from there.
    await c.write(schema, insert(1), withUndo("imp-1", 1));
    expect((await undoRows(c, "imp-1")).map((r) => r.seq)).toEqual([1, 0]);
    await c.finish(schema);
    await c.close();
    expect((await readBack(url)).items?.map((r) => r.id)).toEqual([0, 1]);
  });

  for (const kind of ["dir", ".ndjson", ".json"] as const) {
    it(`${kind}: undo lines appended after the last checkpoint are not read, and cut off by the next writer`, async () => {
      const url = fresh(kind, "items");
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      await c.write(schema, insert(0), withUndo("imp-1", 0));
      await c.write(schema, insert(1), withUndo("imp-1", 1));
      const committed = statSync(logOf(url)).size;
      await c.close(); // the process dies after appending the next batch's row, before its checkpoint:
      appendFileSync(logOf(url), `${JSON.stringify({ seq: 2, runId: "imp-1", entry: { seq: 2 } })}\n{"seq":3,"ru`);
      // A run killed before its first checkpoint left a whole log no journal names.
      const orphan = join(undoDirOf(url), "imp-9.0000000000000000.ndjson");
      writeFileSync(orphan, `${JSON.stringify({ seq: 0, runId: "imp-9", entry: {} })}\n`);

      const r = await openConnector(url);
      expect((await undoRows(r, "imp-1")).map((x) => x.seq)).toEqual([1, 0]);
      await r.close();
      expect(statSync(logOf(url)).size).toBeGreaterThan(committed); // readers change nothing

      const d = await openConnector(url, { write: true });
      await d.prepare(schema);
      expect(statSync(logOf(url)).size).toBe(committed);
      expect(existsSync(orphan)).toBe(false);
      await d.write(schema, insert(2), withUndo("imp-1", 2, { again: true }));
      expect(await undoRows(d, "imp-1")).toEqual([
        { runId: "imp-1", seq: 2, entry: { again: true } },
        { runId: "imp-1", seq: 1, entry: { seq: 1 } },
        { runId: "imp-1", seq: 0, entry: { seq: 0 } },
      ]);
      await d.finish(schema);
      await d.close();
    });
  }

  it("a log shorter than its checkpoint says is refused (E_CHECKSUM), not read in part", async () => {
    const url = fresh("dir");
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(schema, insert(0), withUndo("imp-1", 0));
    await c.write(schema, insert(1), withUndo("imp-1", 1));
    await c.close();
    truncateSync(logOf(url), statSync(logOf(url)).size - 5);
    const r = await openConnector(url);
    expect(isFerryError(await failure(undoRows(r, "imp-1")), "E_CHECKSUM")).toBe(true);
    await r.close();
  });

  it.skipIf(process.platform === "win32")(
    "kill -9 after a batch's undo row is fsynced, before its checkpoint: the row is cut back on reopen",
    async () => {
      const url = fresh("dir");
      const data = join(url, "items.ndjson");
      // The child blocks in the checkpoint's write of the journal: its temp file is a FIFO.
      const fifo = join(url, ".ferry-journal.json.ferry-tmp");
      const script = join(tmp.dir, `kill-${++seq}.mjs`);
      const src = (p: string) => JSON.stringify(pathToFileURL(join(ROOT, p)).href);
      writeFileSync(
        script,
        `import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { createJiti } from ${src("node_modules/jiti/lib/jiti.mjs")};
const jiti = createJiti(import.meta.url);
const { openFiles } = await jiti.import(${src("src/connectors/files/files-factory.ts")});
const schema = ${JSON.stringify(schema)};
const cp = (seq) => ({ runId: "imp-1", id: "imp-1", entry: () => ({ id: "imp-1", status: "running", seq }), undo: () => ({ runId: "imp-1", seq, entry: { seq } }) });
const c = await openFiles(${JSON.stringify(url)}, { write: true });
await c.prepare(schema);
await c.write(schema, [{ op: "insert", record: { id: 0, v: "v0" } }], cp(0));
execFileSync("mkfifo", [${JSON.stringify(fifo)}]);
const log = ${JSON.stringify(undoDirOf(url))} + "/" + readdirSync(${JSON.stringify(undoDirOf(url))})[0];
process.stdout.write(JSON.stringify({ data: statSync(${JSON.stringify(data)}).size, log: statSync(log).size }) + "\\n");
await c.write(schema, [{ op: "insert", record: { id: 1, v: "v1" } }], cp(1));
process.stdout.write("not blocked\\n");
`,
      );
      const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let stderr = "";
      child.stdout.on("data", (d) => {
        out += String(d);
      });
      child.stderr.on("data", (d) => {
        stderr += String(d);
      });
      const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
      const deadline = Date.now() + 30_000;
      while (!out.includes("\n") && child.exitCode === null && Date.now() < deadline) await sleep(10);
      expect(out, stderr).toMatch(/\n/);
      // The sizes after the first batch's checkpoint, as the child saw them.
      const committed = JSON.parse(out.split("\n")[0] as string) as { data: number; log: number };
      // Both appends of the second batch are on disk before the checkpoint is written.
      while (
        (statSync(logOf(url)).size === committed.log || statSync(data).size === committed.data) &&
        Date.now() < deadline
      ) {
        await sleep(10);
      }
      await sleep(50);
      child.kill("SIGKILL");
      expect(await exited, `${out}${stderr}`).toBeNull();
      expect(out).not.toContain("not blocked");
      rmSync(fifo);
      expect(statSync(logOf(url)).size).toBeGreaterThan(committed.log);

      const r = await openConnector(url);
      expect((await undoRows(r, "imp-1")).map((x) => x.seq)).toEqual([0]);
      expect((await readRows(r, schema)).map((x) => x.id)).toEqual([0]);
      await r.close();
      const d = await openConnector(url, { write: true });
      await d.prepare(schema);
      expect(statSync(logOf(url)).size).toBe(committed.log);
      expect(statSync(data).size).toBe(committed.data);
      // The resumed run writes the batch again, with its row.
      await d.write(schema, insert(1), withUndo("imp-1", 1));
      expect((await undoRows(d, "imp-1")).map((x) => x.seq)).toEqual([1, 0]);
      await d.finish(schema);
      await d.close();
      expect((await readBack(url)).items?.map((x) => x.id)).toEqual([0, 1]);
    },
    60_000,
  );

  for (const kind of ["dir", ".json"] as const) {
    it(`${kind}: forget removes a run's entry, its range rows and its undo log, not another run's`, async () => {
      const url = fresh(kind, "items");
      const c = await openConnector(url, { write: true });
      await c.prepare(schema);
      const j = c.journal();
      // "imp-1" and "imp-10": one id starts with the other.
      await j.save("imp-1", { id: "imp-1", startedAt: "2026-01-01T00:00:00Z" });
      await j.save("imp-10", { id: "imp-10", startedAt: "2026-01-02T00:00:00Z" });
      await c.write(schema, insert(0), withUndo("imp-1", 0, undefined, "imp-1/items/0"));
      await c.write(schema, insert(1), withUndo("imp-1", 1, undefined, "imp-1/items/1"));
      await c.write(schema, insert(2), withUndo("imp-10", 0, undefined, "imp-10/items/0"));
      await c.write(schema, insert(3), withUndo("imp-10", 1, undefined, "imp-10"));
      await c.finish(schema);
      expect(readdirSync(undoDirOf(url))).toHaveLength(2);

      await j.forget("imp-1");
      expect(Object.keys(journalOf(url).runs).sort()).toEqual(["imp-10", "imp-10/items/0"]);
      expect(await j.get("imp-1")).toBeUndefined();
      expect(await undoRows(c, "imp-1")).toEqual([]);
      expect((await undoRows(c, "imp-10")).map((r) => r.seq)).toEqual([1, 0]);
      expect(readdirSync(undoDirOf(url))).toHaveLength(1);
      // Not there (any more): no error, nothing changes.
      const before = readFileSync(url.endsWith("/") ? join(url, ".ferry-journal.json") : `${url}.ferry-journal.json`);
      await j.forget("imp-1");
      await j.forget("never");
      expect(readFileSync(url.endsWith("/") ? join(url, ".ferry-journal.json") : `${url}.ferry-journal.json`)).toEqual(
        before,
      );
      // The same id again starts a new log.
      await c.prepare(schema);
      await c.write(schema, insert(4), withUndo("imp-1", 5));
      expect((await undoRows(c, "imp-1")).map((r) => r.seq)).toEqual([5]);
      await c.finish(schema);
      await c.close();
      expect((await readBack(url)).items?.map((r) => r.id)).toEqual([0, 1, 2, 3, 4]);
    });
  }

  it("a forget killed after the journal write, before removing the log: the log is never read, and removed later", async () => {
    const url = fresh("dir");
    const c = await openConnector(url, { write: true });
    await c.prepare(schema);
    await c.write(schema, insert(0), withUndo("imp-1", 0));
    await c.write(schema, insert(1), withUndo("imp-1", 1));
    await c.finish(schema);
    const log = logOf(url);
    const kept = readFileSync(log);
    await c.journal().forget("imp-1");
    await c.close();
    expect(existsSync(log)).toBe(false);
    writeFileSync(log, kept); // as if the process died between the rename and the removal

    const r = await openConnector(url);
    expect(await undoRows(r, "imp-1")).toEqual([]);
    await r.close();
    // A new run under the same id starts from nothing.
    const d = await openConnector(url, { write: true });
    await d.journal().forget("imp-1"); // a retried forget removes it
    expect(existsSync(log)).toBe(false);
    writeFileSync(log, kept);
    await d.write(schema, insert(2), withUndo("imp-1", 7));
    expect((await undoRows(d, "imp-1")).map((r) => r.seq)).toEqual([7]);
    await d.finish(schema);
    await d.close();
    // Or the next writer's prepare removes it.
    writeFileSync(join(undoDirOf(url), "imp-2.0000000000000000.ndjson"), kept);
    const e = await openConnector(url, { write: true });
    await e.prepare(schema);
    expect(readdirSync(undoDirOf(url))).toEqual([basename(log)]);
    await e.close();
  });
});
