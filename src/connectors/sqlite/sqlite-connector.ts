/**
 * The SQLite connector (better-sqlite3): `sqlite:PATH` instances, read in primary-key order
 * by keyset pagination, written with explicit INSERT/UPDATE statements in one transaction
 * per batch, with the run journal in `_ferry_journal` (and an import's undo log in `_ferry_undo`).
 */
import { accessSync, constants, existsSync, mkdirSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import type {
  BulkTransfer,
  Checkpoint,
  Connector,
  ConnectorFactory,
  ConnectorOptions,
  JournalStore,
  PrepareResult,
  ReadBatch,
  ReadOptions,
  WriteFailure,
  WriteOp,
  WriteResult,
} from "../../core/connector.js";
import { FerryError, isFerryError } from "../../core/errors.js";
import type { Bookmark } from "../../core/messages.js";
import type { CollectionSchema, FieldSchema } from "../../core/schema.js";
import { redactUrl } from "../../core/url.js";
import {
  decodeValue,
  encodeValue,
  type JsonValue,
  keyString,
  normaliseInteger,
  type Row,
  setField,
  type Value,
} from "../../core/values.js";
import { createIndexSql, createTableSql } from "./sqlite-ddl.js";
import {
  describeTable,
  type KeyTerm,
  listTables,
  type Reference,
  readTableInfo,
  referencesTo,
  type TableInfo,
} from "./sqlite-introspect.js";
import { journalParams, journalUpsert, SqliteJournal, undoInsert, undoParams, withoutUndo } from "./sqlite-journal.js";
import { messageOf, quoteIdent, sqliteCode } from "./sqlite-sql.js";
import { type BindMode, fromSqliteJson, sqliteFieldFor, toSqlite } from "./sqlite-types.js";
import { parseSqliteUrl } from "./sqlite-url.js";

/** SQLite's limit on `?` parameters per statement in better-sqlite3 12 (SQLITE_MAX_VARIABLE_NUMBER). */
const MAX_VARIABLES = 32_766;
/** Keys per lookup query, at most. */
const LOOKUP_CHUNK = 1000;
/** Prepared statements kept per table before the cache is dropped (field lists vary little). */
const MAX_CACHED_STATEMENTS = 256;
/** Schema name of a source attached for the bulk path. */
const ATTACHED = "ferry_source";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

let memoryDatabases = 0;

/** Rows per multi-row INSERT (fewer when the fields would pass the variable limit). */
const ROWS_PER_INSERT = 50;
/** Records per DELETE statement (fewer when the match fields would pass the variable limit). */
const KEYS_PER_DELETE = 500;

/** The fields an op writes (its record's, less generated and undefined ones) and how each binds. */
interface Shape {
  names: string[];
  modes: BindMode[];
  /** `names` joined, for statement caches. */
  key: string;
}

/** The shape of `record`; `previous` itself when the record has the same fields (the usual case). */
function shapeOf(info: TableInfo, record: Row, previous: Shape | undefined): Shape {
  const skip = (name: string): boolean =>
    record[name] === undefined || (info.hasGenerated && info.byName.get(name)?.generated === true);
  if (previous !== undefined) {
    const prior = previous.names;
    let k = 0;
    let same = true;
    for (const name in record) {
      if (skip(name)) continue;
      if (prior[k] !== name) {
        same = false;
        break;
      }
      k++;
    }
    if (same && k === prior.length) return previous;
  }
  const names: string[] = [];
  const modes: BindMode[] = [];
  for (const name in record) {
    if (skip(name)) continue;
    names.push(name);
    // An unknown column binds like an untyped one; SQLite then refuses it by name.
    modes.push(info.byName.get(name)?.bind ?? "exact-integers");
  }
  return { names, modes, key: names.join("\u0001") };
}

/** The shape of a delete, which writes no fields. */
const NO_FIELDS: Shape = { names: [], modes: [], key: "" };

/** A replace or update whose `match` found no record (or an op without match fields): nothing was written for it. */
class NoMatchError extends Error {}

/** A delete of a record that a foreign key still references. */
class ReferencedError extends Error {}

/**
 * The values of `match` for `names`, bound as their columns bind: how replace, update and
 * delete all match a record.
 */
function matchValues(info: TableInfo, match: Record<string, Value>, names: string[]): unknown[] {
  return names.map((m) => toSqlite(match[m] as Value, info.byName.get(m)?.bind ?? "exact-integers"));
}

/**
 * `names` (of alias `alias`, when given) among `n` tuples of parameters: `k IN (?, ?)` or
 * `(k1, k2) IN (VALUES (?, ?), (?, ?))`.
 */
function keysIn(names: string[], n: number, alias?: string): string {
  const cols = names.map((m) => (alias === undefined ? quoteIdent(m) : `${alias}.${quoteIdent(m)}`));
  if (cols.length === 1) return `${cols[0]} IN (${Array.from({ length: n }, () => "?").join(", ")})`;
  const tuple = `(${cols.map(() => "?").join(", ")})`;
  return `(${cols.join(", ")}) IN (VALUES ${Array.from({ length: n }, () => tuple).join(", ")})`;
}

/**
 * Opens `sqlite:` instances.
 *
 * @example
 * const target = await sqliteFactory.open("sqlite:./copy.db", { write: true });
 */
export const sqliteFactory: ConnectorFactory = {
  schemes: ["sqlite"],
  usage: "sqlite:PATH",
  engine: "sqlite",
  mapField: sqliteFieldFor,
  async open(url: string, options: ConnectorOptions): Promise<Connector> {
    return SqliteConnector.open(url, options);
  },
};

/**
 * A SQLite database as a Ferry instance.
 *
 * - A source (`write` falsy) must exist and is opened read-only; nothing is ever written to it.
 * - A target's file (and parent directories) is created on the first write, so a target that
 *   is only looked at (dry run, status) is left untouched. While writing, the database runs
 *   in WAL mode with `synchronous = NORMAL` (each committed batch survives a killed process);
 *   `close()` puts back the journal mode it had. That mode is kept in table `_ferry_sqlite`
 *   meanwhile, so the connector that resumes a killed run restores it too.
 * - Foreign keys are not enforced on the connection Ferry writes with (`PRAGMA foreign_keys
 *   = OFF`, as `sqlite3 .dump` output does), so data is copied exactly as it is: a subset of
 *   collections can go into a new database (SQLite cannot even prepare an INSERT into a child
 *   whose parent table is missing while enforcing), self-referencing tables and reference
 *   cycles load across batches, and orphans the source already holds (enforcement is opt-in
 *   per connection in SQLite) are kept rather than refused. Check integrity afterwards with
 *   `PRAGMA foreign_key_check`. Cascades do not fire either: a replace only changes a
 *   referenced key when the record says so, and a delete of a record that a foreign key
 *   still references is refused (Ferry checks that itself; see {@link write}).
 * - Integers are read as canonical integers (`number`, or `bigint` beyond 2^53), BLOBs as
 *   `Buffer`s, and 0/1 in BOOLEAN-typed columns as booleans; everything else as stored
 *   (dates and JSON stay the text SQLite holds, so a copy is byte-for-byte).
 */
export class SqliteConnector implements Connector, BulkTransfer {
  readonly engine = "sqlite";

  /** See {@link Connector.mapField}: {@link sqliteFieldFor}. */
  mapField(field: FieldSchema, collection: CollectionSchema): FieldSchema {
    return sqliteFieldFor(field, collection);
  }
  readonly displayUrl: string;
  readonly identity: string;
  /** Absolute path of the database file, or `:memory:`. */
  readonly path: string;

  readonly #memory: boolean;
  readonly #forWrite: boolean;
  #db: Database.Database | undefined;
  #closed = false;
  readonly #tables = new Map<string, TableInfo>();
  /** Per table, the foreign keys that reference it (known after its first delete). */
  readonly #references = new Map<string, Reference[]>();
  readonly #journal: SqliteJournal;
  #writeReady = false;
  /** The journal mode to restore on close, when this connector switched it to WAL. */
  #restoreJournalMode: string | undefined;
  #txn: Database.Transaction<(fn: () => unknown) => unknown> | undefined;
  #checkpointUpsert: Database.Statement | undefined;
  /** The insert of an undo row into `_ferry_undo` (prepared when a checkpoint first carries `undo`). */
  #undoInsert: Database.Statement | undefined;
  /** Path of the source attached for the bulk path, if any. */
  #attached: string | undefined;
  /** Whether this SQLite has the `dbstat` virtual table (known after the first {@link size}). */
  #dbstat: boolean | undefined;

  private constructor(url: string, options: ConnectorOptions) {
    const location = parseSqliteUrl(url);
    this.displayUrl = redactUrl(url);
    this.#memory = location.memory;
    this.#forWrite = options.write === true;
    this.path = location.memory ? ":memory:" : resolve(location.path);
    memoryDatabases += location.memory ? 1 : 0;
    this.identity = location.memory ? `sqlite::memory:#${memoryDatabases}` : identityOf(this.path);
    this.#journal = new SqliteJournal({
      readable: () => this.#readable(),
      writable: () => this.#writable(),
      existingWritable: () => this.#existingWritable(),
    });
  }

  /**
   * Opens a connector for `url` (see {@link sqliteFactory}).
   *
   * @throws FerryError `E_CONFIG` for a malformed URL; `E_CONNECTION` when a source does not
   * exist, or the file is not a SQLite database or cannot be opened.
   */
  static async open(url: string, options: ConnectorOptions = {}): Promise<SqliteConnector> {
    const c = new SqliteConnector(url, options);
    c.#openExisting();
    return c;
  }

  #openExisting(): void {
    if (this.#memory) {
      this.#db = this.#connect({});
      return;
    }
    const exists = existsSync(this.path);
    if (exists && statSync(this.path).isDirectory()) {
      throw new FerryError("E_CONNECTION", `sqlite database path is a directory: ${this.path}: name a database file`);
    }
    if (!this.#forWrite) {
      if (!exists) {
        throw new FerryError(
          "E_CONNECTION",
          `sqlite database not found: ${this.path}: check the path (a source must exist; relative paths start at ${process.cwd()})`,
          { details: { path: this.path, missing: true } },
        );
      }
      this.#db = this.#connect({ readonly: true, fileMustExist: true });
    } else if (exists) {
      this.#db = this.#connect({});
    }
  }

  #connect(options: Database.Options): Database.Database {
    let db: Database.Database;
    try {
      db = new Database(this.path, options);
    } catch (cause) {
      throw new FerryError(
        "E_CONNECTION",
        `cannot open sqlite database ${this.path}: ${messageOf(cause)}: check that the file is readable${options.readonly ? "" : " and writable"}`,
        { cause, details: { path: this.path } },
      );
    }
    try {
      db.defaultSafeIntegers(true);
      // Opening is lazy: the header is only read by the first query.
      db.prepare("SELECT count(*) FROM sqlite_master").get();
    } catch (cause) {
      db.close();
      throw this.#connectionError(cause);
    }
    return db;
  }

  #connectionError(cause: unknown): FerryError {
    const code = sqliteCode(cause);
    const message =
      code === "SQLITE_NOTADB"
        ? `not a SQLite database: ${this.path}: point at a SQLite 3 database file (encrypted databases are not supported)`
        : `cannot read sqlite database ${this.path}: ${messageOf(cause)}: check the file and its permissions`;
    return new FerryError("E_CONNECTION", message, { cause, details: { path: this.path, sqliteCode: code } });
  }

  #readable(): Database.Database | undefined {
    if (this.#closed) throw new FerryError("E_INTERNAL", `sqlite connector for ${this.path} used after close()`);
    return this.#db;
  }

  /** The database for writing: created on first use, switched to WAL once. */
  #writable(): Database.Database {
    if (this.#closed) throw new FerryError("E_INTERNAL", `sqlite connector for ${this.path} used after close()`);
    if (!this.#forWrite && !this.#memory) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `sqlite database ${this.path} is open read-only as a source: open it as the target ({ write: true }) to write to it`,
      );
    }
    if (this.#db === undefined) {
      try {
        mkdirSync(dirname(this.path), { recursive: true });
      } catch (cause) {
        throw new FerryError(
          "E_CONNECTION",
          `cannot create the directory of sqlite database ${this.path}: ${messageOf(cause)}: check the path and permissions`,
          { cause },
        );
      }
      this.#db = this.#connect({});
    }
    const db = this.#db;
    if (!this.#writeReady) {
      try {
        const mode = String(db.pragma("journal_mode", { simple: true })).toLowerCase();
        if (mode === "wal") {
          // WAL already: the user's choice, or left by a run that was killed (it saved the mode to go back to).
          this.#restoreJournalMode = savedJournalMode(db);
        } else if (JOURNAL_MODES.has(mode)) {
          // Saved first, so a run killed from here on still knows what to restore.
          saveJournalMode(db, mode);
          const now = String(db.pragma("journal_mode = WAL", { simple: true })).toLowerCase();
          if (now === "wal") this.#restoreJournalMode = mode;
          else forgetJournalMode(db);
        }
        db.pragma("synchronous = NORMAL");
        // Per connection, like `sqlite3 .dump` output: see the class comment.
        db.pragma("foreign_keys = OFF");
      } catch (cause) {
        throw writeError(cause, this.path, "prepare the database for writing");
      }
      this.#writeReady = true;
    }
    return db;
  }

  /**
   * The database for writing when it exists; undefined for a target whose file has not been
   * created yet (nothing to change there).
   *
   * @throws FerryError `E_UNSUPPORTED` on a source.
   */
  #existingWritable(): Database.Database | undefined {
    if (this.#db === undefined && !this.#closed && this.#forWrite) return undefined;
    return this.#writable();
  }

  /** The cached description of a table, or undefined when it does not exist. */
  #table(db: Database.Database, name: string): TableInfo | undefined {
    let info = this.#tables.get(name);
    if (info === undefined) {
      info = readTableInfo(db, name);
      if (info !== undefined) this.#tables.set(name, info);
    }
    return info;
  }

  #requireTable(db: Database.Database | undefined, name: string): TableInfo {
    const info = db === undefined ? undefined : this.#table(db, name);
    if (info === undefined) {
      throw new FerryError("E_NOT_FOUND", `table not found: ${name} in ${this.displayUrl}: check the collection name`, {
        details: { collection: name },
      });
    }
    return info;
  }

  /** Drops cached table descriptions (and their statements) after DDL. */
  #forgetTables(): void {
    this.#tables.clear();
    this.#references.clear();
  }

  #transaction<T>(db: Database.Database, fn: () => T): T {
    this.#txn ??= db.transaction((f: () => unknown) => f());
    return this.#txn.immediate(fn) as T;
  }

  #statement(db: Database.Database, info: TableInfo, key: string, sql: () => string): Database.Statement {
    let stmt = info.statements.get(key);
    if (stmt === undefined) {
      if (info.statements.size >= MAX_CACHED_STATEMENTS) info.statements.clear();
      stmt = db.prepare(sql());
      info.statements.set(key, stmt);
    }
    return stmt;
  }

  async version(): Promise<string> {
    const db = new Database(":memory:");
    try {
      return `SQLite ${String((db.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v)}`;
    } finally {
      db.close();
    }
  }

  async check(): Promise<void> {
    const db = this.#readable();
    if (db !== undefined) {
      try {
        db.prepare("SELECT count(*) FROM sqlite_master").get();
      } catch (cause) {
        throw this.#connectionError(cause);
      }
      return;
    }
    // A target that does not exist yet: its directory must be creatable.
    let dir = dirname(this.path);
    while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
    try {
      if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
      accessSync(dir, constants.W_OK);
    } catch (cause) {
      throw new FerryError(
        "E_CONNECTION",
        `cannot create sqlite database ${this.path}: ${messageOf(cause)}: choose a path in a writable directory`,
        { cause },
      );
    }
  }

  async discover(): Promise<CollectionSchema[]> {
    const db = this.#readable();
    if (db === undefined) return [];
    this.#forgetTables();
    return listTables(db).map((name) => describeTable(db, this.#requireTable(db, name)));
  }

  async count(collection: CollectionSchema): Promise<number | undefined> {
    const db = this.#readable();
    const info = this.#requireTable(db, collection.name);
    const n = (db as Database.Database)
      .prepare(`SELECT count(*) FROM ${quoteIdent(info.name)}`)
      .pluck()
      .get() as bigint;
    return Number(n);
  }

  /**
   * Bytes of the pages the table and its indexes take in the database file (the `dbstat`
   * virtual table's `pgsize`, summed over each b-tree), or undefined when this SQLite was
   * built without `dbstat` (better-sqlite3 builds it in).
   */
  async size(collection: CollectionSchema): Promise<number | undefined> {
    const db = this.#readable() as Database.Database;
    const info = this.#requireTable(db, collection.name);
    if (this.#dbstat === undefined) {
      try {
        db.prepare("SELECT * FROM dbstat LIMIT 1").get();
        this.#dbstat = true;
      } catch {
        this.#dbstat = false;
      }
    }
    if (!this.#dbstat) return undefined;
    // The table's b-tree and its indexes' (automatic ones too); a b-tree at a time, so
    // dbstat walks only their pages.
    const trees = db
      .prepare("SELECT name FROM sqlite_master WHERE tbl_name = ? AND rootpage > 0")
      .pluck()
      .all(info.name) as string[];
    const pages = db.prepare("SELECT sum(pgsize) FROM dbstat WHERE name = ? AND aggregate = TRUE").pluck();
    let bytes = 0;
    for (const tree of trees) bytes += Number((pages.get(tree) as bigint | null) ?? 0);
    return bytes;
  }

  async *read(collection: CollectionSchema, options: ReadOptions): AsyncIterable<ReadBatch> {
    const db = this.#readable() as Database.Database;
    const info = this.#requireTable(db, collection.name);
    const key = info.readKey;
    if (key === undefined) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `cannot read table ${info.name} in order: it has no primary key and columns named rowid, _rowid_ and oid hide its rowid: add a primary key`,
      );
    }
    const names = options.fields ?? collection.fields.map((f) => f.name);
    const columns = names.map((n) => {
      const col = info.byName.get(n);
      if (col === undefined) {
        throw new FerryError("E_NOT_FOUND", `no column ${n} in table ${info.name}: check the field name`, {
          details: { collection: info.name, field: n },
        });
      }
      return col;
    });
    // The key terms are selected too (after the fields) when the fields do not include them.
    const select = names.map(quoteIdent);
    const keyAt = key.map((k) => {
      const i = k.rowid ? -1 : names.indexOf(k.name);
      if (i >= 0) return i;
      select.push(k.sql);
      return select.length - 1;
    });
    const from = `SELECT ${select.join(", ")} FROM ${quoteIdent(info.name)}`;
    const order = key.map((k) => k.sql).join(", ");
    const tuple = key.length === 1 ? order : `(${order})`;
    const params = key.length === 1 ? "?" : `(${key.map(() => "?").join(", ")})`;
    const firstSql = `${from} ORDER BY ${order} LIMIT ?`;
    const nextSql = `${from} WHERE ${tuple} > ${params} ORDER BY ${order} LIMIT ?`;
    // Integers are read as doubles (no bigint per value); a batch holding a number beyond
    // 2^53 is read again with 64-bit integers, so big integers come back exact.
    const fast = {
      first: db.prepare(firstSql).raw(true).safeIntegers(false),
      next: db.prepare(nextSql).raw(true).safeIntegers(false),
    };
    let exact: typeof fast | undefined;
    const batchSize = Math.max(1, Math.floor(options.batchSize));
    const isBoolean = columns.map((c) => c.field.type === "boolean");
    const isJson = columns.map((c) => c.field.type === "json");
    const readers = columns.map((c) => c.read);
    const width = names.length;
    // A field may be called __proto__; plain assignment would set the prototype instead.
    const hasProto = names.includes("__proto__");

    const fetch = (stmts: typeof fast, after: Value[] | undefined): unknown[][] => {
      if (after === undefined) return stmts.first.all(batchSize) as unknown[][];
      if (after.some((v) => v === null)) return afterNulls(db, from, order, key, after, batchSize, stmts === fast);
      return stmts.next.all(...after.map((v) => toSqlite(v, "exact-integers")), batchSize) as unknown[][];
    };

    let after = options.after === undefined ? undefined : decodeBookmark(options.after, info, key);
    for (;;) {
      let rows = fetch(fast, after);
      if (rows.length === 0) return;
      let records: Row[] = new Array(rows.length);
      let unsafe = false;
      for (let r = 0; r < rows.length; r++) {
        const raw = rows[r] as unknown[];
        const rec: Row = {};
        for (let j = 0; j < width; j++) {
          let v = raw[j];
          if (typeof v === "number") {
            if ((v > MAX_SAFE || v < -MAX_SAFE) && v !== Number.POSITIVE_INFINITY && v !== Number.NEGATIVE_INFINITY) {
              unsafe = true;
            } else if (isBoolean[j] && (v === 0 || v === 1)) v = v === 1;
          } else if (isJson[j] && typeof v === "string") v = fromSqliteJson(v);
          if (hasProto) setField(rec, names[j] as string, v as Value);
          else rec[names[j] as string] = v as Value;
        }
        records[r] = rec;
      }
      if (unsafe) {
        exact ??= {
          first: db.prepare(firstSql).raw(true).safeIntegers(true),
          next: db.prepare(nextSql).raw(true).safeIntegers(true),
        };
        rows = fetch(exact, after);
        if (rows.length === 0) return; // deleted meanwhile by another connection
        records = rows.map((raw) => {
          const rec: Row = {};
          for (let j = 0; j < width; j++)
            setField(rec, names[j] as string, (readers[j] as (v: unknown) => Value)(raw[j]));
          return rec;
        });
      }
      const last = rows[rows.length - 1] as unknown[];
      const previous = after;
      after = keyAt.map((i) => (typeof last[i] === "bigint" ? normaliseInteger(last[i]) : (last[i] as Value)));
      if (previous !== undefined && keyString(previous) === keyString(after)) {
        // Never loop forever on a key the ordering cannot get past.
        throw new FerryError("E_INTERNAL", `reading ${info.name} made no progress past a key: a bug in Ferry`);
      }
      yield { records, bookmark: { after: after.map(encodeValue) } };
      if (rows.length < batchSize) return;
    }
  }

  async prepare(collection: CollectionSchema): Promise<PrepareResult> {
    const db = this.#writable();
    const existing = this.#table(db, collection.name);
    if (existing !== undefined) return { schema: describeTable(db, existing), created: false };
    const native = collection.native?.engine === "sqlite" ? collection.native.ddl[0] : undefined;
    const fromNative = native !== undefined && this.#createFromNative(db, collection, native);
    if (!fromNative) {
      if (collection.fields.length === 0) {
        throw new FerryError("E_UNSUPPORTED", `cannot create table ${collection.name}: its schema has no fields`);
      }
      try {
        db.exec(createTableSql(collection));
      } catch (cause) {
        throw new FerryError("E_WRITE", `cannot create table ${collection.name}: ${messageOf(cause)}`, { cause });
      }
    }
    this.#forgetTables();
    return { schema: describeTable(db, this.#requireTable(db, collection.name)), created: true };
  }

  /**
   * Runs the source's own `CREATE TABLE`, which reproduces CHECK, DEFAULT, COLLATE, STRICT
   * and WITHOUT ROWID exactly. It is undone (and the table generated from the fields
   * instead) when it is not one CREATE TABLE statement or creates a table of another name
   * or other columns, as after a transform renamed things.
   */
  #createFromNative(db: Database.Database, collection: CollectionSchema, ddl: string): boolean {
    if (!/^\s*CREATE\s+TABLE\s/i.test(ddl)) return false;
    try {
      return this.#transaction(db, () => {
        db.prepare(ddl).run();
        const info = readTableInfo(db, collection.name);
        const wanted = new Set(collection.fields.map((f) => f.name));
        const fits =
          info !== undefined && info.columns.length === wanted.size && info.columns.every((c) => wanted.has(c.name));
        if (!fits) throw new Error("native definition does not fit the collection");
        return true;
      });
    } catch {
      return false;
    }
  }

  async lookup(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, Row>> {
    const out = new Map<string, Row>();
    const db = this.#readable();
    if (db === undefined || keys.length === 0 || fields.length === 0) return out;
    const info = this.#table(db, collection.name);
    if (info === undefined) return out; // a table that does not exist holds no keys
    const modes: BindMode[] = fields.map((f) => info.byName.get(f)?.bind ?? "exact-integers");
    const columns = info.columns;
    const chunk = Math.max(1, Math.min(LOOKUP_CHUNK, Math.floor((MAX_VARIABLES - 1) / fields.length)));
    for (let start = 0; start < keys.length; start += chunk) {
      const part = keys.slice(start, start + chunk);
      const stmt = this.#lookupStatement(db, info, fields, part.length);
      let rows: unknown[][];
      try {
        const params: unknown[] = [];
        for (const k of part) for (let j = 0; j < fields.length; j++) params.push(toSqlite(k[j], modes[j] as BindMode));
        rows = stmt.all(params) as unknown[][];
      } catch (cause) {
        throw new FerryError("E_INTERNAL", `lookup in ${info.name} failed: ${messageOf(cause)}`, { cause });
      }
      for (const row of rows) {
        const rec: Row = {};
        for (let c = 0; c < columns.length; c++) {
          const col = columns[c] as (typeof columns)[number];
          setField(rec, col.name, col.read(row[c + 1]));
        }
        out.set(keyString(part[Number(row[0])] as Value[]), rec);
      }
    }
    return out;
  }

  #lookupStatement(db: Database.Database, info: TableInfo, fields: string[], n: number): Database.Statement {
    return this.#statement(db, info, `lookup\u0001${n}\u0001${fields.join("\u0001")}`, () => {
      for (const f of fields) {
        if (!info.byName.has(f)) {
          throw new FerryError("E_NOT_FOUND", `no column ${f} in table ${info.name}: check the key fields`, {
            details: { collection: info.name, field: f },
          });
        }
      }
      const holes = `, ${fields.map(() => "?").join(", ")}`;
      const values = Array.from({ length: n }, (_, i) => `(${i}${holes})`).join(", ");
      const kcols = fields.map((_, j) => `k${j}`).join(", ");
      const cols = info.columns.map((c) => `t.${quoteIdent(c.name)}`).join(", ");
      const on = fields.map((f, j) => `t.${quoteIdent(f)} = k.k${j}`).join(" AND ");
      return `WITH _ferry_keys(i, ${kcols}) AS (VALUES ${values})
        SELECT k.i, ${cols} FROM _ferry_keys AS k JOIN ${quoteIdent(info.name)} AS t ON ${on}`;
    }).raw(true);
  }

  /**
   * Applies `ops` in one transaction, with `checkpoint` saved in the same transaction, and
   * the checkpoint's undo row (when its `undo` returns one) in `_ferry_undo`, also in it.
   *
   * A refused op (UNIQUE, NOT NULL, CHECK, a STRICT type, an unknown column, a replace or
   * update that matches nothing) becomes a failure: SQLite undoes just that statement and
   * the rest of the batch applies. Foreign keys are not enforced while Ferry writes (see
   * {@link SqliteConnector}), so the order of records and collections does not matter.
   *
   * Deletes go by runs in one `DELETE … WHERE key IN (…)` per 500 records; a delete whose
   * record is not there is no failure. Since the connection does not enforce foreign keys,
   * Ferry checks the ones that reference the table first (one query per foreign key and
   * statement): a record another record still references is refused with
   * `FOREIGN KEY constraint failed: <table> (<columns>) still references the record`,
   * whatever the key's ON DELETE action (it is not applied), and the others are deleted. A
   * statement refused whole (a reference, a trigger's RAISE(ABORT)) is redone record by
   * record to name the refused ones.
   *
   * @throws FerryError `E_LOCKED` when another process holds the database, `E_WRITE` when the
   * transaction itself fails (disk full, I/O, a trigger's RAISE(ROLLBACK)): then nothing of
   * the batch, and not the checkpoint, was written.
   */
  async write(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult> {
    const db = this.#writable();
    const info = this.#requireTable(db, collection.name);
    try {
      if (checkpoint !== undefined) this.#checkpointUpsert ??= journalUpsert(db);
      // The undo log's table is created (outside the transaction) once a checkpoint asks for it.
      if (checkpoint?.undo !== undefined) this.#undoInsert ??= undoInsert(db);
      return this.#transaction(db, () => {
        const result = { failures: this.#applyOps(db, info, ops) };
        if (checkpoint !== undefined) {
          const saved = journalParams(checkpoint.id, checkpoint.entry(result));
          const undo = checkpoint.undo?.(result);
          (this.#checkpointUpsert as Database.Statement).run(...saved);
          // In the same transaction: the batch, its checkpoint and its undo row commit together.
          if (undo !== undefined) (this.#undoInsert as Database.Statement).run(...undoParams(undo));
        }
        return result;
      });
    } catch (err) {
      throw writeError(err, this.path, `write to ${info.name}`);
    }
  }

  /** Applies ops inside the open transaction; returns the refused ones. */
  #applyOps(db: Database.Database, info: TableInfo, ops: WriteOp[]): WriteFailure[] {
    const shapes: Shape[] = new Array(ops.length);
    let previous: Shape | undefined;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i] as WriteOp;
      if (op.op === "delete") shapes[i] = NO_FIELDS;
      else {
        previous = shapeOf(info, op.record, previous);
        shapes[i] = previous;
      }
    }
    const failures: WriteFailure[] = [];
    const attempt = (i: number): void => {
      try {
        this.#applyOp(db, info, ops[i] as WriteOp, shapes[i] as Shape);
      } catch (err) {
        // A refused statement is undone alone; an error that ended the transaction fails the batch.
        if (!db.inTransaction) throw err;
        failures.push({ index: i, reason: messageOf(err) });
      }
    };
    let i = 0;
    while (i < ops.length) {
      const shape = shapes[i] as Shape;
      const op = ops[i] as WriteOp;
      if (op.op === "delete" && Object.keys(op.match).length > 0) {
        // Runs of deletes matching on the same fields go in one DELETE per chunk; a chunk
        // refused whole is deleted one by one to tell which record was refused.
        const names = Object.keys(op.match);
        const same = names.join("\u0001");
        const max = Math.max(1, Math.min(KEYS_PER_DELETE, Math.floor(MAX_VARIABLES / (2 * names.length))));
        let j = i + 1;
        while (j < ops.length && j - i < max) {
          const next = ops[j] as WriteOp;
          if (next.op !== "delete" || Object.keys(next.match).join("\u0001") !== same) break;
          j++;
        }
        if (j - i === 1 || !this.#deleteMany(db, info, ops, names, i, j)) for (let k = i; k < j; k++) attempt(k);
        i = j;
        continue;
      }
      if (op.op !== "insert" || shape.names.length === 0) {
        attempt(i++);
        continue;
      }
      // Runs of inserts of the same fields go in multi-row INSERTs; SQLite undoes a refused
      // statement whole, and its rows are then inserted one by one to tell which one failed.
      const max = Math.max(1, Math.min(ROWS_PER_INSERT, Math.floor(MAX_VARIABLES / shape.names.length)));
      let j = i + 1;
      while (j < ops.length && j - i < max && shapes[j] === shape && (ops[j] as WriteOp).op === "insert") j++;
      if (j - i === 1 || !this.#insertMany(db, info, ops, shape, i, j)) for (let k = i; k < j; k++) attempt(k);
      i = j;
    }
    return failures;
  }

  /** Inserts ops `from`…`to`−1 (all inserts of `shape`) in one statement; false if it was refused. */
  #insertMany(db: Database.Database, info: TableInfo, ops: WriteOp[], shape: Shape, from: number, to: number): boolean {
    const n = to - from;
    const { names, modes } = shape;
    try {
      const stmt = this.#statement(db, info, `insert\u0001${n}\u0001${shape.key}`, () => {
        const row = `(${names.map(() => "?").join(", ")})`;
        const cols = names.map(quoteIdent).join(", ");
        return `INSERT INTO ${quoteIdent(info.name)} (${cols}) VALUES ${Array.from({ length: n }, () => row).join(", ")}`;
      });
      const params: unknown[] = [];
      for (let i = from; i < to; i++) {
        const record = (ops[i] as WriteOp & { op: "insert" }).record;
        for (let k = 0; k < names.length; k++) params.push(toSqlite(record[names[k] as string], modes[k] as BindMode));
      }
      stmt.run(params);
      return true;
    } catch (err) {
      if (!db.inTransaction) throw err;
      return false;
    }
  }

  /**
   * Deletes the records matched by ops `from`…`to`−1 (all deletes matching on `names`) in
   * one statement; false (nothing deleted) if one of them is referenced or the statement
   * was refused.
   */
  #deleteMany(
    db: Database.Database,
    info: TableInfo,
    ops: WriteOp[],
    names: string[],
    from: number,
    to: number,
  ): boolean {
    try {
      const params: unknown[] = [];
      for (let i = from; i < to; i++)
        params.push(...matchValues(info, (ops[i] as WriteOp & { op: "delete" }).match, names));
      this.#deleteKeys(db, info, names, to - from, params);
      return true;
    } catch (err) {
      if (!db.inTransaction) throw err;
      return false;
    }
  }

  /**
   * Deletes the records whose `names` hold one of `n` tuples of `params`. Ferry writes with
   * foreign keys off (see {@link SqliteConnector}), so it checks them itself first: when a
   * record of another table (or another record of this one) references one of them, it
   * throws {@link ReferencedError} and deletes nothing, as an enforcing connection would
   * refuse the statement.
   */
  #deleteKeys(db: Database.Database, info: TableInfo, names: string[], n: number, params: unknown[]): void {
    const fields = names.join("\u0001");
    let refs = this.#references.get(info.name);
    if (refs === undefined) {
      refs = referencesTo(db, info);
      this.#references.set(info.name, refs);
    }
    refs.forEach((ref: Reference, r: number) => {
      const check = this.#statement(db, info, `referenced\u0001${r}\u0001${n}\u0001${fields}`, () => {
        const child = ref.from.map((c) => `c.${quoteIdent(c)}`);
        const parent = ref.to.map((c) => `p.${quoteIdent(c)}`).join(", ");
        const held = child.length === 1 ? child[0] : `(${child.join(", ")})`;
        // A record that references itself, or one deleted by the same statement, does not count.
        const self = ref.self ? ` AND (${keysIn(names, n, "c")}) IS NOT 1` : "";
        return `SELECT 1 FROM ${quoteIdent(ref.table)} AS c
          WHERE ${held} IN (SELECT ${parent} FROM ${quoteIdent(info.name)} AS p WHERE ${keysIn(names, n, "p")})${self}
          LIMIT 1`;
      }).pluck();
      if (check.get(ref.self ? [...params, ...params] : params) !== undefined) {
        throw new ReferencedError(
          `FOREIGN KEY constraint failed: ${ref.table} (${ref.from.join(", ")}) still references the record`,
        );
      }
    });
    this.#statement(
      db,
      info,
      `delete\u0001${n}\u0001${fields}`,
      () => `DELETE FROM ${quoteIdent(info.name)} WHERE ${keysIn(names, n)}`,
    ).run(params);
  }

  /** Runs one op; throws the engine's error (or {@link NoMatchError}) when it is refused. */
  #applyOp(db: Database.Database, info: TableInfo, op: WriteOp, shape: Shape): void {
    if (op.op === "delete") {
      const matchNames = Object.keys(op.match);
      if (matchNames.length === 0) throw new NoMatchError("delete without match fields: nothing to match");
      this.#deleteKeys(db, info, matchNames, 1, matchValues(info, op.match, matchNames));
      return;
    }
    const { names, modes, key: fieldKey } = shape;
    const values: unknown[] = names.map((n, k) => toSqlite(op.record[n], modes[k] as BindMode));
    const table = quoteIdent(info.name);
    if (op.op === "insert") {
      const stmt = this.#statement(db, info, `insert\u0001${fieldKey}`, () =>
        names.length === 0
          ? `INSERT INTO ${table} DEFAULT VALUES`
          : `INSERT INTO ${table} (${names.map(quoteIdent).join(", ")}) VALUES (${names.map(() => "?").join(", ")})`,
      );
      stmt.run(values);
      return;
    }

    const matchNames = Object.keys(op.match);
    if (matchNames.length === 0) throw new NoMatchError(`${op.op} without match fields: nothing to match`);
    values.push(...matchValues(info, op.match, matchNames));
    const where = matchNames.map((m) => `${quoteIdent(m)} = ?`).join(" AND ");
    const matchKey = matchNames.join("\u0001");
    let stmt: Database.Statement;
    if (op.op === "replace") {
      // The record becomes the row whole: columns it lacks get their DEFAULT (or NULL), as an
      // INSERT would give them, except key columns, which keep identifying the row.
      stmt = this.#statement(db, info, `replace\u0001${fieldKey}\u0002${matchKey}`, () => {
        const given = new Set(names);
        const sets = names.map((n) => `${quoteIdent(n)} = ?`);
        for (const c of info.columns) {
          if (c.generated || c.pk > 0 || given.has(c.name)) continue;
          sets.push(`${quoteIdent(c.name)} = ${c.defaultSql === null ? "NULL" : `(${c.defaultSql})`}`);
        }
        return sets.length === 0
          ? `SELECT count(*) FROM ${table} WHERE ${where}`
          : `UPDATE ${table} SET ${sets.join(", ")} WHERE ${where}`;
      });
    } else {
      stmt = this.#statement(db, info, `update\u0001${fieldKey}\u0002${matchKey}`, () =>
        names.length === 0
          ? `SELECT count(*) FROM ${table} WHERE ${where}`
          : `UPDATE ${table} SET ${names.map((n) => `${quoteIdent(n)} = ?`).join(", ")} WHERE ${where}`,
      );
    }
    const changed = stmt.reader ? Number(stmt.pluck().get(values)) : stmt.run(values).changes;
    if (changed === 0) {
      throw new NoMatchError(`no record matches ${matchNames.join(", ")}: nothing to ${op.op}`);
    }
  }

  async finish(collection: CollectionSchema): Promise<void> {
    const db = this.#writable();
    const info = this.#requireTable(db, collection.name);
    const native = collection.native?.engine === "sqlite" ? collection.native.ddl.slice(1) : undefined;
    const statements =
      native ??
      (collection.indexes ?? []).filter((ix) => ix.fields.length > 0).map((ix) => createIndexSql(info.name, ix));
    for (const sql of statements) {
      if (!/^\s*CREATE\s+(UNIQUE\s+)?INDEX\s|^\s*CREATE\s+TRIGGER\s/i.test(sql)) {
        throw new FerryError(
          "E_UNSUPPORTED",
          `native definition of ${info.name} holds a statement that is not CREATE INDEX or CREATE TRIGGER: refusing to run it`,
        );
      }
      try {
        db.prepare(sql).run();
      } catch (cause) {
        if (/already exists/i.test(messageOf(cause))) continue;
        throw new FerryError("E_WRITE", `cannot build ${info.name}'s index or trigger: ${messageOf(cause)}`, {
          cause,
          details: { collection: info.name, sql },
        });
      }
    }
    this.#forgetTables();
  }

  journal(): JournalStore {
    return this.#journal;
  }

  /**
   * Same-engine fast path ({@link BulkTransfer}): rows move inside SQLite, from the source
   * file attached to this connection, by `INSERT … SELECT` in key ranges, never
   * through JavaScript. Only for tables whose key orders rows totally (no NULL-able key).
   */
  canBulkCopyFrom(source: Connector, collection: CollectionSchema): boolean {
    if (!(source instanceof SqliteConnector) || source.#memory || this.#memory || source.path === this.path)
      return false;
    const srcDb = source.#readable();
    const from = srcDb === undefined ? undefined : source.#table(srcDb, collection.name);
    const to = this.#table(this.#writable(), collection.name);
    if (from?.readKey === undefined || to === undefined) return false;
    if (from.readKey.length > 1 && from.readKey.some((k) => k.rowid)) return false;
    const writable = (t: TableInfo) =>
      t.columns
        .filter((c) => !c.generated)
        .map((c) => c.name)
        .sort();
    return JSON.stringify(writable(from)) === JSON.stringify(writable(to));
  }

  /** See {@link BulkTransfer.bulkCopyFrom}. */
  async bulkCopyFrom(
    source: Connector,
    collection: CollectionSchema,
    options: { after?: Bookmark; limit: number },
    checkpoint: (count: number, bookmark: Bookmark) => Checkpoint,
  ): Promise<{ count: number; bookmark: Bookmark }> {
    const src = source as SqliteConnector;
    const db = this.#writable();
    const srcInfo = src.#requireTable(src.#readable(), collection.name);
    const info = this.#requireTable(db, collection.name);
    const key = srcInfo.readKey as KeyTerm[];
    this.#attach(db, src.path);
    const table = `${ATTACHED}.${quoteIdent(info.name)}`;
    const cols = info.columns.filter((c) => !c.generated).map((c) => quoteIdent(c.name));
    const order = key.map((k) => k.sql).join(", ");
    const tuple = key.length === 1 ? order : `(${order})`;
    const params = key.length === 1 ? "?" : `(${key.map(() => "?").join(", ")})`;
    const after = options.after === undefined ? undefined : decodeBookmark(options.after, srcInfo, key);
    const where = after === undefined ? "" : `WHERE ${tuple} > ${params}`;
    const bind = after === undefined ? [] : after.map((v) => toSqlite(v, "exact-integers"));
    // The last key of the next batch, then everything up to it in one statement.
    const last = this.#statement(
      db,
      info,
      `bulk-last:${where}`,
      () =>
        `SELECT ${order} FROM (SELECT ${order} FROM ${table} ${where} ORDER BY ${order} LIMIT ?) ORDER BY ${key.map((k) => `${k.sql} DESC`).join(", ")} LIMIT 1`,
    )
      .raw(true)
      .safeIntegers(true)
      .get(...bind, Math.max(1, Math.floor(options.limit))) as unknown[] | undefined;
    if (last === undefined) return { count: 0, bookmark: options.after ?? { after: [] } };
    const upTo = key.length === 1 ? "?" : `(${key.map(() => "?").join(", ")})`;
    const insert = this.#statement(
      db,
      info,
      `bulk-insert:${where}`,
      () =>
        `INSERT INTO main.${quoteIdent(info.name)} (${cols.join(", ")}) SELECT ${cols.join(", ")} FROM ${table} ${where ? `${where} AND` : "WHERE"} ${tuple} <= ${upTo} ORDER BY ${order}`,
    );
    const bookmark: Bookmark = {
      after: last.map((v) => encodeValue(typeof v === "bigint" ? normaliseInteger(v) : (v as Value))),
    };
    try {
      if (this.#checkpointUpsert === undefined) this.#checkpointUpsert = journalUpsert(db);
      const upsert = this.#checkpointUpsert;
      const count = this.#transaction(db, () => {
        const n = insert.run(...bind, ...last).changes;
        const cp = withoutUndo(checkpoint(n, bookmark));
        upsert.run(...journalParams(cp.id, cp.entry({ failures: [] })));
        return n;
      });
      return { count, bookmark };
    } catch (err) {
      throw writeError(err, this.path, `copy rows into ${info.name}`);
    }
  }

  /**
   * Attaches `path` as {@link ATTACHED} (once per connection). This build of SQLite has no
   * URI filenames, so `mode=ro` is not available: nothing is ever written through this
   * schema, and a file without write permission is opened read-only by SQLite itself.
   */
  #attach(db: Database.Database, path: string): void {
    if (this.#attached === path) return;
    if (this.#attached !== undefined) db.prepare(`DETACH DATABASE ${ATTACHED}`).run();
    this.#forgetTables();
    db.prepare(`ATTACH DATABASE ? AS ${ATTACHED}`).run(path);
    this.#attached = path;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const db = this.#db;
    this.#db = undefined;
    this.#forgetTables();
    this.#journal.reset();
    this.#checkpointUpsert = undefined;
    this.#undoInsert = undefined;
    if (db === undefined || !db.open) return;
    // Detach first: an unqualified journal_mode pragma would change the source file too.
    if (this.#attached !== undefined) db.prepare(`DETACH DATABASE ${ATTACHED}`).run();
    const mode = this.#restoreJournalMode;
    if (mode !== undefined) {
      try {
        const now = String(db.pragma(`journal_mode = ${mode}`, { simple: true })).toLowerCase();
        if (now === mode) forgetJournalMode(db);
      } catch {
        // Another connection has the database open: it stays in WAL mode (harmless) and the
        // next connector that writes and closes it puts the saved mode back.
      }
    }
    db.close();
  }
}

/** The file's real path (symlinks resolved), or the best approximation while it does not exist. */
function identityOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    try {
      return join(realpathSync(dirname(path)), basename(path));
    } catch {
      return path;
    }
  }
}

