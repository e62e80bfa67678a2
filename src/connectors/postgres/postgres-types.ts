/**
 * PostgreSQL's types mapped onto Ferry's: the value kinds the connector decodes and encodes,
 * catalog types → logical {@link FieldSchema}s, logical fields → PostgreSQL types
 * ({@link postgresFieldFor}), and values both ways through their text forms (what COPY text,
 * array literals and query parameters carry).
 */
import type { CollectionSchema, FieldSchema, FieldType } from "../../core/schema.js";
import {
  type JsonValue,
  microsecondsOf,
  normaliseInteger,
  PreciseDate,
  parseTimestamp,
  type Row,
  setField,
  type Value,
} from "../../core/values.js";
import { type ArrayText, formatArrayLiteral, parseArrayLiteral, unescapeCopyText } from "./postgres-copy-text.js";

/** How the connector reads and writes values of a type. */
export type Kind =
  | "int2"
  | "int4"
  | "int8"
  | "float4"
  | "float8"
  | "numeric"
  | "bool"
  | "text"
  | "varchar"
  | "bpchar"
  | "bytea"
  | "uuid"
  | "json"
  | "jsonb"
  | "date"
  | "timestamp"
  | "timestamptz"
  | "array"
  | "enum"
  | "other";

/** Built-in type OIDs (fixed in every PostgreSQL) and their kinds. */
export const BUILTIN_KINDS: ReadonlyMap<number, Kind> = new Map<number, Kind>([
  [16, "bool"],
  [17, "bytea"],
  [20, "int8"],
  [21, "int2"],
  [23, "int4"],
  [25, "text"],
  [114, "json"],
  [700, "float4"],
  [701, "float8"],
  [1042, "bpchar"],
  [1043, "varchar"],
  [1082, "date"],
  [1114, "timestamp"],
  [1184, "timestamptz"],
  [1700, "numeric"],
  [2950, "uuid"],
  [3802, "jsonb"],
]);

/** A type as the connector understands it (domains resolved to their base type). */
export interface PgType {
  kind: Kind;
  /** Element type of an array. */
  element?: PgType;
  /** Labels of an enum, in order. */
  enumLabels?: string[];
  /** The type modifier that applies (a domain's own, for domain columns). */
  typmod: number;
}

/** Logical type of a kind (arrays and their elements aside). */
export function logicalTypeOf(kind: Kind): FieldType {
  switch (kind) {
    case "int2":
    case "int4":
    case "int8":
      return "integer";
    case "float4":
    case "float8":
      return "float";
    case "numeric":
      return "decimal";
    case "bool":
      return "boolean";
    case "bytea":
      return "bytes";
    case "uuid":
      return "uuid";
    case "json":
    case "jsonb":
    case "array":
      return "json";
    case "date":
      return "date";
    case "timestamp":
    case "timestamptz":
      return "datetime";
    default:
      return "text";
  }
}

/** Precision and scale of a `numeric` type modifier (PostgreSQL 15 allows a negative scale). */
export function numericTypmod(typmod: number): { precision: number; scale: number } | undefined {
  if (typmod < 4) return undefined;
  const t = typmod - 4;
  return { precision: (t >> 16) & 0xffff, scale: ((t & 0x7ff) ^ 1024) - 1024 };
}

/**
 * The logical field of a column: type and the attributes the PostgreSQL type has (size,
 * precision/scale, maxLength/fixedLength, timezone/fractionDigits, enumValues, arrayOf).
 */
