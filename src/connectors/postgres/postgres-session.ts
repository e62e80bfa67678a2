/**
 * Connections: opening one with Ferry's session settings and nothing from the environment,
 * turning connection failures into errors that say what to do, and a small pool.
 */
import pg from "pg";
import { FerryError } from "../../core/errors.js";
import { messageOf, quoteIdent, sqlState } from "./postgres-sql.js";
import type { PostgresLocation } from "./postgres-url.js";

/**
 * Settings of every connection, so values print the same everywhere: UTC, ISO dates,
 * shortest exact floats, hex bytea, postgres intervals, UTF-8.
 */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: "UTC",
  DateStyle: "ISO",
  extra_float_digits: "3",
  bytea_output: "hex",
  IntervalStyle: "postgres",
  client_encoding: "UTF8",
};

/** A startup `options` value: `-c name=value` words, spaces and backslashes escaped. */
function startupOptions(settings: Record<string, string>): string {
  const esc = (s: string) => s.replace(/[\\ ]/g, "\\$&");
  return Object.entries(settings)
    .map(([k, v]) => `-c ${esc(`${k}=${v}`)}`)
    .join(" ");
}

/** Where to connect and how to name the instance in errors. */
export interface ConnectTarget {
  location: PostgresLocation;
  /** The instance URL without its password. */
  displayUrl: string;
}

/**
 * Opens one connection to `database` (default the URL's). Every connection field is set
 * here, so `PG*` environment variables and `.pgpass` never apply; the session settings and
 * `search_path` (the URL's schema) are sent with the startup packet.
 *
 * @throws FerryError `E_CONNECTION` naming the instance and the fix (see {@link connectionError}).
 */
export async function connect(target: ConnectTarget, database?: string): Promise<pg.Client> {
  const loc = target.location;
  const password = loc.password;
  const client = new pg.Client({
    host: loc.host,
    port: loc.port,
    user: loc.user,
    database: database ?? loc.database,
    // A function: pg then never looks at PGPASSWORD or ~/.pgpass.
    password: () => password,
    ssl: loc.ssl,
    sslnegotiation: "postgres",
    client_encoding: "UTF8",
    application_name: "ferry",
    options: startupOptions({ ...SESSION_SETTINGS, search_path: quoteIdent(loc.schema) }),
    connectionTimeoutMillis: loc.connectTimeout * 1000,
    keepAlive: true,
  });
  // pg falls back to PGREPLICATION for a falsy value: no replication, whatever the environment.
  const params = client as unknown as { replication?: unknown; connectionParameters: { replication?: unknown } };
  params.replication = undefined;
  params.connectionParameters.replication = undefined;
  // An idle connection that dies emits 'error'; the next query on it fails and says why.
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (cause) {
    await client.end().catch(() => {});
    throw connectionError(cause, target, database ?? loc.database);
  }
  return client;
}

/** True for an error that means the database does not exist. */
export function isMissingDatabase(err: unknown): boolean {
  return sqlState(err) === "3D000" || (err instanceof FerryError && err.details.missing === true);
}

/** A failure to connect as an `E_CONNECTION` (or `E_PERMISSION`) error that says what to do. */
export function connectionError(cause: unknown, target: ConnectTarget, database: string): FerryError {
  const { host, port, user } = target.location;
  const where = target.displayUrl;
  const code = sqlState(cause);
  const sys = (cause as { code?: unknown }).code;
  const msg = messageOf(cause);
  const details: Record<string, unknown> = { host, port, database };
  if (code) details.sqlState = code;
  if (code === "3D000") {
    return new FerryError(
      "E_CONNECTION",
      `database "${database}" does not exist at ${where}: create it (createdb -h ${host} -p ${port} -U ${user} ${database}), or copy into it (a target's database is created)`,
      { cause, details: { ...details, missing: true } },
    );
  }
  if (code === "28P01" || code === "28000" || /password|authentication/i.test(msg)) {
    return new FerryError(
      "E_CONNECTION",
      `PostgreSQL at ${where} refused the login of user "${user}": ${msg}: check the user and password in the URL, and pg_hba.conf`,
      { cause, details },
    );
  }
  if (code === "42501") {
    return new FerryError(
      "E_PERMISSION",
      `user "${user}" may not connect to database "${database}" at ${where}: GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(user)}`,
      { cause, details },
    );
  }
  if (code === "57P03") {
    return new FerryError(
      "E_CONNECTION",
      `PostgreSQL at ${where} is starting up or shutting down: ${msg}: retry in a moment`,
      { cause, details },
    );
  }
  if (code === "53300") {
    return new FerryError(
      "E_CONNECTION",
      `PostgreSQL at ${where} has too many connections: ${msg}: lower --jobs, or raise max_connections`,
      { cause, details },
    );
  }
  if (sys === "ENOTFOUND" || sys === "EAI_AGAIN") {
    return new FerryError("E_CONNECTION", `cannot resolve host "${host}" of ${where}: check the host name`, {
      cause,
      details,
    });
  }
  const reason =
    sys === "ECONNREFUSED"
      ? "connection refused"
      : /timeout/i.test(msg) || sys === "ETIMEDOUT"
        ? "timed out"
        : typeof sys === "string"
          ? `${sys}: ${msg}`
          : msg;
  return new FerryError(
    "E_CONNECTION",
    `cannot connect to PostgreSQL at ${where}: ${reason}: is the server running? try pg_isready -h ${host} -p ${port}`,
    { cause, details },
  );
}

