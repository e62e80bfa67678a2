/**
 * MySQL's types mapped onto Ferry's: a column as `information_schema` describes it → a
 * {@link FieldSchema} and a {@link ColumnKind}; a field of any engine → the MySQL column
 * that holds it ({@link mysqlFieldFor}, the type plan's view and what `prepare` creates).
 */
import type { CollectionSchema, FieldSchema, FieldType } from "../../core/schema.js";
import { quoteIdent, sqlString } from "./mysql-sql.js";
import type { ColumnKind } from "./mysql-values.js";

/** One row of `information_schema.COLUMNS`, as the connector selects it. */
export interface ColumnRow {
  table: string;
  name: string;
  nullable: string;
  dataType: string;
  columnType: string;
  maxLength: number | string | null;
  numPrecision: number | string | null;
  numScale: number | string | null;
  dtPrecision: number | string | null;
  charset: string | null;
  extra: string;
}

/** What discovery knows beyond the column itself. */
export interface ColumnContext {
  /** A MariaDB LONGTEXT column with a `json_valid` CHECK: a JSON column. */
  json: boolean;
  /** The server's sql_mode allows zero dates (no NO_ZERO_DATE). */
  zeroDates: boolean;
}

/** Character sets that hold all of Unicode (or that the brief treats so): no `charset` attribute. */
const UNICODE_CHARSETS = new Set(["utf8mb4", "utf8mb3", "utf8", "utf16", "utf16le", "utf32"]);

/** Text types whose length is at least 16M (MEDIUMTEXT, LONGTEXT): unbounded for Ferry. */
const UNBOUNDED = 16_777_215;

const num = (v: number | string | null): number | undefined => (v === null || v === "" ? undefined : Number(v));

/**
 * The values of `enum('a','b''c')` / `set(…)` as MySQL spells them in COLUMN_TYPE (quotes
 * doubled, backslashes escaped).
 */
export function parseEnumValues(columnType: string): string[] {
  const open = columnType.indexOf("(");
  const body = columnType.slice(open + 1, columnType.lastIndexOf(")"));
  const out: string[] = [];
  let i = 0;
  while (i < body.length) {
    if (body[i] !== "'") {
      i++;
      continue;
    }
    let s = "";
    i++;
    while (i < body.length) {
      const c = body[i] as string;
      if (c === "'" && body[i + 1] === "'") {
        s += "'";
        i += 2;
      } else if (c === "'") {
        i++;
        break;
      } else if (c === "\\" && i + 1 < body.length) {
        s += body[i + 1];
        i += 2;
      } else {
        s += c;
        i++;
      }
    }
    out.push(s);
  }
  return out;
}