export function fieldOf(name: string, nativeType: string, t: PgType): FieldSchema {
  const f: FieldSchema = { name, type: logicalTypeOf(t.kind), nativeType };
  switch (t.kind) {
    case "int2":
      f.size = 2;
      break;
    case "int4":
      f.size = 4;
      break;
    case "int8":
      f.size = 8;
      break;
    case "float4":
      f.size = 4;
      break;
    case "float8":
      f.size = 8;
      break;
    case "numeric": {
      const ps = numericTypmod(t.typmod);
      if (ps) {
        f.precision = ps.precision;
        f.scale = ps.scale;
      }
      break;
    }
    case "varchar":
      if (t.typmod >= 4) f.maxLength = t.typmod - 4;
      break;
    case "bpchar":
      if (t.typmod >= 4) {
        f.maxLength = t.typmod - 4;
        f.fixedLength = true;
      }
      break;
    case "timestamp":
    case "timestamptz":
      f.timezone = t.kind === "timestamptz";
      f.fractionDigits = t.typmod >= 0 ? t.typmod : 6;
      break;
    case "enum":
      f.enumValues = [...(t.enumLabels ?? [])];
      break;
    case "array": {
      let e = t.element;
      while (e?.kind === "array") e = e.element;
      f.arrayOf = logicalTypeOf(e?.kind ?? "other");
      break;
    }
    default:
      break;
  }
  return f;
}

/**
 * A type that decodes text as {@link decoderFor} does for the column `f` was read from
 * (`f` as {@link fieldOf} described it): what decoding needs is in the logical field.
 */
export function pgTypeOfField(f: FieldSchema): PgType {
  const kindOf = (type: FieldType | undefined, size: number | undefined): Kind => {
    switch (type) {
      case "integer":
        return size === 2 ? "int2" : size === 4 ? "int4" : "int8";
      case "float":
        return size === 4 ? "float4" : "float8";
      case "decimal":
        return "numeric";
      case "boolean":
        return "bool";
      case "bytes":
        return "bytea";
      case "uuid":
        return "uuid";
      case "json":
        return "jsonb";
      case "date":
        return "date";
      case "datetime":
        return "timestamptz";
      default:
        return "other";
    }
  };
  if (f.arrayOf !== undefined)
    return { kind: "array", element: { kind: kindOf(f.arrayOf, undefined), typmod: -1 }, typmod: -1 };
  return { kind: kindOf(f.type, f.size), typmod: -1 };
}

// ---------------------------------------------------------------------------------------
// Text → values

const MAX_SAFE_DIGITS = 15;
const INFINITY_MS = 8.64e15;

function decodeInt8(s: string): number | bigint {
  return s.length <= MAX_SAFE_DIGITS ? Number(s) : normaliseInteger(BigInt(s));
}

/** `date`/`timestamp[tz]` text (ISO DateStyle, UTC) as a `Date` (or `PreciseDate`); ±infinity as ±8.64e15 ms. */
export function decodeTimestamp(s: string): Date {
  return (
    fastTimestamp(s) ??
    (s === "infinity" ? new Date(INFINITY_MS) : s === "-infinity" ? new Date(-INFINITY_MS) : parseTimestamp(s))
  );
}

/**
 * The common shapes PostgreSQL prints in UTC, `YYYY-MM-DD` and `YYYY-MM-DD HH:MM:SS[.ffffff][+00]`
 * for years 100–9999, read without a regular expression (what {@link parseTimestamp} returns
 * for them); undefined for anything else.
 */
