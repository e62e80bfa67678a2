/** The run journal kept in a SQLite database, in table `_ferry_journal`, and its undo log in `_ferry_undo`. */
import type Database from "better-sqlite3";
import type { JournalStore, UndoRow } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { undoJson, undoPageGroups } from "../../core/undo.js";

/** Name of the journal table; `discover` never lists it. */
export const JOURNAL_TABLE = "_ferry_journal";
/** Name of the undo log table (see `Checkpoint.undo`); `discover` never lists it. */
export const UNDO_TABLE = "_ferry_undo";

/** Undo rows per page of {@link SqliteJournal.undo}, at most. */
const UNDO_PAGE_ROWS = 50;

const CREATE = `CREATE TABLE IF NOT EXISTS ${JOURNAL_TABLE} (id TEXT PRIMARY KEY, started_at TEXT, entry TEXT NOT NULL)`;
const UPSERT = `INSERT INTO ${JOURNAL_TABLE} (id, started_at, entry) VALUES (?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET started_at = coalesce(excluded.started_at, started_at), entry = excluded.entry`;
/**
 * The undo log: one row per batch that changed something, `size` the length of `entry` (its
 * JSON text), so pages are cut by size without reading the entries.
 */
const CREATE_UNDO = `CREATE TABLE IF NOT EXISTS ${UNDO_TABLE} (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (run_id, seq))`;
/** A plain INSERT: a `seq` already in the run's log is a bug in the caller and fails the batch. */
const INSERT_UNDO = `INSERT INTO ${UNDO_TABLE} (run_id, seq, size, entry) VALUES (?, ?, ?, ?)`;

/** The database handles the journal needs from its connector. */
export interface JournalHost {
  /** The open database, or undefined when a target file has not been created yet. */
  readable(): Database.Database | undefined;
  /** The database opened for writing (created if needed). */
  writable(): Database.Database;
  /**
   * The database opened for writing when it exists (undefined when a target file has not
   * been created yet).
   *
   * @throws FerryError `E_UNSUPPORTED` on a source.
   */
  existingWritable(): Database.Database | undefined;
}

/**
 * The `[id, started_at, entry]` parameters of a journal upsert. `started_at` is the entry's
 * `startedAt` when it is a string.
 *
 * @throws FerryError `E_INTERNAL` when the entry is not JSON-serialisable.
 */
export function journalParams(runId: string, entry: unknown): [string, string | null, string] {
  let json: string | undefined;
  try {
    json = JSON.stringify(entry);
  } catch (cause) {
    throw new FerryError("E_INTERNAL", `journal entry of run ${runId} is not JSON-serialisable`, { cause });
  }
  if (json === undefined) throw new FerryError("E_INTERNAL", `journal entry of run ${runId} is not a JSON value`);
  const startedAt =
    typeof entry === "object" && entry !== null ? (entry as { startedAt?: unknown }).startedAt : undefined;
  return [runId, typeof startedAt === "string" ? startedAt : null, json];
}

/**
 * The `[run_id, seq, size, entry]` parameters of an undo row's insert.
 *
 * @throws FerryError `E_INTERNAL` when the row is malformed (a `seq` that is not a safe
 * integer) or its entry is not JSON-serialisable.
 */
export function undoParams(row: UndoRow): [string, number, number, string] {
  const json = undoJson(row);
  return [row.runId, row.seq, json.length, json];
}

/**
 * Creates the journal table if needed and returns the prepared upsert
 * (`id, started_at, entry`), for use inside a write transaction.
 */
export function journalUpsert(db: Database.Database): Database.Statement {
  db.exec(CREATE);
  return db.prepare(UPSERT);
}

/**
 * Creates the undo log table if needed and returns the prepared insert (the parameters of
 * {@link undoParams}), for use inside a write transaction.
 */
export function undoInsert(db: Database.Database): Database.Statement {
  db.exec(CREATE_UNDO);
  return db.prepare(INSERT_UNDO);
}

/**
 * The checkpoint of a bulk batch: core never asks an undo log there (it takes the bulk path
 * only into collections that were empty, without undo), so one that does is refused rather
 * than saved without its undo row.
 *
 * @throws FerryError `E_INTERNAL` when the checkpoint has `undo`.
 */