/** Where the journal mode to restore is kept while Ferry has a database in WAL mode. */
const STATE_TABLE = "_ferry_sqlite";
const JOURNAL_MODES = new Set(["delete", "truncate", "persist", "off"]);

function saveJournalMode(db: Database.Database, mode: string): void {
  db.exec(`CREATE TABLE IF NOT EXISTS ${STATE_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)`);
  db.prepare(`INSERT OR IGNORE INTO ${STATE_TABLE} (name, value) VALUES ('journal_mode', ?)`).run(mode);
}

function savedJournalMode(db: Database.Database): string | undefined {
  const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(STATE_TABLE);
  if (exists === undefined) return undefined;
  const mode = db.prepare(`SELECT value FROM ${STATE_TABLE} WHERE name = 'journal_mode'`).pluck().get();
  return typeof mode === "string" && JOURNAL_MODES.has(mode) ? mode : undefined;
}

function forgetJournalMode(db: Database.Database): void {
  db.exec(`DROP TABLE IF EXISTS ${STATE_TABLE}`);
}

function writeError(err: unknown, path: string, what: string): FerryError {
  if (isFerryError(err)) return err;
  const code = sqliteCode(err);
  if (code?.startsWith("SQLITE_BUSY") || code?.startsWith("SQLITE_LOCKED")) {
    return new FerryError(
      "E_LOCKED",
      `sqlite database is locked: ${path}: another process is writing it; retry when it is done`,
      { cause: err },
    );
  }
  return new FerryError("E_WRITE", `cannot ${what} in ${path}: ${messageOf(err)}: nothing of this batch was written`, {
    cause: err,
    details: { sqliteCode: code },
  });
}

