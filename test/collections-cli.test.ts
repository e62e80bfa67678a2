/**
 * `ferry collections --from NAME|URL`: an instance's collections as the profile declares
 * them (record counts, sizes, secret fields, never-exported ones), then the instance's
 * others; human table and `--json`, against real SQLite files and a real redis-server.
 */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import { listCollections } from "../src/core/collections.js";
import { ferry, ROOT, requireBuild } from "./cli.js";
import { tempDir } from "./helpers.js";
import { startRedis, type TestRedis, withClient } from "./redis-server.js";

const tmp = tempDir();
let redis: TestRedis;

beforeAll(async () => {
  requireBuild();
  redis = await startRedis(8);
});

afterAll(async () => {
  await redis?.stop();
  tmp.cleanup();
});

/** A project directory with `ferry.config.ts` (importing "ferry" as users do). */
function project(name: string, profile: string): string {
  const dir = join(tmp.dir, name);
  mkdirSync(dir);
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  writeFileSync(join(dir, "ferry.config.ts"), profile);
  return dir;
}

interface Listed {
  name: string;
  where: string;
  records: number | null;
  bytes: number | null;
  secret: string[];
  exported: boolean;
  declared: boolean;
  note?: string;
}

describe("ferry collections", () => {
  it("lists a SQLite database's profile collections first (counts, secret marks, never exported, absent), then its others", () => {
    const db = join(tmp.dir, "app.db");
    const d = new Database(db);
    d.exec(`
      CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT UNIQUE, access_token TEXT, refresh_token TEXT);
      CREATE TABLE user_sessions (id TEXT PRIMARY KEY, account INTEGER);
      CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);
    `);
    d.exec(
      `INSERT INTO accounts VALUES (1, 'a@x.io', 'tok-1', 'ref-1'), (2, 'b@x.io', 'tok-2', 'ref-2'), (3, 'c@x.io', NULL, NULL)`,
    );
    d.exec(`INSERT INTO user_sessions VALUES ('s1', 1), ('s2', 2)`);
    const add = d.prepare("INSERT INTO orders VALUES (?, ?)");
    for (let i = 1; i <= 1500; i++) add.run(i, i / 10);
    d.close();
    const dir = project(
      "sqlite",
      `import { defineConfig } from "ferry";
      export default defineConfig({
        instances: { app: "sqlite:${db}" },
        collections: {
          accounts: { naturalKey: "email", secret: ["access_token", "refresh_token"] },
          sessions: { table: "user_sessions", export: false },
          invoices: { table: "billing_invoices" },
        },
      });`,
    );

    const r = ferry(["collections", "--from", "app"], { cwd: dir });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^4 collections at sqlite:.*app\.db \(sqlite\): 1,505 records, \d+\.\d KB$/);
    expect(lines[1]).toMatch(/^collection\s+records\s+size\s+where$/);
    expect(lines.slice(2)).toEqual([
      expect.stringMatching(/^accounts\s+3\s+8\.0 KB {2}accounts\s+secret: access_token, refresh_token$/),
      // Its table and its primary key's index: a page each.
      expect.stringMatching(/^sessions\s+2\s+8\.0 KB {2}user_sessions\s+never exported$/),
      expect.stringMatching(/^invoices\s+-\s+- {2}billing_invoices {2}not at this instance$/),
      expect.stringMatching(/^orders\s+1,500\s+\d+\.\d KB {2}orders\s+not in the profile$/),
    ]);
    // Columns are aligned: counts and sizes end under their headings, places and marks start under theirs.
    const head = lines[1] as string;
    for (const l of lines.slice(2)) {
      for (const h of ["records", "size"])
        expect(l.slice(head.indexOf(h) + h.length - 1, head.indexOf(h) + h.length + 1)).toMatch(/^\S $/);
      expect(l[head.indexOf("where") - 1]).toBe(" ");
      expect(l[head.indexOf("where")]).not.toBe(" ");
    }
    expect(new Set(lines.slice(2).map((l) => l.search(/ {2}(secret:|never exported|not )/))).size).toBe(1);

    const j = ferry(["collections", "--from", `sqlite:${db}`, "--json"], { cwd: dir });
    expect(j.code).toBe(0);
    expect(j.stdout.trimEnd().split("\n")).toHaveLength(1);
    const out = JSON.parse(j.stdout) as { type: string; instance: string; engine: string; collections: Listed[] };
    expect(out).toEqual({
      type: "collections",
      instance: `sqlite:${db}`,
      engine: "sqlite",
      collections: [
        {
          name: "accounts",
          where: "accounts",
          records: 3,
          bytes: 8192,
          secret: ["access_token", "refresh_token"],
          exported: true,
          declared: true,
        },
        {
          name: "sessions",
          where: "user_sessions",
          records: 2,
          bytes: 8192,
          secret: [],
          exported: false,
          declared: true,
        },
        {
          name: "invoices",
          where: "billing_invoices",
          records: null,
          bytes: null,
          note: "not at this instance",
          secret: [],
          exported: true,
          declared: true,
        },
        {
          name: "orders",
          where: "orders",
          records: 1500,
          bytes: expect.any(Number),
          secret: [],
          exported: true,
          declared: false,
        },
      ],
    });
    expect((out.collections[3] as Listed).bytes).toBeGreaterThan(4096);

    // Without a profile: the database's own tables, unmarked.
    const bare = join(tmp.dir, "bare");
    mkdirSync(bare);
    const b = ferry(["collections", "--from", `sqlite:${db}`], { cwd: bare });
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/^3 collections at /);
    expect(b.stdout).not.toMatch(/not in the profile|never exported|secret/);
    expect(b.stdout).toMatch(/^user_sessions\s+2\s/m);
  });

  it("counts a Redis database's profile globs (match, exclude), its never-exported keys, and the keys no profile collection holds", async () => {
    const url = await redis.fresh();
    await withClient(url, async (c) => {
      const p = c.pipeline();
      for (let i = 0; i < 1200; i++) p.hset(`apikey:${i}`, "name", `key ${i}`, "apiKey", `secret-${i}`);
      p.set("apikey:idx:alpha", "1");
      p.set("apikey:idx:beta", "2");
      p.hset("apikey:hash_map", "a", "1");
      p.sadd("claude:account:index", "a", "b");
      p.hset("claude:account:7", "access_token", "t", "refresh_token", "r");
      for (let i = 0; i < 3; i++) p.set(`session:${i}`, "s", "PX", 3_600_000);
      for (let i = 0; i < 4; i++) p.incr(`usage:${i}`);
      p.incr("usage:daily:1");
      p.incr("usage:daily:2");
      p.set("lonely", "x");
      await p.exec();
    });
    const dir = project(
      "redis",
      `import { defineConfig } from "ferry";
      export default defineConfig({
        instances: { cache: "${url}" },
        collections: {
          apikeys: { match: "apikey:*", exclude: ["apikey:idx:*", "apikey:hash_map"], secret: ["apiKey"] },
          indexes: { match: ["apikey:idx:*", "apikey:hash_map", "claude:account:index"] },
          accounts: { match: "claude:account:*", exclude: ["claude:account:index"], secret: ["access_token", "refresh_token"] },
          sessions: { match: "session:*", export: false },
          orders: { table: "orders" },
          usage: { match: "usage:daily:*" },
        },
      });`,
    );
    const j = ferry(["collections", "--from", "cache", "--json"], { cwd: dir });
    expect(j.stderr).toBe("");
    expect(j.code).toBe(0);
    const out = JSON.parse(j.stdout) as { engine: string; collections: Listed[] };
    expect(out.engine).toBe("redis");
    expect(out.collections.map((c) => [c.name, c.where, c.records, c.exported, c.declared])).toEqual([
      ["apikeys", "apikey:* !apikey:idx:* !apikey:hash_map", 1200, true, true],
      ["indexes", "apikey:idx:* apikey:hash_map claude:account:index", 4, true, true],
      ["accounts", "claude:account:* !claude:account:index", 1, true, true],
      ["sessions", "session:*", 3, false, true],
      ["orders", "orders orders:*", null, true, true],
      ["usage", "usage:daily:*", 2, true, true],
      // The keys no profile collection holds, by prefix (claude's are all claimed: not listed;
      // the usage keys beside the profile's usage collection are usage:*).
      ["lonely", "lonely lonely:*", 1, true, false],
      ["usage:*", "usage:*", 4, true, false],
    ]);
    for (const c of out.collections.filter((x) => x.records !== null)) expect(c.bytes).toBeGreaterThan(0);
    const bytes = (name: string) => out.collections.find((c) => c.name === name)?.bytes ?? 0;
    expect(bytes("apikeys")).toBeGreaterThan(bytes("indexes") * 100);
    expect(out.collections.find((c) => c.name === "orders")?.note).toBe("not at this instance");

    const r = ferry(["collections", "--from", "cache"], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^apikeys\s+1,200\s+\d+\.\d KB\s+apikey:\* !apikey:idx:\* !apikey:hash_map\s+secret: apiKey$/m,
    );
    expect(r.stdout).toMatch(
      /^accounts\s+1\s+\d+ B\s+claude:account:\* !claude:account:index\s+secret: access_token, refresh_token$/m,
    );
    expect(r.stdout).toMatch(/^sessions\s+3\s+\d+ B\s+session:\*\s+never exported$/m);
    expect(r.stdout).toMatch(/^usage\s+2\s+\d+ B\s+usage:daily:\*\s*$/m);
    expect(r.stdout).toMatch(/^usage:\*\s+4\s+\d+ B\s+usage:\*\s+not in the profile$/m);
    expect(r.stdout).toMatch(/^lonely\s+1\s+\d+ B\s+lonely lonely:\*\s+not in the profile$/m);
    // The secrets' values are never printed.
    expect(r.stdout + j.stdout).not.toMatch(/secret-\d/);
  });

  it("is a library function too: the instance's collections without a profile, files included", async () => {
    const dir = join(tmp.dir, "backup");
    mkdirSync(dir);
    writeFileSync(join(dir, "users.ndjson"), '{"id":1}\n{"id":2}\n');
    const list = await listCollections({ from: `${dir}/` });
    expect(list).toEqual({
      instance: `${dir}/`,
      engine: "files",
      collections: [
        { name: "users", where: "users", records: 2, bytes: 18, secret: [], exported: true, declared: false },
      ],
    });
  });
});
