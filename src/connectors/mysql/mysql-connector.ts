/**
 * The MySQL/MariaDB connector (mysql2, text protocol): `mysql://` and `mariadb://`
 * databases, read in primary-key order from one consistent snapshot, written in one
 * transaction per batch with the run journal in `_ferry_journal` (and an import's undo log
 * in `_ferry_undo`).
 */
import type {
  Checkpoint,
  Connector,
  ConnectorFactory,
  ConnectorOptions,
  JournalStore,
  PrepareResult,
  ReadBatch,
  ReadOptions,
  TextChunk,
  TextExport,
  WriteOp,
  WriteResult,
} from "../../core/connector.js";
import { FerryError, isFerryError } from "../../core/errors.js";
import type { Bookmark } from "../../core/messages.js";
import type { CollectionSchema, FieldSchema } from "../../core/schema.js";
import { redactUrl } from "../../core/url.js";
import { encodeValue, keyOf, keyString, normaliseInteger, type Row, type Value } from "../../core/values.js";
import { createTableSql, finishClauses, splitNativeDdl } from "./mysql-ddl.js";
import { connectionError, isPermissionError, permissionError, type Where, writeError } from "./mysql-errors.js";
import {
  type ColumnInfo,
  describeTables,
  existingKeys,
  isMissingObject,
  type ServerInfo,
  serverInfo,
  type TableInfo,
} from "./mysql-introspect.js";
import { CREATE_JOURNAL, CREATE_UNDO, journalUpsert, MysqlJournal, undoInserts } from "./mysql-journal.js";
import { SessionPool } from "./mysql-pool.js";
import {
  exportKeyedText,
  keyLiteral,
  readKeyed,
  readKeyless,
  rowShape,
  type SessionSource,
  textShape,
} from "./mysql-read.js";
import { driverOptions, MysqlSession } from "./mysql-session.js";
import { openSnapshot } from "./mysql-snapshot.js";
import { ER, errnoOf, quoteIdent, sqlString } from "./mysql-sql.js";
import { mysqlFieldFor } from "./mysql-types.js";
import { identityOf, type MysqlLocation, parseMysqlUrl } from "./mysql-url.js";
import { RefusedValue } from "./mysql-values.js";
import { applyOps, batchCause, isRetryable } from "./mysql-write.js";

/** Tables with fewer records are never split into key ranges. */
const SPLIT_MIN_ROWS = 50_000;
/** Keys per lookup query. */
const LOOKUP_CHUNK = 1000;
/** Attempts of a write transaction that the server ended in a deadlock. */
const WRITE_ATTEMPTS = 3;

/**
 * Opens `mysql://` and `mariadb://` instances.
 *
 * @example
 * const source = await mysqlFactory.open("mysql://app:pw@db:3306/shop", { readers: 4 });
 */
export const mysqlFactory: ConnectorFactory = {
  schemes: ["mysql", "mariadb"],
  usage: "mysql://user:password@host:3306/database",
  engine: "mysql",
  mapField: mysqlFieldFor,
  async open(url: string, options: ConnectorOptions): Promise<Connector> {
    return MysqlConnector.open(url, options);
  },
};

/**
 * A MySQL or MariaDB database as a Ferry instance. Its collections are the database's base
 * tables (not `_ferry_*`).
 *
 * - A source (`write` falsy) is read from one consistent snapshot taken when it opens
 *   (`START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`, REPEATABLE READ): rows
 *   committed later are not seen, by reads, counts, lookups or the journal. With `readers`
 *   N > 1, N sessions start that snapshot together under `FLUSH TABLES WITH READ LOCK`
 *   (held only while they start). A server that refuses the lock (no RELOAD privilege)
 *   gets one session, which concurrent reads then share batch by batch; {@link readers}
 *   says how many there are. A source whose database does not exist is `E_CONNECTION` with
 *   `details.missing`.
 * - A target (`write: true`) is created if missing (utf8mb4) and written by a pool of
 *   `writers` sessions (default 1), each `write` one transaction, with `foreign_key_checks
 *   = 0` (as in a mysqldump file: core writes parents first, and foreign keys stay declared;
 *   deletes alone run with them checked) and an `sql_mode` that is strict and allows zero
 *   dates.
 * - Values: integers as numbers (bigint beyond 2^53, up to unsigned 2^64−1), DECIMAL as the
 *   exact text MySQL prints, FLOAT/DOUBLE as numbers, TINYINT(1) and BIT(1) 0/1 as booleans
 *   (other values stay numbers), binary as bytes, DATE/DATETIME/TIMESTAMP as UTC dates
 *   (microseconds kept; zero dates as invalid Dates), JSON parsed, the rest as text.
 * - Tables are InnoDB for the guarantees of `write` (a MyISAM target cannot roll a batch back).
 */
