/**
 * The PostgreSQL connector (pg + pg-copy-streams): `postgres://` instances whose collections
 * are the tables of one schema. Sources are read from one consistent snapshot by COPY in
 * key order; targets are written by COPY in one transaction per batch, with the run journal
 * in `_ferry_journal` (and an import's undo log in `_ferry_undo`) in the same transaction;
 * PostgreSQL → PostgreSQL moves rows as binary COPY without parsing them.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type {
  BulkAdded,
  BulkTransfer,
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
import { hasTextExport } from "../../core/connector.js";
import { countLines } from "../../core/delimited-text.js";
import { FerryError, isFerryError } from "../../core/errors.js";
import type { Bookmark } from "../../core/messages.js";
import type { CollectionSchema, FieldSchema, FieldType } from "../../core/schema.js";
import type { CheckRule } from "../../core/type-plan.js";
import { redactUrl } from "../../core/url.js";
import {
  decodeValue,
  encodeValue,
  type JsonValue,
  keyString,
  type Row,
  setField,
  type Value,
} from "../../core/values.js";
import { CopyInFrames, CopyOutFrames, submit } from "./postgres-copy-relay.js";
import { CopyLineSplitter, parseArrayLiteral, unescapeCopyText } from "./postgres-copy-text.js";
import { createTableSql, type PostDataStep, postDataSql, shortName } from "./postgres-ddl.js";
import {
  type ColumnInfo,
  describeTables,
  listTables,
  schemaExists,
  splitNativeDdl,
  type TableInfo,
} from "./postgres-introspect.js";
import {
  ensureJournal,
  ensureUndo,
  journalParams,
  journalUpsertSql,
  PostgresJournal,
  undoInsertSql,
  undoParams,
  withoutUndo,
} from "./postgres-journal.js";
import {
  ClientPool,
  type ConnectTarget,
  closeClient,
  connect,
  destroyClient,
  isMissingDatabase,
  Mutex,
} from "./postgres-session.js";
import { describePgError, messageOf, qualified, quoteIdent, quoteLiteral, sqlState } from "./postgres-sql.js";
import {
  copyRowDecoder,
  decoderFor,
  type Kind,
  pgTypeOfField,
  postgresFieldFor,
  ValueRefused,
} from "./postgres-types.js";
import { parsePostgresUrl } from "./postgres-url.js";
import { BatchWriter } from "./postgres-write.js";

/** Query config that leaves every value as PostgreSQL's text (decoded by the connector, as COPY's). */
const RAW_TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

/** A split needs at least this many rows per range. */
const MIN_ROWS_PER_RANGE = 2;

/**
 * For a field of each type, the column types whose input reads the field's delimited text
 * (see `TextExport`) as the same value the record path would write (the session is UTC, so a
 * timestamp's text is read as UTC). Pairs left out (a datetime into a `date`, a double into
 * `numeric`, anything into arrays) take the record path.
 */
const TEXT_TARGETS: Partial<Record<FieldType, ReadonlySet<Kind>>> = {
  integer: new Set<Kind>(["int2", "int4", "int8", "numeric", "float4", "float8", "bool"]),
  boolean: new Set<Kind>(["bool", "int2", "int4", "int8", "numeric"]),
  decimal: new Set<Kind>(["numeric", "float4", "float8"]),
  float: new Set<Kind>(["float4", "float8"]),
  text: new Set<Kind>(["text", "varchar", "bpchar", "uuid", "enum", "json", "jsonb"]),
  uuid: new Set<Kind>(["uuid", "text", "varchar", "bpchar"]),
  bytes: new Set<Kind>(["bytea"]),
  date: new Set<Kind>(["date", "timestamp", "timestamptz"]),
  datetime: new Set<Kind>(["timestamp", "timestamptz"]),
  json: new Set<Kind>(["json", "jsonb"]),
};

/**
 * Reads the key `primaryKey` of a line of COPY text (fields `fields` of table `to`) straight
 * from its bytes: `(text, start, end)` are the line's bounds, its newline excluded.
 */
function textKeyReader(
  to: TableInfo,
  fields: string[],
  primaryKey: string[],
): (text: Uint8Array, start: number, end: number) => JsonValue {
  // The declared key (a created table gets its primary key once loaded).
  const key = primaryKey.map((k) => ({ at: fields.indexOf(k), col: to.byName.get(k) as ColumnInfo }));
  if (key.length === 0 || key.some((k) => k.at < 0 || k.col === undefined)) {
    throw new FerryError("E_INTERNAL", `${to.name}: its key is not among the text's fields: a bug in Ferry`);
  }
  const field = (buf: Buffer, start: number, end: number, at: number, col: ColumnInfo): JsonValue => {
    let from = start;
    for (let n = 0; n < at; n++) from = buf.indexOf(9, from) + 1;
    let to = buf.indexOf(9, from);
    if (to < 0 || to > end) to = end;
    const raw = buf.toString("utf8", from, to);
    return raw === "\\N" ? null : encodeValue(col.decode(raw.indexOf("\\") < 0 ? raw : unescapeCopyText(raw)));
  };
  const one = key.length === 1 ? (key[0] as (typeof key)[number]) : undefined;
  return (text, start, end) => {
    const buf = Buffer.isBuffer(text) ? text : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
    return one ? field(buf, start, end, one.at, one.col) : key.map(({ at, col }) => field(buf, start, end, at, col));
  };
}

/** The bookmark after a COPY text line (split at its tabs) whose key fields are at `key[i].at`. */
function keyBookmark(parts: string[], key: { at: number; col: ColumnInfo }[]): Bookmark {
  return { after: key.map(({ at, col }) => encodeValue(col.decode(unescapeCopyText(parts[at] as string)))) };
}

/** Bytes of COPY text {@link PostgresConnector.exportText} gathers before passing them on. */
const TEXT_CHUNK_BYTES = 1 << 20;

/** Whole lines of COPY text as a {@link TextChunk}: their count and the bookmark after the last. */
function textChunkOf(lines: Buffer, bookmarkOf: (line: string) => Bookmark): TextChunk {
  const rows = countLines(lines);
  const start = lines.lastIndexOf(10, lines.length - 2) + 1;
  return { text: lines, rows, bookmark: bookmarkOf(lines.toString("utf8", start, lines.length - 1)) };
}

/**
 * Opens `postgres://` and `postgresql://` instances.
 *
 * @example
 * const source = await postgresFactory.open("postgres://app:secret@db:5432/shop?schema=public", { readers: 4 });
 */
export const postgresFactory: ConnectorFactory = {
  schemes: ["postgres", "postgresql"],
  usage: "postgres://USER:PASSWORD@HOST:PORT/DATABASE?schema=NAME",
  engine: "postgres",
  mapField: postgresFieldFor,
  textDecoder(collection: CollectionSchema, fields: string[]): (line: string) => Row {
    const byName = new Map(collection.fields.map((f) => [f.name, f]));
    const decoders = fields.map((n) => {
      const f = byName.get(n);
      if (!f) throw new FerryError("E_CONFIG", `${collection.name} has no field ${n} (its text names it)`);
      return decoderFor(pgTypeOfField(f));
    });
    const decode = copyRowDecoder(fields, decoders);
    return (line) => decode(line.split("\t"));
  },
  async open(url: string, options: ConnectorOptions): Promise<Connector> {
    return PostgresConnector.open(url, options);
  },
};

/** Where a read starts and ends, decoded from bookmarks. */
interface Bounds {
  after?: Value[];
  upTo?: Value[];
  offset?: number;
}

/**
 * How the work of one write transaction ends: `commit` (its value), with `checkpoint` (when
 * given) saved in `_ferry_journal` in the same transaction, its entry made from `result`, and
 * its undo row (when its `undo` gives one) in `_ferry_undo`; or `rollback` (its value),
 * nothing of it kept.
 */
