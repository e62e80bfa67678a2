/**
 * Reads tables from `information_schema` (a few queries for the whole database, not per
 * table) into {@link TableInfo}: the collection schema plus how to read and write each column.
 */
import type { CollectionSchema, ForeignKeySchema, IndexSchema } from "../../core/schema.js";
import type { ExistingKeys } from "./mysql-ddl.js";
import type { MysqlSession } from "./mysql-session.js";
import { ER, errnoOf, quoteIdent, sqlString } from "./mysql-sql.js";
import { type ColumnRow, columnField } from "./mysql-types.js";
import {
  type ColumnKind,
  type Decoder,
  decoderFor,
  type Encoder,
  encoderFor,
  selectExpression,
} from "./mysql-values.js";

/** Tables of Ferry's own bookkeeping (never listed). */
export const FERRY_PREFIX = "_ferry_";

/** One column: its field, and how values are read from and written to it. */
export interface ColumnInfo {
  name: string;
  field: CollectionSchema["fields"][number];
  kind: ColumnKind;
  /** Turns mysql2's value into a canonical one; undefined when it already is. */
  decode: Decoder | undefined;
  encoder: Encoder;
  generated: boolean;
  /** The column in a SELECT list (FLOAT through a double). */
  select: string;
}

/** One table as the connector reads and writes it. */
export interface TableInfo {
  name: string;
  columns: ColumnInfo[];
  byName: Map<string, ColumnInfo>;
  primaryKey: string[];
  /** Unique keys (without prefix parts), primary key excluded. */
  uniqueKeys: string[][];
  schema: CollectionSchema;
  /** Storage engine (InnoDB, MyISAM, …). */
  engine: string;
  /** Every column can be written by LOAD DATA (no spatial or other unmodelled types). */
  loadable: boolean;
  /**
   * The storage engine undoes a refused statement whole (InnoDB). Tables of other engines
   * (MyISAM, Aria, MEMORY) keep the rows before the refused one, so they are written one
   * row per statement, and a batch is not atomic there.
   */
  transactional: boolean;
}

/** Facts about the server that discovery needs. */
export interface ServerInfo {
  version: string;
  mariadb: boolean;
  /** The server's default sql_mode allows zero dates (no NO_ZERO_DATE). */
  zeroDates: boolean;
  maxAllowedPacket: number;
  localInfile: boolean;
}

/** Reads {@link ServerInfo}. */
export async function serverInfo(s: MysqlSession): Promise<ServerInfo> {
  const [row] = await s.rows<{ version: string; mode: string; packet: number | string; local_infile: number | string }>(
    "SELECT VERSION() AS version, @@GLOBAL.sql_mode AS mode, @@max_allowed_packet AS packet, @@local_infile AS local_infile",
  );
  const version = String(row?.version ?? "");
  const mode = String(row?.mode ?? "").toUpperCase();
  return {
    version,
    mariadb: /mariadb/i.test(version),
    zeroDates: !mode.split(",").includes("NO_ZERO_DATE"),
    maxAllowedPacket: Number(row?.packet ?? 4 * 1024 * 1024),
    localInfile: Number(row?.local_infile ?? 0) === 1,
  };
}

const text = (v: unknown): string => (v instanceof Uint8Array ? Buffer.from(v).toString("utf8") : String(v ?? ""));

interface TableRow {
  t: string;
  engine: string | null;
}
interface IndexRow {
  t: string;
  name: string;
  nonUnique: number | string;
  col: string | null;
  type: string;
  subPart: number | string | null;
}
interface ForeignKeyRow {
  t: string;
  name: string;
  col: string;
  refSchema: string;
  refTable: string;
  refCol: string;
  onUpdate: string;
  onDelete: string;
}

/** Options of {@link describeTables}. */
export interface DescribeOptions {
  /** Only this table. Default all base tables (except `_ferry_*`). */
  table?: string;
  /** Include `SHOW CREATE TABLE` as `native`. Default true. */
  native?: boolean;
}

/**
 * Describes the base tables of `database` (system-versioned ones too), in name order.
 * Secondary indexes are those that are plain column lists; full-text, spatial, prefix and
 * functional ones live only in `native`.
 */
