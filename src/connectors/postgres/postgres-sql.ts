/** Small SQL helpers shared by the PostgreSQL connector's modules. */
import pg from "pg";

/**
 * Quotes an identifier (schema, table, column, constraint), doubling embedded quotes.
 *
 * @example quoteIdent('my "t"') // '"my ""t"""'
 */
export function quoteIdent(name: string): string {
  return pg.escapeIdentifier(name);
}

/** A string literal (`'it''s'`, or `E'…'` when it holds backslashes). */
export function quoteLiteral(text: string): string {
  return pg.escapeLiteral(text);
}

/** `"schema"."table"`. */
export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/** The SQLSTATE of a server error (`23505`, …), if any. */
export function sqlState(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const MAX_DETAIL = 300;

/**
 * A server error as a refused record's reason: PostgreSQL's message, its detail, and the
 * table, column or constraint it names when the message does not already say.
 */
export function describePgError(err: unknown): string {
  const e = err as {
    message?: string;
    detail?: string;
    table?: string;
    column?: string;
    constraint?: string;
    where?: string;
  };
  let out = messageOf(err);
  // COPY names the column of a value its type refuses only in the error's context.
  const copied = e.where ? /^COPY (\S+), line \d+, column (\S+?):/.exec(e.where) : null;
  if (e.table && e.column && !out.includes(`"${e.column}"`)) out += ` (column ${e.table}.${e.column})`;
  else if (copied) out += ` (column ${copied[1]}.${copied[2]})`;
  else if (e.constraint && !out.includes(`"${e.constraint}"`)) out += ` (constraint ${e.constraint})`;
  if (e.detail) {
    const d = e.detail.length > MAX_DETAIL ? `${e.detail.slice(0, MAX_DETAIL - 1)}…` : e.detail;
    out += `: ${d}`;
  }
  return out;
}

/**
 * True when a server error refuses the data of a statement (a constraint, a value of the
 * wrong type, a trigger's RAISE), so the record is reported and the rest of the batch goes
 * on; false for errors about the connection, the session, permissions or Ferry's own SQL.
 */
export function isRecordError(err: unknown): boolean {
  const code = sqlState(err);
  if (code === undefined) return false;
  if (code === "42501" || code === "42P01" || code === "42601" || code === "42883") return false;
  return ["21", "22", "23", "27", "2F", "38", "39", "42", "44", "P0"].includes(code.slice(0, 2));
}
