/** Parsing of `mysql://` and `mariadb://` instance URLs. */
import { FerryError } from "../../core/errors.js";
import { redactUrl } from "../../core/url.js";

/** Where a MySQL/MariaDB database is, as given by its URL. */
export interface MysqlLocation {
  host: string;
  /** Default 3306. */
  port: number;
  /** Default `root`. */
  user: string;
  /** Absent when the URL has none (passwordless accounts, socket authentication). */
  password?: string;
  database: string;
  /** Unix socket path (`?socket=/run/mysqld/mysqld.sock`); replaces host and port when given. */
  socketPath?: string;
  /** `?ssl=true`: TLS with certificate verification. Default off. */
  ssl: boolean;
}

/** URL query parameters this connector understands. */
const PARAMETERS = new Set(["password", "socket", "ssl"]);

/** The default MySQL port. */
export const DEFAULT_PORT = 3306;

/**
 * Parses `mysql://user:password@host:port/database` (or `mariadb://…`). The user info ends
 * at the last `@` before any query string, so passwords that were not percent-encoded still
 * work; percent-encoded parts are decoded.
 *
 * @example parseMysqlUrl("mysql://app:s3cret@db:3307/shop") // { host: "db", port: 3307, user: "app", … }
 * @throws FerryError `E_CONFIG` for a malformed URL, naming the part and the expected form (never the password).
 */
export function parseMysqlUrl(url: string): MysqlLocation {
  const shown = redactUrl(url);
  const m = /^(mysql|mariadb):\/\//i.exec(url);
  const expected = "use mysql://user:password@host:3306/database";
  if (!m) throw new FerryError("E_CONFIG", `not a MySQL URL: ${shown}: ${expected}`);
  const rest = url.slice(m[0].length);
  const q = rest.indexOf("?");
  const main = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? "" : rest.slice(q + 1);
  const at = main.lastIndexOf("@");
  const userInfo = at < 0 ? "" : main.slice(0, at);
  const hostPath = at < 0 ? main : main.slice(at + 1);
  const slash = hostPath.indexOf("/");
  const hostPort = slash < 0 ? hostPath : hostPath.slice(0, slash);
  const path = slash < 0 ? "" : hostPath.slice(slash + 1);

  const decode = (part: string, what: string): string => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw new FerryError("E_CONFIG", `malformed ${what} in ${shown}: percent-encode special characters`);
    }
  };
  let user = "root";
  let password: string | undefined;
  if (userInfo !== "") {
    const colon = userInfo.indexOf(":");
    user = decode(colon < 0 ? userInfo : userInfo.slice(0, colon), "user name");
    if (colon >= 0) password = decode(userInfo.slice(colon + 1), "password");
  }

  let host = hostPort;
  let port = DEFAULT_PORT;
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(hostPort);
  let portText: string | undefined;
  if (bracket) {
    host = bracket[1] as string;
    portText = bracket[2];
  } else {
    const colon = hostPort.lastIndexOf(":");
    if (colon >= 0) {
      host = hostPort.slice(0, colon);
      portText = hostPort.slice(colon + 1);
    }
  }
  if (portText !== undefined && portText !== "") {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new FerryError("E_CONFIG", `bad port "${portText}" in ${shown}: use a number from 1 to 65535`);
    }
    port = Number(portText);
  }
  host = decode(host, "host").toLowerCase();

  const database = decode(path.replace(/\/+$/, ""), "database name");
  if (database === "" || database.includes("/")) {
    throw new FerryError("E_CONFIG", `no database named in ${shown}: ${expected}`);
  }
  if (database.length > 64) {
    throw new FerryError("E_CONFIG", `database name "${database}" is longer than 64 characters: MySQL refuses it`);
  }

  let socketPath: string | undefined;
  let ssl = false;
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = decode(eq < 0 ? pair : pair.slice(0, eq), "query parameter");
    const value = eq < 0 ? "" : decode(pair.slice(eq + 1), `value of ${key}`);
    if (!PARAMETERS.has(key)) {
      throw new FerryError(
        "E_CONFIG",
        `unknown parameter "${key}" in ${shown}: use ${[...PARAMETERS].map((p) => `${p}=`).join(", ")} or none`,
      );
    }
    if (key === "password") password = value;
    else if (key === "socket") socketPath = value;
    else if (key === "ssl") {
      if (!/^(true|false|1|0|required)$/i.test(value)) {
        throw new FerryError("E_CONFIG", `bad ssl=${value} in ${shown}: use ssl=true or ssl=false`);
      }
      ssl = /^(true|1|required)$/i.test(value);
    }
  }
  if (host === "" && socketPath === undefined) throw new FerryError("E_CONFIG", `no host in ${shown}: ${expected}`);
  if (host === "") host = "localhost";
  return { host, port, user, ...(password === undefined ? {} : { password }), database, socketPath, ssl };
}

/** `host:port/database`: equal for two URLs that name the same database. */
export function identityOf(location: MysqlLocation): string {
  const where = location.socketPath !== undefined ? location.socketPath : `${location.host}:${location.port}`;
  return `${where}/${location.database}`;
}
