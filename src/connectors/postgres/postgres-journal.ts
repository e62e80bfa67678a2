/** The run journal kept in a PostgreSQL schema, in table `_ferry_journal`. */
import type pg from "pg";
import type { JournalStore } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { qualified, sqlState } from "./postgres-sql.js";

/** Name of the journal table (in the instance's schema); `discover` never lists it. */
export const JOURNAL_TABLE = "_ferry_journal";

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
  try {
    await client.query(createJournalSql(schema));
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
}

/** A {@link JournalStore} over `_ferry_journal`; a schema without one lists nothing. */
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
