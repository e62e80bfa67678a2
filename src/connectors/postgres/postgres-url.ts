import { userInfo } from "node:os";
import { FerryError } from "../../core/errors.js";
import { redactUrl } from "../../core/url.js";

/** Where a `postgres://` URL points, with everything needed to connect. */
export interface PostgresLocation {
  host: string;
  port: number;
  user: string;
  /** Empty when the URL has none. */
  password: string;
  database: string;
  /** The schema whose tables are the collections (`?schema=`, default `public`). */
  schema: string;
  /** `?sslmode=`: `disable` (default), `require` (encrypted, not verified), `verify-full`. */
  ssl: false | { rejectUnauthorized: boolean };
  /** Seconds to wait for a connection (`?connect_timeout=`, default 10). */
  connectTimeout: number;
}

const PARAMS = ["schema", "sslmode", "host", "connect_timeout"];

function decode(part: string, url: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new FerryError("E_CONFIG", `bad percent-encoding in the ${what} of ${redactUrl(url)}: encode % as %25`);
  }
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "postgres";
  }
}

/**
 * Parses `postgres://user:password@host:port/database?schema=NAME` (also `postgresql://`).
 * Defaults as libpq's: host `localhost`, port 5432, the OS user, a database named as the
 * user; schema `public`. The password may hold unencoded `@`, `/` or `#` (the user info ends
 * at the last `@`). `?host=/run/postgresql` names a Unix socket directory. Nothing is read
 * from the environment (`PG*` variables, `.pgpass`).
 *
 * @throws FerryError `E_CONFIG` for a malformed URL or an unknown parameter.
 */
export function parsePostgresUrl(url: string): PostgresLocation {
  const m = /^postgres(?:ql)?:\/\//i.exec(url);
  if (!m) {
    throw new FerryError(
      "E_CONFIG",
      `not a postgres URL: ${redactUrl(url)}: write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE?schema=NAME`,
    );
  }
  let rest = url.slice(m[0].length);
  let query = "";
  const q = rest.indexOf("?");
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const at = rest.lastIndexOf("@");
  const userinfo = at >= 0 ? rest.slice(0, at) : "";
  const hostPath = at >= 0 ? rest.slice(at + 1) : rest;
  const slash = hostPath.indexOf("/");
  const hostPort = slash >= 0 ? hostPath.slice(0, slash) : hostPath;
  const dbPart = slash >= 0 ? hostPath.slice(slash + 1) : "";

  let user = "";
  let password = "";
  if (userinfo !== "") {
    const colon = userinfo.indexOf(":");
    user = decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, url, "user");
    password = colon >= 0 ? decode(userinfo.slice(colon + 1), url, "password") : "";
  }

  let host = hostPort;
  let portText = "";
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(hostPort);
  if (bracket) {
    host = bracket[1] as string;
    portText = bracket[2] ?? "";
  } else {
    const colon = hostPort.lastIndexOf(":");
    if (colon >= 0) {
      host = hostPort.slice(0, colon);
      portText = hostPort.slice(colon + 1);
    }
  }
  host = decode(host, url, "host");
  const port = portText === "" ? 5432 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new FerryError("E_CONFIG", `bad port "${portText}" in ${redactUrl(url)}: use a number from 1 to 65535`);
  }

  const params = new URLSearchParams(query);
  for (const k of params.keys()) {
    if (!PARAMS.includes(k)) {
      throw new FerryError(
        "E_CONFIG",
        `unknown parameter "${k}" in ${redactUrl(url)}: postgres URLs take ${PARAMS.map((p) => `?${p}=`).join(", ")}`,
      );
    }
  }
  const socket = params.get("host");
  if (socket) host = socket;
  if (host === "") host = "localhost";
  if (user === "") user = osUser();
  const database = dbPart === "" ? user : decode(dbPart, url, "database");
  const schema = params.get("schema") ?? "public";
  if (schema === "") throw new FerryError("E_CONFIG", `empty ?schema= in ${redactUrl(url)}: name a schema`);

  const sslmode = (params.get("sslmode") ?? "disable").toLowerCase();
  let ssl: PostgresLocation["ssl"];
  switch (sslmode) {
    case "disable":
    case "allow":
    case "prefer":
      ssl = false;
      break;
    case "require":
    case "verify-ca":
    case "no-verify":
      ssl = { rejectUnauthorized: false };
      break;
    case "verify-full":
      ssl = { rejectUnauthorized: true };
      break;
    default:
      throw new FerryError(
        "E_CONFIG",
        `unknown sslmode "${sslmode}" in ${redactUrl(url)}: use disable, require or verify-full`,
      );
  }
  const timeoutText = params.get("connect_timeout");
  const connectTimeout = timeoutText === null ? 10 : Number(timeoutText);
  if (!Number.isFinite(connectTimeout) || connectTimeout <= 0) {
    throw new FerryError("E_CONFIG", `bad connect_timeout "${timeoutText}" in ${redactUrl(url)}: use seconds, e.g. 10`);
  }
  return { host, port, user, password, database, schema, ssl, connectTimeout };
}
