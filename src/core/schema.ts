/**
 * The engine-neutral description of a collection. Connectors fill it on `discover` and
 * receive it on `prepare`; the directory format stores it verbatim in its schema file.
 */

/**
 * Logical field types. `nativeType` keeps the engine's own spelling; this is what other
 * engines map from. `any` is a column without a declared type (SQLite's BLOB affinity).
 */
export type FieldType =
  | "integer"
  | "float"
  | "decimal"
  | "boolean"
  | "text"
  | "bytes"
  | "date"
  | "datetime"
  | "json"
  | "uuid"
  | "any";

/**
 * One field (column). Beyond `type`, the optional attributes say what values the field can
 * hold; the type plan compares them between source and target (absent means "no limit
 * known": e.g. no `maxLength` is unbounded text, no `size` on an integer is 8 bytes).
 */
export interface FieldSchema {
  name: string;
  type: FieldType;
  /**
   * The engine's own type name as declared, e.g. `VARCHAR(40)`, `jsonb`, `integer[]`. Only
   * meaningful to the engine named by the collection's {@link CollectionSchema.engine}.
   */
  nativeType?: string;
  /** Default `true`. */
  nullable?: boolean;
  /** Computed by the engine; never written. Default `false`. */
  generated?: boolean;
  /** Filled by the engine on insert (identity, AUTO_INCREMENT, serial): sequences follow the copied maximum. */
  autoIncrement?: boolean;
  /**
   * integer: storage bytes (1, 2, 3, 4 or 8; default 8). float: 4 or 8 (default 8).
   * boolean: set when the boolean is an integer column (MySQL `tinyint(1)`) that may hold other integers.
   */
  size?: number;
  /** integer: no negative values (MySQL `UNSIGNED`). Default `false`. */
  unsigned?: boolean;
  /** decimal: total significant digits (absent: unconstrained). */
  precision?: number;
  /** decimal: digits after the point (absent: unconstrained). */
  scale?: number;
  /** text: most characters; bytes: most bytes (absent: unbounded). */
  maxLength?: number;
  /** text/bytes: padded to `maxLength` (CHAR, BINARY). Default `false`. */
  fixedLength?: boolean;
  /** text: character set when narrower than Unicode (e.g. `latin1`); absent: full Unicode. */
  charset?: string;
  /** datetime: an instant (PostgreSQL `timestamptz`); otherwise wall-clock time, read as UTC. Default `false`. */
  timezone?: boolean;
  /** date/datetime: digits of fractional seconds kept (0–6; absent: 6). */
  fractionDigits?: number;
  /** date/datetime: holds `0000-00-00` zero dates (MySQL), read as an invalid `Date`. Default `false`. */
  zeroDates?: boolean;
  /** text: the only values allowed (an enum type, MySQL `ENUM`). */
  enumValues?: string[];
  /** text: a MySQL `SET` of these members, written as `a,b`. */
  setValues?: string[];
  /** json: the field is an array of this element type at its engine (PostgreSQL `integer[]`). */
  arrayOf?: FieldType;
}

/** A foreign key: `fields` of this collection reference `references.fields` of another. */
export interface ForeignKeySchema {
  fields: string[];
  references: { collection: string; fields: string[] };
  onDelete?: string;
  onUpdate?: string;
}

/** A secondary index or unique constraint. */
export interface IndexSchema {
  name: string;
  fields: string[];
  unique: boolean;
}

/** Everything Ferry knows about one collection. */
export interface CollectionSchema {
  name: string;
  fields: FieldSchema[];
  /** Primary key fields in order; empty when the collection has none. */
  primaryKey: string[];
  /** Unique keys other than the primary key (each a list of fields). */
  uniqueKeys?: string[][];
  foreignKeys?: ForeignKeySchema[];
  indexes?: IndexSchema[];
  /**
   * The source engine's own definition, so a same-engine target can recreate the collection
   * exactly (e.g. SQLite's `CREATE TABLE` and `CREATE INDEX` statements).
   */
  native?: { engine: string; ddl: string[] };
  /** The engine whose spelling the fields' `nativeType` uses (`sqlite`, `postgres`, `mysql`). */
  engine?: string;
  /** Schema or database namespace at the source (PostgreSQL schema), informational. */
  namespace?: string;
}

/**
 * Orders collections so that every collection comes after those it references (parents
 * before children), and after those `dependsOn` names for it (dependencies the instance does
 * not declare, such as the profile's). Self-references are ignored; cycles keep their input order.
 */
export function dependencyOrder(
  schemas: readonly CollectionSchema[],
  dependsOn: (s: CollectionSchema) => readonly string[] = () => [],
): CollectionSchema[] {
  const byName = new Map(schemas.map((s) => [s.name, s]));
  const out: CollectionSchema[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (s: CollectionSchema): void => {
    const st = state.get(s.name);
    if (st === "done" || st === "visiting") return;
    state.set(s.name, "visiting");
    for (const name of parentsOf(s, dependsOn)) {
      const parent = byName.get(name);
      if (parent && parent.name !== s.name) visit(parent);
    }
    state.set(s.name, "done");
    out.push(s);
  };
  for (const s of schemas) visit(s);
  return out;
}

/** The collections `s` comes after: those its foreign keys reference, then `dependsOn`'s. */
export function parentsOf(s: CollectionSchema, dependsOn: (s: CollectionSchema) => readonly string[]): string[] {
  return [...(s.foreignKeys ?? []).map((fk) => fk.references.collection), ...dependsOn(s)];
}
