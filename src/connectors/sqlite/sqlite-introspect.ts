/** Reads an SQLite database's catalogue into {@link TableInfo} and {@link CollectionSchema}. */
import type Database from "better-sqlite3";
import type { CollectionSchema, FieldSchema, ForeignKeySchema, IndexSchema } from "../../core/schema.js";
import type { Value } from "../../core/values.js";
import { quoteIdent } from "./sqlite-sql.js";
import {
  type Affinity,
  affinityOf,
  type BindMode,
  bindModeFor,
  declaredAttributes,
  fromSqlite,
  fromSqliteBoolean,
  fromSqliteJson,
  logicalTypeOf,
} from "./sqlite-types.js";

/** One column as the connector uses it. */
export interface ColumnInfo {
  name: string;
  /** Declared type, as written (may be empty). */
  declared: string;
  affinity: Affinity;
  field: FieldSchema;
  notNull: boolean;
  /** Position in the primary key, 1-based; 0 when not part of it. */
  pk: number;
  /** A generated (VIRTUAL or STORED) column: read, never written. */
  generated: boolean;
  /** The column's DEFAULT expression as SQL text, or null. */
  defaultSql: string | null;
  bind: BindMode;
  /** Converts a value read from this column (safe integers on) to the canonical form. */
  read: (v: unknown) => Value;
}

/** A term of the read order: a column, or the rowid when the key alone does not order rows. */
export interface KeyTerm {
  /** Column name, or the rowid alias used (`rowid`, `_rowid_` or `oid`). */
  name: string;
  /** Quoted for SQL (the rowid alias is left bare so it means the rowid). */
  sql: string;
  rowid: boolean;
}

/** One table as the connector uses it; cached per connector and dropped after DDL. */
export interface TableInfo {
  name: string;
  /** The `CREATE TABLE` statement from `sqlite_master`. */
  sql: string;
  columns: ColumnInfo[];
  byName: Map<string, ColumnInfo>;
  primaryKey: string[];
  /** Whether any column is generated (so writes must leave some fields out). */
  hasGenerated: boolean;
  withoutRowid: boolean;
  strict: boolean;
  /**
   * The order `read` pages in: the primary key; the rowid when there is none; the primary
   * key then the rowid when a key column may hold NULL (SQLite allows NULL in a non-INTEGER
   * primary key of a rowid table, and NULLs are distinct, so the key alone is not unique).
   * Undefined when a key-less table has columns named rowid, _rowid_ and oid.
   */
  readKey: KeyTerm[] | undefined;
  /** Prepared statements for this table, keyed by purpose; dropped with the info. */
  statements: Map<string, Database.Statement>;
}

interface XInfoRow {
  name: string;
  type: string;
  notnull: number;
  dflt_value: string | null;
  pk: number;
  hidden: number;
}

/** User tables in creation order: ordinary tables only, not `sqlite_*` nor `_ferry_*`. */
export function listTables(db: Database.Database): string[] {
  const rows = db
    .prepare(
      `SELECT m.name AS name FROM sqlite_master m
       JOIN pragma_table_list l ON l.name = m.name AND l.schema = 'main'
       WHERE m.type = 'table' AND l.type = 'table'
         AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND m.name NOT LIKE '\\_ferry\\_%' ESCAPE '\\'
       ORDER BY m.rowid`,
    )
    .safeIntegers(false)
    .all() as { name: string }[];
  return rows.map((r) => r.name);
}

