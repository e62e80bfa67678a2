/**
 * DDL for tables the connector creates: CREATE TABLE from fields (other engines), the
 * source's own CREATE TABLE with plain secondary indexes deferred (same engine), and the
 * ALTER TABLE clauses that `finish` adds after the data.
 */
import { createHash } from "node:crypto";
import type { CollectionSchema } from "../../core/schema.js";
import { quoteIdent } from "./mysql-sql.js";
import { columnDefinition, mysqlFieldFor } from "./mysql-types.js";

/** MySQL's longest identifier. */
const MAX_NAME = 64;

/** A name that fits MySQL's 64 characters: shortened with a hash of the whole when needed. */
export function fitName(name: string): string {
  if (name.length <= MAX_NAME) return name;
  const hash = createHash("sha1").update(name).digest("hex").slice(0, 8);
  return `${name.slice(0, MAX_NAME - 9)}_${hash}`;
}

const identList = (names: string[]): string => names.map(quoteIdent).join(", ");

/**
 * CREATE TABLE for a collection from another engine: each field as {@link mysqlFieldFor}
 * maps it, the primary key inline (InnoDB clusters rows on it), InnoDB, utf8mb4 with a binary
 * collation (keys that differ only in case or accents stay distinct, as at the source).
 * Unique keys, indexes and foreign keys come in `finish`, after the data.
 */
export function createTableSql(c: CollectionSchema): string {
  const fields = c.fields.map((f) => mysqlFieldFor(f, c));
  const auto = fields.find((f) => f.autoIncrement === true && f.type === "integer");
  const lines = fields.map((f) => columnDefinition(f, f === auto));
  if (c.primaryKey.length > 0) lines.push(`PRIMARY KEY (${identList(c.primaryKey)})`);
  // AUTO_INCREMENT needs an index that starts with its column.
  if (auto && c.primaryKey[0] !== auto.name)
    lines.push(`KEY ${quoteIdent(fitName(`${auto.name}_auto`))} (${quoteIdent(auto.name)})`);
  return `CREATE TABLE ${quoteIdent(c.name)} (\n  ${lines.join(",\n  ")}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`;
}

/** A secondary index taken out of a native CREATE TABLE, to be added by `finish`. */
export interface DeferredIndex {
  name: string;
  /** `ADD KEY …` clause for ALTER TABLE. */
  clause: string;
}

/** The source's CREATE TABLE, split into what to create now and what to add after the data. */
export interface NativeSplit {
  create: string;
  deferred: DeferredIndex[];
}

const IDENT = /`((?:[^`]|``)+)`/g;

function identifiers(text: string): string[] {
  return [...text.matchAll(IDENT)].map((m) => (m[1] as string).replaceAll("``", "`"));
}

/**
 * Takes plain secondary indexes (`KEY …` lines: not unique, full-text or spatial) out of a
 * `SHOW CREATE TABLE` output, keeping those a foreign key needs: building them after the
 * data is faster (measured: 1M rows with two secondary indexes over two connections,
 * 12.7 s loaded with them, 10.8 s with them added afterwards). The text is returned unchanged if it is not laid out
 * one definition per line as the server prints it.
 */
export function splitNativeDdl(ddl: string): NativeSplit {
  const lines = ddl.split("\n");
  const close = lines.findIndex((l, i) => i > 0 && l.startsWith(")"));
  if (!/^CREATE TABLE `(?:[^`]|``)+` \($/.test(lines[0] ?? "") || close < 0) return { create: ddl, deferred: [] };
  const defs = lines.slice(1, close).map((l) => l.replace(/,$/, ""));
  const fkColumns = defs
    .map((d) => /^\s*CONSTRAINT\s+`(?:[^`]|``)+`\s+FOREIGN KEY\s+\(([^)]*)\)/.exec(d)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(identifiers);
  const kept: string[] = [];
  const deferred: DeferredIndex[] = [];
  for (const d of defs) {
    const m = /^\s*KEY\s+`((?:[^`]|``)+)`\s+\((.*)$/.exec(d);
    if (!m) {
      kept.push(d);
      continue;
    }
    const columns = identifiers(m[2] as string);
    const neededByFk = fkColumns.some((fk) => fk.length <= columns.length && fk.every((c, i) => columns[i] === c));
    if (neededByFk) kept.push(d);
    else deferred.push({ name: (m[1] as string).replaceAll("``", "`"), clause: `ADD ${d.trim()}` });
  }
  if (deferred.length === 0) return { create: ddl, deferred };
  const create = [lines[0] as string, kept.join(",\n"), ...lines.slice(close)].join("\n");
  return { create, deferred };
}