/** The field and kind of a column of `information_schema.COLUMNS`. */
export function columnField(c: ColumnRow, ctx: ColumnContext): { field: FieldSchema; kind: ColumnKind } {
  const dataType = c.dataType.toLowerCase();
  const columnType = c.columnType;
  const lower = columnType.toLowerCase();
  const field: FieldSchema = { name: c.name, type: "any", nativeType: columnType, nullable: c.nullable === "YES" };
  if (/\b(VIRTUAL|STORED|PERSISTENT)\b/i.test(c.extra)) field.generated = true;
  if (/auto_increment/i.test(c.extra)) field.autoIncrement = true;
  const unsigned = /\b(unsigned|zerofill)\b/.test(lower);
  const integer = (size: number, kind: ColumnKind = "int"): ColumnKind => {
    field.type = "integer";
    field.size = size;
    if (unsigned) field.unsigned = true;
    return kind;
  };
  const text = (): ColumnKind => {
    field.type = "text";
    if (c.charset !== null && !UNICODE_CHARSETS.has(c.charset.toLowerCase())) field.charset = c.charset.toLowerCase();
    return "text";
  };
  const dated = (type: FieldType): void => {
    field.type = type;
    if (ctx.zeroDates) field.zeroDates = true;
  };
  let kind: ColumnKind;
  switch (dataType) {
    case "tinyint":
      if (/^tinyint\(1\)/.test(lower)) {
        // An integer column used as a boolean: `size` says it may hold other integers.
        field.type = "boolean";
        field.size = 1;
        if (unsigned) field.unsigned = true;
        kind = "bool";
      } else kind = integer(1);
      break;
    case "smallint":
      kind = integer(2);
      break;
    case "mediumint":
      kind = integer(3);
      break;
    case "int":
    case "integer":
      kind = integer(4);
      break;
    case "bigint":
      kind = integer(8, "bigint");
      break;
    case "year":
      kind = integer(2);
      delete field.unsigned;
      break;
    case "float":
      field.type = "float";
      field.size = 4;
      kind = "float";
      break;
    case "double":
    case "real":
    case "double precision":
      field.type = "float";
      field.size = 8;
      kind = "double";
      break;
    case "decimal":
    case "numeric":
    case "dec":
    case "fixed": {
      field.type = "decimal";
      const p = num(c.numPrecision);
      const s = num(c.numScale);
      if (p !== undefined) field.precision = p;
      if (s !== undefined) field.scale = s;
      kind = "decimal";
      break;
    }
    case "bit": {
      const bits = num(c.numPrecision) ?? 1;
      if (bits === 1) {
        field.type = "boolean";
        kind = "bit1";
      } else {
        field.type = "bytes";
        field.maxLength = Math.ceil(bits / 8);
        field.fixedLength = true;
        kind = "bits";
      }
      break;
    }
    case "char":
    case "varchar":
    case "tinytext":
    case "text":
    case "mediumtext":
    case "longtext": {
      if (ctx.json && dataType === "longtext") {
        field.type = "json";
        field.nativeType = "json";
        kind = "json";
        break;
      }
      kind = text();
      const max = num(c.maxLength);
      if (max !== undefined && max < UNBOUNDED) field.maxLength = max;
      if (dataType === "char") field.fixedLength = true;
      break;
    }
    case "binary":
    case "varbinary":
    case "tinyblob":
    case "blob":
    case "mediumblob":
    case "longblob": {
      field.type = "bytes";
      const max = num(c.maxLength);
      if (max !== undefined && max < UNBOUNDED) field.maxLength = max;
      if (dataType === "binary") field.fixedLength = true;
      kind = "bytes";
      break;
    }
    case "enum":
      kind = text();
      field.enumValues = parseEnumValues(columnType);
      break;
    case "set":
      kind = text();
      field.setValues = parseEnumValues(columnType);
      break;
    case "json":
      field.type = "json";
      kind = "json";
      break;
    case "date":
      dated("date");
      kind = "date";
      break;
    case "datetime":
    case "timestamp":
      dated("datetime");
      field.timezone = dataType === "timestamp";
      field.fractionDigits = num(c.dtPrecision) ?? 0;
      kind = dataType === "timestamp" ? "timestamp" : "datetime";
      break;
    case "time":
      field.type = "text";
      kind = "text";
      break;
    case "uuid":
      field.type = "uuid";
      kind = "text";
      break;
    case "inet4":
      field.type = "text";
      field.maxLength = 15;
      kind = "text";
      break;
    case "inet6":
      field.type = "text";
      field.maxLength = 39;
      kind = "text";
      break;
    default:
      kind = "other";
  }
  return { field, kind };
}

/** InnoDB's longest index key, in bytes (DYNAMIC/COMPRESSED rows). */
const MAX_KEY_BYTES = 3072;
/** Longest VARCHAR this connector declares (utf8mb4: 4 bytes per character, 65,535-byte rows). */
const MAX_VARCHAR = 16_383;
/** Bytes of the row that VARCHAR/VARBINARY columns may take before the rest become TEXT/BLOB. */
const ROW_BUDGET = 60_000;

/** Fields of `c` that are part of a key (primary, unique, index, or foreign key: each needs an index). */
function keysOf(c: CollectionSchema): string[][] {
  return [
    ...(c.primaryKey.length > 0 ? [c.primaryKey] : []),
    ...(c.uniqueKeys ?? []),
    ...(c.indexes ?? []).map((i) => i.fields),
    ...(c.foreignKeys ?? []).map((f) => f.fields),
  ].filter((k) => k.length > 0);
}

/** Whether a field becomes a variable-length column whose length counts in keys and rows. */
function isVariable(f: FieldSchema): boolean {
  if (f.type === "bytes" || f.type === "any") return true;
  return f.type === "text" && !(f.enumValues && f.enumValues.length > 0) && !(f.setValues && f.setValues.length > 0);
}

/** Bytes a fixed-size field takes in an index key. */
function fixedKeyBytes(f: FieldSchema | undefined): number {
  if (f === undefined) return 8;
  switch (f.type) {
    case "integer":
    case "float":
      return f.size ?? 8;
    case "boolean":
      return 1;
    case "decimal":
      return Math.ceil((f.precision ?? 65) / 9) * 4 + 4;
    case "date":
      return 3;
    case "datetime":
      return 8;
    case "uuid":
      return 36;
    case "text":
      return 2;
    default:
      return 16;
  }
}