type TransactionEnd<T> = { commit: T; checkpoint: Checkpoint | undefined; result: WriteResult } | { rollback: T };

/**
 * A PostgreSQL schema as a Ferry instance.
 *
 * - Configuration comes from the URL only (see {@link parsePostgresUrl}); every connection
 *   runs with TimeZone UTC, DateStyle ISO, extra_float_digits 3, bytea_output hex,
 *   IntervalStyle postgres, client_encoding UTF8 and `search_path` = the schema.
 * - A source (`write` falsy) reads from one snapshot taken at `open`: its first connection
 *   opens a `REPEATABLE READ READ ONLY` transaction and exports it; each `read` (and each bulk
 *   batch) takes a reader connection of its own that imports it, up to `readers` of them,
 *   opened on demand (so at most `readers` + 1 connections). Discovery, counts, splits and
 *   lookups run on the first connection, so every figure matches the reads. The transactions
 *   stay open until `close()` (holding back vacuum meanwhile).
 * - A target (`write`) creates its database and schema when missing, and writes on a pool of
 *   `writers` connections (default 1), one transaction per `write`, journal row included.
 * - Tables are read in primary-key order, `COPY (SELECT … ORDER BY pk) TO STDOUT`, resumed
 *   after the last key (`{ after: [key values] }`); a table without a primary key is read in
 *   physical order and resumed by row offset (`{ offset: n }`), which assumes nobody writes
 *   the table meanwhile.
 * - Tables it creates get keys, unique constraints, indexes and foreign keys in `finish`,
 *   after the data; `finish` also moves identity and serial sequences past the copied maximum.
 * - Values: see `decoderFor`/`encoderFor` in postgres-types.ts. `json`/`jsonb` documents go
 *   through `JSON.parse`: `json` loses its formatting, a JSON `null` document reads as SQL
 *   NULL and numbers beyond double precision are rounded, on the record path only (the
 *   PostgreSQL → PostgreSQL bulk path copies bytes). Dates outside JavaScript's range (beyond
 *   year 275760) read as invalid dates and are refused when written.
 */
export class PostgresConnector implements Connector, BulkTransfer, TextExport {
  readonly engine = "postgres";
  readonly concurrentWrites = true;
  readonly displayUrl: string;
  readonly identity: string;
  /** The schema whose tables are the collections. */
  readonly schema: string;

  readonly #target: ConnectTarget;
  readonly #forWrite: boolean;
  readonly #readers: number;
  #closed = false;
  readonly #tables = new Map<string, TableInfo>();
  readonly #counts = new Map<string, number>();
  readonly #journal: PostgresJournal;

  // A source: the snapshot's connection, and the readers that import it.
  #primary: Promise<pg.Client> | undefined;
  #snapshot: string | undefined;
  readonly #primaryLock = new Mutex();
  #readerPool: ClientPool | undefined;

  // A target: the writers' pool.
  #pool: ClientPool | undefined;
  #schemaReady = false;
  #journalReady = false;
  #undoReady = false;
  /** Foreign keys that could not be built yet (the referenced table or key was missing). */
  readonly #pendingForeignKeys = new Map<string, { table: string; sql: string }>();

