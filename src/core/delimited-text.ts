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

/**
 * A value as one delimited-text field (`\N` for NULL).
 *
 * @example escapeDelimited("a\tb\\c") // "a\\tb\\\\c"
 */
export function escapeDelimited(text: string | null): string {
  if (text === null) return "\\N";
  return SPECIAL.test(text) ? text.replace(SPECIAL_ALL, (c) => ESCAPES[c] as string) : text;
}
