/**
 * A private redis-server for tests (instance-to-instance copies need a second instance):
 * started on a free port with many databases and no persistence, stopped by `stop`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { Redis } from "ioredis";

/** A running test server. */
export interface TestRedis {
  port: number;
  /** A URL of an empty database of this server (each call a new one). */
  fresh(): Promise<string>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/** A test redis-server's arguments: local only, no persistence. */
export const REDIS_BASE_ARGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];

/** Starts `redis-server` (fails the test run, never skips, when it cannot). */
export async function startRedis(
  databases = 512,
  extra: { args?: string[]; password?: string } = {},
): Promise<TestRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    "redis-server",
    ["--port", String(port), ...REDIS_BASE_ARGS, "--databases", String(databases), ...(extra.args ?? [])],
    { stdio: "ignore" },
  );
  const client = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
    retryStrategy: () => null,
    protocol: 2,
    ...(extra.password === undefined ? {} : { password: extra.password }),
  });
  client.on("error", () => {});
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  let next = 0;
  return {
    port,
    async fresh() {
      const db = next++;
      await client.select(db);
      await client.flushdb();
      const auth = extra.password === undefined ? "" : `:${encodeURIComponent(extra.password)}@`;
      return `redis://${auth}127.0.0.1:${port}/${db}`;
    },
    async stop() {
      await client.quit().catch(() => {});
      child.kill("SIGTERM");
    },
  };
}

/** An ioredis client of the database a `redis://` URL names (its password too). */
export function client(url: string): Redis {
  const u = new URL(url);
  const c = new Redis({
    host: u.hostname,
    port: Number(u.port),
    db: Number(u.pathname.slice(1)),
    protocol: 2,
    ...(u.password === "" ? {} : { password: decodeURIComponent(u.password) }),
  });
  c.on("error", () => {});
  return c;
}

/** Runs `f` with a client of `url`, closed after. */
export async function withClient<T>(url: string, f: (c: Redis) => Promise<T>): Promise<T> {
  const c = client(url);
  try {
    return await f(c);
  } finally {
    await c.quit();
  }
}
