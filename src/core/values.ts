/**
 * The value model every connector reads into and writes from, and its JSON codec.
 *
 * Canonical JS forms:
 * - integers: `number` when |n| ≤ 2^53−1, `bigint` beyond (connectors normalise);
 * - floats: `number` (NaN, ±Infinity and −0 included);
 * - bytes: `Uint8Array` (Buffers are Uint8Arrays);
 * - timestamps: `Date`;
 * - JSON documents (objects and arrays): plain JSON values;
 * - `string`, `boolean`, `null`.
 *
 * JSON cannot carry 64-bit integers, bytes, dates or non-finite floats, so the codec writes
 * them as one-key tagged objects, and leaves every other value as plain JSON, so files that
 * hold only ordinary values stay ordinary:
 * `{"$int":"9007199254740993"}` · `{"$bytes":"<base64>"}` · `{"$date":"<ISO 8601>"}` ·
 * `{"$float":"NaN"|"Infinity"|"-Infinity"|"-0"}`. A real JSON object that happens to look
 * like a tag is wrapped as `{"$json": …}` so it is never mistaken for one.
 * Only top-level field values are tagged; JSON documents are carried verbatim.
 */

/** A plain JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A field value as connectors read and write it. */
export type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Date
  | JsonValue[]
  | { [key: string]: JsonValue };

/** One record: field name → value. */
export type Row = Record<string, Value>;

const TAGS = new Set(["$int", "$bytes", "$date", "$float", "$json"]);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

/** Turns a bigint into the canonical integer form: a `number` when it is safe. */
export function normaliseInteger(n: bigint): number | bigint {
  return n <= MAX_SAFE && n >= MIN_SAFE ? Number(n) : n;
}

function looksLikeTag(obj: object): boolean {
  const keys = Object.keys(obj);
  return keys.length === 1 && TAGS.has(keys[0] as string);
}

/** Encodes one field value into JSON-safe form. */
export function encodeValue(v: Value): JsonValue {
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      if (Number.isFinite(v)) return Object.is(v, -0) ? { $float: "-0" } : v;
      return { $float: String(v) };
    case "bigint":
      return v <= MAX_SAFE && v >= MIN_SAFE ? Number(v) : { $int: v.toString() };
    case "object":
      if (v === null) return null;
      if (v instanceof Uint8Array)
        return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
      if (v instanceof Date) return { $date: Number.isNaN(v.getTime()) ? "invalid" : v.toISOString() };
      if (!Array.isArray(v) && looksLikeTag(v)) return { $json: v };
      return v as JsonValue;
    default:
      throw new TypeError(`cannot encode a value of type ${typeof v}`);
  }
}

/** Decodes one field value written by {@link encodeValue}. */
export function decodeValue(j: JsonValue): Value {
  if (j === null || typeof j !== "object" || Array.isArray(j)) return j;
  const keys = Object.keys(j);
  if (keys.length !== 1) return j;
  const tag = keys[0] as string;
  const body = j[tag];
  switch (tag) {
    case "$int":
      return typeof body === "string" ? normaliseInteger(BigInt(body)) : j;
    case "$bytes":
      return typeof body === "string" ? new Uint8Array(Buffer.from(body, "base64")) : j;
    case "$date":
      return typeof body === "string" ? new Date(body === "invalid" ? Number.NaN : body) : j;
    case "$float":
      return typeof body === "string" ? (body === "-0" ? -0 : Number(body)) : j;
    case "$json":
      return body as JsonValue;
    default:
      return j;
  }
}

/**
 * Sets a field on a record object. A field may be called `__proto__` (JSON.parse makes such
 * own properties); plain assignment would replace the prototype instead and lose it.
 */
export function setField<T>(obj: Record<string, T>, name: string, value: T): void {
  if (name === "__proto__")
    Object.defineProperty(obj, name, { value, enumerable: true, writable: true, configurable: true });
  else obj[name] = value;
}

/** Encodes every top-level field of a record. */
export function encodeRow(row: Row): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const k of Object.keys(row)) setField(out, k, encodeValue(row[k] as Value));
  return out;
}

/** Decodes every top-level field of a record. */
export function decodeRow(obj: Record<string, JsonValue>): Row {
  const out: Row = {};
  for (const k of Object.keys(obj)) setField(out, k, decodeValue(obj[k] as JsonValue));
  return out;
}

/**
 * A stable string for a tuple of key values, for maps and sets of keys. Two records match
 * when their key strings are equal. Integers compare by value whatever their JS form.
 */
export function keyString(values: readonly Value[]): string {
  return JSON.stringify(values.map(encodeValue));
}

/** The key values of `row` for `fields`, in order (missing fields are null). */
export function keyOf(row: Row, fields: readonly string[]): Value[] {
  return fields.map((f) => (row[f] === undefined ? null : (row[f] as Value)));
}

/** Deep equality of two values under the canonical model (used by verification and tests). */
export function valuesEqual(a: Value, b: Value): boolean {
  return JSON.stringify(encodeValue(a)) === JSON.stringify(encodeValue(b));
}
