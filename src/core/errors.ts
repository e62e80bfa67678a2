/**
 * Ferry's one error model. Every failure a user can cause or meet carries a stable `code`;
 * the CLI maps codes to exit codes in exactly one place ({@link exitCodeFor}), the server
 * (later) maps them to HTTP statuses in one place too.
 */

/** Stable error codes. Adding one is fine; renaming one breaks scripts that match on it. */
export type ErrorCode =
  | "E_USAGE" // a bad flag, a missing argument
  | "E_CONFIG" // an instance URL or option that cannot work
  | "E_CONNECTION" // the instance is unreachable, refuses credentials, or does not exist
  | "E_PERMISSION" // the instance refuses an operation to this user (grant it, or use another user)
  | "E_LOSSY" // the type plan would change values; nothing written (pass --allow-lossy)
  | "E_NOT_FOUND" // a named collection or run does not exist
  | "E_VALIDATION" // a record breaks a rule; nothing written
  | "E_CONFLICT" // conflict mode `fail` met an existing key; nothing written
  | "E_WRITE" // the target rejected a record (constraint, type)
  | "E_CHECKSUM" // data does not match its recorded checksum (a damaged, truncated or edited package)
  | "E_DECRYPT" // an encrypted package that the passphrase or identity given does not open
  | "E_LOCKED" // another run holds the target
  | "E_DIRTY" // the target's journal has an unfinished run
  | "E_INTERRUPTED" // stopped by a signal; resumable
  | "E_UNSUPPORTED" // the connector cannot do what was asked
  | "E_INTERNAL"; // a bug in Ferry

/** Options for {@link FerryError}. */
export interface FerryErrorOptions {
  /** The underlying error (driver error, fs error). */
  cause?: unknown;
  /** Structured facts for `--json` output and tests (never secrets). */
  details?: Record<string, unknown>;
}

/**
 * The base error. Messages read `what: the offending value, and what to do`.
 *
 * @example
 * throw new FerryError("E_CONFIG", `unknown scheme "foo:": use one of sqlite:, …`);
 */
export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: FerryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FerryError";
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `err` is a {@link FerryError}, optionally with the given code. */
export function isFerryError(err: unknown, code?: ErrorCode): err is FerryError {
  return err instanceof FerryError && (code === undefined || err.code === code);
}

/**
 * The one mapping from errors to process exit codes:
 * 0 done · 1 failed · 2 usage, config or keys · 3 validation (records or a package) · 4 conflict in `fail` mode · 130 interrupted.
 */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof FerryError)) return 1;
  switch (err.code) {
    case "E_USAGE":
    case "E_CONFIG":
    case "E_CONNECTION":
    case "E_NOT_FOUND":
    case "E_DIRTY":
    case "E_LOCKED":
    case "E_PERMISSION":
    case "E_LOSSY":
    case "E_DECRYPT":
      return 2;
    case "E_VALIDATION":
    case "E_CHECKSUM":
      return 3;
    case "E_CONFLICT":
      return 4;
    case "E_INTERRUPTED":
      return 130;
    default:
      return 1;
  }
}
