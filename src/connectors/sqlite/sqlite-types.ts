/**
 * SQLite's type system mapped onto Ferry's: declared types → affinity and logical
 * {@link FieldType}, logical types → declared types, and values in both directions.
 */
import type { CollectionSchema, FieldSchema, FieldType } from "../../core/schema.js";
import { normaliseInteger, type Value } from "../../core/values.js";

/** A column's type affinity (SQLite §3.1), plus `ANY` for STRICT tables' untyped columns. */
export type Affinity = "INTEGER" | "TEXT" | "BLOB" | "REAL" | "NUMERIC";

/**
 * The affinity SQLite gives a declared type, by its rules in order: contains `INT` →
 * INTEGER; `CHAR`/`CLOB`/`TEXT` → TEXT; `BLOB` or empty → BLOB; `REAL`/`FLOA`/`DOUB` →
 * REAL; otherwise NUMERIC. In a STRICT table `ANY` means no affinity (BLOB).
 */
export function affinityOf(declared: string, strict = false): Affinity {
  const t = declared.toUpperCase();
  if (t.includes("INT")) return "INTEGER";
  if (t.includes("CHAR") || t.includes("CLOB") || t.includes("TEXT")) return "TEXT";
  if (t.includes("BLOB") || t.trim() === "") return "BLOB";
  if (t.includes("REAL") || t.includes("FLOA") || t.includes("DOUB")) return "REAL";
  if (strict && t.trim() === "ANY") return "BLOB";
  return "NUMERIC";
}

/**
 * The logical type of a declared SQLite type, following the affinity rules and then the
 * common spellings SQLite leaves to NUMERIC: `BOOL…` → boolean, `DATE` alone → date,
 * other `DATE`/`TIME` → datetime, `JSON…` → json, `UUID` → uuid, else decimal. An empty
 * declared type (or STRICT `ANY`) is `any`.
 */
export function logicalTypeOf(declared: string): FieldType {
  const t = declared.toUpperCase().trim();
  if (t.includes("INT")) return "integer";
  if (t.includes("CHAR") || t.includes("CLOB") || t.includes("TEXT")) return "text";
  if (t.includes("BLOB")) return "bytes";
  if (t === "" || t === "ANY") return "any";
  if (t.includes("REAL") || t.includes("FLOA") || t.includes("DOUB")) return "float";
  if (t.includes("BOOL")) return "boolean";
  if (t === "DATE") return "date";
  if (t.includes("DATE") || t.includes("TIME")) return "datetime";
  if (t.includes("JSON")) return "json";
  if (t === "UUID") return "uuid";
  return "decimal";
}

const CANONICAL: Record<FieldType, string> = {
  integer: "INTEGER",
  float: "REAL",
  decimal: "NUMERIC",
  boolean: "BOOLEAN",
  text: "TEXT",
  bytes: "BLOB",
  date: "DATE",
  datetime: "DATETIME",
  json: "JSON",
  uuid: "TEXT",
  any: "",
};

/** A type name SQLite parses as-is: words, with an optional `(n)` or `(n, m)`. */
const SAFE_TYPE_NAME = /^[A-Za-z_][A-Za-z0-9_ ]*(\(\s*[+-]?\d+\s*(,\s*[+-]?\d+\s*)?\))?$/;

/**
 * The declared type to create a column of `field` with. The field's `nativeType` is kept
 * when SQLite can parse it and it maps back to the same logical type (so `VARCHAR(40)`,
 * `timestamptz` and `jsonb` survive); otherwise the canonical name for the logical type:
 * INTEGER, REAL, NUMERIC, BOOLEAN, TEXT, BLOB, DATE, DATETIME, JSON, or none for `any`.
 */
export function declaredTypeFor(field: FieldSchema): string {
  const native = field.nativeType?.trim();
  if (native && SAFE_TYPE_NAME.test(native) && logicalTypeOf(native) === field.type) return native;
  return CANONICAL[field.type] ?? "";
}

/**
 * How values are bound for a column: whether integral numbers must be bound as integers,
 * or (a JSON column) every value is a JSON document written as its JSON text.
 */
export type BindMode = "as-is" | "exact-integers" | "json";

/**
 * better-sqlite3 binds every JS `number` as a double. Affinity turns an integral double
 * back into an integer in INTEGER and NUMERIC columns, and keeps a double in REAL ones,
 * but an untyped (BLOB affinity) column would store `3` as REAL 3.0 and a TEXT column as
 * the text `3.0`. Those columns get integral numbers bound as 64-bit integers.
 */
export function bindModeFor(affinity: Affinity, type?: FieldType): BindMode {
  if (type === "json") return "json";
  return affinity === "TEXT" || affinity === "BLOB" ? "exact-integers" : "as-is";
}