/** The table named `name` (matched as SQLite does: ASCII case-insensitively), or undefined. */
export function readTableInfo(db: Database.Database, name: string): TableInfo | undefined {
  const master = db
    .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE")
    .get(name) as { name: string; sql: string } | undefined;
  if (!master) return undefined;
  const list = db
    .prepare("SELECT wr, strict FROM pragma_table_list WHERE schema = 'main' AND name = ?")
    .safeIntegers(false)
    .get(master.name) as { wr: number; strict: number } | undefined;
  const withoutRowid = list?.wr === 1;
  const strict = list?.strict === 1;
  const xinfo = db
    .prepare('SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?) WHERE hidden <> 1')
    .safeIntegers(false)
    .all(master.name) as XInfoRow[];

  const pkCols = xinfo.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
  const primaryKey = pkCols.map((c) => c.name);
  const rowidAlias = !withoutRowid && pkCols.length === 1 && (pkCols[0] as XInfoRow).type.toUpperCase() === "INTEGER";

  const columns: ColumnInfo[] = xinfo.map((c) => {
    const type = logicalTypeOf(c.type);
    // A rowid alias and every key column of a WITHOUT ROWID table are NOT NULL whatever is declared.
    const notNull = c.notnull === 1 || (c.pk > 0 && (withoutRowid || rowidAlias));
    const generated = c.hidden === 2 || c.hidden === 3;
    const field: FieldSchema = { name: c.name, type, nullable: !notNull };
    if (c.type !== "") field.nativeType = c.type;
    if (generated) field.generated = true;
    Object.assign(field, declaredAttributes(c.type, type));
    const affinity = affinityOf(c.type, strict);
    return {
      name: c.name,
      declared: c.type,
      affinity,
      field,
      notNull,
      pk: c.pk,
      generated,
      defaultSql: c.dflt_value,
      bind: bindModeFor(affinity, type),
      read: type === "boolean" ? fromSqliteBoolean : type === "json" ? fromSqliteJson : fromSqlite,
    };
  });
  const byName = new Map(columns.map((c) => [c.name, c]));

  let readKey: KeyTerm[] | undefined;
  const keyTerms = primaryKey.map((n) => ({ name: n, sql: quoteIdent(n), rowid: false }));
  const keyMayBeNull = columns.some((c) => c.pk > 0 && !c.notNull);
  if (primaryKey.length > 0 && (withoutRowid || !keyMayBeNull)) {
    readKey = keyTerms;
  } else {
    const lower = new Set(columns.map((c) => c.name.toLowerCase()));
    const alias = ["rowid", "_rowid_", "oid"].find((a) => !lower.has(a));
    readKey = alias === undefined ? undefined : [...keyTerms, { name: alias, sql: alias, rowid: true }];
  }

  return {
    name: master.name,
    sql: master.sql,
    columns,
    byName,
    primaryKey,
    hasGenerated: columns.some((c) => c.generated),
    withoutRowid,
    strict,
    readKey,
    statements: new Map(),
  };
}

interface FkRow {
  id: number;
  seq: number;
  table: string;
  from: string;
  to: string | null;
  on_update: string;
  on_delete: string;
}

/** `name` with ASCII letters in lower case, as SQLite compares names. */
function asciiLower(name: string): string {
  return name.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** A foreign key of another table (or of the table itself) that references a table. */
export interface Reference {
  /** The referencing table, as `sqlite_master` names it. */
  table: string;
  /** Its key columns, in order. */
  from: string[];
  /** The referenced table's columns they hold, in the same order. */
  to: string[];
  /** The table references itself. */
  self: boolean;
}

/**
 * The foreign keys of the database's tables that reference `parent`. One whose referenced
 * columns the parent lacks (SQLite would call it a "foreign key mismatch") is left out:
 * nothing can be said of the records it references.
 */
export function referencesTo(db: Database.Database, parent: TableInfo): Reference[] {
  const rows = db
    .prepare(
      `SELECT m.name AS child, f.id AS id, f."from" AS "from", f."to" AS "to"
       FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS f
       WHERE m.type = 'table' AND f."table" = ? COLLATE NOCASE
       ORDER BY m.rowid, f.id, f.seq`,
    )
    .safeIntegers(false)
    .all(parent.name) as { child: string; id: number; from: string; to: string | null }[];
  const groups = new Map<string, typeof rows>();
  for (const r of rows) {
    const key = `${r.child}\u0000${r.id}`;
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [r]);
    else group.push(r);
  }
  const out: Reference[] = [];
  for (const group of groups.values()) {
    const from = group.map((r) => r.from);
    // `REFERENCES parent` without columns means the parent's primary key.
    const to = group.every((r) => r.to === null) ? parent.primaryKey : group.map((r) => r.to);
    if (to.length !== from.length || !to.every((c) => c !== null && parent.byName.has(c))) continue;
    const table = (group[0] as (typeof rows)[number]).child;
    out.push({ table, from, to: to as string[], self: asciiLower(table) === asciiLower(parent.name) });
  }
  return out;
}