export class MysqlConnector implements Connector, TextExport {
  readonly engine = "mysql";
  readonly displayUrl: string;
  readonly identity: string;
  /** Several `write` calls may run at once, each on its own session and transaction. */
  readonly concurrentWrites = true;

  readonly #location: MysqlLocation;
  readonly #where: Where;
  readonly #forWrite: boolean;
  readonly #wanted: number;
  #pool: SessionPool | undefined;
  #readers = 1;
  #fallback: string | undefined;
  #server: Promise<ServerInfo> | undefined;
  readonly #tables = new Map<string, TableInfo>();
  readonly #counts = new Map<string, number>();
  #journalReady = false;
  #undoReady = false;
  readonly #loadData = { enabled: true };
  readonly #journal: MysqlJournal;
  /** Collections this connector created, as given to `prepare` (finish builds their keys). */
  readonly #created = new Map<string, CollectionSchema>();
  /** Foreign keys of finished tables whose parent table did not exist yet, by parent. */
  readonly #waitingForeignKeys = new Map<string, { child: string; clause: string }[]>();
  #closed = false;

  private constructor(url: string, options: ConnectorOptions) {
    this.#location = parseMysqlUrl(url);
    this.displayUrl = redactUrl(url);
    this.identity = identityOf(this.#location);
    this.#where = { display: this.displayUrl, location: this.#location };
    this.#forWrite = options.write === true;
    this.#wanted = Math.max(1, Math.floor(this.#forWrite ? (options.writers ?? 1) : (options.readers ?? 1)));
    this.#journal = new MysqlJournal({
      reading: (fn) => this.#use(fn),
      writing: (fn) =>
        this.#writing(async (s) => {
          await this.#ensureJournal(s);
          return fn(s);
        }),
      changing: (fn) =>
        this.#writing(fn).catch((err: unknown) => {
          throw writeError(err, this.#location.database, "_ferry_journal", "forget a run in the journal");
        }),
    });
  }

  /**
   * Opens a connector for `url` (see {@link mysqlFactory}). A source connects and takes its
   * snapshot now; a target connects on first use.
   *
   * @throws FerryError `E_CONFIG` for a malformed URL; `E_CONNECTION` when a source's server
   * cannot be reached, refuses the credentials, or has no such database (`details.missing`).
   */
  static async open(url: string, options: ConnectorOptions = {}): Promise<MysqlConnector> {
    const c = new MysqlConnector(url, options);
    if (c.#forWrite) {
      c.#readers = c.#wanted;
      c.#pool = new SessionPool(() => c.#openWriteSession(), c.#wanted, c.displayUrl);
    } else {
      const snapshot = await openSnapshot(() => c.#connect(true), c.#wanted);
      c.#readers = snapshot.sessions.length;
      c.#fallback = snapshot.fallback;
      c.#pool = new SessionPool(undefined, snapshot.sessions.length, c.displayUrl, snapshot.sessions);
    }
    return c;
  }

  /**
   * Sessions reading at once: for a source, those that share the snapshot (1 when
   * `readers` > 1 was asked for but FLUSH TABLES WITH READ LOCK was refused, see
   * {@link readersFallback}); for a target, its pool size.
   */
  get readers(): number {
    return this.#readers;
  }

  /** Why a source got one reader instead of the `readers` asked for, if it did. */
  get readersFallback(): string | undefined {
    return this.#fallback;
  }

  /** See {@link Connector.mapField}: {@link mysqlFieldFor}. */
  mapField(field: FieldSchema, collection: CollectionSchema): FieldSchema {
    return mysqlFieldFor(field, collection);
  }

  async #connect(withDatabase: boolean): Promise<MysqlSession> {
    try {
      return await MysqlSession.connect(
        driverOptions(this.#location, withDatabase),
        MysqlSession.initStatements(this.#forWrite),
      );
    } catch (err) {
      throw connectionError(err, this.#where);
    }
  }

  /** A target's session; the database is created first if it does not exist. */
  async #openWriteSession(): Promise<MysqlSession> {
    try {
      return await this.#connect(true);
    } catch (err) {
      if (!(isFerryError(err, "E_CONNECTION") && err.details.missing === true)) throw err;
    }
    const admin = await this.#connect(false);
    try {
      await admin.exec(`CREATE DATABASE IF NOT EXISTS ${quoteIdent(this.#location.database)} CHARACTER SET utf8mb4`);
    } catch (err) {
      if (isPermissionError(err)) throw permissionError(err, this.#location.database, undefined, "CREATE");
      throw writeError(err, this.#location.database, undefined, "create the database");
    } finally {
      await admin.close();
    }
    return this.#connect(true);
  }

  #live(): SessionPool {
    if (this.#closed || this.#pool === undefined) {
      throw new FerryError("E_INTERNAL", `mysql connector for ${this.displayUrl} used after close()`);
    }
    return this.#pool;
  }

  /** Runs `fn` on a session: the snapshot's for a source, the pool's for a target. */
  #use<T>(fn: (s: MysqlSession) => Promise<T>): Promise<T> {
    return this.#live().use(fn);
  }

  /** Like {@link #use}, for what only a target may do. */
  #writing<T>(fn: (s: MysqlSession) => Promise<T>): Promise<T> {
    if (!this.#forWrite) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `${this.displayUrl} is open read-only as a source: open it as the target ({ write: true }) to write to it`,
      );
    }
    return this.#use(fn);
  }

  #serverInfo(s: MysqlSession): Promise<ServerInfo> {
    this.#server ??= serverInfo(s).catch((err: unknown) => {
      this.#server = undefined;
      throw err;
    });
    return this.#server;
  }

  async #ensureJournal(s: MysqlSession): Promise<void> {
    if (this.#journalReady) return;
    try {
      await s.exec(CREATE_JOURNAL);
    } catch (err) {
      throw writeError(err, this.#location.database, "_ferry_journal", "create the run journal");
    }
    this.#journalReady = true;
  }

  async #ensureUndo(s: MysqlSession): Promise<void> {
    if (this.#undoReady) return;
    try {
      await s.exec(CREATE_UNDO);
    } catch (err) {
      throw writeError(err, this.#location.database, "_ferry_undo", "create the undo log");
    }
    this.#undoReady = true;
  }

  /** The cached description of a table, or undefined when it does not exist. */
  async #table(s: MysqlSession, name: string, native = false): Promise<TableInfo | undefined> {
    const cached = this.#tables.get(name);
    if (cached !== undefined && (!native || cached.schema.native !== undefined)) return cached;
    const server = await this.#serverInfo(s);
    const [info] = await describeTables(s, this.#location.database, server, { table: name, native });
    if (info !== undefined) this.#tables.set(name, info);
    return info;
  }

  async #requireTable(name: string): Promise<TableInfo> {
    const info = await this.#use((s) => this.#table(s, name));
    if (info === undefined) {
      throw new FerryError("E_NOT_FOUND", `table not found: ${name} in ${this.displayUrl}: check the collection name`, {
        details: { collection: name },
      });
    }
    return info;
  }

  async version(): Promise<string> {
    const info = await this.#use((s) => this.#serverInfo(s));
    return `${info.mariadb ? "MariaDB" : "MySQL"} ${info.version}`;
  }

  async check(): Promise<void> {
    try {
      await this.#use(async (s) => {
        await s.rows("SELECT 1");
        await this.#serverInfo(s);
      });
    } catch (err) {
      if (err instanceof FerryError) throw err;
      throw connectionError(err, this.#where);
    }
  }

  async discover(): Promise<CollectionSchema[]> {
    this.#tables.clear();
    const infos = await this.#use(async (s) => describeTables(s, this.#location.database, await this.#serverInfo(s)));
    for (const info of infos) this.#tables.set(info.name, info);
    return infos.map((i) => i.schema);
  }

  /** Exact `COUNT(*)`; a source counts in its snapshot (so once per table). */
  async count(collection: CollectionSchema): Promise<number | undefined> {
    const known = this.#counts.get(collection.name);
    if (known !== undefined) return known;
    const info = await this.#requireTable(collection.name);
    const rows = await this.#use((s) =>
      s.rows<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${quoteIdent(info.name)}`),
    );
    const n = Number(rows[0]?.n ?? 0);
    if (!this.#forWrite) this.#counts.set(collection.name, n);
    return n;
  }

  /**
   * `DATA_LENGTH + INDEX_LENGTH` from `information_schema.TABLES`: the bytes the storage
   * engine allocated for the rows and indexes. For InnoDB this is its estimate as of the
   * table's last statistics update (whole 16 KB pages; `ANALYZE TABLE` refreshes it, and
   * MySQL 8 may cache it for `information_schema_stats_expiry` seconds).
   */
  async size(collection: CollectionSchema): Promise<number | undefined> {
    const info = await this.#requireTable(collection.name);
    const rows = await this.#use((s) =>
      s.rows<{ n: number | string | null }>(
        `SELECT DATA_LENGTH + INDEX_LENGTH AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${sqlString(this.#location.database)} AND TABLE_NAME = ${sqlString(info.name)}`,
      ),
    );
    const n = rows[0]?.n;
    return n === null || n === undefined ? undefined : Number(n);
  }

  #sessions(): SessionSource {
    const pool = this.#live();
    return {
      acquire: () => pool.acquire(),
      release: (s) => pool.release(s),
      discard: (s) => pool.discard(s),
      killQuery: async (threadId) => {
        const s = await this.#connect(false);
        try {
          await s.exec(`KILL QUERY ${Math.floor(threadId)}`);
        } finally {
          await s.close();
        }
      },
    };
  }

  /**
   * Records in primary-key order (keyset pagination, the next batch fetched while this one
   * is used), resuming strictly after `after` and not past `upTo`; bookmarks are
   * `{ after: [key values] }`. A table without a primary key is read in one streamed query
   * in physical order, with bookmarks `{ offset: n }` (resuming assumes no writes meanwhile).
   */
  async *read(collection: CollectionSchema, options: ReadOptions): AsyncGenerator<ReadBatch> {
    const info = await this.#requireTable(collection.name);
    const sessions = this.#sessions();
    if (info.primaryKey.length > 0) yield* readKeyed(sessions, info, options);
    else yield* readKeyless(sessions, info, options);
  }

  /**
   * The fields of each line {@link exportText} gives (numbers, dates and bytes first, then
   * text and JSON), or undefined when the table has no primary key or a column with no
   * server spelling (FLOAT, BIT, spatial): see `textShape`. The table must have been
   * discovered.
   */
  textFields(collection: CollectionSchema): string[] | undefined {
    const info = this.#tables.get(collection.name);
    return info === undefined ? undefined : textShape(info)?.fields;
  }

  /**
   * Rows as delimited text (the `TextExport` contract), keyset-paged like `read` in the same
   * snapshot: numbers, dates and bytes spelled and joined by the server, text and JSON
   * escaped here.
   */
  async *exportText(
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number },
  ): AsyncGenerator<TextChunk> {
    const info = await this.#requireTable(collection.name);
    const shape = textShape(info);
    if (shape === undefined) {
      throw new FerryError(
        "E_INTERNAL",
        `table ${info.name} has no text export (check textFields first): a bug in Ferry`,
      );
    }
    yield* exportKeyedText(this.#sessions(), info, shape, options);
  }

  /**
   * Up to `parts − 1` primary-key boundaries giving ranges of similar row counts: by
   * arithmetic between MIN and MAX for a single integer key that is at least half dense,
   * else the keys at row offsets n·i/parts. None for tables without a primary key or with
   * fewer than 50,000 rows.
   */
  async split(collection: CollectionSchema, parts: number): Promise<Bookmark[]> {
    const info = await this.#requireTable(collection.name);
    const want = Math.floor(parts);
    if (info.primaryKey.length === 0 || want < 2) return [];
    const n = (await this.count(collection)) ?? 0;
    if (n < SPLIT_MIN_ROWS) return [];
    const key = info.primaryKey.map((k) => info.byName.get(k) as ColumnInfo);
    const table = quoteIdent(info.name);
    const order = key.map((c) => quoteIdent(c.name)).join(", ");
    return this.#use(async (s) => {
      const only = key[0] as ColumnInfo;
      if (key.length === 1 && (only.kind === "int" || only.kind === "bigint")) {
        const [row] = await s.rows<unknown[]>(`SELECT MIN(${order}), MAX(${order}) FROM ${table}`, {
          rowsAsArray: true,
        });
        const min = BigInt(String(row?.[0]));
        const max = BigInt(String(row?.[1]));
        const span = max - min + 1n;
        if (BigInt(n) * 2n >= span) {
          const out: Bookmark[] = [];
          let previous: bigint | undefined;
          for (let i = 1; i < want; i++) {
            const b = min + (span * BigInt(i)) / BigInt(want) - 1n;
            if (b < min || b >= max || (previous !== undefined && b <= previous)) continue;
            previous = b;
            out.push({ after: [encodeValue(normaliseInteger(b))] });
          }
          return out;
        }
      }
      const out: Bookmark[] = [];
      for (let i = 1; i < want; i++) {
        const offset = Math.floor((n * i) / want) - 1;
        const [row] = await s.rows<unknown[]>(
          `SELECT ${order} FROM ${table} ORDER BY ${order} LIMIT 1 OFFSET ${offset}`,
          { rowsAsArray: true },
        );
        if (row === undefined) continue;
        const values = key.map((c, j) => {
          const v = row[j];
          return v === null || c.decode === undefined ? (v as Value) : c.decode(v);
        });
        const bookmark = { after: values.map(encodeValue) };
        if (out.length === 0 || JSON.stringify(out.at(-1)) !== JSON.stringify(bookmark)) out.push(bookmark);
      }
      return out;
    });
  }

  /**
   * Creates a missing table: from the source's own CREATE TABLE when it is a MySQL table
   * (plain secondary indexes deferred to {@link finish}), else from the fields as
   * {@link mysqlFieldFor} maps them, with the primary key inline. An existing table is left
   * as it is.
   */
  async prepare(collection: CollectionSchema): Promise<PrepareResult> {
    const db = this.#location.database;
    return this.#writing(async (s) => {
      const existing = await this.#table(s, collection.name, true);
      if (existing !== undefined) return { schema: existing.schema, created: false };
      let created = false;
      const native = collection.native?.engine === "mysql" ? collection.native.ddl[0] : undefined;
      if (native?.startsWith(`CREATE TABLE ${quoteIdent(collection.name)} (`)) {
        created = await this.#createFromNative(s, collection, splitNativeDdl(native).create);
      }
      if (!created) {
        if (collection.fields.length === 0) {
          throw new FerryError("E_UNSUPPORTED", `cannot create table ${collection.name}: its schema has no fields`);
        }
        try {
          await s.exec(createTableSql(collection));
        } catch (err) {
          if (isPermissionError(err)) throw permissionError(err, db, collection.name, "CREATE");
          throw writeError(err, db, collection.name, `create table ${collection.name}`);
        }
      }
      this.#tables.delete(collection.name);
      this.#created.set(collection.name, collection);
      const info = await this.#table(s, collection.name, true);
      if (info === undefined) {
        throw new FerryError("E_INTERNAL", `table ${collection.name} vanished after CREATE TABLE`);
      }
      return { schema: info.schema, created: true };
    });
  }

  /**
   * Runs the source's CREATE TABLE; undone (false) when the server refuses it (another
   * flavour's syntax or collation) or it creates other columns than the collection's.
   */
  async #createFromNative(s: MysqlSession, collection: CollectionSchema, ddl: string): Promise<boolean> {
    try {
      await s.exec(ddl);
    } catch (err) {
      if (isPermissionError(err)) throw permissionError(err, this.#location.database, collection.name, "CREATE");
      return false;
    }
    const info = await this.#table(s, collection.name);
    const wanted = collection.fields.map((f) => f.name);
    if (info && info.columns.length === wanted.length && info.columns.every((c, i) => c.name === wanted[i]))
      return true;
    this.#tables.delete(collection.name);
    await s.exec(`DROP TABLE IF EXISTS ${quoteIdent(collection.name)}`);
    return false;
  }

  async lookup(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, Row>> {
    const out = new Map<string, Row>();
    if (keys.length === 0 || fields.length === 0) return out;
    let info: TableInfo | undefined;
    try {
      info = await this.#use((s) => this.#table(s, collection.name));
    } catch (err) {
      if (isMissingObject(err)) return out;
      throw err;
    }
    if (info === undefined) return out;
    const table = info;
    const cols = fields.map((f) => {
      const c = table.byName.get(f);
      if (c === undefined) {
        throw new FerryError("E_NOT_FOUND", `no column ${f} in table ${table.name}: check the key fields`, {
          details: { collection: table.name, field: f },
        });
      }
      return c;
    });
    const shape = rowShape(table);
    const names = cols.map((c) => quoteIdent(c.name));
    // A key holding NULL matches nothing (NULL = NULL is not true), as in the other connectors.
    const tuples: string[] = [];
    for (const k of keys) {
      if (k.some((v) => v === null || v === undefined)) continue;
      try {
        const lits = cols.map((c, i) => keyLiteral(c, k[i] as Value));
        tuples.push(cols.length === 1 ? (lits[0] as string) : `(${lits.join(", ")})`);
      } catch (err) {
        if (!(err instanceof RefusedValue)) throw err; // a value the column cannot hold matches nothing
      }
    }
    const lhs = cols.length === 1 ? (names[0] as string) : `(${names.join(", ")})`;
    const queries: string[] = [];
    for (let i = 0; i < tuples.length; i += LOOKUP_CHUNK) {
      queries.push(`${lhs} IN (${tuples.slice(i, i + LOOKUP_CHUNK).join(", ")})`);
    }
    await this.#use(async (s) => {
      for (const where of queries) {
        const rows = await s.rows<unknown>(`SELECT ${shape.select} FROM ${quoteIdent(table.name)} WHERE ${where}`, {
          rowsAsArray: shape.arrays,
        });
        for (const raw of rows) {
          const rec = shape.record(raw);
          out.set(keyString(keyOf(rec, fields)), rec);
        }
      }
    });
    return out;
  }

  /**
   * Applies `ops` in one transaction, with `checkpoint` saved in `_ferry_journal` in the
   * same transaction (and its undo row, when its `undo` gives one, in `_ferry_undo`, in as
   * many statements as `max_allowed_packet` asks). A record the server refuses (NOT NULL,
   * CHECK, too long, duplicate key, a value the column cannot hold, a replace or update
   * that matches nothing) becomes a failure with the server's reason naming
   * `db.table.column`; the rest apply. Values are written by the target column's type (see
   * {@link encoderFor}). Deletes run with foreign keys checked, unlike the other ops: a
   * record another table still references is refused (or its ON DELETE action applied),
   * and a delete whose record is not there is no failure.
   *
   * @throws FerryError `E_WRITE` (or `E_PERMISSION`, `E_CONNECTION`) when the batch as a
   * whole failed: then nothing of it, and not the checkpoint, was written.
   */
  async write(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult> {
    const db = this.#location.database;
    const info = await this.#writing(async (s) => {
      if (checkpoint !== undefined) await this.#ensureJournal(s);
      // DDL commits implicitly: the undo log's table is created before any batch's transaction.
      if (checkpoint?.undo !== undefined) await this.#ensureUndo(s);
      return this.#table(s, collection.name);
    });
    if (info === undefined) {
      throw new FerryError(
        "E_NOT_FOUND",
        `table not found: ${collection.name} in ${this.displayUrl}: prepare it first`,
        {
          details: { collection: collection.name },
        },
      );
    }
    for (let attempt = 1; ; attempt++) {
      const pool = this.#live();
      const s = await pool.acquire();
      let open = false;
      try {
        const server = await this.#serverInfo(s);
        if (!server.localInfile) this.#loadData.enabled = false;
        await s.exec("START TRANSACTION");
        open = true;
        const failures = await applyOps(
          { session: s, database: db, info, maxPacket: server.maxAllowedPacket, loadData: this.#loadData },
          ops,
        );
        const result: WriteResult = { failures };
        if (checkpoint !== undefined) {
          const saved = journalUpsert(checkpoint.id, checkpoint.entry(result));
          const undo = checkpoint.undo?.(result);
          await s.exec(saved);
          // In the same transaction: the batch, its checkpoint and its undo row commit together.
          if (undo !== undefined) for (const sql of undoInserts(undo, server.maxAllowedPacket)) await s.exec(sql);
        }
        await s.exec("COMMIT");
        open = false;
        return result;
      } catch (err) {
        if (open) await s.exec("ROLLBACK").catch(() => pool.discard(s));
        if (isRetryable(err) && attempt < WRITE_ATTEMPTS) continue;
        throw writeError(batchCause(err), db, info.name, `write to ${info.name}`);
      } finally {
        pool.release(s);
      }
    }
  }

  /**
   * Builds what comes after the data, for a table this connector created: deferred secondary
   * indexes (from the source's CREATE TABLE), unique keys, indexes and foreign keys (from the
   * fields' schema; a foreign key to a table that is not there, or that the server refuses,
   * is skipped), and the AUTO_INCREMENT counter above the copied maximum. Only what is
   * missing is added, so running it again (after a resume) does nothing more.
   */
  async finish(collection: CollectionSchema): Promise<void> {
    const db = this.#location.database;
    await this.#writing(async (s) => {
      this.#tables.delete(collection.name);
      const info = await this.#table(s, collection.name);
      if (info === undefined) {
        throw new FerryError("E_NOT_FOUND", `table not found: ${collection.name} in ${this.displayUrl}`, {
          details: { collection: collection.name },
        });
      }
      // A table created here gets the keys of the schema it was created from, whichever
      // schema the caller passes (its own after prepare, or the source's after a resume).
      const wanted = this.#created.get(collection.name) ?? collection;
      const { indexes, foreignKeys, waiting } = finishClauses(wanted, await existingKeys(s, db, info.name));
      const alter = async (name: string, clauses: string[], optional: boolean): Promise<void> => {
        try {
          await s.exec(`ALTER TABLE ${quoteIdent(name)} ${clauses.join(", ")}`);
        } catch (err) {
          if (isPermissionError(err)) throw permissionError(err, db, name, "ALTER, INDEX, REFERENCES");
          if (clauses.length > 1) {
            for (const c of clauses) await alter(name, [c], optional);
            return;
          }
          const n = errnoOf(err);
          if (optional || n === ER.DUP_KEYNAME || n === ER.FK_DUP_NAME) return;
          throw writeError(err, db, name, `build ${clauses[0]} on ${name}`);
        }
      };
      if (indexes.length > 0) await alter(info.name, indexes, false);
      for (const fk of foreignKeys) await alter(info.name, [fk], true);
      for (const w of waiting) {
        const list = this.#waitingForeignKeys.get(w.parent) ?? [];
        if (!list.some((x) => x.child === info.name && x.clause === w.clause))
          list.push({ child: info.name, clause: w.clause });
        this.#waitingForeignKeys.set(w.parent, list);
      }
      // Children finished before this table was there get their foreign keys now.
      for (const w of this.#waitingForeignKeys.get(info.name) ?? []) await alter(w.child, [w.clause], true);
      this.#waitingForeignKeys.delete(info.name);
      await this.#advanceAutoIncrement(s, info);
      this.#tables.delete(collection.name);
    });
  }

  /** Sets the AUTO_INCREMENT counter above the largest value copied (never lowers it). */
  async #advanceAutoIncrement(s: MysqlSession, info: TableInfo): Promise<void> {
    const auto = info.columns.find((c) => c.field.autoIncrement === true);
    if (auto === undefined) return;
    const [max] = await s.rows<unknown[]>(`SELECT MAX(${quoteIdent(auto.name)}) FROM ${quoteIdent(info.name)}`, {
      rowsAsArray: true,
    });
    const top = max?.[0];
    if (top === null || top === undefined) return;
    let next: bigint;
    try {
      next = BigInt(String(top)) + 1n;
    } catch {
      return;
    }
    // MySQL 8 caches information_schema.TABLES; MariaDB has no such setting.
    await s.exec("SET SESSION information_schema_stats_expiry = 0").catch(() => {});
    const [row] = await s.rows<unknown[]>(
      `SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${sqlString(this.#location.database)} AND TABLE_NAME = ${sqlString(info.name)}`,
      { rowsAsArray: true },
    );
    const current = row?.[0];
    if (current !== null && current !== undefined && BigInt(String(current)) >= next) return;
    if (next > 18_446_744_073_709_551_615n) return;
    try {
      await s.exec(`ALTER TABLE ${quoteIdent(info.name)} AUTO_INCREMENT = ${next}`);
    } catch (err) {
      throw writeError(err, this.#location.database, info.name, "set the AUTO_INCREMENT counter");
    }
  }

  journal(): JournalStore {
    return this.#journal;
  }

  /** Ends the snapshot transactions and closes every session. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#tables.clear();
    await this.#pool?.close();
  }
}
