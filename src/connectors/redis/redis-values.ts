/**
 * Redis values in Ferry's value model, binary-safe.
 *
 * A key-space record is `{ key, type, ttl, value }`:
 * - `key`: the key as text, or bytes (`Uint8Array`) when it is not valid UTF-8;
 * - `type`: `string`, `hash`, `list`, `set`, `zset` or `stream`;
 * - `ttl`: the absolute expiry time (`Date`), or null for a key that does not expire;
 * - `value`: a string's text (or bytes); for the other types a JSON document whose elements
 *   are strings, or `{"$base64": "…"}` for an element that is not UTF-8: a hash is an object
 *   (`[[field, value], …]` pairs when a field name is not UTF-8), a list an array, a set a
 *   sorted array, a sorted set `[[member, score], …]` in rank order (scores `"inf"`/`"-inf"`
 *   as text), a stream `[[id, [field, value, …]], …]`.
 */
import { isUtf8 } from "node:buffer";
import type { CollectionSchema, FieldSchema } from "../../core/schema.js";
import { decodeValue, encodeValue, type JsonValue, type Row, type Value } from "../../core/values.js";

/** Redis data types a key-space record can hold. */
export const REDIS_TYPES = ["string", "hash", "list", "set", "zset", "stream"] as const;
export type RedisType = (typeof REDIS_TYPES)[number];

/** A value the connector cannot write, with the reason (names the field, never the value's secret). */
export class RedisValueError extends Error {}

/** Text when `b` is UTF-8, else the bytes. */
export function textOrBytes(b: Buffer): string | Uint8Array {
  return isUtf8(b) ? b.toString("utf8") : new Uint8Array(b);
}

/** An element of an aggregate as JSON: its text, or `{"$base64": …}`. */
export function element(b: Buffer): JsonValue {
  return isUtf8(b) ? b.toString("utf8") : { $base64: b.toString("base64") };
}

/** The bytes of an element written back (numbers and booleans of hand-written files as their text). */
export function elementBytes(j: JsonValue | undefined, what: string): Buffer {
  if (typeof j === "string") return Buffer.from(j, "utf8");
  if (typeof j === "number" || typeof j === "boolean") return Buffer.from(String(j), "utf8");
  if (j !== null && typeof j === "object" && !Array.isArray(j) && typeof j.$base64 === "string") {
    return Buffer.from(j.$base64, "base64");
  }
  throw new RedisValueError(
    `${what}: ${JSON.stringify(j)?.slice(0, 60)} is not a Redis string (text or {"$base64": …})`,
  );
}

/** Bytes of a key or string value. */
export function valueBytes(v: Value, what: string): Buffer {
  if (typeof v === "string") return Buffer.from(v, "utf8");
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return Buffer.from(String(v), "utf8");
  throw new RedisValueError(`${what} must be text or bytes`);
}

/** A sorted-set score as JSON (`"inf"`/`"-inf"` for the infinities). */
export function scoreJson(text: string): JsonValue {
  const n = Number(text);
  if (Number.isFinite(n)) return n;
  return text.startsWith("-") ? "-inf" : "inf";
}

/** A score back as Redis text. */
export function scoreText(j: JsonValue | undefined, what: string): string {
  if (typeof j === "number" && !Number.isNaN(j)) return Number.isFinite(j) ? String(j) : j > 0 ? "+inf" : "-inf";
  if (j === "inf" || j === "+inf" || j === "-inf") return j === "-inf" ? "-inf" : "+inf";
  if (typeof j === "string" && j.trim() !== "" && !Number.isNaN(Number(j))) return j;
  throw new RedisValueError(`${what}: score ${JSON.stringify(j)} is not a number`);
}

/** The key-space collection schema (every key-space collection has these four fields). */
export function keyspaceSchema(name: string): CollectionSchema {
  return {
    name,
    engine: "redis",
    fields: [
      { name: "key", type: "any", nativeType: "key", nullable: false },
      { name: "type", type: "text", nativeType: "type", nullable: false },
      { name: "ttl", type: "datetime", nativeType: "absolute expiry", timezone: true, fractionDigits: 3 },
      { name: "value", type: "any", nativeType: "value", nullable: false },
    ],
    primaryKey: ["key"],
  };
}

/** Whether a collection (from any engine) has the key-space shape. */
export function isKeyspaceShape(c: CollectionSchema): boolean {
  const names = c.fields.map((f) => f.name).sort();
  return (
    names.length === 4 &&
    names.join(",") === "key,ttl,type,value" &&
    c.primaryKey.length === 1 &&
    c.primaryKey[0] === "key"
  );
}

/**
 * A field of a table collection (a record per hash) as hash-field bytes: text and bytes as
 * they are, every other value as the JSON of Ferry's codec, so it reads back with its type.
 */
export function fieldBytes(field: FieldSchema | undefined, v: Value): Buffer {
  if (typeof v === "string" && field?.type === "text") return Buffer.from(v, "utf8");
  if (v instanceof Uint8Array && field?.type === "bytes") return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return Buffer.from(JSON.stringify(encodeValue(v)), "utf8");
}

/** A hash field read back as a value of `field`'s type (see {@link fieldBytes}). */
export function fieldValue(field: FieldSchema | undefined, b: Buffer): Value {
  if (field?.type === "text") return textOrBytes(b);
  if (field?.type === "bytes") return new Uint8Array(b);
  try {
    return decodeValue(JSON.parse(b.toString("utf8")) as JsonValue);
  } catch {
    // Written by something else than Ferry: the text as it is.
    return textOrBytes(b);
  }
}

/** A table record's Redis key: the collection name and the primary key's values, `:`-separated. */
export function tableKey(c: CollectionSchema, record: Row): Buffer {
  const parts = c.primaryKey.map((k) => {
    const v = record[k];
    if (v === undefined || v === null) throw new RedisValueError(`primary key field ${k} has no value`);
    return v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v instanceof Date ? v.toISOString() : String(v);
  });
  return Buffer.from([c.name, ...parts].join(":"), "utf8");
}

/** Redis glob (`*`, `?`, `[…]`, `\x`) as a regular expression over a key's latin1 text. */
export function globRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else if (c === "\\" && i + 1 < pattern.length) re += escapeRe(pattern[++i] as string);
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        let body = pattern.slice(i + 1, end);
        const negate = body.startsWith("^");
        if (negate) body = body.slice(1);
        re += `[${negate ? "^" : ""}${body.replace(/[\\\]]/g, "\\$&")}]`;
        i = end;
      }
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
