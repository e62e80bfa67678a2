/**
 * Reading a schema's tables from the catalogs: columns with their types, keys, foreign
 * keys, indexes, and the DDL that recreates each table exactly on another PostgreSQL.
 */
import type pg from "pg";
import type { CollectionSchema, FieldSchema, ForeignKeySchema, IndexSchema } from "../../core/schema.js";
import { quoteIdent, quoteLiteral } from "./postgres-sql.js";
import {
  BUILTIN_KINDS,
  type Decoder,
  decoderFor,
  type Encoder,
  encoderFor,
  fieldOf,
  type PgType,
} from "./postgres-types.js";

/** Table-name prefix of Ferry's own tables; `discover` never lists them. */
export const FERRY_PREFIX = "_ferry_";

/** The line in `native.ddl` between what `prepare` runs and what `finish` runs. */
export const POST_DATA = "-- post-data";

/** A column as the connector reads and writes it. */
export interface ColumnInfo {
  name: string;
  /** `format_type(atttypid, atttypmod)`, e.g. `numeric(12,2)`, `integer[]`. */
  nativeType: string;
  type: PgType;
  notNull: boolean;
  /** `a`: GENERATED ALWAYS AS IDENTITY, `d`: BY DEFAULT, empty: not an identity column. */
  identity: string;
  /** A stored generated column: never written. */
  generated: boolean;
  /** The sequence that fills the column (identity, serial, or a `nextval` default), if any. */
  sequence: string | undefined;
  /** Values of the type move as binary COPY between two databases (no OIDs inside). */
  binary: boolean;
  decode: Decoder;
  encode: Encoder;
  field: FieldSchema;
}

/** A table as the connector reads and writes it. */
export interface TableInfo {
  oid: number;
  name: string;
  columns: ColumnInfo[];
  byName: Map<string, ColumnInfo>;
  primaryKey: string[];
  /** Column sets a unique index covers exactly (primary key included): `ON CONFLICT` targets. */
  uniqueSets: string[][];
  /** The engine-neutral description, with `native.ddl`. */
  schema: CollectionSchema;
}

interface TypeRow {
  oid: number;
  typtype: string;
  typelem: number;
  typbasetype: number;
  typtypmod: number;
  typcategory: string;
  has_io: boolean;
  name: string;
  typnotnull: boolean;
  typdefault: string | null;
  collation: string | null;
  /** A domain's base type with its modifier, e.g. `character varying(20)`. */
  base_name: string | null;
  /** A domain's CHECK constraints. */
  checks: { name: string; def: string }[];
}

interface ColumnRow {
  rel: number;
  name: string;
  notnull: boolean;
  typid: number;
  typmod: number;
  native: string;
  identity: string;
  generated: string;
  default_expr: string | null;
  collation: string | null;
  owned_seq: string | null;
}

interface ConstraintRow {
  rel: number;
  name: string;
  type: string;
  validated: boolean;
  def: string;
  cols: string[];
  ref_table: string | null;
  ref_cols: string[];
  deltype: string;
  updtype: string;
}

interface IndexRow {
  rel: number;
  name: string;
  unique: boolean;
  def: string;
  partial: boolean;
  expr: boolean;
  cols: (string | null)[];
}

interface SequenceRow {
  name: string;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
}

const FK_ACTIONS: Record<string, string> = {
  a: "NO ACTION",
  r: "RESTRICT",
  c: "CASCADE",
  n: "SET NULL",
  d: "SET DEFAULT",
};

/** First OID of objects users create; types below it are built in, the same in every database. */
const FIRST_NORMAL_OID = 16384;

const NEXTVAL = /nextval\('((?:[^']|'')+)'::regclass\)/;

/**
 * Names of the tables of `schema` (ordinary and partitioned, not partitions, not Ferry's
 * own), sorted.
 */
export async function listTables(client: pg.Client, schema: string): Promise<{ oid: number; name: string }[]> {
  const r = await client.query<{ oid: number; name: string }>(
    `SELECT c.oid, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND left(c.relname, 7) <> $2
     ORDER BY c.relname`,
    [schema, FERRY_PREFIX],
  );
  return r.rows;
}

/** True when `schema` exists. */
export async function schemaExists(client: pg.Client, schema: string): Promise<boolean> {
  const r = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
  return r.rowCount !== null && r.rowCount > 0;
}

