import { FerryError } from "../../core/errors.js";

/** Where a `sqlite:` URL points. */
export interface SqliteLocation {
  /** The file path as given (relative paths resolve against the working directory), or `:memory:`. */
  path: string;
  /** True for `sqlite::memory:`: a private, empty, in-process database. */
  memory: boolean;
}

/**
 * Parses a `sqlite:` instance URL.
 *
 * Accepted forms: `sqlite:./app.db`, `sqlite:app.db`, `sqlite:/abs/app.db`,
 * `sqlite:///abs/app.db` (file-URL style, percent-decoded), `sqlite://localhost/abs/app.db`
 * and `sqlite::memory:`.
 *
 * @throws FerryError `E_CONFIG` when the URL is not a `sqlite:` URL or names no path.
 */
export function parseSqliteUrl(url: string): SqliteLocation {
  const m = /^sqlite:/i.exec(url);
  if (!m) throw new FerryError("E_CONFIG", `not a sqlite URL: ${url}: write it as sqlite:PATH, e.g. sqlite:./app.db`);
  let rest = url.slice(m[0].length);
  if (rest === ":memory:") return { path: ":memory:", memory: true };
  if (rest.startsWith("//")) {
    rest = rest.slice(2);
    if (rest.toLowerCase().startsWith("localhost/")) rest = rest.slice("localhost".length);
    if (rest.includes("%")) {
      try {
        rest = decodeURIComponent(rest);
      } catch {
        throw new FerryError("E_CONFIG", `bad percent-encoding in sqlite URL ${url}: write the path as sqlite:PATH`);
      }
    }
  }
  if (rest.trim() === "") {
    throw new FerryError("E_CONFIG", `sqlite URL without a path: ${url}: name the database file, e.g. sqlite:./app.db`);
  }
  return { path: rest, memory: false };
}
