/** The run journal kept in a PostgreSQL schema, in table `_ferry_journal`, and its undo log in `_ferry_undo`. */
import type pg from "pg";
import type { JournalStore, UndoRow } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { undoJson, undoPageGroups } from "../../core/undo.js";
import { qualified, sqlState } from "./postgres-sql.js";

/** Name of the journal table (in the instance's schema); `discover` never lists it. */
export const JOURNAL_TABLE = "_ferry_journal";

/** Name of the undo log table (in the instance's schema); `discover` never lists it. */
export const UNDO_TABLE = "_ferry_undo";

/** Undo rows per page of {@link PostgresJournal.undo}, at most. */
const UNDO_PAGE_ROWS = 50;

/** `CREATE TABLE IF NOT EXISTS` of the journal in `schema`. */
export function createJournalSql(schema: string): string {
  return `CREATE TABLE IF NOT EXISTS ${qualified(schema, JOURNAL_TABLE)} (id text PRIMARY KEY, started_at text, entry jsonb NOT NULL)`;
}

/** The upsert of one journal row: parameters `id, started_at, entry` (from {@link journalParams}). */
export function journalUpsertSql(schema: string): string {
  const t = qualified(schema, JOURNAL_TABLE);
  return `INSERT INTO ${t} AS j (id, started_at, entry) VALUES ($1, $2, $3::jsonb)
    ON CONFLICT (id) DO UPDATE SET started_at = coalesce(EXCLUDED.started_at, j.started_at), entry = EXCLUDED.entry`;
}

/**
 * `CREATE TABLE IF NOT EXISTS` of the undo log in `schema`: one row per batch that changed
 * something, its entry as JSON text (`text`, not `jsonb`: rows can be tens of megabytes, are
 * only ever read back whole, and come back exactly as written, `\u0000` included), `size` its
 * length, so pages are cut by size without reading the entries.
 */
export function createUndoSql(schema: string): string {
  return `CREATE TABLE IF NOT EXISTS ${qualified(schema, UNDO_TABLE)} (run_id text NOT NULL, seq bigint NOT NULL, size bigint NOT NULL, entry text NOT NULL, PRIMARY KEY (run_id, seq))`;
}

/**
 * The insert of one undo row: parameters `run_id, seq, size, entry` (from {@link undoParams}).
 * A plain INSERT: a `seq` already in the run's log is a bug in the caller and fails the batch.
 */
