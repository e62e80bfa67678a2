/**
 * The value model every connector reads into and writes from, and its JSON codec.
 *
 * Canonical JS forms:
 * - integers: `number` when |n| ≤ 2^53−1, `bigint` beyond (connectors normalise);
 * - floats: `number` (NaN, ±Infinity and −0 included);
 * - bytes: `Uint8Array` (Buffers are Uint8Arrays);
 * - timestamps: `Date`, or {@link PreciseDate} when they carry microseconds; an invalid
 *   `Date` stands for a value no calendar holds (MySQL's zero date `0000-00-00`);
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

/**
 * A `Date` that also keeps microseconds (PostgreSQL `timestamptz`, MySQL `DATETIME(6)`).
 * `microseconds` (0–999) come after the milliseconds JS keeps; `toISOString` shows six
 * fraction digits when they are not zero, so the codec and comparisons keep them.
 */
export class PreciseDate extends Date {
  readonly microseconds: number;
  constructor(epochMs: number, microseconds = 0) {
    super(epochMs);
    this.microseconds = microseconds;
  }
  override toISOString(): string {
    const iso = super.toISOString();
    return this.microseconds === 0 ? iso : `${iso.slice(0, -1)}${String(this.microseconds).padStart(3, "0")}Z`;
  }
  override toJSON(): string {
    return this.toISOString();
  }
}

const TIMESTAMP =
  /^([+-]?\d{4,6})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d\d(?::?\d\d(?::?\d\d)?)?)?(\s+BC)?$/i;

/**
 * Parses an ISO 8601 or SQL timestamp (`2024-01-02 03:04:05.123456+01`, `…T…Z`, a bare
 * date) into a `Date`, or a {@link PreciseDate} when it has sub-millisecond digits. Without
 * a zone the time is read as UTC (wall-clock values round-trip whatever the process's zone).
 * Returns an invalid `Date` for text that is not a timestamp (e.g. MySQL's `0000-00-00`).
 */
export function parseTimestamp(text: string): Date {
  const m = TIMESTAMP.exec(text.trim());
  if (!m) return new Date(Number.NaN);
  let year = Number(m[1]);
  if (m[9]) year = 1 - year; // 1 BC is year 0
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12 || day < 1 || day > 31) return new Date(Number.NaN);
  const frac = (m[7] ?? "").padEnd(6, "0");
  const ms = Number(frac.slice(0, 3));
  const micro = Number(frac.slice(3, 6));
  let t = Date.UTC(2000, month - 1, day, Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0), ms);
  const d = new Date(t);
  d.setUTCFullYear(year);
  t = d.getTime();
  const zone = m[8];
  if (zone && zone.toUpperCase() !== "Z") {
    const sign = zone[0] === "-" ? -1 : 1;
    const digits = zone.slice(1).replace(/:/g, "");
    const offset =
      Number(digits.slice(0, 2)) * 3600 + Number(digits.slice(2, 4) || 0) * 60 + Number(digits.slice(4, 6) || 0);
    t -= sign * offset * 1000;
  }
  return micro === 0 ? new Date(t) : new PreciseDate(t, micro);
}

/** Microseconds beyond the millisecond of a date (0 for a plain `Date`). */
export function microsecondsOf(d: Date): number {
  return d instanceof PreciseDate ? d.microseconds : 0;
}

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
      return typeof body === "string" ? (body === "invalid" ? new Date(Number.NaN) : parseTimestamp(body)) : j;
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
