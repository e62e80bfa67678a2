import { FerryError } from "../../core/errors.js";

/** Where a `redis://` or `rediss://` URL points. */
export interface RedisLocation {
  host: string;
  port: number;
  /** Database number (the URL's path), default 0. */
  db: number;
  username?: string;
  password?: string;
  /** `rediss://`: TLS. */
  tls: boolean;
  /** `?hashes=rows`: collections of hashes read and written as tables (see `redis-rows.ts`). */
  hashRows?: boolean;
}

/**
 * Parses `redis://[user:password@]host[:port][/db][?hashes=rows]` and `rediss://…` (TLS). A
 * password alone is written `redis://:password@host`. The password is percent-decoded.
 *
 * @throws FerryError `E_CONFIG` naming what is wrong (never the password).
 */
export function parseRedisUrl(url: string): RedisLocation {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FerryError("E_CONFIG", "not a Redis URL: write it as redis://[user:password@]host:port/db");
  }
  const scheme = u.protocol.replace(/:$/, "").toLowerCase();
  if (scheme !== "redis" && scheme !== "rediss") {
    throw new FerryError("E_CONFIG", `not a Redis URL (scheme ${scheme}:): write it as redis://host:port/db`);
  }
  const path = u.pathname.replace(/^\//, "");
  const db = path === "" ? 0 : Number(path);
  if (!Number.isInteger(db) || db < 0 || path.includes("/")) {
    throw new FerryError(
      "E_CONFIG",
      `Redis URL path must be a database number, e.g. redis://${u.host}/0 (got /${path})`,
    );
  }
  const port = u.port === "" ? 6379 : Number(u.port);
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new FerryError("E_CONFIG", "bad percent-encoding in the Redis URL's user or password");
    }
  };
  for (const [name, value] of u.searchParams) {
    if (name !== "hashes" || (value !== "rows" && value !== "keys")) {
      throw new FerryError(
        "E_CONFIG",
        `unknown Redis URL parameter ${name}=${value}: the one parameter is hashes=rows (collections of hashes as tables) or hashes=keys (the default)`,
      );
    }
  }
  return {
    host: u.hostname === "" ? "127.0.0.1" : u.hostname.replace(/^\[|\]$/g, ""),
    port,
    db,
    ...(u.username === "" ? {} : { username: decode(u.username) }),
    ...(u.password === "" ? {} : { password: decode(u.password) }),
    tls: scheme === "rediss",
    ...(u.searchParams.get("hashes") === "rows" ? { hashRows: true } : {}),
  };
}
