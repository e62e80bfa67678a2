/** Helpers for instance URLs: the password never leaves this module in clear. */

/**
 * Removes the password (and any `password`/`token` query parameter) from an instance URL,
 * for logs, errors, journal entries and `--json` output.
 *
 * @example redactUrl("postgres://app:s3cret@db/app") // "postgres://app:***@db/app"
 */
export function redactUrl(url: string): string {
  let out = url;
  const m = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url);
  if (m) {
    // Passwords are often not percent-encoded and may hold '@', '/', '#' or '?': the user info
    // ends at the last '@' of the URL (over-redacting a path or query is the safe side).
    const rest = url.slice(m[0].length);
    const at = rest.lastIndexOf("@");
    const colon = at < 0 ? -1 : rest.slice(0, at).indexOf(":");
    if (colon >= 0) out = `${m[0]}${rest.slice(0, colon)}:***${rest.slice(at)}`;
  }
  return out.replace(/([?&](?:password|pass|pwd|token|secret)=)[^&#]*/gi, "$1***");
}

/** The scheme of a URL-like string (`sqlite`, `postgres`), or undefined for a plain path. */
export function schemeOf(url: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  // One letter followed by ':' is a Windows drive, not a scheme.
  if (!m || (m[1] as string).length === 1) return undefined;
  return (m[1] as string).toLowerCase();
}