/** Closes a connection, ignoring errors (it may be broken already). */
export async function closeClient(client: pg.Client): Promise<void> {
  await client.end().catch(() => {});
}

/**
 * Drops a connection that may be in the middle of a COPY: its socket is destroyed (the
 * server then ends the backend), since a COPY stream holding the socket would keep a
 * graceful end waiting.
 */
export function destroyClient(client: pg.Client): void {
  void client.end().catch(() => {});
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/**
 * Up to `max` connections opened on demand by `open`, each lent to one user at a time.
 * A connection given back as broken is closed and replaced when next needed.
 */
export class ClientPool {
  readonly #open: () => Promise<pg.Client>;
  readonly #max: number;
  readonly #idle: pg.Client[] = [];
  readonly #all = new Set<pg.Client>();
  #opening = 0;
  #waiters: ((c: pg.Client | Error) => void)[] = [];
  #closed = false;

  constructor(max: number, open: () => Promise<pg.Client>) {
    this.#max = Math.max(1, Math.floor(max));
    this.#open = open;
  }

  /** Connections open now. */
  get size(): number {
    return this.#all.size;
  }

  /** A connection for the caller alone until {@link release}. */
  async acquire(): Promise<pg.Client> {
    if (this.#closed) throw new FerryError("E_INTERNAL", "PostgreSQL connection pool used after close()");
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    if (this.#all.size + this.#opening < this.#max) {
      this.#opening++;
      try {
        const c = await this.#open();
        if (this.#closed) {
          await closeClient(c);
          throw new FerryError("E_INTERNAL", "PostgreSQL connection pool closed while connecting");
        }
        this.#all.add(c);
        return c;
      } finally {
        this.#opening--;
      }
    }
    const got = await new Promise<pg.Client | Error>((resolve) => this.#waiters.push(resolve));
    if (got instanceof Error) throw got;
    return got;
  }

  /** Gives a connection back; `broken` closes it. */
  release(client: pg.Client, broken = false): void {
    if (broken || this.#closed) {
      this.#all.delete(client);
      if (broken) destroyClient(client);
      else void closeClient(client);
      const waiter = this.#waiters.shift();
      if (waiter) {
        // A waiter gets a new connection in place of the broken one.
        this.acquire().then(waiter, (e: unknown) => waiter(e instanceof Error ? e : new Error(String(e))));
      }
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter(client);
    else this.#idle.push(client);
  }

  /** Runs `fn` with a connection; an error that is not the server's refusal breaks the connection. */
  async use<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await this.acquire();
    let broken = false;
    try {
      return await fn(client);
    } catch (err) {
      broken = sqlState(err) === undefined;
      throw err;
    } finally {
      this.release(client, broken);
    }
  }

  /** Closes every connection (after `before` runs on each idle one, e.g. to end its transaction). */
  async close(before?: (client: pg.Client) => Promise<unknown>): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w(new FerryError("E_INTERNAL", "PostgreSQL connection pool closed"));
    const all = [...this.#all];
    this.#all.clear();
    this.#idle.length = 0;
    await Promise.all(
      all.map(async (c) => {
        if (before) await before(c).catch(() => {});
        await closeClient(c);
      }),
    );
  }
}

/** Serialises async work on one resource (the source's snapshot connection). */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn, fn);
    this.#tail = result.catch(() => {});
    return result;
  }
}
