/** The run journal kept in a SQLite database, in table `_ferry_journal`. */
import type Database from "better-sqlite3";
import type { JournalStore } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";

/** Name of the journal table; `discover` never lists it. */
export const JOURNAL_TABLE = "_ferry_journal";

const CREATE = `CREATE TABLE IF NOT EXISTS ${JOURNAL_TABLE} (id TEXT PRIMARY KEY, started_at TEXT, entry TEXT NOT NULL)`;
const UPSERT = `INSERT INTO ${JOURNAL_TABLE} (id, started_at, entry) VALUES (?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET started_at = coalesce(excluded.started_at, started_at), entry = excluded.entry`;

/** The database handles the journal needs from its connector. */
export interface JournalHost {
  /** The open database, or undefined when a target file has not been created yet. */
  readable(): Database.Database | undefined;
  /** The database opened for writing (created if needed). */
  writable(): Database.Database;
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
 * Creates the journal table if needed and returns the prepared upsert
 * (`id, started_at, entry`), for use inside a write transaction.
 */
export function journalUpsert(db: Database.Database): Database.Statement {
  db.exec(CREATE);
  return db.prepare(UPSERT);
}

function hasJournal(db: Database.Database): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(JOURNAL_TABLE) !== undefined;
}

/** A {@link JournalStore} over `_ferry_journal`; reading a database without one finds nothing. */
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
    if (!db || !hasJournal(db)) return undefined;
    const row = db.prepare(`SELECT entry FROM ${JOURNAL_TABLE} WHERE id = ?`).get(runId) as
      | { entry: string }
      | undefined;
    return row === undefined ? undefined : JSON.parse(row.entry);
  }

  async list(): Promise<unknown[]> {
    const db = this.#host.readable();
    if (!db || !hasJournal(db)) return [];
    const rows = db.prepare(`SELECT entry FROM ${JOURNAL_TABLE} ORDER BY started_at DESC, rowid DESC`).all() as {
      entry: string;
    }[];
    return rows.map((r) => JSON.parse(r.entry));
  }

  /** Forgets prepared statements (the database was closed or reopened). */
  reset(): void {
    this.#upsert = undefined;
  }
}
