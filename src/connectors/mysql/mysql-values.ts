/**
 * Values between MySQL's text protocol and Ferry's value model, per column kind: how a
 * value mysql2 returns becomes a canonical value, and how a canonical value is spelled as
 * an SQL literal or as a `LOAD DATA` field for the column it is written to.
 */
import { normaliseInteger, PreciseDate, parseTimestamp, type Value } from "../../core/values.js";
import { hexLiteral, sqlString } from "./mysql-sql.js";

/**
 * How the connector treats a column:
 * - `int`: TINYINT…INT, YEAR (numbers); `bigint`: BIGINT (a bigint beyond 2^53);
 * - `bool`: TINYINT(1) and `bit1`: BIT(1), 0/1 as booleans; `bits`: BIT(n > 1) as bytes;
 * - `decimal` (exact text), `float` (FLOAT, read through a double), `double`;
 * - `text`: CHAR, VARCHAR, TEXT, ENUM, SET, TIME, UUID, INET4/6; `bytes`: BINARY, VARBINARY, BLOB;
 * - `date`, `datetime`, `timestamp` (zero dates as invalid Dates); `json`;
 * - `other`: types Ferry has no model for (spatial, vector), passed as mysql2 returns them.
 */
export type ColumnKind =
  | "int"
  | "bigint"
  | "bool"
  | "bit1"
  | "bits"
  | "decimal"
  | "float"
  | "double"
  | "text"
  | "bytes"
  | "date"
  | "datetime"
  | "timestamp"
  | "json"
  | "other";

/** A value refused before it reaches the server (it has no spelling in the column's type). */
export class RefusedValue extends Error {}

const d2 = (s: string, i: number): number => (s.charCodeAt(i) - 48) * 10 + s.charCodeAt(i + 1) - 48;

/**
 * Parses MySQL's `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` (what the server prints) as UTC. Zero
 * dates and dates with zero parts (`0000-00-00`, `2020-00-15`) become an invalid `Date`;
 * sub-millisecond digits give a {@link PreciseDate}.
 *
 * @example parseMysqlDateTime("2024-01-02 03:04:05.123456") // PreciseDate 2024-01-02T03:04:05.123456Z
 */
export function parseMysqlDateTime(s: string): Date {
  const n = s.length;
  if (n < 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return parseTimestamp(s);
  const year = d2(s, 0) * 100 + d2(s, 2);
  const month = d2(s, 5);
  const day = d2(s, 8);
  if (month === 0 || day === 0 || month > 12 || day > 31) return new Date(Number.NaN);
  if (n === 10) {
    if (year < 100) return parseTimestamp(s);
    return new Date(Date.UTC(year, month - 1, day));
  }
  if (n < 19 || year < 100) return parseTimestamp(s);
  let ms = 0;
  let micro = 0;
  if (n > 20) {
    const frac = n >= 26 ? s.slice(20, 26) : s.slice(20).padEnd(6, "0");
    const f = Number(frac);
    ms = Math.floor(f / 1000);
    micro = f % 1000;
  }
  const t = Date.UTC(year, month - 1, day, d2(s, 11), d2(s, 14), d2(s, 17), ms);
  return micro === 0 ? new Date(t) : new PreciseDate(t, micro);
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));
const pad3 = (n: number): string => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : String(n));

