/** `CREATE TABLE` / `CREATE INDEX` statements generated from an engine-neutral schema. */
import type { CollectionSchema, IndexSchema } from "../../core/schema.js";
import { quoteIdent } from "./sqlite-sql.js";
import { declaredTypeFor, sqliteFieldFor } from "./sqlite-types.js";

const FK_ACTIONS = new Set(["NO ACTION", "RESTRICT", "SET NULL", "SET DEFAULT", "CASCADE"]);

function identList(names: readonly string[]): string {
  return names.map(quoteIdent).join(", ");
}

/**
 * A `CREATE TABLE` for a collection that has no SQLite definition of its own: columns with
 * {@link declaredTypeFor} types and NOT NULL, then PRIMARY KEY, UNIQUE and FOREIGN KEY
 * constraints. Generated fields become ordinary columns (their expression is not known),
 * so their values are copied like any other.
 */
export function createTableSql(c: CollectionSchema): string {
  const parts = c.fields.map((f) => {
    const type = declaredTypeFor(sqliteFieldFor(f, c));
    return `${quoteIdent(f.name)}${type ? ` ${type}` : ""}${f.nullable === false ? " NOT NULL" : ""}`;
  });
  if (c.primaryKey.length > 0) parts.push(`PRIMARY KEY (${identList(c.primaryKey)})`);
  for (const u of c.uniqueKeys ?? []) if (u.length > 0) parts.push(`UNIQUE (${identList(u)})`);
  for (const fk of c.foreignKeys ?? []) {
    const to = fk.references.fields.length > 0 ? ` (${identList(fk.references.fields)})` : "";
    let sql = `FOREIGN KEY (${identList(fk.fields)}) REFERENCES ${quoteIdent(fk.references.collection)}${to}`;
    const onDelete = fk.onDelete?.toUpperCase();
    const onUpdate = fk.onUpdate?.toUpperCase();
    if (onDelete && onDelete !== "NO ACTION" && FK_ACTIONS.has(onDelete)) sql += ` ON DELETE ${onDelete}`;
    if (onUpdate && onUpdate !== "NO ACTION" && FK_ACTIONS.has(onUpdate)) sql += ` ON UPDATE ${onUpdate}`;
    parts.push(sql);
  }
  return `CREATE TABLE ${quoteIdent(c.name)} (\n  ${parts.join(",\n  ")}\n)`;
}

/** `CREATE [UNIQUE] INDEX IF NOT EXISTS` for one index of `table`. */
export function createIndexSql(table: string, index: IndexSchema): string {
  return `CREATE ${index.unique ? "UNIQUE " : ""}INDEX IF NOT EXISTS ${quoteIdent(index.name)} ON ${quoteIdent(table)} (${identList(index.fields)})`;
}
