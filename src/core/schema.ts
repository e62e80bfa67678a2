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

/** One field (column). */
export interface FieldSchema {
  name: string;
  type: FieldType;
  /** The engine's own type name as declared, e.g. `VARCHAR(40)`, `jsonb`. */
  nativeType?: string;
  /** Default `true`. */
  nullable?: boolean;
  /** Computed by the engine; never written. Default `false`. */
  generated?: boolean;
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
}

/**
 * Orders collections so that every collection comes after those it references (parents
 * before children). Self-references are ignored; cycles keep their input order.
 */
export function dependencyOrder(schemas: readonly CollectionSchema[]): CollectionSchema[] {
  const byName = new Map(schemas.map((s) => [s.name, s]));
  const out: CollectionSchema[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (s: CollectionSchema): void => {
    const st = state.get(s.name);
    if (st === "done" || st === "visiting") return;
    state.set(s.name, "visiting");
    for (const fk of s.foreignKeys ?? []) {
      const parent = byName.get(fk.references.collection);
      if (parent && parent.name !== s.name) visit(parent);
    }
    state.set(s.name, "done");
    out.push(s);
  };
  for (const s of schemas) visit(s);
  return out;
}
