/** Small SQL helpers shared by the SQLite connector's modules. */

/**
 * Quotes an SQLite identifier (table, column, index name), doubling embedded quotes.
 *
 * @example quoteIdent('my "t"') // '"my ""t"""'
 */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The extended SQLite result code of a driver error (`SQLITE_CONSTRAINT_UNIQUE`, …), if any. */
export function sqliteCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && code.startsWith("SQLITE_") ? code : undefined;
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