/**
 * Describes the tables of `schema` (all, or those named in `only`): fields with logical
 * types and attributes, primary key, unique constraints (`uniqueKeys`), foreign keys with
 * their actions, indexes that are not constraints (on plain columns; expression indexes and
 * partial unique ones exist only in `native`), and `native.ddl`. Runs a fixed number of
 * catalog queries whatever the number of tables.
 */
export async function describeTables(client: pg.Client, schema: string, only?: string[]): Promise<TableInfo[]> {
  let tables = await listTables(client, schema);
  if (only) tables = tables.filter((t) => only.includes(t.name));
  if (tables.length === 0) return [];
  const oids = tables.map((t) => t.oid);

  const columns = (
    await client.query<ColumnRow>(
      `SELECT a.attrelid AS rel, a.attname AS name, a.attnotnull AS notnull, a.atttypid AS typid,
         a.atttypmod AS typmod, format_type(a.atttypid, a.atttypmod) AS native, a.attidentity AS identity,
         a.attgenerated AS generated, pg_get_expr(d.adbin, d.adrelid) AS default_expr,
         CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
           (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co
            JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END AS collation,
         (SELECT s.oid::regclass::text FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
          WHERE dep.refclassid = 'pg_class'::regclass AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
            AND dep.classid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i') LIMIT 1) AS owned_seq
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attrelid, a.attnum`,
      [oids],
    )
  ).rows;

  const types = await loadTypes(
    client,
    columns.map((c) => c.typid),
  );

  const constraints = (
    await client.query<ConstraintRow>(
      `SELECT con.conrelid AS rel, con.conname AS name, con.contype AS type, con.convalidated AS validated,
         pg_get_constraintdef(con.oid) AS def,
         ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS cols,
         fc.relname AS ref_table,
         ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)::text[] AS ref_cols,
         con.confdeltype AS deltype, con.confupdtype AS updtype
       FROM pg_constraint con LEFT JOIN pg_class fc ON fc.oid = con.confrelid
       WHERE con.conrelid = ANY($1::oid[]) AND con.contype IN ('p', 'u', 'f', 'c', 'x')
       ORDER BY con.conrelid, con.conname`,
      [oids],
    )
  ).rows;

  const indexes = (
    await client.query<IndexRow>(
      `SELECT i.indrelid AS rel, ic.relname AS name, i.indisunique AS unique, pg_get_indexdef(i.indexrelid) AS def,
         quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) AS qualified_table, quote_ident(tc.relname) AS table,
         i.indpred IS NOT NULL AS partial, i.indexprs IS NOT NULL AS expr,
         ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
               LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
               WHERE k.o <= i.indnkeyatts ORDER BY k.o)::text[] AS cols,
         EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                 AND c.contype IN ('p', 'u', 'x')) AS constraint_index
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
       JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
       WHERE i.indrelid = ANY($1::oid[])
       ORDER BY i.indrelid, ic.relname`,
      [oids],
    )
  ).rows as (IndexRow & { constraint_index: boolean; qualified_table: string; table: string })[];
  // pg_get_indexdef always names the table with its schema: leave the schema out, so the
  // index is built on the table of the target's schema.
  for (const i of indexes) {
    for (const on of [" ON ", " ON ONLY "]) {
      const at = i.def.indexOf(`${on}${i.qualified_table} `);
      if (at >= 0) {
        i.def = `${i.def.slice(0, at)}${on}${i.table}${i.def.slice(at + on.length + i.qualified_table.length)}`;
        break;
      }
    }
  }

  // Sequences that fill columns: owned ones (identity, serial) and those `nextval` defaults name.
  const seqNames = new Set<string>();
  for (const c of columns) {
    if (c.owned_seq) seqNames.add(c.owned_seq);
    const m = c.default_expr ? NEXTVAL.exec(c.default_expr) : null;
    if (m) seqNames.add((m[1] as string).replaceAll("''", "'"));
  }
  const sequences = new Map<string, SequenceRow>();
  if (seqNames.size > 0) {
    const r = await client.query<SequenceRow & { given: string }>(
      `SELECT x.given, s.seqrelid::regclass::text AS name, format_type(s.seqtypid, NULL) AS type,
         s.seqstart::text AS start, s.seqincrement::text AS increment, s.seqmin::text AS min,
         s.seqmax::text AS max, s.seqcache::text AS cache, s.seqcycle AS cycle
       FROM unnest($1::text[]) x(given) JOIN pg_sequence s ON s.seqrelid = to_regclass(x.given)`,
      [[...seqNames]],
    );
    for (const row of r.rows) sequences.set(row.given, row);
  }

  return tables.map((t) => {
    const cols = columns.filter((c) => c.rel === t.oid);
    const cons = constraints.filter((c) => c.rel === t.oid);
    const idx = indexes.filter((i) => i.rel === t.oid);
    return buildTable(t, cols, cons, idx, types, sequences, schema);
  });
}

