/**
 * The connector contract. Connectors are small and dumb: they read batches in key order,
 * look up keys, and apply explicit write operations. Policy (conflict modes, ordering,
 * batching, checkpoints, journal, progress, retries) lives in core.
 */
import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { ConflictMode } from "./journal.js";
import type { Bookmark } from "./messages.js";
import type { CollectionSchema, FieldSchema } from "./schema.js";
import type { CheckRule } from "./type-plan.js";
import type { JsonValue, Row, Value } from "./values.js";

/** One batch read from a collection, with the position just after its last record. */
export interface ReadBatch {
  records: Row[];
  /** Resuming from this bookmark yields the records after this batch, none of these. */
  bookmark: Bookmark;
}

/** Options for {@link Connector.read}. */
export interface ReadOptions {
  /** Start after this position (from an earlier batch); from the start when absent. */
  after?: Bookmark;
  /** Stop after this position (a boundary from {@link Connector.split}, inclusive); to the end when absent. */
  upTo?: Bookmark;
  /** Records per batch. */
  batchSize: number;
  /** Only these fields (default all). Used for key-only passes. */
  fields?: string[];
}

/**
 * A write operation, decided by core. Connectors execute it as given:
 * - `insert`: add `record`.
 * - `replace`: the record matched by `match` (fields → values) becomes `record`, whole.
 * - `update`: the record matched by `match` gets the fields of `record` set, others kept.
 * - `delete`: the record matched by `match` is removed; none matching is not a failure
 *   (a rollback that undoes an import's inserts may run again).
 */
export type WriteOp =
  | { op: "insert"; record: Row }
  | { op: "replace"; match: Record<string, Value>; record: Row }
  | { op: "update"; match: Record<string, Value>; record: Row }
  | { op: "delete"; match: Record<string, Value> };

/** A write operation the target refused; the others of the batch were applied. */
export interface WriteFailure {
  /** Index of the op in the batch. */
  index: number;
  /** Engine's reason, e.g. `UNIQUE constraint failed: users.email`. */
  reason: string;
}

/** Result of {@link Connector.write}: results as values, not exceptions. */
export interface WriteResult {
  failures: WriteFailure[];
}

/** A checkpoint that core asks the destination to make durable together with a batch. */
export interface Checkpoint {
  runId: string;
  /**
   * The journal row this checkpoint saves: the run's id, or a part of the run such as
   * `<runId>/<collection>/<range>` when parts of one run write concurrently (each part then
   * has its own row, so one part's commit never records another's uncommitted progress).
   */
  id: string;
  /**
   * The journal entry's new state, as an opaque JSON-able value. The connector calls this
   * after applying the batch's ops and before committing, with the batch's outcome, so the
   * entry counts exactly what was written and names what was refused.
   */
  entry(result: WriteResult): unknown;
  /**
   * Optional: the batch's undo row (what its ops changed, so a rollback can restore it),
   * built from the batch's outcome. The connector calls it right after {@link entry}, and when
   * it returns a row, saves it in the same transaction as the ops and the entry, in the
   * journal's undo log (never listed by {@link JournalStore.list}; read back, newest first, by
   * {@link JournalStore.undo}).
   */
  undo?(result: WriteResult): UndoRow | undefined;
}

/** One row of a run's undo log. */
export interface UndoRow {
  /** The run whose batch it undoes. */
  runId: string;
  /** Its order in the run's log: a rollback applies rows from the highest `seq` down. */
  seq: number;
  /** An opaque JSON-able value (core's business). */
  entry: unknown;
}

/** What {@link Connector.prepare} did for one collection. */
export interface PrepareResult {
  /** The collection as it now exists at the target. */
  schema: CollectionSchema;
  /** True when prepare created it (so it started empty). */
  created: boolean;
}

