/** The run journal kept in a MySQL database, in table `_ferry_journal`, and its undo log in `_ferry_undo`. */
import type { JournalStore, UndoRow } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { undoJson, undoPageGroups } from "../../core/undo.js";
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

/** Name of the undo log table; `discover` never lists it. */
export const UNDO_TABLE = "_ferry_undo";

/**
 * Creates the undo log table (DDL: run it outside a transaction). A batch's row is its entry
 * as JSON text cut into `part`s (0, 1, …) that each fit in a statement under the server's
 * `max_allowed_packet` (and in a result row: the server sends no row larger than that), so a
 * row of any size is saved and read back; `size` is the whole entry's length (on every part),
 * so pages are cut by size without reading the entries.
 */
export const CREATE_UNDO = `CREATE TABLE IF NOT EXISTS ${UNDO_TABLE} (
  run_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  seq BIGINT NOT NULL,
  part INT NOT NULL,
  size BIGINT NOT NULL,
  entry LONGTEXT NOT NULL,
  PRIMARY KEY (run_id, seq, part)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`;

/** Undo rows per page of {@link MysqlJournal.undo}, at most. */
const UNDO_PAGE_ROWS = 50;
/** Characters of an undo entry per part, at most (fewer when `max_allowed_packet` is smaller). */
const UNDO_PART_CHARS = 2 * 1024 * 1024;
/** Bytes of an undo part's statement besides the entry's text (the run id, at most 191 characters escaped). */
const UNDO_STATEMENT_BYTES = 2048;

/** A LIKE pattern matching `text` exactly (`\`, `%` and `_` escaped with the default escape `\`). */
function likeExact(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * `column` equal to `text`, character for character: `=` finds it by the index, LIKE makes
 * it exact (the `_bin` collations of utf8mb4 ignore trailing spaces in `=`).
 */
function sameText(column: string, text: string): string {
  return `(${column} = ${sqlString(text)} AND ${column} LIKE ${sqlString(likeExact(text))})`;
}

/**
 * The INSERT statements of one undo row: its entry's JSON text in parts that each keep the
 * statement under `maxPacket` bytes (3 bytes at most per character, escapes included). A
 * plain INSERT: a `seq` already in the run's log is a bug in the caller and fails the batch.
 *
 * @throws FerryError `E_INTERNAL` when the row is malformed (a `seq` that is not a safe
 * integer) or its entry is not JSON-serialisable.
 */
export function undoInserts(row: UndoRow, maxPacket: number): string[] {
  const json = undoJson(row);
  const limit = Math.max(1024, Math.min(UNDO_PART_CHARS, Math.floor((maxPacket - UNDO_STATEMENT_BYTES) / 3)));
  const head = `INSERT INTO ${UNDO_TABLE} (run_id, seq, part, size, entry) VALUES (${sqlString(row.runId)}, ${row.seq}, `;
  const out: string[] = [];
  let at = 0;
  do {
    let end = Math.min(json.length, at + limit);
    // Never between the two halves of a surrogate pair: each part is text of its own.
    const last = json.charCodeAt(end - 1);
    if (end < json.length && last >= 0xd800 && last <= 0xdbff) end--;
    out.push(`${head}${out.length}, ${json.length}, ${sqlString(json.slice(at, end))})`);
    at = end;
  } while (at < json.length);
  return out;
}

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
  /** Runs `fn` with a session that writes, creating nothing. @throws E_UNSUPPORTED on a source. */
  changing<T>(fn: (s: MysqlSession) => Promise<T>): Promise<T>;
}

/**
 * A {@link JournalStore} over `_ferry_journal` and `_ferry_undo`; a database without them
 * lists nothing.
 */
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

  /**
   * See {@link JournalStore.undo}: pages of at most 50 rows by `seq` (keyset), each page's
   * entries fetched a few megabytes at a time and put together from their parts.
   */
  async *undo(runId: string): AsyncIterable<UndoRow> {
    const run = sameText("run_id", runId);
    let below: number | undefined;
    for (;;) {
      const page = await this.#undoRows<{ seq: number | string; size: number | string }>(
        `SELECT seq, size FROM ${UNDO_TABLE} WHERE ${run} AND part = 0${below === undefined ? "" : ` AND seq < ${below}`}
          ORDER BY seq DESC LIMIT ${UNDO_PAGE_ROWS}`,
      );
      if (page.length === 0) return;
      const sized = page.map((r) => [Number(r.seq), Number(r.size)] as const);
      for (const [from, to] of undoPageGroups(sized)) {
        const parts = await this.#undoRows<{ seq: number | string; entry: string }>(
          `SELECT seq, entry FROM ${UNDO_TABLE} WHERE ${run} AND seq BETWEEN ${to} AND ${from} ORDER BY seq, part`,
        );
        const texts = new Map<number, string[]>();
        for (const p of parts) {
          const seq = Number(p.seq);
          const list = texts.get(seq);
          if (list === undefined) texts.set(seq, [p.entry]);
          else list.push(p.entry);
        }
        const seqs = [...texts.keys()].sort((a, b) => b - a);
        for (const seq of seqs) {
          const text = (texts.get(seq) as string[]).join("");
          texts.delete(seq);
          yield { runId, seq, entry: JSON.parse(text) as unknown };
        }
      }
      below = (sized[sized.length - 1] as readonly [number, number])[0];
      if (page.length < UNDO_PAGE_ROWS) return;
    }
  }

  /**
   * See {@link JournalStore.forget}: the entry, `<runId>/…` rows and undo rows, in one
   * transaction. Ids are compared exactly (LIKE with `_` and `%` escaped).
   */
  async forget(runId: string): Promise<void> {
    await this.#host.changing(async (s) => {
      const tables = await s.rows<{ name: string }>(
        `SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()
          AND TABLE_NAME IN (${sqlString(JOURNAL_TABLE)}, ${sqlString(UNDO_TABLE)})`,
      );
      const has = new Set(tables.map((t) => t.name));
      if (has.size === 0) return;
      await s.exec("START TRANSACTION");
      try {
        if (has.has(JOURNAL_TABLE)) {
          await s.exec(
            `DELETE FROM ${JOURNAL_TABLE} WHERE ${sameText("id", runId)} OR id LIKE ${sqlString(`${likeExact(`${runId}/`)}%`)}`,
          );
        }
        if (has.has(UNDO_TABLE)) await s.exec(`DELETE FROM ${UNDO_TABLE} WHERE ${sameText("run_id", runId)}`);
        await s.exec("COMMIT");
      } catch (err) {
        // A session whose transaction state is unknown is never used again.
        await s.exec("ROLLBACK").catch(() => s.destroy());
        throw err;
      }
    });
  }

  async #undoRows<T>(sql: string): Promise<T[]> {
    try {
      return await this.#host.reading((s) => s.rows<T>(sql));
    } catch (err) {
      if (isMissingObject(err)) return [];
      throw err;
    }
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