/** The types of `oids` with what they depend on (array elements, domain bases), resolved. */
export async function loadTypes(client: pg.Client, oids: number[]): Promise<Map<number, PgType & { row: TypeRow }>> {
  const rows = new Map<number, TypeRow>();
  let pending = [...new Set(oids)];
  while (pending.length > 0) {
    const r = await client.query<TypeRow>(
      `SELECT t.oid, t.typtype, t.typelem, t.typbasetype, t.typtypmod, t.typcategory,
         (t.typsend <> 0 AND t.typreceive <> 0) AS has_io, format_type(t.oid, NULL) AS name,
         t.typnotnull, t.typdefault,
         CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_name,
         (SELECT coalesce(json_agg(json_build_object('name', c.conname, 'def', pg_get_constraintdef(c.oid))
                 ORDER BY c.conname), '[]'::json)
          FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c') AS checks,
         CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> bt.typcollation THEN
           (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co
            JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation) END AS collation
       FROM pg_type t LEFT JOIN pg_type bt ON bt.oid = t.typbasetype WHERE t.oid = ANY($1::oid[])`,
      [pending],
    );
    for (const row of r.rows) rows.set(row.oid, row);
    const next = new Set<number>();
    for (const row of r.rows) {
      if (row.typbasetype !== 0 && !rows.has(row.typbasetype)) next.add(row.typbasetype);
      if (row.typelem !== 0 && row.typcategory === "A" && !rows.has(row.typelem)) next.add(row.typelem);
    }
    pending = [...next];
  }
  const enums = [...rows.values()].filter((r) => r.typtype === "e").map((r) => r.oid);
  const labels = new Map<number, string[]>();
  if (enums.length > 0) {
    const r = await client.query<{ typ: number; label: string }>(
      "SELECT enumtypid AS typ, enumlabel AS label FROM pg_enum WHERE enumtypid = ANY($1::oid[]) ORDER BY enumtypid, enumsortorder",
      [enums],
    );
    for (const row of r.rows) labels.set(row.typ, [...(labels.get(row.typ) ?? []), row.label]);
  }
  const out = new Map<number, PgType & { row: TypeRow }>();
  const resolve = (oid: number, typmod: number): PgType => {
    const row = rows.get(oid);
    if (row === undefined) return { kind: "other", typmod };
    if (row.typtype === "d") return resolve(row.typbasetype, row.typtypmod);
    const builtin = BUILTIN_KINDS.get(oid);
    if (builtin) return { kind: builtin, typmod };
    if (row.typtype === "e") return { kind: "enum", typmod, enumLabels: labels.get(oid) ?? [] };
    if (row.typcategory === "A" && row.typelem !== 0)
      return { kind: "array", typmod, element: resolve(row.typelem, typmod) };
    return { kind: "other", typmod };
  };
  for (const [oid, row] of rows) out.set(oid, { ...resolve(oid, -1), row });
  return out;
}

/** True when values of type `oid` can go through binary COPY from one database to another. */
function binarySafe(oid: number, types: Map<number, PgType & { row: TypeRow }>): boolean {
  const t = types.get(oid);
  if (t === undefined || !t.row.has_io) return false;
  const row = t.row;
  if (row.typtype === "d") return binarySafe(row.typbasetype, types);
  if (row.typtype === "e") return true;
  // Array values carry their element type's OID, which only built-in types share.
  if (row.typcategory === "A" && row.typelem !== 0)
    return row.typelem < FIRST_NORMAL_OID && binarySafe(row.typelem, types);
  return oid < FIRST_NORMAL_OID && row.typtype === "b";
}