interface Layout {
  /** Most characters (text) or bytes (binary) a key field may have. */
  keyLimit: Map<string, { chars: number; bytes: number }>;
  /** Non-key variable fields that do not fit the row as VARCHAR/VARBINARY. */
  overflow: Set<string>;
}

const layouts = new WeakMap<CollectionSchema, Layout>();

/** Key length limits and row overflow of a collection created from another engine's schema. */
function layoutOf(c: CollectionSchema): Layout {
  let layout = layouts.get(c);
  if (layout) return layout;
  const byName = new Map(c.fields.map((f) => [f.name, f]));
  const keyLimit = new Map<string, { chars: number; bytes: number }>();
  for (const key of keysOf(c)) {
    const variable = key.filter((n) => {
      const f = byName.get(n);
      return f !== undefined && isVariable(f);
    });
    if (variable.length === 0) continue;
    const fixed = key.filter((n) => !variable.includes(n)).reduce((s, n) => s + fixedKeyBytes(byName.get(n)), 0);
    const share = Math.max(4, Math.floor((MAX_KEY_BYTES - fixed) / variable.length));
    for (const n of variable) {
      const prev = keyLimit.get(n);
      const limit = { chars: Math.floor(share / 4), bytes: share };
      if (!prev || prev.bytes > limit.bytes) keyLimit.set(n, limit);
    }
  }
  // Key columns stay VARCHAR; the others are VARCHAR while the row has room, then TEXT.
  let used = 0;
  for (const f of c.fields) {
    const k = keyLimit.get(f.name);
    if (k) used += f.type === "bytes" ? k.bytes : k.chars * 4;
    else if (!isVariable(f)) used += fixedKeyBytes(f);
  }
  const overflow = new Set<string>();
  for (const f of c.fields) {
    if (keyLimit.has(f.name) || !isVariable(f) || f.maxLength === undefined) continue;
    const bytes = f.type === "bytes" ? f.maxLength + 2 : f.maxLength * 4 + 2;
    if (f.maxLength > MAX_VARCHAR || used + bytes > ROW_BUDGET) overflow.add(f.name);
    else used += bytes;
  }
  layout = { keyLimit, overflow };
  layouts.set(c, layout);
  return layout;
}

const SAFE_CHARSET = /^[a-z0-9_]+$/i;

/**
 * How MySQL creates `field` of `collection` (the type plan's view, and what `prepare`
 * declares for a collection from another engine). A MySQL collection keeps its fields.
 * Otherwise, by logical type:
 * - integer → TINYINT…BIGINT by `size` (none: BIGINT), UNSIGNED kept; boolean → TINYINT(1)
 *   (`size` 1: an integer column, which may hold other integers);
 * - float → FLOAT (size 4) or DOUBLE; decimal → DECIMAL(p,s) up to (65,30), else DECIMAL(65,30);
 * - text → ENUM/SET for enum/set values; VARCHAR(n) (CHAR(n) when fixed, n ≤ 255) up to 16,383
 *   characters while the row has room, then MEDIUMTEXT/LONGTEXT; key columns (primary,
 *   unique, indexed, foreign key) are VARCHAR within InnoDB's 3,072-byte keys (768 characters);
 * - bytes → VARBINARY(n) / BINARY(n) / LONGBLOB, key columns VARBINARY up to 3,072 bytes;
 * - uuid → CHAR(36) ascii; json → JSON (arrays too: MySQL has no array types);
 * - date → DATE; datetime → DATETIME(p ≤ 6), without a zone (MySQL has no zone-aware type
 *   that holds every instant, so the plan calls a zone-aware source lossy); both hold zero dates;
 * - any → LONGTEXT.
 * The returned field has the attributes the MySQL type really has.
 */