function fastTimestamp(s: string): Date | undefined {
  const n = s.length;
  if (n < 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return undefined;
  const d = (i: number) => s.charCodeAt(i) - 48;
  const year = d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3);
  if (!(year >= 100 && year <= 9999)) return undefined;
  const month = d(5) * 10 + d(6);
  const day = d(8) * 10 + d(9);
  if (n === 10) return new Date(Date.UTC(year, month - 1, day));
  if (n < 19 || s.charCodeAt(10) !== 32 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return undefined;
  let pos = 19;
  let micro = 0;
  if (s.charCodeAt(pos) === 46) {
    let digits = 0;
    pos++;
    while (pos < n) {
      const c = s.charCodeAt(pos) - 48;
      if (c < 0 || c > 9) break;
      if (digits < 6) micro = micro * 10 + c;
      digits++;
      pos++;
    }
    if (digits === 0 || digits > 6) return undefined;
    for (let k = digits; k < 6; k++) micro *= 10;
  }
  if (!(pos === n || (pos === n - 3 && s.endsWith("+00")))) return undefined;
  const t = Date.UTC(
    year,
    month - 1,
    day,
    d(11) * 10 + d(12),
    d(14) * 10 + d(15),
    d(17) * 10 + d(18),
    Math.floor(micro / 1000),
  );
  if (Number.isNaN(t)) return undefined;
  const us = micro % 1000;
  return us === 0 ? new Date(t) : new PreciseDate(t, us);
}

/** A value decoder: PostgreSQL text output → Ferry value. */
export type Decoder = (text: string) => Value;

/** The decoder for values of `t` (text as PostgreSQL prints it with Ferry's session settings). */
export function decoderFor(t: PgType): Decoder {
  switch (t.kind) {
    case "int2":
    case "int4":
      return Number;
    case "int8":
      return decodeInt8;
    case "float4":
    case "float8":
      return Number;
    case "bool":
      return (s) => s === "t";
    case "bytea":
      return (s) => Buffer.from(s.slice(2), "hex");
    case "json":
    case "jsonb":
      return (s) => JSON.parse(s) as Value;
    case "date":
    case "timestamp":
    case "timestamptz":
      return decodeTimestamp;
    case "array": {
      const leaf = elementDecoderFor(t.element?.kind ?? "other");
      const walk = (a: ArrayText): JsonValue[] =>
        a.map((e) => (e === null ? null : Array.isArray(e) ? walk(e) : leaf(e)));
      return (s) => walk(parseArrayLiteral(s));
    }
    default:
      return (s) => s;
  }
}

/**
 * Decodes the fields of one COPY text line (split at its tabs) into a record of `names`:
 * `\N` is NULL, everything else is unescaped and decoded.
 */
export function copyRowDecoder(names: readonly string[], decoders: readonly Decoder[]): (parts: string[]) => Row {
  const width = names.length;
  const hasProto = names.includes("__proto__");
  return (parts) => {
    const rec: Row = {};
    for (let j = 0; j < width; j++) {
      const raw = parts[j];
      if (raw === undefined) throw new Error(`the line has ${parts.length} fields, not ${width}`);
      const v = raw === "\\N" ? null : (decoders[j] as Decoder)(raw.indexOf("\\") < 0 ? raw : unescapeCopyText(raw));
      if (hasProto) setField(rec, names[j] as string, v);
      else rec[names[j] as string] = v;
    }
    return rec;
  };
}

/**
 * Array elements must be JSON values: integers beyond 2^53 and non-finite floats become
 * their text (`"9007199254740993"`, `"NaN"`), numerics stay text, bytes/dates/uuids stay
 * PostgreSQL's text form; written back through the element type's input, they round-trip.
 */
function elementDecoderFor(kind: Kind): (s: string) => JsonValue {
  switch (kind) {
    case "int2":
    case "int4":
      return Number;
    case "int8":
      return (s) => (s.length <= MAX_SAFE_DIGITS ? Number(s) : Number.isSafeInteger(Number(s)) ? Number(s) : s);
    case "float4":
    case "float8":
      return (s) => {
        const n = Number(s);
        return Number.isFinite(n) ? n : s;
      };
    case "bool":
      return (s) => s === "t";
    case "json":
    case "jsonb":
      return (s) => JSON.parse(s) as JsonValue;
    default:
      return (s) => s;
  }
}

// ---------------------------------------------------------------------------------------
// Values → text

/** A value the target column cannot take; its message names the field. */
export class ValueRefused extends Error {}

const INT_RANGES: Partial<Record<Kind, [bigint, bigint]>> = {
  int2: [-32768n, 32767n],
  int4: [-2147483648n, 2147483647n],
  int8: [-(2n ** 63n), 2n ** 63n - 1n],
};

function show(v: Value): string {
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? "an invalid date" : v.toISOString();
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

function kindName(kind: Kind): string {
  return kind === "bpchar" ? "character" : kind === "varchar" ? "character varying" : kind;
}

function numberText(n: number): string {
  return Object.is(n, -0) ? "-0" : String(n);
}

function noNul(s: string, name: string): string {
  if (s.includes("\u0000")) {
    throw new ValueRefused(`field ${name}: text holds a NUL character (U+0000), which PostgreSQL cannot store`);
  }
  return s;
}

/** What PostgreSQL's uuid input accepts: 32 hex digits, a hyphen allowed after any group of four, braces. */
const UUID_INPUT = /^\{?[0-9a-f]{4}(?:-?[0-9a-f]{4}){7}\}?$/i;

function hexOf(v: Uint8Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex");
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/**
 * A `Date` as PostgreSQL input for `kind`: `YYYY-MM-DD` for dates, `YYYY-MM-DD HH:MM:SS.ffffff`
 * (UTC wall clock; `+00` for timestamptz) for timestamps, with microseconds kept, ` BC` for
 * years before 1, and `infinity`/`-infinity` for ±8.64e15 ms.
 *
 * @throws ValueRefused for an invalid `Date` (a MySQL zero date).
 */
export function formatTimestamp(d: Date, kind: "date" | "timestamp" | "timestamptz", name: string): string {
  const t = d.getTime();
  if (Number.isNaN(t)) {
    throw new ValueRefused(
      `field ${name}: zero date 0000-00-00 (an invalid date) has no PostgreSQL ${kind} equivalent`,
    );
  }
  if (t >= INFINITY_MS) return "infinity";
  if (t <= -INFINITY_MS) return "-infinity";
  let year = d.getUTCFullYear();
  const bc = year <= 0;
  if (bc) year = 1 - year;
  let s = `${pad(year, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  if (kind !== "date") {
    s += ` ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    const micro = d.getUTCMilliseconds() * 1000 + microsecondsOf(d);
    if (micro !== 0) s += `.${pad(micro, 6)}`;
    if (kind === "timestamptz") s += "+00";
  }
  return bc ? `${s} BC` : s;
}

const SAFE_RANGES: Partial<Record<Kind, [number, number]>> = {
  int2: [-32768, 32767],
  int4: [-2147483648, 2147483647],
  int8: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

function integerText(v: Value, kind: Kind, name: string): string {
  if (typeof v === "number" && Number.isSafeInteger(v)) {
    const [lo, hi] = SAFE_RANGES[kind] as [number, number];
    if (v >= lo && v <= hi) return String(v);
  }
  let n: bigint | undefined;
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new ValueRefused(`field ${name}: ${show(v)} is not an integer (${kind})`);
    n = BigInt(v);
  } else if (typeof v === "bigint") n = v;
  else if (typeof v === "boolean") n = v ? 1n : 0n;
  else if (typeof v === "string" && /^\s*[+-]?\d+\s*$/.test(v)) n = BigInt(v.trim());
  if (n === undefined) throw new ValueRefused(`field ${name}: ${show(v)} is not an integer (${kind})`);
  const [lo, hi] = INT_RANGES[kind] as [bigint, bigint];
  if (n < lo || n > hi) throw new ValueRefused(`field ${name}: ${n} is outside ${lo}..${hi} (${kind})`);
  return n.toString();
}

/** An encoder: a Ferry value → PostgreSQL input text (`null` for SQL NULL). */
export type Encoder = (v: Value | undefined) => string | null;

/**
 * The encoder for values written to a column of type `t` called `name`. Values of the
 * column's own type are written exactly; others are converted to the column's text form
 * when that is exact (an integral number into an integer column, a number into text, bytes
 * into a uuid) and refused with a {@link ValueRefused} naming the field otherwise.
 */
export function encoderFor(t: PgType, name: string): Encoder {
  const scalar = scalarEncoder(t, name);
  return (v) => (v === null || v === undefined ? null : scalar(v));
}

function scalarEncoder(t: PgType, name: string): (v: Value) => string {
  const kind = t.kind;
  const wrong = (v: Value): never => {
    throw new ValueRefused(`field ${name}: ${show(v)} cannot be stored as ${kindName(kind)}`);
  };
  switch (kind) {
    case "int2":
    case "int4":
    case "int8":
      return (v) => integerText(v, kind, name);
    case "float4":
    case "float8":
    case "numeric":
      return (v) => {
        if (typeof v === "number") return numberText(v);
        if (typeof v === "bigint") return v.toString();
        if (typeof v === "boolean") return v ? "1" : "0";
        if (typeof v === "string") return noNul(v, name);
        return wrong(v);
      };
    case "bool":
      return (v) => {
        if (typeof v === "boolean") return v ? "t" : "f";
        if (v === 0 || v === 0n) return "f";
        if (v === 1 || v === 1n) return "t";
        if (typeof v === "string") return noNul(v, name);
        throw new ValueRefused(`field ${name}: ${show(v)} is not a boolean (only 0 and 1 convert)`);
      };
    case "bytea":
      return (v) => {
        if (v instanceof Uint8Array) return `\\x${hexOf(v)}`;
        if (typeof v === "string") return `\\x${Buffer.from(v, "utf8").toString("hex")}`;
        return wrong(v);
      };
    case "uuid":
      return (v) => {
        if (typeof v === "string") {
          if (!UUID_INPUT.test(v)) throw new ValueRefused(`field ${name}: ${show(v)} is not a uuid`);
          return v;
        }
        if (v instanceof Uint8Array && v.length === 16) {
          const h = hexOf(v);
          return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
        }
        return wrong(v);
      };
    case "json":
    case "jsonb":
      return (v) => jsonText(v, name);
    case "date":
    case "timestamp":
    case "timestamptz":
      return (v) => {
        if (v instanceof Date) return formatTimestamp(v, kind, name);
        if (typeof v === "string") return noNul(v, name);
        return wrong(v);
      };
    case "array": {
      const element = t.element ?? { kind: "other", typmod: -1 };
      const leaf: (v: Value) => string =
        element.kind === "json" || element.kind === "jsonb" ? (v) => jsonText(v, name) : scalarEncoder(element, name);
      const nestable = element.kind !== "json" && element.kind !== "jsonb";
      const walk = (a: readonly Value[]): ArrayText =>
        a.map((e) =>
          e === null || e === undefined ? null : Array.isArray(e) && nestable ? walk(e as Value[]) : leaf(e as Value),
        );
      return (v) => {
        if (Array.isArray(v)) return formatArrayLiteral(walk(v as Value[]));
        if (typeof v === "string") return noNul(v, name);
        return wrong(v);
      };
    }
    default:
      return (v) => {
        if (typeof v === "string") return noNul(v, name);
        if (typeof v === "number") return numberText(v);
        if (typeof v === "bigint") return v.toString();
        if (typeof v === "boolean") return v ? "true" : "false";
        if (v instanceof Uint8Array) {
          throw new ValueRefused(`field ${name}: a binary value cannot be stored as ${kindName(kind)}`);
        }
        if (v instanceof Date) {
          if (Number.isNaN(v.getTime())) throw new ValueRefused(`field ${name}: zero date 0000-00-00 cannot be stored`);
          return v.toISOString();
        }
        return noNul(JSON.stringify(v), name);
      };
  }
}

function jsonText(v: Value, name: string): string {
  if (typeof v === "number" && !Number.isFinite(v)) {
    throw new ValueRefused(`field ${name}: ${String(v)} is not a JSON number`);
  }
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) throw new ValueRefused(`field ${name}: a binary value cannot be stored as JSON`);
  if (v instanceof Date && Number.isNaN(v.getTime())) {
    throw new ValueRefused(`field ${name}: zero date 0000-00-00 cannot be stored as JSON`);
  }
  return JSON.stringify(v);
}

// ---------------------------------------------------------------------------------------
// Logical fields → PostgreSQL types

/** Element types of the arrays an `arrayOf` field becomes (others become jsonb documents). */
const ARRAY_ELEMENTS: Partial<Record<FieldType, string>> = {
  integer: "bigint",
  float: "double precision",
  decimal: "numeric",
  boolean: "boolean",
  text: "text",
  uuid: "uuid",
};

/** Longest `varchar(n)`/`char(n)` PostgreSQL declares. */
const MAX_CHAR_LENGTH = 10_485_760;
/** Most digits `numeric(p,s)` declares. */
const MAX_NUMERIC_PRECISION = 1000;

/**
 * How PostgreSQL creates `field` of `collection` (the type plan's view, and what prepare
 * declares for a collection from another engine). A PostgreSQL collection keeps each
 * field's `nativeType`. Otherwise, by logical type: integers by size (smallint, integer,
 * bigint; unsigned ones one size up; 8-byte unsigned as numeric(20,0), or bigint when it is
 * an auto-increment key, as pgloader does: identity needs an integer type); floats as real
 * (4 bytes) or double precision; decimals as numeric(p,s) or numeric; text with a length
 * as varchar(n)/char(n), else text (enums and sets as text); bytes as bytea; json as jsonb,
 * except arrays of integers, floats, decimals, booleans, texts or uuids (`arrayOf`), which
 * become arrays of that type (bigint[], double precision[], numeric[], …);
 * datetimes as timestamp(p) or timestamptz(p); `any` as text. Name, nullability and
 * autoIncrement are kept.
 */
export function postgresFieldFor(field: FieldSchema, collection: CollectionSchema): FieldSchema {
  if (collection.engine === "postgres" && field.nativeType) return { ...field };
  const out: FieldSchema = { name: field.name, type: field.type };
  if (field.nullable !== undefined) out.nullable = field.nullable;
  if (field.autoIncrement) out.autoIncrement = true;
  switch (field.type) {
    case "integer": {
      const size = field.size ?? 8;
      const unsigned = field.unsigned === true;
      if (!unsigned && size <= 2) Object.assign(out, { nativeType: "smallint", size: 2 });
      else if ((!unsigned && size <= 4) || (unsigned && size <= 2))
        Object.assign(out, { nativeType: "integer", size: 4 });
      else if (!unsigned || size <= 4 || field.autoIncrement) Object.assign(out, { nativeType: "bigint", size: 8 });
      else Object.assign(out, { type: "decimal", nativeType: "numeric(20,0)", precision: 20, scale: 0 });
      break;
    }
    case "float":
      if (field.size === 4) Object.assign(out, { nativeType: "real", size: 4 });
      else Object.assign(out, { nativeType: "double precision", size: 8 });
      break;
    case "decimal":
      if (field.precision !== undefined && field.precision >= 1 && field.precision <= MAX_NUMERIC_PRECISION) {
        const scale = field.scale ?? 0;
        Object.assign(out, { nativeType: `numeric(${field.precision},${scale})`, precision: field.precision, scale });
      } else out.nativeType = "numeric";
      break;
    case "boolean":
      out.nativeType = "boolean";
      break;
    case "text":
      if (field.maxLength !== undefined && field.maxLength >= 1 && field.maxLength <= MAX_CHAR_LENGTH) {
        out.maxLength = field.maxLength;
        if (field.fixedLength) {
          out.fixedLength = true;
          out.nativeType = `character(${field.maxLength})`;
        } else out.nativeType = `character varying(${field.maxLength})`;
      } else out.nativeType = "text";
      break;
    case "bytes":
      out.nativeType = "bytea";
      break;
    case "uuid":
      out.nativeType = "uuid";
      break;
    case "json": {
      const element = field.arrayOf === undefined ? undefined : ARRAY_ELEMENTS[field.arrayOf];
      if (element) {
        out.arrayOf = field.arrayOf;
        out.nativeType = `${element}[]`;
      } else out.nativeType = "jsonb";
      break;
    }
    case "date":
      out.nativeType = "date";
      break;
    case "datetime": {
      const p = Math.max(0, Math.min(field.fractionDigits ?? 6, 6));
      const tz = field.timezone === true;
      out.timezone = tz;
      out.fractionDigits = p;
      out.nativeType =
        p === 6
          ? tz
            ? "timestamp with time zone"
            : "timestamp without time zone"
          : `timestamp(${p}) ${tz ? "with" : "without"} time zone`;
      break;
    }
    default:
      out.type = "text";
      out.nativeType = "text";
      break;
  }
  if (out.autoIncrement && out.type !== "integer") delete out.autoIncrement;
  return out;
}
