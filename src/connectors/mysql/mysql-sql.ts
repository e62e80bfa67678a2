/**
 * Small SQL text helpers for the MySQL connector. Statements are sent as text (the text
 * protocol, like `mysqldump` output), so values are spelled as literals here. Sessions run
 * with an `sql_mode` that keeps backslash escapes (no `NO_BACKSLASH_ESCAPES`, no `ANSI_QUOTES`).
 */

/**
 * Quotes an identifier with backticks, doubling embedded ones.
 *
 * @example quoteIdent("order") // "`order`"
 */
export function quoteIdent(name: string): string {
  return `\`${name.replaceAll("`", "``")}\``;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters MySQL escapes
const SPECIAL = /[\0\b\t\n\r\x1a"'\\]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: see above
const SPECIAL_ALL = /[\0\b\t\n\r\x1a"'\\]/g;
const ESCAPES: Record<string, string> = {
  "\0": "\\0",
  "\b": "\\b",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
  "\x1a": "\\Z",
  '"': '\\"',
  "'": "\\'",
  "\\": "\\\\",
};

/**
 * A quoted string literal with MySQL's backslash escapes.
 *
 * @example sqlString("it's") // "'it\\'s'"
 */
export function sqlString(s: string): string {
  if (!SPECIAL.test(s)) return `'${s}'`;
  return `'${s.replace(SPECIAL_ALL, (c) => ESCAPES[c] as string)}'`;
}

/** A hexadecimal literal (`X'00ff'`) for bytes. */
export function hexLiteral(b: Uint8Array): string {
  return `X'${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")}'`;
}

const TSV_SPECIAL = /[\0\t\n\r\\]/;
const TSV_SPECIAL_ALL = /[\0\t\n\r\\]/g;
const TSV_ESCAPES: Record<string, string> = { "\0": "\\0", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\" };

/**
 * A field of a `LOAD DATA` file (`FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES
 * TERMINATED BY '\n'`): tabs, newlines, carriage returns, NULs and backslashes escaped.
 * NULL is written `\N` by the caller.
 */
export function tsvField(s: string): string {
  if (!TSV_SPECIAL.test(s)) return s;
  return s.replace(TSV_SPECIAL_ALL, (c) => TSV_ESCAPES[c] as string);
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  if (typeof err === "object" && err !== null) {
    const sqlMessage = (err as { sqlMessage?: unknown }).sqlMessage;
    if (typeof sqlMessage === "string" && sqlMessage !== "") return sqlMessage;
  }
  return err instanceof Error ? err.message : String(err);
}

/** The server's error number of a driver error (`1062` duplicate key, …), if any. */
export function errnoOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const errno = (err as { errno?: unknown }).errno;
  return typeof errno === "number" ? errno : undefined;
}

/** The driver's error code (`ECONNREFUSED`, `ER_DUP_ENTRY`, …), if any. */
export function codeOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/** True when the error ended the connection (the driver marks those `fatal`). */
export function isFatal(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { fatal?: unknown }).fatal === true;
}

/** Server error numbers the connector reacts to. */
export const ER = {
  DBACCESS_DENIED: 1044,
  ACCESS_DENIED: 1045,
  BAD_DB: 1049,
  TABLE_EXISTS: 1050,
  BAD_TABLE: 1051,
  DUP_KEYNAME: 1061,
  DUP_ENTRY: 1062,
  NO_SUCH_TABLE: 1146,
  TABLEACCESS_DENIED: 1142,
  COLUMNACCESS_DENIED: 1143,
  NOT_ALLOWED_COMMAND: 1148,
  NET_PACKET_TOO_LARGE: 1153,
  LOCK_WAIT_TIMEOUT: 1205,
  LOCK_DEADLOCK: 1213,
  SPECIFIC_ACCESS_DENIED: 1227,
  QUERY_INTERRUPTED: 1317,
  FK_DUP_NAME: 1826,
  CLIENT_LOCAL_FILES_DISABLED: 3948,
  LOAD_INFILE_CAPABILITY_DISABLED: 2068,
} as const;

/**
 * The reason a refused record is given: the server's message naming `db.table.column`
 * (MariaDB names some columns with their table, others bare), without "at row 1", which
 * means nothing to the reader.
 *
 * @example refusalReason("shop", "users", err) // "shop.users.email: Data too long for column 'email'"
 */
export function refusalReason(database: string, table: string, err: unknown): string {
  const message = messageOf(err).replace(/ at row \d+$/, "");
  if (message.includes(`\`${database}\`.\`${table}\``)) return message;
  const column = /column '([^']+)'/i.exec(message)?.[1];
  return `${database}.${table}${column === undefined ? "" : `.${column}`}: ${message}`;
}
