/**
 * Driver errors → FerryErrors that name the instance (password removed) and the fix.
 */
import { FerryError } from "../../core/errors.js";
import { codeOf, ER, errnoOf, isFatal, messageOf } from "./mysql-sql.js";
import type { MysqlLocation } from "./mysql-url.js";

/** What an error message says about where the database is. */
export interface Where {
  /** The instance URL with the password removed. */
  display: string;
  location: MysqlLocation;
}

/**
 * An error met while connecting: server down, unknown host, access denied, unknown database
 * (`details.missing: true`, so a dry run can treat the target as empty).
 */
export function connectionError(err: unknown, where: Where): FerryError {
  const { display, location } = where;
  const errno = errnoOf(err);
  const code = codeOf(err);
  const details: Record<string, unknown> = { host: location.host, port: location.port, database: location.database };
  if (errno !== undefined) details.errno = errno;
  if (code !== undefined) details.code = code;
  const server = location.socketPath ?? `${location.host}:${location.port}`;
  let message: string;
  switch (true) {
    case code === "ECONNREFUSED":
      message = `cannot connect to MySQL at ${display}: connection refused at ${server}: is the server running, and listening on that port?`;
      break;
    case code === "ENOTFOUND" || code === "EAI_AGAIN":
      message = `cannot connect to MySQL at ${display}: host ${location.host} not found: check the host name`;
      break;
    case code === "ETIMEDOUT" || code === "ECONNRESET" || code === "EHOSTUNREACH" || code === "ENETUNREACH":
      message = `cannot connect to MySQL at ${display}: ${server} did not answer (${code}): is the server running and reachable (firewall)?`;
      break;
    case code === "ENOENT":
      message = `cannot connect to MySQL at ${display}: no socket ${location.socketPath}: is the server running?`;
      break;
    case errno === ER.ACCESS_DENIED ||
      errno === 1698 ||
      code === "ER_ACCESS_DENIED_ERROR" ||
      /^Access denied for user/i.test(messageOf(err)):
      message = `access denied to MySQL at ${display} for user ${location.user}: check the user and password in the URL (the server said: ${messageOf(err)})`;
      break;
    case errno === ER.DBACCESS_DENIED:
      message = `access denied to database ${location.database} at ${display} for user ${location.user}: GRANT SELECT (and INSERT, UPDATE, CREATE, ALTER for a target) ON \`${location.database}\`.* TO the user`;
      break;
    case errno === ER.BAD_DB:
      details.missing = true;
      message = `database ${location.database} does not exist at ${display}: check the name (a target database is created when copying into it)`;
      break;
    default:
      message = `cannot connect to MySQL at ${display}: ${messageOf(err)}: check the URL and that the server is running`;
  }
  return new FerryError("E_CONNECTION", message, { cause: err, details });
}

/** True when an error means the connection itself failed (not the statement). */
export function isConnectionLost(err: unknown): boolean {
  const code = codeOf(err);
  return (
    isFatal(err) ||
    code === "PROTOCOL_CONNECTION_LOST" ||
    code === "ECONNRESET" ||
    code === "EPIPE" ||
    code === "ECONNREFUSED"
  );
}

/** Server error numbers meaning "you may not". */
const PERMISSION = new Set<number>([
  ER.DBACCESS_DENIED,
  ER.ACCESS_DENIED,
  ER.TABLEACCESS_DENIED,
  ER.COLUMNACCESS_DENIED,
  ER.SPECIFIC_ACCESS_DENIED,
]);

/** True for access-denied errors. */
export function isPermissionError(err: unknown): boolean {
  const n = errnoOf(err);
  return n !== undefined && PERMISSION.has(n);
}

/**
 * `E_PERMISSION` for an operation the user may not do on `database.table`, naming what to grant.
 *
 * @param privileges e.g. `INSERT, UPDATE`.
 */
export function permissionError(
  err: unknown,
  database: string,
  table: string | undefined,
  privileges: string,
): FerryError {
  const on = table === undefined ? `\`${database}\`.*` : `\`${database}\`.\`${table}\``;
  const what = table === undefined ? database : `${database}.${table}`;
  return new FerryError(
    "E_PERMISSION",
    `not allowed on ${what}: ${messageOf(err)}: GRANT ${privileges} ON ${on} TO the user in the URL`,
    { cause: err, details: { database, ...(table === undefined ? {} : { table }), errno: errnoOf(err) } },
  );
}

/** `E_WRITE` (or `E_PERMISSION`, `E_CONNECTION`) for a statement that failed as a whole. */
export function writeError(err: unknown, database: string, table: string | undefined, what: string): FerryError {
  if (err instanceof FerryError) return err;
  if (isPermissionError(err))
    return permissionError(err, database, table, "SELECT, INSERT, UPDATE, CREATE, ALTER, INDEX, REFERENCES");
  const where = table === undefined ? database : `${database}.${table}`;
  if (isConnectionLost(err)) {
    return new FerryError(
      "E_CONNECTION",
      `lost the connection to MySQL while trying to ${what} (${where}): ${messageOf(err)}: nothing of this batch was written; run again with --resume`,
      { cause: err },
    );
  }
  return new FerryError("E_WRITE", `cannot ${what} (${where}): ${messageOf(err)}`, {
    cause: err,
    details: { database, ...(table === undefined ? {} : { table }), errno: errnoOf(err) },
  });
}
