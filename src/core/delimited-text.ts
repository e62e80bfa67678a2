/**
 * The delimited text of {@link TextExport} (PostgreSQL `COPY` text, MySQL `LOAD DATA`'s
 * default): tab between fields, `\n` after each row, `\N` for NULL, and inside values the
 * four escapes both engines read: `\\`, `\t`, `\n`, `\r`.
 *
 * @see ../core/connector.ts TextExport
 */

const SPECIAL = /[\\\t\n\r]/;
const SPECIAL_ALL = /[\\\t\n\r]/g;
const ESCAPES: Readonly<Record<string, string>> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/** Lines (newlines) in `text`: rows of delimited text, records of NDJSON. */
export function countLines(text: Uint8Array): number {
  let n = 0;
  for (let i = text.indexOf(10); i >= 0; i = text.indexOf(10, i + 1)) n++;
  return n;
}

/**
 * A value as one delimited-text field (`\N` for NULL).
 *
 * @example escapeDelimited("a\tb\\c") // "a\\tb\\\\c"
 */
export function escapeDelimited(text: string | null): string {
  if (text === null) return "\\N";
  return SPECIAL.test(text) ? text.replace(SPECIAL_ALL, (c) => ESCAPES[c] as string) : text;
}