  private constructor(url: string, options: ConnectorOptions) {
    const location = parsePostgresUrl(url);
    this.displayUrl = redactUrl(url);
    this.schema = location.schema;
    this.identity = `${location.host}:${location.port}/${location.database}/${location.schema}`;
    this.#target = { location, displayUrl: this.displayUrl };
    this.#forWrite = options.write === true;
    this.#readers = Math.max(1, Math.floor(options.readers ?? 1));
    const writers = Math.max(1, Math.floor(options.writers ?? 1));
    if (this.#forWrite) this.#pool = new ClientPool(writers, () => this.#openWriter());
    else this.#readerPool = new ClientPool(this.#readers, () => this.#openReader());
    this.#journal = new PostgresJournal({
      schema: this.schema,
      read: (fn) => this.#meta(fn),
      write: (fn) => this.#withJournal(fn),
      change: (fn) =>
        this.#writerPool()
          .use(fn)
          .catch((err: unknown) => {
            throw this.#error(err, "forget a run in the journal");
          }),
    });
  }

  /**
   * Opens a connector for `url` (see {@link postgresFactory}). A source connects at once and
   * takes its snapshot, so nothing written after `open` is seen; a target connects (and
   * creates its database and schema) on first use.
   *
   * @throws FerryError `E_CONFIG` for a malformed URL; for a source, `E_CONNECTION` when the
   * server cannot be reached or the database does not exist (`details.missing`).
   */
  static async open(url: string, options: ConnectorOptions = {}): Promise<PostgresConnector> {
    const c = new PostgresConnector(url, options);
    if (!c.#forWrite) {
      try {
        await c.#primaryClient();
      } catch (err) {
        await c.close();
        throw err;
      }
    }
    return c;
  }

  /** See {@link Connector.mapField}: {@link postgresFieldFor}. */
  mapField(field: FieldSchema, collection: CollectionSchema): FieldSchema {
    return postgresFieldFor(field, collection);
  }

  // -------------------------------------------------------------------------------------
  // Connections

  #assertOpen(): void {
    if (this.#closed)
      throw new FerryError("E_INTERNAL", `postgres connector for ${this.displayUrl} used after close()`);
  }

  async #primaryClient(): Promise<pg.Client> {
    this.#assertOpen();
    // Opened once: a source never silently moves to a newer snapshot.
    this.#primary ??= this.#openPrimary();
    return this.#primary;
  }

  /** The source's first connection: a read-only snapshot, exported for the readers. */
  async #openPrimary(): Promise<pg.Client> {
    const client = await connect(this.#target);
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      const r = await client.query<{ id: string }>("SELECT pg_export_snapshot() AS id");
      this.#snapshot = r.rows[0]?.id;
    } catch (cause) {
      await closeClient(client);
      throw this.#error(cause, "open a snapshot");
    }
    return client;
  }

  /** A reader of a source: a connection in the exported snapshot. */
  async #openReader(): Promise<pg.Client> {
    await this.#primaryClient();
    const client = await connect(this.#target);
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(this.#snapshot ?? "")}`);
      // Physical order must stay the same across the reads of a table without a key.
      await client.query("SET LOCAL synchronize_seqscans = off");
      await client.query("SET LOCAL max_parallel_workers_per_gather = 0");
    } catch (cause) {
      await closeClient(client);
      throw this.#error(cause, "join the source's snapshot");
    }
    return client;
  }

  /** A target's connection; its database and schema are created when missing. */
  async #openWriter(): Promise<pg.Client> {
    let client: pg.Client;
    try {
      client = await connect(this.#target);
    } catch (err) {
      if (!isMissingDatabase(err)) throw err;
      await this.#createDatabase();
      client = await connect(this.#target);
    }
    if (!this.#schemaReady) {
      try {
        if (!(await schemaExists(client, this.schema))) {
          await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`).catch((err: unknown) => {
            if (sqlState(err) !== "23505" && sqlState(err) !== "42P06") throw err;
          });
        }
        this.#schemaReady = true;
      } catch (cause) {
        await closeClient(client);
        if (sqlState(cause) === "42501") {
          throw new FerryError(
            "E_PERMISSION",
            `user "${this.#target.location.user}" may not create schema "${this.schema}" at ${this.displayUrl}: GRANT CREATE ON DATABASE ${quoteIdent(this.#target.location.database)} TO ${quoteIdent(this.#target.location.user)}, or create the schema first`,
            { cause },
          );
        }
        throw this.#error(cause, "create the schema");
      }
    }
    return client;
  }

  async #createDatabase(): Promise<void> {
    const { database, user } = this.#target.location;
    let admin: pg.Client;
    try {
      admin = await connect(this.#target, "postgres");
    } catch (err) {
      if (!isMissingDatabase(err)) throw err;
      admin = await connect(this.#target, "template1");
    }
    try {
      await admin.query(`CREATE DATABASE ${quoteIdent(database)}`);
    } catch (cause) {
      const code = sqlState(cause);
      if (code === "42P04" || code === "23505") return;
      if (code === "42501") {
        throw new FerryError(
          "E_PERMISSION",
          `user "${user}" may not create database "${database}" at ${this.displayUrl}: create it first (createdb), or ALTER ROLE ${quoteIdent(user)} CREATEDB`,
          { cause },
        );
      }
      throw this.#error(cause, `create database ${database}`);
    } finally {
      await closeClient(admin);
    }
  }

  /**
   * Runs catalog and other short queries: on a source inside the snapshot (one at a time, in
   * a savepoint, so a refused query leaves the snapshot usable); on a target on a pooled
   * connection.
   */
  async #meta<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    this.#assertOpen();
    if (this.#pool) return this.#pool.use(fn);
    return this.#primaryLock.run(async () => {
      const client = await this.#primaryClient();
      await client.query("SAVEPOINT ferry_meta");
      try {
        const out = await fn(client);
        await client.query("RELEASE SAVEPOINT ferry_meta");
        return out;
      } catch (err) {
        await client.query("ROLLBACK TO SAVEPOINT ferry_meta").catch(() => {});
        throw err;
      }
    });
  }

  #writerPool(): ClientPool {
    this.#assertOpen();
    if (!this.#pool) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `postgres instance ${this.displayUrl} is open read-only as a source: open it as the target ({ write: true }) to write to it`,
      );
    }
    return this.#pool;
  }

  /** Runs `fn` on a target connection, the journal table created. */
  async #withJournal<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return this.#writerPool().use(async (client) => {
      await this.#ensureJournal(client);
      return fn(client);
    });
  }

  async #ensureJournal(client: pg.Client): Promise<void> {
    if (this.#journalReady) return;
    try {
      await ensureJournal(client, this.schema);
    } catch (cause) {
      throw this.#error(cause, "create the journal table _ferry_journal");
    }
    this.#journalReady = true;
  }

  async #ensureUndo(client: pg.Client): Promise<void> {
    if (this.#undoReady) return;
    try {
      await ensureUndo(client, this.schema);
    } catch (cause) {
      throw this.#error(cause, "create the undo log table _ferry_undo");
    }
    this.#undoReady = true;
  }

  /**
   * Runs `work` in one transaction on a connection of `pool` (the journal table created first
   * when `journal`, the undo log's when `undo`), then commits or rolls back as it says (see
   * {@link TransactionEnd}). A checkpoint with `undo` is refused (`E_INTERNAL`, nothing
   * committed) unless `undo` was given: the bulk paths keep no undo log. When
   * anything fails the transaction is rolled back, and the connection is discarded when the
   * rollback fails too or the error is not the server's refusal (a lost connection, a broken
   * stream); the error is thrown as `wrap` makes it (as it is without `wrap`).
   */
  async #inTransaction<T>(
    pool: ClientPool,
    work: (client: pg.Client) => Promise<TransactionEnd<T>>,
    options: { journal: boolean; undo?: boolean; wrap?: (err: unknown) => FerryError },
  ): Promise<T> {
    const client = await pool.acquire();
    let broken = false;
    try {
      if (options.journal) await this.#ensureJournal(client);
      // DDL outside the batch's transaction: concurrent writers never wait on each other's.
      if (options.undo) await this.#ensureUndo(client);
      await client.query("BEGIN");
      try {
        const end = await work(client);
        if ("rollback" in end) {
          await client.query("ROLLBACK");
          return end.rollback;
        }
        const checkpoint = end.checkpoint && (options.undo ? end.checkpoint : withoutUndo(end.checkpoint));
        if (checkpoint) {
          const saved = journalParams(checkpoint.id, checkpoint.entry(end.result));
          const undo = checkpoint.undo?.(end.result);
          await client.query(journalUpsertSql(this.schema), saved);
          // In the same transaction: the batch, its checkpoint and its undo row commit together.
          if (undo !== undefined) await client.query(undoInsertSql(this.schema), undoParams(undo));
        }
        await client.query("COMMIT");
        return end.commit;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        throw err;
      }
    } catch (err) {
      if (!isFerryError(err) && sqlState(err) === undefined) broken = true;
      throw options.wrap ? options.wrap(err) : err;
    } finally {
      pool.release(client, broken);
    }
  }

  /**
   * A connection for one read from start to end: a snapshot reader on a source, a new
   * connection on a target. `done(false)` closes it (a read abandoned mid-COPY).
   */
  async #readConnection(): Promise<{ client: pg.Client; done: (clean: boolean) => void }> {
    this.#assertOpen();
    if (this.#readerPool) {
      const pool = this.#readerPool;
      const client = await pool.acquire();
      return { client, done: (clean) => pool.release(client, !clean) };
    }
    const client = await connect(this.#target);
    return { client, done: (clean) => (clean ? void closeClient(client) : destroyClient(client)) };
  }

  /** A driver or server error as a FerryError that says what failed and what to do. */
  #error(err: unknown, what: string, table?: string): FerryError {
    if (isFerryError(err)) return err;
    const code = sqlState(err);
    const user = this.#target.location.user;
    const where = table ? `${this.schema}.${table}` : this.schema;
    if (code === "42501") {
      const grant = /read|count|split|look up/.test(what)
        ? `GRANT SELECT ON ${qualified(this.schema, table ?? "TABLE")} TO ${quoteIdent(user)}`
        : /write|copy rows/.test(what)
          ? `GRANT SELECT, INSERT, UPDATE ON ${qualified(this.schema, table ?? "TABLE")} TO ${quoteIdent(user)}`
          : /sequence/.test(what)
            ? `GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA ${quoteIdent(this.schema)} TO ${quoteIdent(user)}`
            : `GRANT USAGE, CREATE ON SCHEMA ${quoteIdent(this.schema)} TO ${quoteIdent(user)} (or run as the tables' owner)`;
      return new FerryError(
        "E_PERMISSION",
        `user "${user}" may not ${what} (${where}) at ${this.displayUrl}: ${messageOf(err)}: ${grant}`,
        { cause: err, details: { table: where, sqlState: code } },
      );
    }
    if (code === undefined) {
      return new FerryError(
        "E_CONNECTION",
        `lost the connection to PostgreSQL at ${this.displayUrl} while trying to ${what}: ${messageOf(err)}: check the server, then resume`,
        { cause: err },
      );
    }
    // A refused read is the instance failing to serve (E_CONNECTION); a refused write, E_WRITE.
    const reading = /read|count|split|look up|snapshot|catalog/.test(what);
    return new FerryError(
      reading ? "E_CONNECTION" : "E_WRITE",
      `cannot ${what} (${where}) at ${this.displayUrl}: ${describePgError(err)}`,
      { cause: err, details: { table: where, sqlState: code } },
    );
  }

  // -------------------------------------------------------------------------------------
  // Discovery

  async version(): Promise<string> {
    const r = await this.#meta((c) => c.query<{ v: string }>("SELECT current_setting('server_version') AS v"));
    return `PostgreSQL ${String(r.rows[0]?.v ?? "?")}`;
  }

  async check(): Promise<void> {
    if (this.#pool) {
      await this.#pool.use(async (c) => c.query("SELECT 1"));
      return;
    }
    const exists = await this.#meta((c) => schemaExists(c, this.schema));
    if (!exists) {
      throw new FerryError(
        "E_CONNECTION",
        `schema "${this.schema}" does not exist in database "${this.#target.location.database}" at ${this.displayUrl}: check ?schema= in the URL`,
        { details: { missing: true, schema: this.schema } },
      );
    }
  }

  async discover(): Promise<CollectionSchema[]> {
    const tables = await this.#meta((c) => describeTables(c, this.schema)).catch((err: unknown) => {
      throw this.#error(err, "read the catalog");
    });
    this.#tables.clear();
    for (const t of tables) this.#tables.set(t.name, t);
    return tables.map((t) => structuredClone(t.schema));
  }

  /** The description of a table (cached), or undefined when it does not exist. */
  async #table(name: string, fresh = false): Promise<TableInfo | undefined> {
    if (!fresh) {
      const cached = this.#tables.get(name);
      if (cached) return cached;
    }
    const [info] = await this.#meta((c) => describeTables(c, this.schema, [name])).catch((err: unknown) => {
      throw this.#error(err, "read the catalog", name);
    });
    if (info) this.#tables.set(name, info);
    else this.#tables.delete(name);
    return info;
  }

  async #requireTable(name: string): Promise<TableInfo> {
    const info = await this.#table(name);
    if (!info) {
      throw new FerryError(
        "E_NOT_FOUND",
        `table not found: ${this.schema}.${name} in ${this.displayUrl}: check the collection name`,
        { details: { collection: name } },
      );
    }
    return info;
  }

  async count(collection: CollectionSchema): Promise<number | undefined> {
    const info = await this.#requireTable(collection.name);
    const n = await this.#meta(async (c) => {
      const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${qualified(this.schema, info.name)}`);
      return Number(r.rows[0]?.n ?? 0);
    }).catch((err: unknown) => {
      throw this.#error(err, "count rows", info.name);
    });
    this.#counts.set(info.name, n);
    return n;
  }

  /**
   * Bytes on disk of the table with its indexes and TOAST data (`pg_total_relation_size`):
   * the server's current figure, not the snapshot's (sizes are not transactional).
   */
  async size(collection: CollectionSchema): Promise<number | undefined> {
    const info = await this.#requireTable(collection.name);
    return this.#meta(async (c) => {
      const r = await c.query<{ n: string | null }>("SELECT pg_total_relation_size($1::regclass)::text AS n", [
        qualified(this.schema, info.name),
      ]);
      const n = r.rows[0]?.n;
      return n === null || n === undefined ? undefined : Number(n);
    }).catch((err: unknown) => {
      throw this.#error(err, "read the table size", info.name);
    });
  }

  // -------------------------------------------------------------------------------------
  // Reading

  /** Decodes `{ after: [...] }` / `{ offset: n }` bookmarks for `info`. */
  #bounds(info: TableInfo, after: Bookmark | undefined, upTo: Bookmark | undefined): Bounds {
    const out: Bounds = {};
    const key = info.primaryKey;
    const decode = (b: Bookmark, what: string): Value[] | undefined => {
      const values = b.after;
      if (key.length === 0 || !Array.isArray(values)) {
        throw new FerryError(
          "E_CONFIG",
          `${what} bookmark does not fit table ${info.name} (key ${key.join(", ") || "none"}): the table changed since; start this collection over`,
          { details: { collection: info.name } },
        );
      }
      if (values.length === 0) return undefined;
      if (values.length !== key.length) return decode({}, what);
      return values.map((v) => decodeValue(v as JsonValue));
    };
    if (key.length === 0) {
      if (after !== undefined) {
        const offset = after.offset;
        if (typeof offset !== "number" || !Number.isInteger(offset) || offset < 0) {
          throw new FerryError(
            "E_CONFIG",
            `bookmark does not fit table ${info.name} (no primary key: read by offset): start this collection over`,
          );
        }
        out.offset = offset;
      }
      if (upTo !== undefined) {
        throw new FerryError("E_CONFIG", `table ${info.name} has no primary key: it cannot be read in key ranges`);
      }
      return out;
    }
    if (after !== undefined) {
      const v = decode(after, "start");
      if (v) out.after = v;
    }
    if (upTo !== undefined) {
      const v = decode(upTo, "end");
      if (v) out.upTo = v;
    }
    return out;
  }

  /** `WHERE` for a key range of `info` (empty when unbounded). */
  #where(info: TableInfo, b: Bounds): string {
    const key = info.primaryKey.map((k) => info.byName.get(k) as ColumnInfo);
    const tuple =
      key.length === 1 ? quoteIdent((key[0] as ColumnInfo).name) : `(${key.map((c) => quoteIdent(c.name)).join(", ")})`;
    const literal = (values: Value[]): string => {
      const parts = key.map((c, i) => {
        let text: string | null;
        try {
          text = c.encode(values[i] as Value);
        } catch (err) {
          throw new FerryError(
            "E_CONFIG",
            `bookmark value does not fit key ${info.name}.${c.name}: ${messageOf(err)}: start this collection over`,
          );
        }
        return text === null ? "NULL" : `${quoteLiteral(text)}::${c.nativeType}`;
      });
      return parts.length === 1 ? (parts[0] as string) : `(${parts.join(", ")})`;
    };
    const conds: string[] = [];
    if (b.after) conds.push(`${tuple} > ${literal(b.after)}`);
    if (b.upTo) conds.push(`${tuple} <= ${literal(b.upTo)}`);
    return conds.length === 0 ? "" : `WHERE ${conds.join(" AND ")}`;
  }

  #orderBy(info: TableInfo, desc = false): string {
    return info.primaryKey.map((k) => `${quoteIdent(k)}${desc ? " DESC" : ""}`).join(", ");
  }

  /** The columns named `names`, or `E_NOT_FOUND` naming schema.table.column and what to check. */
  #columns(info: TableInfo, names: readonly string[], check: string): ColumnInfo[] {
    return names.map((n) => {
      const col = info.byName.get(n);
      if (!col) {
        throw new FerryError("E_NOT_FOUND", `no column ${n} in table ${this.schema}.${info.name}: check ${check}`, {
          details: { collection: info.name, field: n },
        });
      }
      return col;
    });
  }

  async *read(collection: CollectionSchema, options: ReadOptions): AsyncGenerator<ReadBatch> {
    const info = await this.#requireTable(collection.name);
    const names = options.fields ?? info.columns.map((c) => c.name);
    const columns = this.#columns(info, names, "the field name");
    const keyed = info.primaryKey.length > 0;
    const select = names.map(quoteIdent);
    const keyAt = info.primaryKey.map((k) => {
      const i = names.indexOf(k);
      if (i >= 0) return i;
      select.push(quoteIdent(k));
      return select.length - 1;
    });
    const keyCols = info.primaryKey.map((k) => info.byName.get(k) as ColumnInfo);
    const bounds = this.#bounds(info, options.after, options.upTo);
    const table = qualified(this.schema, info.name);
    const sql = keyed
      ? `COPY (SELECT ${select.join(", ")} FROM ${table} ${this.#where(info, bounds)} ORDER BY ${this.#orderBy(info)}) TO STDOUT`
      : `COPY (SELECT ${select.join(", ")} FROM ${table}${bounds.offset ? ` OFFSET ${bounds.offset}` : ""}) TO STDOUT`;
    const batchSize = Math.max(1, Math.floor(options.batchSize));
    const decodeRow = copyRowDecoder(
      names,
      columns.map((c) => c.decode),
    );
    let offset = bounds.offset ?? 0;

    const { client, done } = await this.#readConnection();
    let clean = false;
    try {
      const stream = client.query(copyTo(sql));
      const splitter = new CopyLineSplitter();
      let records: Row[] = [];
      let lastParts: string[] | undefined;
      const key = keyCols.map((col, i) => ({ at: keyAt[i] as number, col }));
      const bookmark = (): Bookmark => (keyed ? keyBookmark(lastParts as string[], key) : { offset });
      const take = (line: string): void => {
        const parts = line.split("\t");
        records.push(decodeRow(parts));
        lastParts = parts;
        offset++;
      };
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          for (const line of splitter.push(chunk)) {
            take(line);
            if (records.length >= batchSize) {
              const batch = { records, bookmark: bookmark() };
              records = [];
              yield batch;
            }
          }
        }
        for (const line of splitter.end()) take(line);
      } catch (err) {
        throw this.#error(err, "read rows", info.name);
      }
      if (records.length > 0) yield { records, bookmark: bookmark() };
      clean = true;
    } finally {
      done(clean);
    }
  }

  /**
   * The fields of each line {@link exportText} gives: the table's columns, in table order;
   * undefined for a table without a primary key, or with a generated column (its value is
   * not written into PostgreSQL, yet other engines keep it: such a table goes as records).
   * The table must have been described (`discover`).
   */
  textFields(collection: CollectionSchema): string[] | undefined {
    const info = this.#tables.get(collection.name);
    if (!info || info.primaryKey.length === 0 || info.columns.some((c) => c.generated)) return undefined;
    return info.columns.map((c) => c.name);
  }

  /**
   * The table's rows as COPY text, as the server spells them (Ferry's session: UTC, ISO
   * dates, hex bytes), in key order from the source's snapshot: `COPY (SELECT … ORDER BY key
   * LIMIT n) TO STDOUT`, passed on in chunks of whole lines, never split into records.
   */
  async *exportText(
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number },
  ): AsyncIterable<TextChunk> {
    const info = await this.#requireTable(collection.name);
    const names = this.textFields(collection);
    if (!names) {
      throw new FerryError(
        "E_INTERNAL",
        `table ${info.name} has no text export (check textFields first): a bug in Ferry`,
      );
    }
    const keyCols = info.primaryKey.map((k) => ({ at: names.indexOf(k), col: info.byName.get(k) as ColumnInfo }));
    const bounds = this.#bounds(info, options.after, options.upTo);
    const limit = Math.max(1, Math.floor(options.limit));
    const sql = `COPY (SELECT ${names.map(quoteIdent).join(", ")} FROM ${qualified(this.schema, info.name)} ${this.#where(info, bounds)} ORDER BY ${this.#orderBy(info)} LIMIT ${limit}) TO STDOUT`;
    const bookmarkOf = (line: string): Bookmark => keyBookmark(line.split("\t"), keyCols);
    const { client, done } = await this.#readConnection();
    let clean = false;
    try {
      const stream = client.query(copyTo(sql));
      let held: Buffer[] = [];
      let heldBytes = 0;
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          held.push(chunk);
          heldBytes += chunk.length;
          // Joined once enough is held and a line ends in the newest piece (a huge row is not re-joined per piece).
          if (heldBytes < TEXT_CHUNK_BYTES || chunk.lastIndexOf(10) < 0) continue;
          const all = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, heldBytes);
          const end = all.lastIndexOf(10) + 1;
          held = end < all.length ? [all.subarray(end)] : [];
          heldBytes = all.length - end;
          if (end > 0) yield textChunkOf(all.subarray(0, end), bookmarkOf);
        }
      } catch (err) {
        throw this.#error(err, "read rows", info.name);
      }
      if (heldBytes > 0) {
        const rest = Buffer.concat(held, heldBytes);
        if (rest[rest.length - 1] !== 10) {
          throw new FerryError("E_INTERNAL", `COPY of ${info.name} ended inside a line: a bug in Ferry`);
        }
        yield textChunkOf(rest, bookmarkOf);
      }
      clean = true;
    } finally {
      done(clean);
    }
  }

  /**
   * Up to `parts − 1` key boundaries cutting the table into ranges of similar row counts:
   * from the statistics' histogram of the key when the key is one column and the table was
   * analyzed, else by `ORDER BY key OFFSET k LIMIT 1` on the key's index. None for a table
   * without a primary key. Core only asks when ranges would hold several batches.
   */
  async split(collection: CollectionSchema, parts: number): Promise<Bookmark[]> {
    const info = await this.#requireTable(collection.name);
    const key = info.primaryKey.map((k) => info.byName.get(k) as ColumnInfo);
    parts = Math.floor(parts);
    if (key.length === 0 || parts < 2) return [];
    const n = this.#counts.get(info.name) ?? (await this.count(collection)) ?? 0;
    parts = Math.min(parts, Math.floor(n / MIN_ROWS_PER_RANGE));
    if (parts < 2) return [];
    const table = qualified(this.schema, info.name);
    const bounds = await this.#meta(async (c): Promise<Value[][]> => {
      if (key.length === 1) {
        const col = key[0] as ColumnInfo;
        const r = await c.query<{ b: string | null }>(
          `SELECT histogram_bounds::text AS b FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = $3
           ORDER BY inherited LIMIT 1`,
          [this.schema, info.name, col.name],
        );
        const text = r.rows[0]?.b;
        if (text) {
          const hist = parseArrayLiteral(text).filter((x): x is string => typeof x === "string");
          if (hist.length > parts) {
            const picked: Value[][] = [];
            let previous: string | undefined;
            for (let i = 1; i < parts; i++) {
              const raw = hist[Math.round((i * (hist.length - 1)) / parts)] as string;
              if (raw === previous) continue;
              previous = raw;
              picked.push([col.decode(raw)]);
            }
            return picked;
          }
        }
      }
      const out: Value[][] = [];
      const cols = key.map((k) => quoteIdent(k.name)).join(", ");
      for (let i = 1; i < parts; i++) {
        const at = Math.floor((i * n) / parts) - 1;
        const r = await c.query<string[]>({
          text: `SELECT ${cols} FROM ${table} ORDER BY ${this.#orderBy(info)} OFFSET ${at} LIMIT 1`,
          rowMode: "array",
          types: RAW_TEXT,
        });
        const row = r.rows[0];
        if (!row) break;
        const values = key.map((k, j) => (row[j] === null ? null : k.decode(row[j] as string)));
        if (out.length > 0 && keyString(out[out.length - 1] as Value[]) === keyString(values)) continue;
        out.push(values);
      }
      return out;
    }).catch((err: unknown) => {
      throw this.#error(err, "split into key ranges", info.name);
    });
    return bounds.map((values) => ({ after: values.map(encodeValue) }));
  }

  // -------------------------------------------------------------------------------------
  // Writing

  async prepare(collection: CollectionSchema): Promise<PrepareResult> {
    const pool = this.#writerPool();
    const existing = await this.#table(collection.name, true);
    if (existing) return { schema: structuredClone(existing.schema), created: false };
    if (collection.fields.length === 0) {
      throw new FerryError("E_UNSUPPORTED", `cannot create table ${collection.name}: its schema has no fields`);
    }
    const native =
      collection.engine === "postgres" && collection.native?.engine === "postgres"
        ? splitNativeDdl(collection.native.ddl).pre
        : undefined;
    try {
      await pool.use(async (c) => {
        await c.query("BEGIN");
        try {
          if (native && (await this.#createFromNative(c, collection, native))) {
            await c.query("COMMIT");
            return;
          }
          await c.query(createTableSql(this.schema, collection));
          await c.query("COMMIT");
        } catch (err) {
          await c.query("ROLLBACK").catch(() => {});
          throw err;
        }
      });
    } catch (err) {
      // Created meanwhile by a concurrent prepare: it exists now, as wanted.
      if (sqlState(err) !== "42P07") throw this.#error(err, `create table ${collection.name}`, collection.name);
    }
    const info = await this.#requireTable(collection.name);
    // Keys, unique constraints, indexes and foreign keys are built by finish, as the source has
    // them: from the source's own post-data DDL (same engine), else generated from the schema.
    const schema: CollectionSchema = {
      ...structuredClone(info.schema),
      primaryKey: [...collection.primaryKey],
      uniqueKeys: structuredClone(collection.uniqueKeys ?? []),
      foreignKeys: structuredClone(collection.foreignKeys ?? []),
      indexes: structuredClone(collection.indexes ?? []),
    };
    if (native && collection.native) schema.native = structuredClone(collection.native);
    else delete schema.native;
    return { schema, created: true };
  }

  /**
   * Runs the source's own pre-data DDL (inside the caller's transaction). False, with the
   * statements undone, when they do not create this table with these columns (a transform
   * renamed things): the table is then generated from the fields.
   */
  async #createFromNative(c: pg.Client, collection: CollectionSchema, ddl: string[]): Promise<boolean> {
    await c.query("SAVEPOINT ferry_native");
    for (const sql of ddl) {
      try {
        await c.query(sql);
      } catch (err) {
        await c.query("ROLLBACK TO SAVEPOINT ferry_native");
        if (sqlState(err) === "42P07") throw err;
        throw new FerryError(
          "E_WRITE",
          `cannot create table ${collection.name} at ${this.displayUrl} from its PostgreSQL definition: ${describePgError(err)}: create what it needs first (an extension, a type), or the table itself`,
          { cause: err, details: { collection: collection.name, sql } },
        );
      }
    }
    const cols = await c.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [qualified(this.schema, collection.name)],
    );
    const wanted = new Set(collection.fields.map((f) => f.name));
    const fits = cols.rows.length === wanted.size && cols.rows.every((r) => wanted.has(r.name));
    if (!fits) {
      await c.query("ROLLBACK TO SAVEPOINT ferry_native");
      return false;
    }
    await c.query("RELEASE SAVEPOINT ferry_native");
    return true;
  }

  async lookup(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, Row>> {
    const out = new Map<string, Row>();
    const found = await this.#find(collection, fields, keys, (info) =>
      info.columns.map((c) => `t.${quoteIdent(c.name)}`),
    );
    if (!found) return out;
    for (const row of found.rows) {
      const rec: Row = {};
      found.info.columns.forEach((c, j) => {
        const raw = row[j + 1];
        setField(rec, c.name, raw === null || raw === undefined ? null : c.decode(raw));
      });
      out.set(keyString(keys[Number(row[0])] as Value[]), rec);
    }
    return out;
  }

  /** The `xmin` of each record found, as text (see {@link BulkAdded}). */
  async rowVersions(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const found = await this.#find(collection, fields, keys, () => ["t.xmin::text"]);
    for (const row of found?.rows ?? []) out.set(keyString(keys[Number(row[0])] as Value[]), row[1] as string);
    return out;
  }

  /**
   * The rows of `collection` whose `fields` hold one of `keys`, as `[index in keys, …select]`
   * in PostgreSQL's text; undefined when the table does not exist (it holds no keys).
   */
  async #find(
    collection: CollectionSchema,
    fields: string[],
    keys: Value[][],
    select: (info: TableInfo) => string[],
  ): Promise<{ info: TableInfo; rows: (string | null)[][] } | undefined> {
    if (keys.length === 0 || fields.length === 0) return undefined;
    const info = await this.#table(collection.name);
    if (!info) return undefined;
    const cols = this.#columns(info, fields, "the key fields");
    const arrays: (string | null)[][] = cols.map(() => []);
    const ords: number[] = [];
    keys.forEach((k, i) => {
      const texts: (string | null)[] = [];
      for (let j = 0; j < cols.length; j++) {
        try {
          const t = (cols[j] as ColumnInfo).encode(k[j] ?? null);
          if (t === null) return; // NULL matches nothing
          texts.push(t);
        } catch (err) {
          if (err instanceof ValueRefused) return; // a value the column cannot hold is not there
          throw err;
        }
      }
      for (let j = 0; j < texts.length; j++) arrays[j]?.push(texts[j] as string | null);
      ords.push(i);
    });
    if (ords.length === 0) return undefined;
    const params = [...arrays, ords];
    const unnest = cols.map((c, j) => `$${j + 1}::${c.nativeType}[]`).join(", ");
    const aliases = cols.map((_, j) => `k${j}`).join(", ");
    const on = cols.map((c, j) => `t.${quoteIdent(c.name)} = k.k${j}`).join(" AND ");
    const sql = `SELECT k.ord, ${select(info).join(", ")} FROM unnest(${unnest}, $${cols.length + 1}::int4[]) AS k(${aliases}, ord)
      JOIN ${qualified(this.schema, info.name)} t ON ${on}`;
    const rows = await this.#meta(async (c) => {
      const r = await c.query<(string | null)[]>({ text: sql, values: params, rowMode: "array", types: RAW_TEXT });
      return r.rows;
    }).catch((err: unknown) => {
      throw this.#error(err, "look up keys", info.name);
    });
    return { info, rows };
  }

  /**
   * Applies `ops` in one transaction with `checkpoint` saved in `_ferry_journal` in the
   * same transaction (and its undo row, when its `undo` gives one, in `_ferry_undo`).
   * Inserts go by COPY; replaces by `INSERT … ON CONFLICT (match) DO UPDATE` when the
   * match fields are the primary key or a unique key (else `UPDATE`); updates by `UPDATE …
   * FROM` a staging table; deletes by `DELETE … USING` one (a delete whose record is not
   * there is no failure). A record the server refuses (a constraint, a value its type
   * rejects, a trigger; for a delete, a foreign key that still references the record) or
   * that cannot be encoded for its column becomes a failure with the reason; the rest of
   * the batch applies.
   *
   * @throws FerryError when the transaction itself fails (connection lost: `E_CONNECTION`;
   * a permission: `E_PERMISSION`; a deferred constraint at commit: `E_WRITE`): then nothing
   * of the batch, and not the checkpoint, was written.
   */
  async write(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult> {
    const pool = this.#writerPool();
    const info = await this.#requireTable(collection.name);
    return this.#inTransaction(
      pool,
      async (client) => {
        const result: WriteResult = { failures: await new BatchWriter(client, this.schema, info).apply(ops) };
        return { commit: result, checkpoint, result };
      },
      {
        journal: Boolean(checkpoint),
        undo: checkpoint?.undo !== undefined,
        wrap: (err) => {
          const e = this.#error(err, `write rows into ${info.name}`, info.name);
          if (e.code === "E_WRITE") e.message += ": nothing of this batch was written";
          return e;
        },
      },
    );
  }

  async finish(collection: CollectionSchema): Promise<void> {
    const pool = this.#writerPool();
    const info = await this.#table(collection.name, true);
    if (!info) {
      throw new FerryError("E_NOT_FOUND", `table not found: ${this.schema}.${collection.name} in ${this.displayUrl}`);
    }
    const native =
      collection.engine === "postgres" && collection.native?.engine === "postgres"
        ? splitNativeDdl(collection.native.ddl).post
        : undefined;
    const existingTables = new Set(
      await this.#meta(async (c) => (await listTables(c, this.schema)).map((t) => t.name)),
    );
    await pool.use(async (c) => {
      if (native) {
        for (const sql of native) {
          const fk = /^ALTER TABLE .* ADD CONSTRAINT .* FOREIGN KEY/s.test(sql);
          await this.#postData(c, info.name, sql, fk);
        }
      } else {
        for (const step of postDataSql(this.schema, collection))
          await this.#generatedStep(c, info, step, existingTables);
      }
      // Foreign keys left over by earlier finishes whose tables or keys may exist now.
      for (const [id, p] of [...this.#pendingForeignKeys]) {
        this.#pendingForeignKeys.delete(id);
        await this.#postData(c, p.table, p.sql, true);
      }
    });
    const fresh = (await this.#table(collection.name, true)) as TableInfo;
    await this.#advanceSequences(fresh);
  }

  /**
   * Runs one post-data statement, skipping what exists already (so finish can run again
   * after a resume). A foreign key whose table or key is missing waits for a later finish;
   * one that existing rows break is added `NOT VALID` (new rows are checked; the old ones
   * were copied as they were).
   */
  async #postData(c: pg.Client, table: string, sql: string, foreignKey: boolean): Promise<void> {
    try {
      await c.query(sql);
    } catch (err) {
      const code = sqlState(err);
      if (code === "42P07" || code === "42710" || code === "42P16") return;
      if (foreignKey && (code === "42P01" || code === "42830")) {
        this.#pendingForeignKeys.set(`${table}\u0001${sql}`, { table, sql });
        return;
      }
      if (foreignKey && code === "23503" && !/NOT VALID\s*$/.test(sql)) {
        await this.#postData(c, table, `${sql} NOT VALID`, true);
        return;
      }
      throw this.#error(err, `build a key or index of ${table}: ${sql}`, table);
    }
  }

  async #generatedStep(c: pg.Client, info: TableInfo, step: PostDataStep, tables: Set<string>): Promise<void> {
    const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    switch (step.kind) {
      case "primary-key":
        if (info.primaryKey.length === 0) await this.#postData(c, info.name, step.sql, false);
        return;
      case "unique":
        if (!info.uniqueSets.some((u) => same(u, step.fields))) await this.#postData(c, info.name, step.sql, false);
        return;
      case "index": {
        const ix = step.index;
        const has = (info.schema.indexes ?? []).some((i) => same(i.fields, ix.fields) && i.unique === ix.unique);
        if (has || (ix.unique && info.uniqueSets.some((u) => same(u, ix.fields)))) return;
        try {
          await c.query(step.sql(ix.name));
        } catch (err) {
          // Index names are per schema in PostgreSQL (per table in MySQL): prefix the table.
          if (sqlState(err) !== "42P07") throw this.#error(err, `build index ${ix.name} of ${info.name}`, info.name);
          await this.#postData(c, info.name, step.sql(shortName(`${info.name}_${ix.name}`)), false);
        }
        return;
      }
      case "foreign-key": {
        const fk = step.fk;
        const has = (info.schema.foreignKeys ?? []).some(
          (f) =>
            same(f.fields, fk.fields) &&
            f.references.collection === fk.references.collection &&
            same(f.references.fields, fk.references.fields),
        );
        if (has) return;
        if (!tables.has(fk.references.collection)) {
          this.#pendingForeignKeys.set(`${info.name}\u0001${step.sql}`, { table: info.name, sql: step.sql });
          return;
        }
        await this.#postData(c, info.name, step.sql, true);
        return;
      }
    }
  }

  /** Moves each sequence that fills a column (identity, serial) past the column's maximum. */
  async #advanceSequences(info: TableInfo): Promise<void> {
    const filled = info.columns.filter((c) => c.sequence !== undefined);
    if (filled.length === 0) return;
    await this.#writerPool()
      .use(async (c) => {
        for (const col of filled) {
          const seq = col.sequence as string;
          const r = await c.query<{ m: string | null; last: string | null; inc: string | null }>(
            `SELECT (SELECT max(${quoteIdent(col.name)})::text FROM ${qualified(this.schema, info.name)}) AS m,
               pg_sequence_last_value($1::regclass)::text AS last,
               (SELECT seqincrement::text FROM pg_sequence WHERE seqrelid = $1::regclass) AS inc`,
            [seq],
          );
          const row = r.rows[0];
          if (!row?.m || !/^-?\d+$/.test(row.m) || BigInt(row.inc ?? "1") <= 0n) continue;
          if (row.last !== null && BigInt(row.last) >= BigInt(row.m)) continue;
          await c.query("SELECT setval($1::regclass, $2::int8, true)", [seq, row.m]);
        }
      })
      .catch((err: unknown) => {
        throw this.#error(err, "advance sequence", info.name);
      });
  }

  journal(): JournalStore {
    return this.#journal;
  }

  // -------------------------------------------------------------------------------------
  // Bulk transfer

  /**
   * Value rules of the type plan the bulk paths leave to the server, which refuses the batch
   * (the record path then names the record): integer ranges, booleans (only `0`/`1` of an
   * integer-backed boolean), enum labels, JSON syntax, zero dates. Not lengths: `varchar(n)`
   * cuts excess trailing spaces instead of refusing them.
   */
  /** The text bulk path reports each batch's keys and xmin (see {@link rowVersions}). */
  readonly versionedUndo = true;

  readonly enforces: ReadonlySet<CheckRule> = new Set<CheckRule>([
    "zero-date",
    "integer-range",
    "boolean",
    "enum",
    "json",
  ]);

  /**
   * True when `source` is a PostgreSQL connector and the target table's written columns
   * (all but generated ones) are the source's, by name and type (binary COPY); or when
   * `source` exports delimited text (MySQL/MariaDB, a package, and PostgreSQL when an undo log
   * is kept) and each of its fields goes to a column of this table whose type reads the
   * field's text as the record path would write it ({@link TEXT_TARGETS}), or to a column of
   * the same PostgreSQL type when the text is PostgreSQL's.
   * Both tables must have been described already (the source's `discover`, the target's `prepare`).
   */
  canBulkCopyFrom(source: Connector, collection: CollectionSchema, options: { undo?: boolean } = {}): boolean {
    if (!this.#pool || this.#closed) return false;
    // Only the text path reports the keys an undo log needs.
    if (!(source instanceof PostgresConnector) || options.undo)
      return this.#textColumns(source, collection) !== undefined;
    if (source.#closed) return false;
    const from = source.#tables.get(collection.name);
    const to = this.#tables.get(collection.name);
    if (!from || !to) return false;
    const written = (t: TableInfo) =>
      JSON.stringify(
        t.columns
          .filter((c) => !c.generated)
          .map((c) => `${c.name}\u0001${c.nativeType}`)
          .sort(),
      );
    return to.columns.length > 0 && written(from) === written(to);
  }

  /** The columns a text-exporting source's lines fill, in order, when every one fits (see canBulkCopyFrom). */
  #textColumns(source: Connector, collection: CollectionSchema): string[] | undefined {
    if (!hasTextExport(source)) return undefined;
    const to = this.#tables.get(collection.name);
    const fields = source.textFields(collection);
    if (!to || !fields || fields.length === 0) return undefined;
    // PostgreSQL's own text (a package of a PostgreSQL table) goes into columns of the same types as it is.
    const own = collection.engine === "postgres";
    for (const name of fields) {
      const c = to.byName.get(name);
      const f = collection.fields.find((x) => x.name === name);
      if (!c || c.generated || f === undefined) return undefined;
      if (own && f.nativeType === c.nativeType) continue;
      if (!TEXT_TARGETS[f.type]?.has(c.type.kind)) return undefined;
    }
    return fields;
  }

  /**
   * Copies the next at most `limit` rows after `after` (and not after `upTo`): the batch's
   * last key is looked up on the key index, then the source's `COPY (SELECT … key range …)
   * TO STDOUT (FORMAT binary)` is piped straight into this table's `COPY … FROM STDIN (FORMAT
   * binary)` (text format when a column's type has no portable binary form), and the
   * checkpoint is saved in the same transaction.
   *
   * @throws FerryError `E_WRITE` when anything fails: nothing of the batch was written.
   */
  async bulkCopyFrom(
    source: Connector,
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number; undo?: boolean },
    checkpoint: (count: number, bookmark: Bookmark, added?: BulkAdded) => Checkpoint,
  ): Promise<{ count: number; bookmark: Bookmark }> {
    if (!(source instanceof PostgresConnector) || options.undo)
      return this.#bulkFromText(source, collection, options, checkpoint);
    const src = source;
    const pool = this.#writerPool();
    const from = await src.#requireTable(collection.name);
    const to = await this.#requireTable(collection.name);
    const names = to.columns.filter((c) => !c.generated).map((c) => c.name);
    const binary = names.every((n) => from.byName.get(n)?.binary === true && to.byName.get(n)?.binary === true);
    const format = binary ? " (FORMAT binary)" : "";
    const cols = names.map(quoteIdent).join(", ");
    const limit = Math.max(1, Math.floor(options.limit));
    const bounds = src.#bounds(from, options.after, options.upTo);
    const keyed = from.primaryKey.length > 0;
    const srcTable = qualified(src.schema, from.name);
    const none = { count: 0, bookmark: options.after ?? (keyed ? { after: [] } : { offset: 0 }) };

    const reader = await src.#readConnection();
    let readerClean = false;
    try {
      let srcSql: string;
      /** The batch's last key: known before the COPY, or being found meanwhile. */
      let lastKey: Value[] | Promise<Value[] | undefined> | undefined;
      if (keyed) {
        const key = from.primaryKey.map((k) => from.byName.get(k) as ColumnInfo);
        const keyCols = key.map((k) => quoteIdent(k.name)).join(", ");
        const where = src.#where(from, bounds);
        const findLast = async (c: pg.Client): Promise<Value[] | undefined> => {
          const r = await c.query<(string | null)[]>({
            text: `SELECT ${keyCols} FROM (SELECT ${keyCols} FROM ${srcTable} ${where} ORDER BY ${src.#orderBy(from)} LIMIT ${limit}) s ORDER BY ${src.#orderBy(from, true)} LIMIT 1`,
            rowMode: "array",
            types: RAW_TEXT,
          });
          const last = r.rows[0];
          return last ? key.map((k, j) => (last[j] === null ? null : k.decode(last[j] as string))) : undefined;
        };
        if (src.#snapshot !== undefined && !src.#pool) {
          // Both run in the reader's snapshot, queued on its connection: the last key is found
          // while this side starts its transaction, then the COPY sends the same rows (LIMIT).
          const pending = findLast(reader.client);
          pending.catch(() => {});
          lastKey = pending;
          srcSql = `COPY (SELECT ${cols} FROM ${srcTable} ${where} ORDER BY ${src.#orderBy(from)} LIMIT ${limit}) TO STDOUT${format}`;
        } else {
          const last = await findLast(reader.client);
          if (!last) {
            readerClean = true;
            return none;
          }
          lastKey = last;
          srcSql = `COPY (SELECT ${cols} FROM ${srcTable} ${src.#where(from, { ...bounds, upTo: last })} ORDER BY ${src.#orderBy(from)}) TO STDOUT${format}`;
        }
      } else {
        srcSql = `COPY (SELECT ${cols} FROM ${srcTable} OFFSET ${bounds.offset ?? 0} LIMIT ${limit}) TO STDOUT${format}`;
      }
      return await this.#inTransaction<{ count: number; bookmark: Bookmark }>(
        pool,
        async (client) => {
          const into = submit(
            client,
            new CopyInFrames(`COPY ${qualified(this.schema, to.name)} (${cols}) FROM STDIN${format}`),
          );
          await pipeline(submit(reader.client, new CopyOutFrames(srcSql)), into);
          readerClean = true;
          const count = into.rowCount;
          const last = await lastKey;
          if (count === 0) return { rollback: none };
          if (keyed && last === undefined) throw new Error("the batch's last key was not found in the snapshot");
          const mark = last ? { after: last.map(encodeValue) } : { offset: (bounds.offset ?? 0) + count };
          return { commit: { count, bookmark: mark }, checkpoint: checkpoint(count, mark), result: { failures: [] } };
        },
        { journal: true },
      );
    } catch (err) {
      // A bug (a checkpoint asking an undo log here) is not a refused batch to redo record by record.
      if (isFerryError(err, "E_INTERNAL")) throw err;
      const reason = isFerryError(err) ? err.message : describePgError(err);
      throw new FerryError(
        "E_WRITE",
        `bulk copy of ${from.name} from ${src.displayUrl} failed: ${reason}: nothing of this batch was written`,
        { cause: err, details: { collection: from.name } },
      );
    } finally {
      reader.done(readerClean);
    }
  }

  /**
   * The next at most `limit` rows of a text-exporting source (after `after`, not after
   * `upTo`), streamed as it spells them into one `COPY … FROM STDIN` (text format), with the
   * checkpoint saved in the same transaction. The server's row count must equal the
   * source's: a line break that escaped escaping would otherwise shift every field after it.
   *
   * @throws FerryError `E_WRITE` when the server refuses a row or the read fails: nothing of
   * this batch was written.
   */
  async #bulkFromText(
    source: Connector,
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number; undo?: boolean },
    checkpoint: (count: number, bookmark: Bookmark, added?: BulkAdded) => Checkpoint,
  ): Promise<{ count: number; bookmark: Bookmark }> {
    const fields = this.#textColumns(source, collection);
    if (fields === undefined || !hasTextExport(source)) {
      throw new FerryError(
        "E_INTERNAL",
        `no bulk path from ${source.displayUrl} for ${collection.name}: a bug in Ferry`,
      );
    }
    const to = await this.#requireTable(collection.name);
    const pool = this.#writerPool();
    return this.#inTransaction<{ count: number; bookmark: Bookmark }>(
      pool,
      async (client) => {
        let count = 0;
        let bookmark: Bookmark | undefined;
        // For an undo log: the key of every row sent (the rows' version is the transaction's).
        const keys: JsonValue[] | undefined = options.undo ? [] : undefined;
        const keyOfLine = keys ? textKeyReader(to, fields, collection.primaryKey) : undefined;
        const into = client.query(
          copyFrom(`COPY ${qualified(this.schema, to.name)} (${fields.map(quoteIdent).join(", ")}) FROM STDIN`),
        );
        const limit = Math.max(1, Math.floor(options.limit));
        const bounds = {
          ...(options.after ? { after: options.after } : {}),
          ...(options.upTo ? { upTo: options.upTo } : {}),
        };
        async function* lines(): AsyncGenerator<string | Uint8Array> {
          for await (const chunk of (source as Connector & TextExport).exportText(collection, { ...bounds, limit })) {
            count += chunk.rows;
            bookmark = chunk.bookmark;
            if (keys && keyOfLine) {
              const text = typeof chunk.text === "string" ? Buffer.from(chunk.text) : chunk.text;
              for (let pos = 0, nl = text.indexOf(10); nl >= 0; pos = nl + 1, nl = text.indexOf(10, pos)) {
                keys.push(keyOfLine(text, pos, nl));
              }
            }
            yield chunk.text;
          }
        }
        await pipeline(Readable.from(lines(), { objectMode: false }), into);
        if (count === 0 || bookmark === undefined) {
          return { rollback: { count: 0, bookmark: options.after ?? { after: [] } } };
        }
        if (into.rowCount !== count || (keys && keys.length !== count)) {
          throw new FerryError(
            "E_INTERNAL",
            `bulk copy of ${to.name} from ${source.displayUrl}: ${count} rows sent, the server read ${into.rowCount}${keys ? ` and ${keys.length} keys were found` : ""} (a value's escaping is wrong): a bug in Ferry`,
          );
        }
        let added: BulkAdded | undefined;
        if (keys) {
          // Every row this transaction wrote has its id as xmin (32 bits of it), until changed.
          const r = await client.query<{ xid: string }>("SELECT (txid_current() % 4294967296)::text AS xid");
          added = { keys, version: (r.rows[0] as { xid: string }).xid };
        }
        return {
          commit: { count, bookmark },
          checkpoint: checkpoint(count, bookmark, added),
          result: { failures: [] },
        };
      },
      {
        journal: true,
        undo: options.undo === true,
        wrap: (err) => {
          // The source's own failures (a damaged package, a lost connection) stop the run:
          // only the server's refusal is a batch to redo record by record.
          if (isFerryError(err)) return err;
          const reason = describePgError(err);
          return new FerryError(
            "E_WRITE",
            `bulk copy of ${to.name} from ${source.displayUrl} failed: ${reason}: nothing of this batch was written`,
            { cause: err, details: { collection: to.name } },
          );
        },
      },
    );
  }

  // -------------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const primary = this.#primary;
    this.#primary = undefined;
    const end = (c: pg.Client) => c.query("COMMIT");
    await Promise.all([
      this.#readerPool?.close(end),
      this.#pool?.close(),
      primary?.then(
        async (c) => {
          await this.#primaryLock.run(async () => {
            await end(c).catch(() => {});
            await closeClient(c);
          });
        },
        () => {},
      ),
    ]);
    this.#tables.clear();
  }
}
