/** The run journal kept in a MySQL database, in table `_ferry_journal`. */
import type { JournalStore } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { isMissingObject } from "./mysql-introspect.js";
import type { MysqlSession } from "./mysql-session.js";
import { sqlString } from "./mysql-sql.js";

/** Name of the journal table; `discover` never lists it. */
export const JOURNAL_TABLE = "_ferry_journal";

/** Creates the journal table (DDL: run it outside a transaction). */
export const CREATE_JOURNAL = `CREATE TABLE IF NOT EXISTS ${JOURNAL_TABLE} (
  id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
  started_at VARCHAR(40) NULL,
  entry LONGTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`;

/**
 * The upsert of one journal row. `started_at` is the entry's `startedAt` when it is a string
 * (kept from the first save otherwise).
 *
 * @throws FerryError `E_INTERNAL` when the entry is not JSON-serialisable.
 */
export function journalUpsert(id: string, entry: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(entry);
  } catch (cause) {
    throw new FerryError("E_INTERNAL", `journal entry of run ${id} is not JSON-serialisable`, { cause });
  }
  if (json === undefined) throw new FerryError("E_INTERNAL", `journal entry of run ${id} is not a JSON value`);
  const startedAt =
    typeof entry === "object" && entry !== null ? (entry as { startedAt?: unknown }).startedAt : undefined;
  const started = typeof startedAt === "string" ? sqlString(startedAt) : "NULL";
  return `INSERT INTO ${JOURNAL_TABLE} (id, started_at, entry) VALUES (${sqlString(id)}, ${started}, ${sqlString(json)})
    ON DUPLICATE KEY UPDATE started_at = COALESCE(VALUES(started_at), started_at), entry = VALUES(entry)`;
}

/** The sessions the journal runs on, from its connector. */
export interface JournalHost {
  /** Runs `fn` with a session that reads (the snapshot of a source, the pool of a target). */
  reading<T>(fn: (s: MysqlSession) => Promise<T>): Promise<T>;
  /** Runs `fn` with a session that writes, the journal table created. @throws E_UNSUPPORTED on a source. */
  writing<T>(fn: (s: MysqlSession) => Promise<T>): Promise<T>;
}

/** A {@link JournalStore} over `_ferry_journal`; a database without one lists nothing. */
export class MysqlJournal implements JournalStore {
  readonly #host: JournalHost;

  constructor(host: JournalHost) {
    this.#host = host;
  }

  async save(runId: string, entry: unknown): Promise<void> {
    const sql = journalUpsert(runId, entry);
    await this.#host.writing((s) => s.exec(sql));
  }

  async get(runId: string): Promise<unknown | undefined> {
    const rows = await this.#select(`SELECT entry FROM ${JOURNAL_TABLE} WHERE id = ${sqlString(runId)}`);
    const row = rows[0];
    return row === undefined ? undefined : JSON.parse(row.entry);
  }

  async list(): Promise<unknown[]> {
    const rows = await this.#select(`SELECT entry FROM ${JOURNAL_TABLE} ORDER BY started_at DESC, id DESC`);
    return rows.map((r) => JSON.parse(r.entry));
  }

  async #select(sql: string): Promise<{ entry: string }[]> {
    try {
      return await this.#host.reading((s) => s.rows<{ entry: string }>(sql));
    } catch (err) {
      if (isMissingObject(err)) return [];
      throw err;
    }
  }
}