/** Decodes `{ after: [...] }` into the key values to resume after. */
function decodeBookmark(bookmark: Bookmark, info: TableInfo, key: KeyTerm[]): Value[] {
  const after = bookmark.after;
  if (!Array.isArray(after) || after.length !== key.length) {
    throw new FerryError(
      "E_CONFIG",
      `bookmark does not fit table ${info.name} (key ${key.map((k) => k.name).join(", ")}): the table changed since; start this collection over`,
      { details: { collection: info.name } },
    );
  }
  return after.map((v) => decodeValue(v as JsonValue));
}

/**
 * The batch after a key that holds NULLs (only in a rowid table whose primary key allows
 * them). Row-value comparison is NULL there, so spell out "after" with NULLs first, as
 * `ORDER BY` sorts them: a term is after NULL when it is not NULL.
 */
function afterNulls(
  db: Database.Database,
  from: string,
  order: string,
  key: KeyTerm[],
  after: Value[],
  limit: number,
  fast: boolean,
): unknown[][] {
  const params: unknown[] = [];
  const alternatives: string[] = [];
  for (let i = 0; i < key.length; i++) {
    const terms: string[] = [];
    for (let j = 0; j < i; j++) {
      const v = after[j] as Value;
      if (v === null) terms.push(`${(key[j] as KeyTerm).sql} IS NULL`);
      else {
        terms.push(`${(key[j] as KeyTerm).sql} = ?`);
        params.push(toSqlite(v, "exact-integers"));
      }
    }
    const v = after[i] as Value;
    if (v === null) terms.push(`${(key[i] as KeyTerm).sql} IS NOT NULL`);
    else {
      terms.push(`${(key[i] as KeyTerm).sql} > ?`);
      params.push(toSqlite(v, "exact-integers"));
    }
    alternatives.push(`(${terms.join(" AND ")})`);
  }
  const sql = `${from} WHERE ${alternatives.join(" OR ")} ORDER BY ${order} LIMIT ?`;
  return db
    .prepare(sql)
    .raw(true)
    .safeIntegers(!fast)
    .all(...params, limit) as unknown[][];
}