/** `YYYY-MM-DD` of a date in UTC, or undefined outside years 0–9999. */
function dateText(d: Date): string | undefined {
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) return undefined;
  const ys = y < 10 ? `000${y}` : y < 100 ? `00${y}` : y < 1000 ? `0${y}` : String(y);
  return `${ys}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
}

/**
 * `YYYY-MM-DD HH:MM:SS.ffffff` of a date in UTC (microseconds from a {@link PreciseDate}),
 * or undefined outside years 0–9999.
 */
export function formatDateTime(d: Date): string | undefined {
  const day = dateText(d);
  if (day === undefined) return undefined;
  const micro = d instanceof PreciseDate ? d.microseconds : 0;
  return `${day} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.${pad3(d.getUTCMilliseconds())}${pad3(micro)}`;
}

/** TIMESTAMP's range: 1970-01-01 00:00:01 to 2038-01-19 03:14:07.999999 UTC. */
const TIMESTAMP_MIN = Date.UTC(1970, 0, 1, 0, 0, 1);
const TIMESTAMP_MAX = Date.UTC(2038, 0, 19, 3, 14, 7, 999);

/**
 * The shortest decimal that is the same single-precision float as `x` (FLOAT values are
 * read as exact doubles: the server prints FLOAT with 6 digits, which would change them).
 *
 * @example shortestFloat32(0.10000000149011612) // 0.1
 */
export function shortestFloat32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const f = Math.fround(x);
  for (let p = 1; p < 10; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === f) return y;
  }
  return x;
}

/** Turns what mysql2 returns for a column into a canonical value. */
export type Decoder = (raw: unknown) => Value;

const asBigint: Decoder = (v) => (typeof v === "string" ? normaliseInteger(BigInt(v)) : (v as Value));
const asBoolean: Decoder = (v) => (v === 1 ? true : v === 0 ? false : (v as Value));
const bitAsBoolean: Decoder = (v) => {
  if (v instanceof Uint8Array && v.length === 1) {
    if (v[0] === 1) return true;
    if (v[0] === 0) return false;
  }
  return v as Value;
};
const asFloat: Decoder = (v) => (typeof v === "number" ? shortestFloat32(v) : (v as Value));
const asDateTime: Decoder = (v) => (typeof v === "string" ? parseMysqlDateTime(v) : (v as Value));
const asJson: Decoder = (v) => (typeof v === "string" ? (JSON.parse(v) as Value) : (v as Value));

/** The decoder of a kind, or undefined when mysql2's value is already canonical. */
export function decoderFor(kind: ColumnKind): Decoder | undefined {
  switch (kind) {
    case "bigint":
      return asBigint;
    case "bool":
      return asBoolean;
    case "bit1":
      return bitAsBoolean;
    case "float":
      return asFloat;
    case "date":
    case "datetime":
    case "timestamp":
      return asDateTime;
    case "json":
      return asJson;
    default:
      return undefined;
  }
}

/** The select expression of a column: FLOAT through a double, so no digit is lost. */
export function selectExpression(kind: ColumnKind, quoted: string): string {
  return kind === "float" ? `(${quoted} + 0e0) AS ${quoted}` : quoted;
}

/** How values are written to one column. */
export interface Encoder {
  /** The SQL literal of a value (never called with null/undefined). @throws RefusedValue */
  sql(v: Value): string;
  /** The `LOAD DATA` field of a value, before escaping; bytes as hex. @throws RefusedValue */
  text(v: Value): string;
  /** True when {@link text} gives hex that the statement turns back with `UNHEX`. */
  hex: boolean;
}

const NUMERIC = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const INTEGER = /^[+-]?\d+$/;

function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

function describe(v: Value): string {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? "zero date" : v.toISOString();
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  const s = typeof v === "bigint" ? v.toString() : JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/** JSON text of a value for a JSON column (a string is a JSON string). */
function jsonText(name: string, v: Value): string {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number" && !Number.isFinite(v)) {
    throw new RefusedValue(`field ${name}: ${v} has no JSON form`);
  }
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw new RefusedValue(`field ${name}: a zero date has no JSON form`);
    return JSON.stringify(v.toISOString());
  }
  if (v instanceof Uint8Array)
    return JSON.stringify(Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64"));
  return JSON.stringify(v);
}

/** The text of a value for a text column: as is, or JSON for documents, ISO 8601 for dates. */
function plainText(name: string, v: Value): string {
  switch (typeof v) {
    case "string":
      return v;
    case "number":
    case "bigint":
      return String(v);
    case "boolean":
      return v ? "true" : "false";
    default:
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? "0000-00-00 00:00:00" : v.toISOString();
      if (v instanceof Uint8Array) throw new RefusedValue(`field ${name}: a binary value cannot be stored as text`);
      return JSON.stringify(v);
  }
}

/** The numeric text of a value for a number column, or undefined when it is not a number. */
function numberText(name: string, v: Value): string | undefined {
  switch (typeof v) {
    case "number":
      if (!Number.isFinite(v)) throw new RefusedValue(`field ${name}: ${v} cannot be stored in a MySQL number column`);
      return String(v);
    case "bigint":
      return v.toString();
    case "boolean":
      return v ? "1" : "0";
    case "string":
      return NUMERIC.test(v) ? v : undefined;
    default:
      return undefined;
  }
}

/** Literal of any value by its own type (columns of `other` kind, unknown columns). */
function genericSql(v: Value): string {
  switch (typeof v) {
    case "string":
      return sqlString(v);
    case "number":
      return Number.isFinite(v) ? String(v) : sqlString(String(v));
    case "bigint":
      return v.toString();
    case "boolean":
      return v ? "1" : "0";
    default:
      if (v instanceof Uint8Array) return hexLiteral(v);
      if (v instanceof Date) return sqlString(formatDateTime(v) ?? v.toISOString());
      return sqlString(JSON.stringify(v));
  }
}

/**
 * The encoder for a column of `kind` named `name` (named in refusals).
 *
 * - numbers: numeric text unquoted (exact: DECIMAL keeps every digit), booleans 1/0;
 *   anything else quoted, for the server to refuse in strict mode;
 * - text: strings as they are; numbers, booleans as text; documents as JSON; dates ISO 8601;
 * - bytes: hex; json: JSON text of the value;
 * - date/datetime/timestamp: UTC text; an invalid Date is MySQL's zero date; TIMESTAMP
 *   refuses instants outside 1970–2038.
 */
export function encoderFor(kind: ColumnKind, name: string): Encoder {
  switch (kind) {
    case "int":
    case "bigint":
    case "decimal":
    case "float":
    case "double":
    case "bool": {
      const text = (v: Value): string => {
        const n = numberText(name, v);
        if (n !== undefined) return n;
        return typeof v === "string" ? v : plainText(name, v);
      };
      return {
        hex: false,
        text,
        sql: (v) => {
          const n = numberText(name, v);
          if (n !== undefined) return n;
          return sqlString(typeof v === "string" ? v : plainText(name, v));
        },
      };
    }
    case "bit1":
    case "bits":
      return {
        hex: true,
        text: (v) => {
          if (v instanceof Uint8Array) return toHex(v);
          const n = numberText(name, v);
          if (n === undefined || !INTEGER.test(n))
            throw new RefusedValue(`field ${name}: ${describe(v)} is not a bit value`);
          const b = BigInt(n);
          if (b < 0n) throw new RefusedValue(`field ${name}: ${describe(v)} is not a bit value`);
          const h = b.toString(16);
          return h.length % 2 === 0 ? h : `0${h}`;
        },
        sql: (v) => {
          if (v instanceof Uint8Array) return hexLiteral(v);
          const n = numberText(name, v);
          if (n === undefined || !INTEGER.test(n))
            throw new RefusedValue(`field ${name}: ${describe(v)} is not a bit value`);
          return n;
        },
      };
    case "bytes":
      return {
        hex: true,
        text: (v) => (v instanceof Uint8Array ? toHex(v) : Buffer.from(plainText(name, v)).toString("hex")),
        sql: (v) => (v instanceof Uint8Array ? hexLiteral(v) : sqlString(plainText(name, v))),
      };
    case "json":
      return {
        hex: false,
        text: (v) => jsonText(name, v),
        sql: (v) => sqlString(jsonText(name, v)),
      };
    case "date":
    case "datetime":
    case "timestamp": {
      const text = (v: Value): string => {
        if (!(v instanceof Date)) return plainText(name, v);
        const t = v.getTime();
        if (Number.isNaN(t)) return kind === "date" ? "0000-00-00" : "0000-00-00 00:00:00";
        if (kind === "timestamp" && (t < TIMESTAMP_MIN || t > TIMESTAMP_MAX)) {
          throw new RefusedValue(
            `field ${name}: ${v.toISOString()} is outside TIMESTAMP's range 1970-01-01 00:00:01 … 2038-01-19 03:14:07 UTC`,
          );
        }
        const s = kind === "date" ? dateText(v) : formatDateTime(v);
        if (s === undefined) {
          throw new RefusedValue(`field ${name}: ${v.toISOString()} is outside MySQL's years 0000–9999`);
        }
        return s;
      };
      return { hex: false, text, sql: (v) => sqlString(text(v)) };
    }
    case "text":
      return { hex: false, text: (v) => plainText(name, v), sql: (v) => sqlString(plainText(name, v)) };
    default:
      return {
        hex: false,
        text: (v) => (v instanceof Uint8Array ? toHex(v) : plainText(name, v)),
        sql: genericSql,
      };
  }
}