function buildTable(
  t: { oid: number; name: string },
  cols: ColumnRow[],
  cons: ConstraintRow[],
  idx: (IndexRow & { constraint_index: boolean })[],
  types: Map<number, PgType & { row: TypeRow }>,
  sequences: Map<string, SequenceRow>,
  schema: string,
): TableInfo {
  const columns: ColumnInfo[] = cols.map((c) => {
    const base = types.get(c.typid);
    const type: PgType =
      base === undefined
        ? { kind: "other", typmod: c.typmod }
        : base.row.typtype === "d"
          ? { ...base, typmod: base.typmod }
          : { ...base, typmod: c.typmod, ...(base.element ? { element: { ...base.element, typmod: c.typmod } } : {}) };
    const field = fieldOf(c.name, c.native, type);
    field.nullable = !c.notnull;
    if (c.generated === "s") field.generated = true;
    const nextval = c.default_expr ? NEXTVAL.exec(c.default_expr) : null;
    if (c.identity !== "" || nextval) field.autoIncrement = true;
    const seqName = c.owned_seq ?? (nextval ? (nextval[1] as string).replaceAll("''", "'") : undefined);
    return {
      name: c.name,
      nativeType: c.native,
      type,
      notNull: c.notnull,
      identity: c.identity,
      generated: c.generated === "s",
      sequence: seqName === undefined ? undefined : (sequences.get(seqName)?.name ?? seqName),
      binary: binarySafe(c.typid, types),
      decode: decoderFor(type),
      encode: encoderFor(type, c.name),
      field,
    };
  });
  const byName = new Map(columns.map((c) => [c.name, c]));
  const pk = cons.find((c) => c.type === "p");
  const primaryKey = pk ? [...pk.cols] : [];
  const uniqueKeys = cons.filter((c) => c.type === "u").map((c) => [...c.cols]);
  const uniqueSets: string[][] = [];
  for (const i of idx) {
    if (i.unique && !i.partial && !i.expr && i.cols.every((c) => c !== null)) uniqueSets.push(i.cols as string[]);
  }
  const foreignKeys: ForeignKeySchema[] = cons
    .filter((c) => c.type === "f")
    .map((c) => {
      const fk: ForeignKeySchema = {
        fields: [...c.cols],
        references: { collection: c.ref_table ?? "", fields: [...c.ref_cols] },
      };
      if (c.deltype !== "a" && FK_ACTIONS[c.deltype]) fk.onDelete = FK_ACTIONS[c.deltype];
      if (c.updtype !== "a" && FK_ACTIONS[c.updtype]) fk.onUpdate = FK_ACTIONS[c.updtype];
      return fk;
    });
  const indexes: IndexSchema[] = [];
  for (const i of idx) {
    if (i.constraint_index || i.expr || i.cols.some((c) => c === null)) continue;
    if (i.partial && i.unique) continue; // only `native` can say which rows it covers
    indexes.push({ name: i.name, fields: i.cols as string[], unique: i.unique });
  }

  const ddl = nativeDdl(t.name, cols, columns, cons, idx, types, sequences);
  const collection: CollectionSchema = {
    name: t.name,
    fields: columns.map((c) => ({ ...c.field })),
    primaryKey,
    uniqueKeys,
    foreignKeys,
    indexes,
    native: { engine: "postgres", ddl },
    engine: "postgres",
    namespace: schema,
  };
  return { oid: t.oid, name: t.name, columns, byName, primaryKey, uniqueSets, schema: collection };
}

/** A statement that creates a type unless it exists (concurrent creators included). */
function createTypeOnce(sql: string): string {
  return `DO $ferry$ BEGIN ${sql}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $ferry$`;
}

function sequenceOptions(s: SequenceRow): string {
  return `START WITH ${s.start} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} CACHE ${s.cache}${s.cycle ? " CYCLE" : " NO CYCLE"}`;
}

/**
 * The statements that recreate a table: enum and domain types it uses (created unless they
 * exist), sequences its defaults use, `CREATE TABLE` with defaults, identity, generated
 * expressions, collations, NOT NULL and validated CHECK constraints, `ALTER SEQUENCE … OWNED
 * BY`; then {@link POST_DATA}, then primary key, unique and exclusion constraints, indexes,
 * unvalidated CHECKs and foreign keys. Names are as the catalogs print them with the table's
 * schema on the search path: unqualified within it, so they land in the target's schema.
 */