/**
 * An instance's connector.
 *
 * Implementer's checklist:
 * 1. Take configuration from the URL or options object given to the factory, never from
 *    `process.env`. Never put the password in an error message (use `redactUrl`).
 * 2. `check` connects and throws `FerryError("E_CONNECTION")` naming the instance and the fix.
 * 3. `discover` lists user collections (not `_ferry_*` ones) with fields, keys, foreign keys,
 *    indexes; `native` when the engine can recreate the collection verbatim.
 * 4. `read` yields batches in primary-key order (insertion order when there is no key) and
 *    resumes strictly after `after`. It never yields a record twice across a resume, with one
 *    exception: Redis, whose SCAN order can change when the server rehashes between runs,
 *    yields again the keys of the bookmark's SCAN reply it cannot prove done (never skips one).
 * 5. `write` applies ops in order, atomically with `checkpoint` when given: when `write`
 *    resolves, the ops and the checkpoint are both durable, or (on throw) neither is.
 *    A record the engine refuses becomes a `WriteFailure`; the rest of the batch still applies.
 * 6. `prepare` creates missing collections (same engine: from `native`), leaving existing
 *    ones as they are; `finish` builds what is faster to build after the data (indexes).
 * 7. The conformance suite in `test/conformance.ts` must pass.
 * 8. Optional: `split` (key ranges for parallel reads), `concurrentWrites` (several `write`
 *    calls may run at once, each with its own transaction), `mapField` (type plan).
 */
export interface Connector {
  /** Engine name: `sqlite`, `files`, `postgres`, … */
  readonly engine: string;
  /** The instance URL with the password removed. */
  readonly displayUrl: string;
  /** A string equal for two connectors that point at the same data (to refuse copying onto itself). */
  readonly identity: string;
  /**
   * Optional: a string that changes whenever the source's content does (a package's digest),
   * so a run is resumed only from the data it started on.
   */
  readonly revision?: string;

  check(): Promise<void>;
  /** Optional: the server's product and version (`PostgreSQL 15.8`, `Redis 7.0.15`), for `ferry check`. */
  version?(): Promise<string>;
  discover(): Promise<CollectionSchema[]>;
  /**
   * Optional: the collections a user's selection names (after `discover`), where names can
   * be more than discovered names (Redis globs such as `apikey:*`, `!pattern` exclusions).
   * Without it, a selection is a list of discovered names.
   */
  resolve?(
    names: string[],
    specs?: Record<string, CollectionSpec>,
    options?: {
      /** These names are the source's own collections copied beside the profile's: they leave out every key a profile collection holds. */
      rest?: string[];
    },
  ): Promise<CollectionSchema[]>;
  /** Record count, or undefined when counting would cost a full read. */
  count(collection: CollectionSchema): Promise<number | undefined>;
  /**
   * Optional: the bytes the collection takes at the instance (table with its indexes, file,
   * Redis memory), for `ferry collections`; undefined when the engine cannot tell cheaply.
   */
  size?(collection: CollectionSchema): Promise<number | undefined>;
  read(collection: CollectionSchema, options: ReadOptions): AsyncIterable<ReadBatch>;
  /**
   * Up to `parts − 1` boundaries that cut the collection into key ranges of similar size, in
   * key order, as bookmarks that `read`'s `after`/`upTo` accept: ranges are (start, b1],
   * (b1, b2], …, (bn, end). Fewer (or none) when the collection is small or has no key.
   */
  split?(collection: CollectionSchema, parts: number): Promise<Bookmark[]>;
  /** Several `write` calls may run at once (each in its own transaction). Default `false`. */
  readonly concurrentWrites?: boolean;
  /**
   * How this engine would create `field` of `collection` (from another engine, or its own
   * when `collection.engine` is this one): the field with this engine's `nativeType` and the
   * attributes that type really has. The type plan compares it with the source field.
   */
  mapField?(field: FieldSchema, collection: CollectionSchema): FieldSchema;

  /**
   * Optional: the record an `update` op leaves where `prior` was, when this engine merges
   * differently from setting the update's fields (Redis adds a hash's fields and a set's
   * members to the key's own); undefined when it cannot tell. Default: `{ ...prior, ...update }`.
   * The undo log uses it to know what a merge wrote.
   */
  merged?(prior: Row, update: Row): Row | undefined;