export function undoInsertSql(schema: string): string {
  return `INSERT INTO ${qualified(schema, UNDO_TABLE)} (run_id, seq, size, entry) VALUES ($1, $2, $3, $4)`;
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

/**
 * The `[id, started_at, entry]` parameters of a journal upsert. `started_at` is the entry's
 * `startedAt` when it is a string. NUL characters (which jsonb cannot hold) are written as
 * U+2400 `␀`.
 *
 * @throws FerryError `E_INTERNAL` when the entry is not JSON-serialisable.
 */
export function journalParams(id: string, entry: unknown): [string, string | null, string] {
  let json: string | undefined;
  try {
    json = JSON.stringify(entry, (_k, v: unknown) => (typeof v === "string" ? v.replaceAll("\u0000", "\u2400") : v));
  } catch (cause) {
    throw new FerryError("E_INTERNAL", `journal entry ${id} is not JSON-serialisable`, { cause });
  }
  if (json === undefined) throw new FerryError("E_INTERNAL", `journal entry ${id} is not a JSON value`);
  const startedAt =
    typeof entry === "object" && entry !== null ? (entry as { startedAt?: unknown }).startedAt : undefined;
  return [id, typeof startedAt === "string" ? startedAt : null, json];
}

/** Creates the journal table; a concurrent creator winning the race is fine. */
export async function ensureJournal(client: pg.Client, schema: string): Promise<void> {
  await createTable(client, createJournalSql(schema));
}

/** Creates the undo log table; a concurrent creator winning the race is fine. */
export async function ensureUndo(client: pg.Client, schema: string): Promise<void> {
  await createTable(client, createUndoSql(schema));
}

async function createTable(client: pg.Client, sql: string): Promise<void> {
  try {
    await client.query(sql);
  } catch (err) {
    const code = sqlState(err);
    if (code !== "23505" && code !== "42P07") throw err;
  }
}

/** The connections the journal uses. */
export interface JournalHost {
  schema: string;
  /** Runs a read on a connection (the source's snapshot, or a pooled one). */
  read<T>(fn: (client: pg.Client) => Promise<T>): Promise<T>;
  /** Runs a write on a pooled connection of a target, the journal table created. */
  write<T>(fn: (client: pg.Client) => Promise<T>): Promise<T>;
  /** Runs a write on a pooled connection of a target, creating nothing. @throws E_UNSUPPORTED on a source. */
  change<T>(fn: (client: pg.Client) => Promise<T>): Promise<T>;
}

/**
 * A {@link JournalStore} over `_ferry_journal` and `_ferry_undo`; a schema without them lists
 * nothing.
 */
export class PostgresJournal implements JournalStore {
  readonly #host: JournalHost;

  constructor(host: JournalHost) {
    this.#host = host;
  }

  async save(runId: string, entry: unknown): Promise<void> {
    const params = journalParams(runId, entry);
    await this.#host.write((c) => c.query(journalUpsertSql(this.#host.schema), params));
  }

  async get(runId: string): Promise<unknown | undefined> {
    const rows = await this.#select("WHERE id = $1", [runId]);
    return rows[0];
  }

  async list(): Promise<unknown[]> {
    return this.#select("ORDER BY started_at DESC NULLS LAST, id DESC", []);
  }

  /**
   * See {@link JournalStore.undo}: pages of at most 50 rows by `seq` (keyset), each page's
   * entries fetched a few megabytes at a time.
   */
  async *undo(runId: string): AsyncIterable<UndoRow> {
    const table = qualified(this.#host.schema, UNDO_TABLE);
    let below: number | undefined;
    for (;;) {
      const page = await this.#host.read(async (c) => {
        const exists = await c.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [table]);
        if (exists.rows[0]?.t == null) return [];
        const r = await c.query<{ seq: string; size: string }>(
          `SELECT seq, size FROM ${table} WHERE run_id = $1${below === undefined ? "" : " AND seq < $3"} ORDER BY seq DESC LIMIT $2`,
          below === undefined ? [runId, UNDO_PAGE_ROWS] : [runId, UNDO_PAGE_ROWS, below],
        );
        return r.rows.map((row) => [Number(row.seq), Number(row.size)] as const);
      });
      if (page.length === 0) return;
      for (const [from, to] of undoPageGroups(page)) {
        const rows = await this.#host.read(async (c) => {
          const r = await c.query<{ seq: string; entry: string }>(
            `SELECT seq, entry FROM ${table} WHERE run_id = $1 AND seq <= $2 AND seq >= $3 ORDER BY seq DESC`,
            [runId, from, to],
          );
          return r.rows;
        });
        for (const row of rows) yield { runId, seq: Number(row.seq), entry: JSON.parse(row.entry) as unknown };
      }
      below = (page[page.length - 1] as readonly [number, number])[0];
      if (page.length < UNDO_PAGE_ROWS) return;
    }
  }

  /**
   * See {@link JournalStore.forget}: the entry, `<runId>/…` rows and undo rows, in one
   * transaction. The prefix is compared with `left()`, not LIKE, so `_` and `%` in a run id
   * are themselves.
   */
  async forget(runId: string): Promise<void> {
    const schema = this.#host.schema;
    const journal = qualified(schema, JOURNAL_TABLE);
    const undo = qualified(schema, UNDO_TABLE);
    await this.#host.change(async (c) => {
      await c.query("BEGIN");
      try {
        const r = await c.query<{ j: string | null; u: string | null }>(
          "SELECT to_regclass($1) AS j, to_regclass($2) AS u",
          [journal, undo],
        );
        const found = r.rows[0];
        if (found?.j != null) {
          await c.query(`DELETE FROM ${journal} WHERE id = $1 OR left(id, length($2)) = $2`, [runId, `${runId}/`]);
        }
        if (found?.u != null) await c.query(`DELETE FROM ${undo} WHERE run_id = $1`, [runId]);
        await c.query("COMMIT");
      } catch (err) {
        await c.query("ROLLBACK").catch(() => {
          // A connection that cannot roll back is not given back to the pool (no SQLSTATE: broken).
          throw new Error(`rollback failed after: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        });
        throw err;
      }
    });
  }

  async #select(tail: string, params: unknown[]): Promise<unknown[]> {
    const table = qualified(this.#host.schema, JOURNAL_TABLE);
    return this.#host.read(async (c) => {
      const exists = await c.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [table]);
      if (exists.rows[0]?.t == null) return [];
      const r = await c.query<{ entry: string }>(`SELECT entry::text AS entry FROM ${table} ${tail}`, params);
      return r.rows.map((row) => JSON.parse(row.entry) as unknown);
    });
  }
}