/** What the target table already has, for `finish` to add only what is missing. */
export interface ExistingKeys {
  indexNames: Set<string>;
  /** Column lists (joined by NUL) of unique indexes, primary key included. */
  uniqueColumns: Set<string>;
  /** Column lists (joined by NUL) of foreign keys. */
  foreignKeyColumns: Set<string>;
  /** Tables of the database (foreign keys to others are skipped). */
  tables: Set<string>;
}

const FK_ACTIONS = new Set(["CASCADE", "SET NULL", "RESTRICT", "NO ACTION", "SET DEFAULT"]);

function action(a: string | undefined): string | undefined {
  if (a === undefined) return undefined;
  const up = a.toUpperCase().replace(/_/g, " ").trim();
  return FK_ACTIONS.has(up) ? up : undefined;
}

/** What `finish` still has to add to a table. */
export interface FinishPlan {
  /** ADD KEY clauses (one ALTER TABLE). */
  indexes: string[];
  /** ADD CONSTRAINT … FOREIGN KEY clauses whose parent table exists. */
  foreignKeys: string[];
  /** Foreign keys to tables that do not exist yet: added when their parent is finished. */
  waiting: { parent: string; clause: string }[];
}

/** The ALTER TABLE clauses `finish` still has to run for `c`, given what the table has. */
export function finishClauses(c: CollectionSchema, existing: ExistingKeys): FinishPlan {
  const indexes: string[] = [];
  const names = new Set(existing.indexNames);
  const key = (cols: string[]): string => cols.join("\0");
  if (c.native?.engine === "mysql") {
    const first = c.native.ddl[0];
    for (const d of first === undefined ? [] : splitNativeDdl(first).deferred) {
      if (names.has(d.name)) continue;
      names.add(d.name);
      indexes.push(d.clause);
    }
  }
  const unique = new Set(existing.uniqueColumns);
  for (const u of c.uniqueKeys ?? []) {
    if (u.length === 0 || unique.has(key(u))) continue;
    unique.add(key(u));
    const name = fitName(`${c.name}_${u.join("_")}_key`);
    names.add(name);
    indexes.push(`ADD UNIQUE KEY ${quoteIdent(name)} (${identList(u)})`);
  }
  for (const ix of c.indexes ?? []) {
    if (ix.fields.length === 0) continue;
    const name = fitName(ix.name);
    if (names.has(name) || (ix.unique && unique.has(key(ix.fields)))) continue;
    names.add(name);
    if (ix.unique) unique.add(key(ix.fields));
    indexes.push(`ADD ${ix.unique ? "UNIQUE " : ""}KEY ${quoteIdent(name)} (${identList(ix.fields)})`);
  }
  const foreignKeys: string[] = [];
  const waiting: { parent: string; clause: string }[] = [];
  const fks = new Set(existing.foreignKeyColumns);
  for (const fk of c.foreignKeys ?? []) {
    const parent = fk.references.collection;
    if (fk.fields.length === 0 || fks.has(key(fk.fields))) continue;
    fks.add(key(fk.fields));
    const name = fitName(`${c.name}_${fk.fields.join("_")}_fkey`);
    const onDelete = action(fk.onDelete);
    const onUpdate = action(fk.onUpdate);
    const clause = `ADD CONSTRAINT ${quoteIdent(name)} FOREIGN KEY (${identList(fk.fields)}) REFERENCES ${quoteIdent(parent)} (${identList(fk.references.fields)})${onDelete ? ` ON DELETE ${onDelete}` : ""}${onUpdate ? ` ON UPDATE ${onUpdate}` : ""}`;
    if (existing.tables.has(parent)) foreignKeys.push(clause);
    else waiting.push({ parent, clause });
  }
  return { indexes, foreignKeys, waiting };
}
