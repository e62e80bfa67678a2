/**
 * Hash rows (`redis://…/0?hashes=rows`): a key-space collection whose keys are all hashes,
 * read and written as a table: `key` (the Redis key, primary key), `ttl` (its absolute
 * expiry, null when it has none) and one column per hash field, null where a hash lacks it.
 * This is how `apikey:*` becomes an `apikey` table in PostgreSQL, MariaDB or SQLite, and how
 * such a table becomes hashes again at their own keys, with their expiries.
 *
 * The columns are every field name of every hash of the collection (found by one pass when
 * the collection is discovered or selected); values are text, or bytes for a field where
 * some value is not UTF-8. A collection with a key that is not a hash, a field name that is
 * not UTF-8, a field called `key` or `ttl`, or two fields whose names differ only in case,
 * keeps the key-space shape.
 */
import type { CollectionSchema, FieldSchema } from "../../core/schema.js";
import { encodeValue, type JsonValue, type Row, type Value } from "../../core/values.js";
import { RedisValueError } from "./redis-values.js";

/** What one pass over a collection's keys found (see {@link rowsSchema}). */
export interface HashShape {
  hashes: number;
  /** A key that is not a hash (the first met), with its type. */
  other?: { key: string; type: string };
  /** A field name that cannot be a column (not UTF-8, or `key`/`ttl`). */
  badField?: string;
  /** Some key is not UTF-8 (the `key` column is then bytes). */
  binaryKey: boolean;
  /** Field name → whether some value of it is not UTF-8. */
  fields: Map<string, boolean>;
}

export function emptyShape(): HashShape {
  return { hashes: 0, binaryKey: false, fields: new Map() };
}

/** Why the collection cannot be hash rows, or undefined when it can. */
export function notRows(shape: HashShape): string | undefined {
  if (shape.other) return `key ${shape.other.key} is a ${shape.other.type}, not a hash`;
  if (shape.badField !== undefined) return `hash field ${shape.badField} cannot be a column name`;
  if (shape.hashes === 0) return "it holds no hash";
  // SQLite and MySQL column names ignore case: `a` and `A` would be one column there.
  const seen = new Map<string, string>();
  for (const f of shape.fields.keys()) {
    const other = seen.get(f.toLowerCase());
    if (other !== undefined)
      return `hash fields ${other} and ${f} differ only in case (one column in SQLite and MySQL)`;
    seen.set(f.toLowerCase(), f);
  }
  return undefined;
}

/** The table a hash-rows collection reads as. */
export function rowsSchema(name: string, shape: HashShape): CollectionSchema {
  const fields: FieldSchema[] = [
    { name: "key", type: shape.binaryKey ? "bytes" : "text", nativeType: "key", nullable: false },
    { name: "ttl", type: "datetime", nativeType: "absolute expiry", timezone: true, fractionDigits: 3 },
  ];
  for (const [field, binary] of [...shape.fields].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    fields.push({ name: field, type: binary ? "bytes" : "text", nativeType: "hash field" });
  }
  return { name, engine: "redis", fields, primaryKey: ["key"] };
}

/**
 * Whether a collection from elsewhere is written as hash rows: its primary key is a `key`
 * field holding text or bytes (the Redis key), beside an optional `ttl`.
 */
export function isRowsShape(c: CollectionSchema): boolean {
  const key = c.fields.find((f) => f.name === "key");
  return (
    c.primaryKey.length === 1 &&
    c.primaryKey[0] === "key" &&
    key !== undefined &&
    (key.type === "text" || key.type === "bytes" || key.type === "any")
  );
}

/**
 * A key-space record (`{ key, type, ttl, value }`, see `redis-values.ts`) as a row of
 * `schema`.
 *
 * @throws RedisValueError when the key is no longer a hash, or has a field that is not a
 * column (it appeared after the collection was discovered): nothing is dropped silently.
 */
export function rowOf(record: Row, schema: CollectionSchema): Row {
  const key = record.key as Value;
  if (record.type !== "hash") throw new RedisValueError(`is a ${String(record.type)} now, not a hash`);
  const value = record.value as JsonValue;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new RedisValueError("has a field name that is not UTF-8");
  }
  const row: Row = { key, ttl: record.ttl ?? null };
  const columns = new Set(schema.fields.map((f) => f.name));
  for (const name of Object.keys(value)) {
    if (!columns.has(name) || name === "key" || name === "ttl") {
      throw new RedisValueError(`has field ${name}, which is not a column (added since the collection was read)`);
    }
  }
  for (const f of schema.fields) {
    if (f.name === "key" || f.name === "ttl") continue;
    const v = value[f.name];
    if (v === undefined) row[f.name] = null;
    else if (typeof v === "string") row[f.name] = f.type === "bytes" ? new Uint8Array(Buffer.from(v, "utf8")) : v;
    else if (v !== null && typeof v === "object" && !Array.isArray(v) && typeof v.$base64 === "string") {
      if (f.type !== "bytes") throw new RedisValueError(`field ${f.name} is not UTF-8 now (its column is text)`);
      row[f.name] = new Uint8Array(Buffer.from(v.$base64, "base64"));
    } else throw new RedisValueError(`field ${f.name} is not a Redis string`);
  }
  return row;
}

/**
 * A row (of a table from anywhere, see {@link isRowsShape}) as the key-space record of its
 * hash: every non-null column but `key` and `ttl` a field. Text and bytes are written as
 * they are, numbers and booleans as their text, times as ISO 8601, anything else as JSON.
 */
export function recordOf(row: Row, schema: CollectionSchema): Row {
  const value: Record<string, JsonValue> = {};
  for (const f of schema.fields) {
    if (f.name === "key" || f.name === "ttl") continue;
    const v = row[f.name];
    if (v === null || v === undefined) continue;
    if (typeof v === "string") value[f.name] = v;
    else if (v instanceof Uint8Array) value[f.name] = { $base64: Buffer.from(v).toString("base64") };
    else if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") value[f.name] = String(v);
    else if (v instanceof Date) value[f.name] = v.toISOString();
    else value[f.name] = JSON.stringify(encodeValue(v));
  }
  return { key: row.key ?? null, type: "hash", ttl: row.ttl ?? null, value };
}