/**
 * Turns a canonical value into what better-sqlite3 binds: booleans → 1/0, `Date` → ISO
 * 8601 text, JSON objects and arrays → JSON text, `Uint8Array` → `Buffer`; numbers per
 * {@link BindMode}; bigint, string and null as they are.
 *
 * @throws TypeError for a value outside the value model; RangeError for an invalid Date.
 */
export function toSqlite(v: Value | undefined, mode: BindMode): unknown {
  if (v === null || v === undefined) return null;
  if (
    mode === "json" &&
    (typeof v === "string" ||
      typeof v === "boolean" ||
      (typeof v === "object" && !(v instanceof Uint8Array) && !(v instanceof Date)))
  ) {
    // A JSON column holds documents: a string is the JSON string "…", not raw text.
    return JSON.stringify(v);
  }
  switch (typeof v) {
    case "number":
      return mode === "exact-integers" && Number.isSafeInteger(v) && !Object.is(v, -0) ? BigInt(v) : v;
    case "string":
    case "bigint":
      return v;
    case "boolean":
      return v ? 1n : 0n;
    case "object":
      if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      if (v instanceof Date) return v.toISOString();
      return JSON.stringify(v);
    default:
      throw new TypeError(`cannot write a value of type ${typeof v}`);
  }
}

/** Turns a value read with safe integers on into the canonical form (integers normalised). */
export function fromSqlite(v: unknown): Value {
  return typeof v === "bigint" ? normaliseInteger(v) : (v as Value);
}

/**
 * Like {@link fromSqlite}, for a column of logical type json: JSON text becomes the document
 * it holds; text that is not JSON is returned as it is, so nothing is lost.
 */
export function fromSqliteJson(v: unknown): Value {
  if (typeof v !== "string") return fromSqlite(v);
  try {
    return JSON.parse(v) as Value;
  } catch {
    return v;
  }
}

/**
 * Like {@link fromSqlite}, for a column of logical type boolean: the integers 0 and 1
 * become `false`/`true`; anything else stored there is returned as it is, so nothing is lost.
 */
export function fromSqliteBoolean(v: unknown): Value {
  if (v === 0n) return false;
  if (v === 1n) return true;
  return fromSqlite(v);
}

/**
 * What a declared type says about the values an application means to keep there, for the
 * type plan (SQLite itself enforces none of it): `VARCHAR(n)` → maxLength, `DECIMAL(p,s)` →
 * precision/scale, `… WITH TIME ZONE`/`TIMESTAMPTZ` → timezone, `FLOAT4`/`REAL` stays 8 bytes
 * (SQLite's REAL is a double).
 */
export function declaredAttributes(declared: string, type: FieldType): Partial<FieldSchema> {
  const t = declared.toUpperCase();
  const args = /\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)/.exec(t);
  const out: Partial<FieldSchema> = {};
  if (type === "text" && args && /CHAR/.test(t)) out.maxLength = Number(args[1]);
  if (type === "decimal" && args) {
    out.precision = Number(args[1]);
    out.scale = Number(args[2] ?? 0);
  }
  if (type === "datetime" && (/WITH TIME ZONE/.test(t) || /TIMESTAMPTZ/.test(t))) out.timezone = true;
  return out;
}

/** Significant digits SQLite's NUMERIC affinity keeps when it turns text into REAL. */
const NUMERIC_DIGITS = 15;

/**
 * How SQLite creates `field` of `collection` (the type plan's view, and what
 * {@link createTableSql} declares). A SQLite collection keeps its fields. From another
 * engine: the declared type from {@link declaredTypeFor}, with what SQLite really holds:
 * 64-bit signed integers (an unsigned 64-bit source is checked), decimals of more than 15
 * digits (or unconstrained) as TEXT, since NUMERIC affinity would round them to REAL.
 * Lengths, enums and zones are not enforced by SQLite, so nothing is refused for them.
 */
export function sqliteFieldFor(field: FieldSchema, collection: CollectionSchema): FieldSchema {
  if (collection.engine === "sqlite" || (collection.engine === undefined && collection.native?.engine === "sqlite")) {
    return field;
  }
  const out: FieldSchema = { ...field };
  if (field.type === "integer" && field.unsigned && (field.size ?? 8) >= 8) {
    out.unsigned = false;
    out.size = 8;
  }
  if (field.type === "decimal" && (field.precision === undefined || field.precision > NUMERIC_DIGITS)) {
    out.type = "text";
    delete out.precision;
    delete out.scale;
    out.nativeType = "TEXT";
    return out;
  }
  if (field.type === "float") out.size = 8;
  delete out.enumValues;
  delete out.setValues;
  delete out.charset;
  delete out.fixedLength;
  out.nativeType = declaredTypeFor(field);
  return out;
}