interface IndexListRow {
  seq: number;
  name: string;
  unique: number;
  origin: string;
  partial: number;
}

/**
 * The engine-neutral schema of a table: fields, primary key, unique keys (UNIQUE
 * constraints), foreign keys, indexes (CREATE INDEX ones that are plain column lists;
 * expression and partial indexes exist only in `native`), and `native.ddl`: the
 * `CREATE TABLE`, then each `CREATE INDEX`, then each `CREATE TRIGGER`, verbatim.
 */
export function describeTable(db: Database.Database, info: TableInfo): CollectionSchema {
  const fkRows = db
    .prepare('SELECT id, seq, "table", "from", "to", on_update, on_delete FROM pragma_foreign_key_list(?)')
    .safeIntegers(false)
    .all(info.name) as FkRow[];
  const byId = new Map<number, FkRow[]>();
  for (const r of fkRows) byId.set(r.id, [...(byId.get(r.id) ?? []), r]);
  const foreignKeys: ForeignKeySchema[] = [];
  // SQLite numbers foreign keys last-declared first; list them as declared.
  for (const id of [...byId.keys()].sort((a, b) => b - a)) {
    const rows = (byId.get(id) as FkRow[]).sort((a, b) => a.seq - b.seq);
    const first = rows[0] as FkRow;
    let to = rows.map((r) => r.to);
    if (to.some((t) => t === null)) {
      // `REFERENCES parent` without columns means the parent's primary key.
      const parent = readTableInfo(db, first.table);
      to = parent ? parent.primaryKey : [];
    }
    const fk: ForeignKeySchema = {
      fields: rows.map((r) => r.from),
      references: { collection: first.table, fields: to as string[] },
    };
    if (first.on_delete !== "NO ACTION") fk.onDelete = first.on_delete;
    if (first.on_update !== "NO ACTION") fk.onUpdate = first.on_update;
    foreignKeys.push(fk);
  }

  const indexRows = (
    db
      .prepare('SELECT seq, name, "unique", origin, partial FROM pragma_index_list(?)')
      .safeIntegers(false)
      .all(info.name) as IndexListRow[]
  ).sort((a, b) => b.seq - a.seq); // listed newest first
  const infoStmt = db.prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno").safeIntegers(false);
  const uniqueKeys: string[][] = [];
  const indexes: IndexSchema[] = [];
  for (const ix of indexRows) {
    if (ix.origin === "pk" || ix.partial === 1) continue;
    const names = (infoStmt.all(ix.name) as { name: string | null }[]).map((r) => r.name);
    if (names.some((n) => n === null)) continue; // an expression: only `native` can carry it
    const fields = names as string[];
    if (ix.origin === "u") uniqueKeys.push(fields);
    else indexes.push({ name: ix.name, fields, unique: ix.unique === 1 });
  }

  const extra = db
    .prepare(
      `SELECT sql FROM sqlite_master
       WHERE tbl_name = ? COLLATE NOCASE AND type IN ('index', 'trigger') AND sql IS NOT NULL
       ORDER BY type = 'trigger', rowid`,
    )
    .all(info.name) as { sql: string }[];

  return {
    name: info.name,
    fields: info.columns.map((c) => ({ ...c.field })),
    primaryKey: [...info.primaryKey],
    uniqueKeys,
    foreignKeys,
    indexes,
    native: { engine: "sqlite", ddl: [info.sql, ...extra.map((r) => r.sql)] },
  };
}