export function mysqlFieldFor(field: FieldSchema, collection: CollectionSchema): FieldSchema {
  if (collection.engine === "mysql" && field.nativeType) return field;
  const out: FieldSchema = { name: field.name, type: field.type };
  if (field.nullable !== undefined) out.nullable = field.nullable;
  const layout = layoutOf(collection);
  const keyLimit = layout.keyLimit.get(field.name);
  const set = (nativeType: string, attrs: Partial<FieldSchema> = {}): FieldSchema => {
    Object.assign(out, attrs);
    out.nativeType = nativeType;
    return out;
  };
  switch (field.type) {
    case "integer": {
      const size = field.size ?? 8;
      const [name, bytes] =
        size <= 1
          ? ["TINYINT", 1]
          : size <= 2
            ? ["SMALLINT", 2]
            : size <= 3
              ? ["MEDIUMINT", 3]
              : size <= 4
                ? ["INT", 4]
                : ["BIGINT", 8];
      if (field.autoIncrement) out.autoIncrement = true;
      return set(`${name}${field.unsigned ? " UNSIGNED" : ""}`, {
        size: bytes as number,
        ...(field.unsigned ? { unsigned: true } : {}),
      });
    }
    case "boolean":
      return set("TINYINT(1)", { size: 1 });
    case "float":
      return field.size === 4 ? set("FLOAT", { size: 4 }) : set("DOUBLE", { size: 8 });
    case "decimal": {
      const p = field.precision;
      const s = field.scale ?? 0;
      if (p !== undefined && p >= 1 && p <= 65 && s >= 0 && s <= 30 && s <= p) {
        return set(`DECIMAL(${p},${s})`, { precision: p, scale: s });
      }
      return set("DECIMAL(65,30)", { precision: 65, scale: 30 });
    }
    case "text":
    case "any": {
      out.type = "text";
      const charset =
        field.type === "text" && field.charset && SAFE_CHARSET.test(field.charset) ? field.charset : undefined;
      const cs = charset ? ` CHARACTER SET ${charset} COLLATE ${charset}_bin` : "";
      if (charset) out.charset = charset;
      if (field.type === "text" && !keyLimit) {
        if (field.enumValues && field.enumValues.length > 0) {
          return set(`ENUM(${field.enumValues.map(sqlString).join(",")})${cs}`, { enumValues: [...field.enumValues] });
        }
        if (field.setValues && field.setValues.length > 0 && field.setValues.length <= 64) {
          return set(`SET(${field.setValues.map(sqlString).join(",")})${cs}`, { setValues: [...field.setValues] });
        }
      }
      const max = field.type === "text" ? field.maxLength : undefined;
      if (keyLimit) {
        const n = Math.max(1, Math.min(max ?? keyLimit.chars, keyLimit.chars));
        if (field.fixedLength && n <= 255 && max === n)
          return set(`CHAR(${n})${cs}`, { maxLength: n, fixedLength: true });
        return set(`VARCHAR(${n})${cs}`, { maxLength: n });
      }
      if (max !== undefined && !layout.overflow.has(field.name)) {
        if (field.fixedLength && max <= 255)
          return set(`CHAR(${Math.max(max, 0)})${cs}`, { maxLength: max, fixedLength: true });
        return set(`VARCHAR(${Math.max(max, 0)})${cs}`, { maxLength: max });
      }
      if (max !== undefined && max <= 4_194_303) return set(`MEDIUMTEXT${cs}`);
      return set(`LONGTEXT${cs}`);
    }
    case "bytes": {
      const max = field.maxLength;
      if (keyLimit) {
        const n = Math.max(1, Math.min(max ?? keyLimit.bytes, keyLimit.bytes));
        if (field.fixedLength && n <= 255 && max === n) return set(`BINARY(${n})`, { maxLength: n, fixedLength: true });
        return set(`VARBINARY(${n})`, { maxLength: n });
      }
      if (max !== undefined && !layout.overflow.has(field.name)) {
        if (field.fixedLength && max <= 255) return set(`BINARY(${max})`, { maxLength: max, fixedLength: true });
        return set(`VARBINARY(${max})`, { maxLength: max });
      }
      if (max !== undefined && max <= 16_777_215) return set("MEDIUMBLOB");
      return set("LONGBLOB");
    }
    case "uuid":
      return set("CHAR(36) CHARACTER SET ascii COLLATE ascii_general_ci");
    case "json":
      return set("JSON");
    case "date":
      return set("DATE", { zeroDates: true });
    case "datetime": {
      const fd = Math.max(0, Math.min(field.fractionDigits ?? 6, 6));
      return set(`DATETIME(${fd})`, { timezone: false, fractionDigits: fd, zeroDates: true });
    }
    default:
      return set("LONGTEXT", { type: "text" });
  }
}

/** The column definition of a mapped field in CREATE TABLE. */
export function columnDefinition(f: FieldSchema, autoIncrement: boolean): string {
  const nullable = f.nullable === false ? " NOT NULL" : " NULL";
  return `${quoteIdent(f.name)} ${f.nativeType ?? "LONGTEXT"}${nullable}${autoIncrement ? " AUTO_INCREMENT" : ""}`;
}