export function withoutUndo<T extends { id: string; undo?: unknown }>(checkpoint: T): T {
  if (checkpoint.undo !== undefined) {
    throw new FerryError(
      "E_INTERNAL",
      `checkpoint ${checkpoint.id} of a bulk batch asks for an undo log, which the bulk path does not keep: a bug in Ferry`,
    );
  }
  return checkpoint;
}

function hasTable(db: Database.Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

/**
 * A {@link JournalStore} over `_ferry_journal` and `_ferry_undo`; reading a database without
 * them finds nothing.
 */
export class SqliteJournal implements JournalStore {
  readonly #host: JournalHost;
  #upsert: Database.Statement | undefined;

  constructor(host: JournalHost) {
    this.#host = host;
  }

  async save(runId: string, entry: unknown): Promise<void> {
    const params = journalParams(runId, entry);
    const db = this.#host.writable();
    this.#upsert ??= journalUpsert(db);
    this.#upsert.run(...params);
  }

  async get(runId: string): Promise<unknown | undefined> {
    const db = this.#host.readable();
    if (!db || !hasTable(db, JOURNAL_TABLE)) return undefined;
    const row = db.prepare(`SELECT entry FROM ${JOURNAL_TABLE} WHERE id = ?`).get(runId) as
      | { entry: string }
      | undefined;
    return row === undefined ? undefined : JSON.parse(row.entry);
  }

  async list(): Promise<unknown[]> {
    const db = this.#host.readable();
    if (!db || !hasTable(db, JOURNAL_TABLE)) return [];
    const rows = db.prepare(`SELECT entry FROM ${JOURNAL_TABLE} ORDER BY started_at DESC, rowid DESC`).all() as {
      entry: string;
    }[];
    return rows.map((r) => JSON.parse(r.entry));
  }

  /**
   * See {@link JournalStore.undo}: pages of at most 50 rows by `seq` (keyset), each page's
   * entries fetched a few megabytes at a time.
   */
  async *undo(runId: string): AsyncIterable<UndoRow> {
    let below: number | undefined;
    for (;;) {
      const db = this.#host.readable();
      if (!db || !hasTable(db, UNDO_TABLE)) return;
      const page = db
        .prepare(
          `SELECT seq, size FROM ${UNDO_TABLE} WHERE run_id = ?${below === undefined ? "" : " AND seq < ?"} ORDER BY seq DESC LIMIT ?`,
        )
        .raw(true)
        .safeIntegers(false)
        .all(...(below === undefined ? [runId] : [runId, below]), UNDO_PAGE_ROWS) as [number, number][];
      if (page.length === 0) return;
      const fetch = db
        .prepare(`SELECT seq, entry FROM ${UNDO_TABLE} WHERE run_id = ? AND seq <= ? AND seq >= ? ORDER BY seq DESC`)
        .raw(true)
        .safeIntegers(false);
      for (const [from, to] of undoPageGroups(page)) {
        const rows = fetch.all(runId, from, to) as [number, string][];
        for (const [seq, entry] of rows) yield { runId, seq, entry: JSON.parse(entry) };
      }
      below = (page[page.length - 1] as [number, number])[0];
      if (page.length < UNDO_PAGE_ROWS) return;
    }
  }

  /** See {@link JournalStore.forget}: the entry, `<runId>/…` rows and undo rows, in one transaction. */
  async forget(runId: string): Promise<void> {
    const db = this.#host.existingWritable();
    if (db === undefined) return;
    // A prefix compared as text, not a LIKE pattern: `_` and `%` in a run id are themselves.
    const journal = hasTable(db, JOURNAL_TABLE)
      ? db.prepare(`DELETE FROM ${JOURNAL_TABLE} WHERE id = ? OR substr(id, 1, length(?)) = ?`)
      : undefined;
    const undo = hasTable(db, UNDO_TABLE) ? db.prepare(`DELETE FROM ${UNDO_TABLE} WHERE run_id = ?`) : undefined;
    db.transaction(() => {
      journal?.run(runId, `${runId}/`, `${runId}/`);
      undo?.run(runId);
    }).immediate();
  }

  /** Forgets prepared statements (the database was closed or reopened). */
  reset(): void {
    this.#upsert = undefined;
  }
}