function nativeDdl(
  table: string,
  rows: ColumnRow[],
  columns: ColumnInfo[],
  cons: ConstraintRow[],
  idx: (IndexRow & { constraint_index: boolean })[],
  types: Map<number, PgType & { row: TypeRow }>,
  sequences: Map<string, SequenceRow>,
): string[] {
  const pre: string[] = [];
  const seenTypes = new Set<number>();
  const addType = (oid: number): void => {
    if (seenTypes.has(oid)) return;
    seenTypes.add(oid);
    const t = types.get(oid);
    if (t === undefined || oid < FIRST_NORMAL_OID) return;
    const row = t.row;
    if (row.typcategory === "A" && row.typelem !== 0) {
      addType(row.typelem);
      return;
    }
    if (row.typtype === "e") {
      const labels = (t.enumLabels ?? []).map(quoteLiteral).join(", ");
      pre.push(createTypeOnce(`CREATE TYPE ${row.name} AS ENUM (${labels})`));
    } else if (row.typtype === "d") {
      addType(row.typbasetype);
      let sql = `CREATE DOMAIN ${row.name} AS ${row.base_name}`;
      if (row.collation) sql += ` COLLATE ${row.collation}`;
      if (row.typdefault !== null) sql += ` DEFAULT ${row.typdefault}`;
      if (row.typnotnull) sql += " NOT NULL";
      for (const check of row.checks) sql += ` CONSTRAINT ${quoteIdent(check.name)} ${check.def}`;
      pre.push(createTypeOnce(sql));
    }
  };
  for (const r of rows) addType(r.typid);

  for (const c of columns) {
    const seq = c.sequence === undefined ? undefined : [...sequences.values()].find((s) => s.name === c.sequence);
    if (c.identity === "" && seq)
      pre.push(`CREATE SEQUENCE IF NOT EXISTS ${seq.name} AS ${seq.type} ${sequenceOptions(seq)}`);
  }

  const defs: string[] = rows.map((r, i) => {
    const c = columns[i] as ColumnInfo;
    let sql = `${quoteIdent(r.name)} ${r.native}`;
    if (r.collation) sql += ` COLLATE ${r.collation}`;
    if (r.generated === "s" && r.default_expr !== null) sql += ` GENERATED ALWAYS AS (${r.default_expr}) STORED`;
    else if (r.identity !== "") {
      const seq = [...sequences.values()].find((s) => s.name === c.sequence);
      sql += ` GENERATED ${r.identity === "a" ? "ALWAYS" : "BY DEFAULT"} AS IDENTITY${seq ? ` (${sequenceOptions(seq)})` : ""}`;
    } else if (r.default_expr !== null) sql += ` DEFAULT ${r.default_expr}`;
    if (r.notnull) sql += " NOT NULL";
    return sql;
  });
  for (const c of cons) {
    if (c.type === "c" && c.validated) defs.push(`CONSTRAINT ${quoteIdent(c.name)} ${c.def}`);
  }
  pre.push(`CREATE TABLE ${quoteIdent(table)} (\n  ${defs.join(",\n  ")}\n)`);
  for (const c of columns) {
    const owned = rows.find((r) => r.name === c.name)?.owned_seq;
    if (c.identity === "" && owned) {
      pre.push(`ALTER SEQUENCE ${owned} OWNED BY ${quoteIdent(table)}.${quoteIdent(c.name)}`);
    }
  }

  const post: string[] = [];
  const add = (c: ConstraintRow) =>
    post.push(`ALTER TABLE ${quoteIdent(table)} ADD CONSTRAINT ${quoteIdent(c.name)} ${c.def}`);
  for (const kind of ["p", "u", "x"]) for (const c of cons) if (c.type === kind) add(c);
  for (const i of idx) if (!i.constraint_index) post.push(i.def);
  for (const c of cons) if (c.type === "c" && !c.validated) add(c);
  for (const c of cons) if (c.type === "f") add(c);
  return [...pre, POST_DATA, ...post];
}

/** Splits `native.ddl` into what prepare runs and what finish runs. */
export function splitNativeDdl(ddl: readonly string[]): { pre: string[]; post: string[] } {
  const at = ddl.indexOf(POST_DATA);
  return at < 0 ? { pre: [...ddl], post: [] } : { pre: ddl.slice(0, at), post: ddl.slice(at + 1) };
}