export async function describeTables(
  s: MysqlSession,
  database: string,
  server: ServerInfo,
  options: DescribeOptions = {},
): Promise<TableInfo[]> {
  const db = sqlString(database);
  const only = options.table === undefined ? "" : ` AND TABLE_NAME = ${sqlString(options.table)}`;
  const tables = (
    await s.rows<TableRow>(
      `SELECT TABLE_NAME AS t, ENGINE AS engine FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${db}${only} AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME`,
    )
  ).filter((t) => options.table !== undefined || !text(t.t).startsWith(FERRY_PREFIX));
  if (tables.length === 0) return [];
  const columns = await s.rows<ColumnRow>(
    `SELECT TABLE_NAME AS \`table\`, COLUMN_NAME AS name, IS_NULLABLE AS nullable, DATA_TYPE AS dataType, COLUMN_TYPE AS columnType, CHARACTER_MAXIMUM_LENGTH AS maxLength, NUMERIC_PRECISION AS numPrecision, NUMERIC_SCALE AS numScale, DATETIME_PRECISION AS dtPrecision, CHARACTER_SET_NAME AS charset, EXTRA AS extra FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ${db}${only} ORDER BY TABLE_NAME, ORDINAL_POSITION`,
  );
  const indexRows = await s.rows<IndexRow>(
    `SELECT TABLE_NAME AS t, INDEX_NAME AS name, NON_UNIQUE AS nonUnique, COLUMN_NAME AS col, INDEX_TYPE AS type, SUB_PART AS subPart FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ${db}${only} ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
  );
  const fkRows = await s.rows<ForeignKeyRow>(
    `SELECT k.TABLE_NAME AS t, k.CONSTRAINT_NAME AS name, k.COLUMN_NAME AS col, k.REFERENCED_TABLE_SCHEMA AS refSchema, k.REFERENCED_TABLE_NAME AS refTable, k.REFERENCED_COLUMN_NAME AS refCol, r.UPDATE_RULE AS onUpdate, r.DELETE_RULE AS onDelete FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME WHERE k.TABLE_SCHEMA = ${db}${only.replace("TABLE_NAME", "k.TABLE_NAME")} AND k.REFERENCED_TABLE_NAME IS NOT NULL ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION`,
  );
  // MariaDB's JSON is LONGTEXT with a json_valid() CHECK constraint.
  const jsonColumns = new Set<string>();
  if (server.mariadb) {
    try {
      const checks = await s.rows<{ t: string; clause: unknown }>(
        `SELECT TABLE_NAME AS t, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ${db}${only}`,
      );
      for (const c of checks) {
        const m = /^json_valid\(`((?:[^`]|``)+)`\)$/i.exec(text(c.clause).trim());
        if (m) jsonColumns.add(`${text(c.t)}\0${(m[1] as string).replaceAll("``", "`")}`);
      }
    } catch (err) {
      if (errnoOf(err) !== 1109) throw err; // Unknown table (servers before CHECK constraints)
    }
  }

  const out: TableInfo[] = [];
  for (const t of tables) {
    const name = text(t.t);
    const cols: ColumnInfo[] = columns
      .filter((c) => text(c.table) === name)
      .map((row) => {
        const c: ColumnRow = {
          ...row,
          name: text(row.name),
          dataType: text(row.dataType),
          columnType: text(row.columnType),
          extra: text(row.extra),
          nullable: text(row.nullable),
          charset: row.charset === null ? null : text(row.charset),
        };
        const { field, kind } = columnField(c, {
          json: jsonColumns.has(`${name}\0${c.name}`),
          zeroDates: server.zeroDates,
        });
        const quoted = quoteIdent(c.name);
        return {
          name: c.name,
          field,
          kind,
          decode: decoderFor(kind),
          encoder: encoderFor(kind, c.name),
          generated: field.generated === true,
          select: selectExpression(kind, quoted),
        };
      });
    const primaryKey: string[] = [];
    const uniqueKeys: string[][] = [];
    const indexes: IndexSchema[] = [];
    const mine = indexRows.filter((r) => text(r.t) === name);
    for (const ixName of [...new Set(mine.map((r) => text(r.name)))]) {
      const parts = mine.filter((r) => text(r.name) === ixName);
      const fields = parts.map((p) => (p.col === null ? null : text(p.col)));
      const plain =
        fields.every((f): f is string => f !== null) &&
        parts.every((p) => p.subPart === null) &&
        /^(BTREE|HASH)$/i.test(text(parts[0]?.type));
      const unique = Number(parts[0]?.nonUnique) === 0;
      if (ixName === "PRIMARY") primaryKey.push(...(fields as string[]));
      else if (!plain) continue;
      else if (unique) uniqueKeys.push(fields as string[]);
      else indexes.push({ name: ixName, fields: fields as string[], unique: false });
    }
    const foreignKeys: ForeignKeySchema[] = [];
    const fkMine = fkRows.filter((r) => text(r.t) === name && text(r.refSchema) === database);
    for (const fkName of [...new Set(fkMine.map((r) => text(r.name)))]) {
      const parts = fkMine.filter((r) => text(r.name) === fkName);
      const first = parts[0] as ForeignKeyRow;
      foreignKeys.push({
        fields: parts.map((p) => text(p.col)),
        references: { collection: text(first.refTable), fields: parts.map((p) => text(p.refCol)) },
        onDelete: text(first.onDelete),
        onUpdate: text(first.onUpdate),
      });
    }
    const schema: CollectionSchema = {
      name,
      fields: cols.map((c) => c.field),
      primaryKey,
      uniqueKeys,
      foreignKeys,
      indexes,
      engine: "mysql",
      namespace: database,
    };
    if (options.native !== false) {
      const [row] = await s.rows<unknown[]>(`SHOW CREATE TABLE ${quoteIdent(database)}.${quoteIdent(name)}`, {
        rowsAsArray: true,
      });
      schema.native = { engine: "mysql", ddl: [text(row?.[1])] };
    }
    out.push({
      name,
      columns: cols,
      byName: new Map(cols.map((c) => [c.name, c])),
      primaryKey,
      uniqueKeys,
      schema,
      engine: text(t.engine),
      loadable: cols.every((c) => c.generated || c.kind !== "other"),
      transactional: /^(innodb|xtradb|rocksdb|tokudb|ndbcluster)$/i.test(text(t.engine)),
    });
  }
  return out;
}

/** The keys a table has now (see {@link ExistingKeys}), for `finish` to add only the missing ones. */
export async function existingKeys(s: MysqlSession, database: string, table: string): Promise<ExistingKeys> {
  const db = sqlString(database);
  const t = sqlString(table);
  const stats = await s.rows<IndexRow>(
    `SELECT TABLE_NAME AS t, INDEX_NAME AS name, NON_UNIQUE AS nonUnique, COLUMN_NAME AS col, INDEX_TYPE AS type, SUB_PART AS subPart FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ${db} AND TABLE_NAME = ${t} ORDER BY INDEX_NAME, SEQ_IN_INDEX`,
  );
  const fks = await s.rows<{ name: string; col: string }>(
    `SELECT CONSTRAINT_NAME AS name, COLUMN_NAME AS col FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ${db} AND TABLE_NAME = ${t} AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION`,
  );
  const tables = await s.rows<{ t: string }>(
    `SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${db}`,
  );
  const indexNames = new Set(stats.map((r) => text(r.name)));
  const uniqueColumns = new Set<string>();
  for (const name of indexNames) {
    const parts = stats.filter((r) => text(r.name) === name);
    if (Number(parts[0]?.nonUnique) === 0) uniqueColumns.add(parts.map((p) => text(p.col)).join("\0"));
  }
  const foreignKeyColumns = new Set<string>();
  for (const name of new Set(fks.map((r) => text(r.name)))) {
    foreignKeyColumns.add(
      fks
        .filter((r) => text(r.name) === name)
        .map((r) => text(r.col))
        .join("\0"),
    );
  }
  return { indexNames, uniqueColumns, foreignKeyColumns, tables: new Set(tables.map((r) => text(r.t))) };
}

/** True for errors that mean "no such table/database" (a target that does not exist yet). */
export function isMissingObject(err: unknown): boolean {
  const n = errnoOf(err);
  return n === ER.NO_SUCH_TABLE || n === ER.BAD_DB || n === ER.BAD_TABLE;
}