  prepare(collection: CollectionSchema): Promise<PrepareResult>;
  /**
   * For each of `keys` (each a tuple of values of `fields`), whether a record with those
   * values exists; returns the matching existing records keyed by {@link keyString}.
   */
  lookup(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, Row>>;
  /**
   * Optional (with {@link BulkTransfer.versionedUndo}): the row version (PostgreSQL `xmin`)
   * of each record of `collection` whose `fields` have one of the `keys`' values, keyed by
   * {@link keyString}; absent keys are not in the map.
   */
  rowVersions?(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, string>>;
  write(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult>;
  finish(collection: CollectionSchema): Promise<void>;

  /** The run journal kept at this instance. */
  journal(): JournalStore;
  close(): Promise<void>;
}

/**
 * Where runs are recorded at a target (umzug-style: a few async functions).
 * `write(…, checkpoint)` is how a checkpoint becomes durable with the data; these are for
 * the rest of the run's life.
 */
export interface JournalStore {
  /** Saves (inserts or replaces) a run entry. */
  save(runId: string, entry: unknown): Promise<void>;
  get(runId: string): Promise<unknown | undefined>;
  /** All entries, newest first (never undo rows). */
  list(): Promise<unknown[]>;
  /**
   * The undo rows of run `runId` (saved with its checkpoints, see {@link Checkpoint.undo}),
   * highest `seq` first, read a page at a time (an import's log can be large).
   */
  undo(runId: string): AsyncIterable<UndoRow>;
  /**
   * Removes run `runId`: its entry, its ranges' rows (ids starting `<runId>/`) and its undo
   * rows. Removing a run that is not there is no error.
   */
  forget(runId: string): Promise<void>;
}

/**
 * Optional capability of a target: a same-engine transfer that bypasses records (SQLite
 * `ATTACH` + `INSERT … SELECT`; later PostgreSQL `COPY` binary, Redis `DUMP`/`RESTORE`).
 * Core uses it only for plain inserts into a collection that was empty when the run began,
 * with the same checkpoints and counts as the record path.
 *
 * Implementer's checklist:
 * 1. `canBulkCopyFrom` is cheap and true only when `bulkCopyFrom` will work for this pair.
 * 2. `bulkCopyFrom` inserts the next at most `limit` records strictly after `after` (and not
 *    after `upTo`), in key order, and saves `checkpoint(count, bookmark)` in the same transaction.
 * 3. The bookmark is in `source.read`'s format, so a run may resume on either path.
 * 4. If the engine refuses any record, throw `FerryError("E_WRITE")` having written nothing:
 *    core redoes the rest on the record path to name each refused record.
 * 5. Core takes the bulk path only when the type plan asks no value checks, or when every
 *    check's rules are in `enforces`: rules this target applies itself by refusing the batch
 *    (then the record path names the record, or converts it as the check says).
 */
export interface BulkTransfer {
  /** Value rules of the type plan (see {@link CheckRule}) this target's bulk path refuses on its own. */
  readonly enforces?: ReadonlySet<CheckRule>;
  /**
   * True when `bulkCopyFrom` with `undo` reports the keys each batch added and the row
   * version they were written with ({@link BulkAdded}), and {@link Connector.rowVersions}
   * reads versions back: then a run that keeps an undo log may take the bulk path.
   */
  readonly versionedUndo?: boolean;
  /** With `undo`: true only when `bulkCopyFrom` with `undo` reports what it added ({@link versionedUndo}). */
  canBulkCopyFrom(source: Connector, collection: CollectionSchema, options?: { undo?: boolean }): boolean;
  bulkCopyFrom(
    source: Connector,
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number; undo?: boolean },
    checkpoint: (count: number, bookmark: Bookmark, added?: BulkAdded) => Checkpoint,
  ): Promise<{ count: number; bookmark: Bookmark }>;
}

/**
 * What a bulk batch added, for an undo log: its records' keys (the collection's primary key)
 * and the row version the batch's transaction gave every one of them (PostgreSQL `xmin`); a
 * record whose version differs later was changed since. Each key is encoded (`encodeValue`):
 * the value itself for a one-field key, else the array of its fields' values.
 */
export interface BulkAdded {
  keys: JsonValue[];
  version: string;
}

/** True when a connector offers {@link BulkTransfer}. */
export function hasBulkTransfer(c: Connector): c is Connector & BulkTransfer {
  return typeof (c as Partial<BulkTransfer>).bulkCopyFrom === "function";
}

/**
 * Optional capability of a source: rows spelled as delimited text by the engine itself, so a
 * target that loads text in bulk (PostgreSQL `COPY`) takes them without turning each row into
 * a record (row objects cost several times the bytes' own handling in Node).
 *
 * The format is PostgreSQL's `COPY` text (also MySQL `LOAD DATA`'s default): one row per line
 * ending in `\n`, fields separated by a tab, `\N` for NULL, and inside values the escapes
 * `\\`, `\t`, `\n`, `\r`. Values are spelled as the source's own text protocol spells them:
 * integers, decimals and doubles in decimal (an integer-backed boolean as its integer), dates
 * `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC, JSON as JSON text, bytes as
 * `\x` and hex digits (written `\\x…` in the line), text as itself.
 *
 * Implementer's checklist:
 * 1. `textFields` is cheap: the fields each line holds, in order (generated ones left out), or
 *    undefined when a field has no such spelling or the collection has no primary key.
 * 2. `exportText` yields, in key order, the rows strictly after `after` and not after `upTo`,
 *    at most `limit` of them, in chunks of whole lines, each with its row count and the
 *    bookmark after its last row in `read`'s format; it reads the snapshot `read` reads.
 * 3. Stopping early (the caller leaves the loop) releases what the read held.
 */
export interface TextExport {
  textFields(collection: CollectionSchema): string[] | undefined;
  exportText(
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number },
  ): AsyncIterable<TextChunk>;
}

/** Lines of delimited text from {@link TextExport.exportText}. */
export interface TextChunk {
  /** Whole lines, as text or as their UTF-8 bytes. */
  text: string | Uint8Array;
  rows: number;
  /** Resuming from this bookmark yields the rows after this chunk's last. */
  bookmark: Bookmark;
}

/** True when a connector offers {@link TextExport}. */
export function hasTextExport(c: Connector): c is Connector & TextExport {
  return typeof (c as Partial<TextExport>).exportText === "function";
}

/** Options every connector factory accepts. */
export interface ConnectorOptions {
  /** Open for writing (the target). Sources are opened read-only where the engine allows. */
  write?: boolean;
  /**
   * A source read by up to this many concurrent `read` calls, all from one consistent
   * snapshot taken at open (PostgreSQL exported snapshot; MariaDB consistent-snapshot
   * transactions started together). Default 1: one snapshot, one reader.
   */
  readers?: number;
  /** Most concurrent `write` calls a target will get (its connection pool size). Default 1. */
  writers?: number;
}

/**
 * How the application's profile declares one named collection (see `src/profile`): where its
 * records are at each kind of instance, and the rules core applies to it.
 */
export interface CollectionSpec {
  /** Redis globs whose keys the collection holds (a source that `resolve`s reads them). */
  match?: string[];
  /** Redis globs left out of `match`. */
  exclude?: string[];
  /** The table or JSON array holding it elsewhere. Default: the collection's name. */
  table?: string;
  /** Its key where the instance declares none (a file, a table without a primary key). */
  key?: string[];
  /** The collection's name at the target, when it differs. */
  rename?: string;
  /** Its conflict mode, over the run's. */
  conflict?: ConflictMode;
  /** `false`: never copied or exported. Default true. */
  export?: boolean;
  /** A Standard Schema validator every record must pass before it is written. */
  schema?: StandardSchemaV1;
  /** Fields whose values must be unique in the incoming data. */
  naturalKey?: string[];
  /** Fields whose values never appear in messages, events or errors (shown as `***`). */
  secret?: string[];
  /** Changes a record on its way (null drops it); runs before validation. */
  transform?: (record: Row, ctx: { collection: string }) => Row | null | Promise<Row | null>;
}

/** Registers a family of URL schemes. */
export interface ConnectorFactory {
  /** URL schemes without the colon, e.g. `["sqlite"]`. */
  schemes: string[];
  /** Human description for `--help` and errors, e.g. `sqlite:PATH`. */
  usage: string;
  /** Whether this factory claims a scheme-less path (files do). */
  claimsPath?(path: string): boolean;
  /**
   * The engine's type mapping without a connection (see {@link Connector.mapField}), so a
   * plan can be shown for a target that does not exist yet.
   */
  mapField?(field: FieldSchema, collection: CollectionSchema): FieldSchema;
  /** Engine name, as {@link Connector.engine}. */
  engine?: string;
  /**
   * Turns lines of this engine's {@link TextExport} (fields `fields` of `collection`, in that
   * order) back into records, as `read` would give them, without a connection: a package
   * stores a collection as that text and decodes it where the records are needed.
   */
  textDecoder?(collection: CollectionSchema, fields: string[]): (line: string) => Row;
  open(url: string, options: ConnectorOptions): Promise<Connector>;
}
