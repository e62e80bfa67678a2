/**
 * One server connection (mysql2's callback API, text protocol), with promises for whole
 * results and row events for streamed ones. Rows arrive as mysql2 decodes them with the
 * settings of {@link driverOptions}; the connector turns them into Ferry values.
 */
import type { Readable } from "node:stream";
import type { Connection, ConnectionOptions, Query } from "mysql2";
import type { MysqlLocation } from "./mysql-url.js";

/**
 * The `sql_mode` of every session: strict for all tables (a value that does not fit is an
 * error, never silently cut), zeros kept in AUTO_INCREMENT columns, and zero dates allowed
 * (no NO_ZERO_DATE / NO_ZERO_IN_DATE) so MySQL's `0000-00-00` copies between MySQLs. No
 * ANSI_QUOTES or NO_BACKSLASH_ESCAPES: the connector's SQL uses backticks and escapes.
 */
export const SESSION_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION";

/**
 * How long the server waits for a paused reader (a streamed read under backpressure)
 * before giving up on it: a year, so a slow target never breaks a read.
 */
const NET_WRITE_TIMEOUT = 31_536_000;

/**
 * mysql2 settings: BIGINT values as exact strings only when they pass 2^53 (numbers
 * otherwise), DECIMAL as the server prints it, dates and JSON as text (parsed by the
 * connector, so microseconds and zero dates survive), utf8mb4, and UTC.
 */
export function driverOptions(location: MysqlLocation, withDatabase: boolean): ConnectionOptions {
  return {
    host: location.host,
    port: location.port,
    user: location.user,
    ...(location.password === undefined ? {} : { password: location.password }),
    ...(withDatabase ? { database: location.database } : {}),
    ...(location.socketPath === undefined ? {} : { socketPath: location.socketPath }),
    ...(location.ssl ? { ssl: {} } : {}),
    supportBigNumbers: true,
    bigNumberStrings: false,
    decimalNumbers: false,
    dateStrings: true,
    jsonStrings: true,
    charset: "utf8mb4",
    timezone: "Z",
    connectTimeout: 10_000,
    multipleStatements: false,
  };
}

/** Options of one query. */
export interface QueryOptions {
  /** Rows as arrays in select order (default: objects keyed by column name). */
  rowsAsArray?: boolean;
  /** The data of a `LOAD DATA LOCAL INFILE` statement. */
  infile?: () => Readable;
}

/** The OK result of a statement that returns no rows. */
export interface OkResult {
  affectedRows: number;
  warningStatus: number;
  insertId: number;
}

/** One connection. Not safe for concurrent use: one query at a time (mysql2 queues them). */
export class MysqlSession {
  readonly #conn: Connection;
  #broken = false;
  #closed = false;

  private constructor(conn: Connection) {
    this.#conn = conn;
    // A connection the server drops while idle must not crash the process.
    conn.on("error", () => {
      this.#broken = true;
    });
  }

  /**
   * Connects and runs `init` statements (session settings) before anything else.
   *
   * @throws the driver's error (the caller turns it into a FerryError).
   */
  static async connect(options: ConnectionOptions, init: string[] = []): Promise<MysqlSession> {
    // The driver is loaded with the first MySQL connection, not on every command.
    const { default: mysql } = await import("mysql2");
    const conn = mysql.createConnection(options);
    const session = new MysqlSession(conn);
    await new Promise<void>((resolve, reject) => {
      conn.connect((err) => (err ? reject(err) : resolve()));
    }).catch((err: unknown) => {
      conn.destroy();
      throw err;
    });
    try {
      for (const sql of init) await session.query(sql);
    } catch (err) {
      session.destroy();
      throw err;
    }
    return session;
  }

  /** Statements that set up a session: UTC, {@link SESSION_SQL_MODE}, and (for writing) no FK checks. */
  static initStatements(forWrite: boolean): string[] {
    const settings = [
      "time_zone = '+00:00'",
      `sql_mode = '${SESSION_SQL_MODE}'`,
      `net_write_timeout = ${NET_WRITE_TIMEOUT}`,
      ...(forWrite ? ["foreign_key_checks = 0"] : []),
    ];
    return [`SET SESSION ${settings.join(", ")}`];
  }

  /** The server's id of this connection (for KILL QUERY). */
  get threadId(): number {
    return this.#conn.threadId ?? 0;
  }

  /** True after a fatal error: the connection must be thrown away. */
  get broken(): boolean {
    return this.#broken || this.#closed;
  }

  /** Runs one statement; resolves with its rows (SELECT) or its OK result. */
  query<T = unknown>(sql: string, options: QueryOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#conn.query(
        {
          sql,
          ...(options.rowsAsArray ? { rowsAsArray: true } : {}),
          ...(options.infile ? { infileStreamFactory: options.infile } : {}),
        },
        (err, result) => {
          if (err) {
            if (err.fatal) this.#broken = true;
            reject(err);
          } else resolve(result as T);
        },
      );
    });
  }

  /** Rows of one SELECT. */
  rows<T = Record<string, unknown>>(sql: string, options: QueryOptions = {}): Promise<T[]> {
    return this.query<T[]>(sql, options);
  }

  /** An OK result of one statement. */
  exec(sql: string, options: QueryOptions = {}): Promise<OkResult> {
    return this.query<OkResult>(sql, options);
  }

  /** Starts a query whose rows arrive as `result` events (see {@link pause}). */
  events(sql: string, options: QueryOptions = {}): Query {
    const q = this.#conn.query({ sql, ...(options.rowsAsArray ? { rowsAsArray: true } : {}) });
    q.on("error", (err: { fatal?: boolean }) => {
      if (err.fatal) this.#broken = true;
    });
    return q;
  }

  /** Stops reading from the server (backpressure for {@link events}); rows already read wait. */
  pause(): void {
    this.#conn.pause();
  }

  /** Resumes after {@link pause}. */
  resume(): void {
    this.#conn.resume();
  }

  /** Closes the connection politely; destroys it if that fails. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#broken) {
      this.#conn.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#conn.destroy();
        resolve();
      }, 5_000);
      this.#conn.end(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Drops the connection at once (the server rolls back what it had open). */
  destroy(): void {
    this.#closed = true;
    this.#conn.destroy();
  }
}
