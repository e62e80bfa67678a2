/**
 * Redis hashes as table rows (`?hashes=rows`): the API keys of guide 001's relay become a
 * PostgreSQL or SQLite table (key, ttl, one column per hash field) and come back as hashes at
 * their own keys with their expiries.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import { ensurePgDatabase, tempDir } from "./helpers.js";
import { startRedis, type TestRedis, withClient } from "./redis-server.js";

const PG_DB = "ferry_test";
const PG = `postgres://postgres@127.0.0.1:5432/${PG_DB}`;
const tag = randomBytes(3).toString("hex");
const DAY = 86_400_000;
const schemas: string[] = [];
const tmp = tempDir();
let redis: TestRedis;

async function pgQuery(sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: PG_DB });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  redis = await startRedis(64);
  await ensurePgDatabase(PG_DB);
});

afterAll(async () => {
  for (const s of schemas) await pgQuery(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  await redis?.stop();
  tmp.cleanup();
});

async function pgSchema(name: string): Promise<string> {
  const s = `r_${tag}_${name}`;
  schemas.push(s);
  await pgQuery(`DROP SCHEMA IF EXISTS ${s} CASCADE; CREATE SCHEMA ${s};`);
  return s;
}

const rows = (url: string): string => `${url}?hashes=rows`;

/** Hashes under `apikey:`, as guide 001's relay keeps them, beside its index keys. */
async function seedApiKeys(url: string): Promise<void> {
  await withClient(url, async (c) => {
    const now = Date.now();
    for (let i = 0; i < 40; i++) {
      const id = `0000000${i}-aaaa-4bbb-8ccc-dddddddddddd`.slice(-36);
      await c.hset(`apikey:${id}`, {
        id,
        name: `key ${i} — ünïcode`,
        apiKey: `sha256-${i}`,
        permissions: JSON.stringify(["claude", "gemini"]),
        createdAt: String(1700000000000 + i),
        ...(i % 3 === 0 ? { tags: '["a","b"]' } : {}),
      });
      if (i !== 7) await c.pexpireat(`apikey:${id}`, now + 365 * DAY - i * 1000);
      await c.hset("apikey:hash_map", `sha256-${i}`, id);
      await c.zadd("apikey:idx:createdAt", 1700000000000 + i, id);
      await c.sadd("apikey:set:active", id);
    }
    await c.hset("apikey:bin", { id: "bin", raw: Buffer.from([0xff, 0x00, 0xfe]) });
  });
}

/** Every `apikey:*` hash but the index hash: fields (hex values) and expiry. */
async function apiKeys(url: string): Promise<Map<string, { fields: Record<string, string>; expiry: number }>> {
  return withClient(url, async (c) => {
    const out = new Map<string, { fields: Record<string, string>; expiry: number }>();
    const keys = (await c.keys("apikey:*")).filter((k) => k !== "apikey:hash_map");
    for (const k of keys) {
      if ((await c.type(k)) !== "hash") continue;
      const h = await c.hgetallBuffer(k);
      const fields = Object.fromEntries(Object.entries(h).map(([f, v]) => [f, v.toString("hex")]));
      out.set(k, { fields, expiry: Number(await c.pexpiretime(k)) });
    }
    return out;
  });
}

function expectSameKeys(
  got: Map<string, { fields: Record<string, string>; expiry: number }>,
  want: Map<string, { fields: Record<string, string>; expiry: number }>,
): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, w] of want) {
    const g = got.get(k);
    expect(g?.fields, k).toEqual(w.fields);
    if (w.expiry < 0) expect(g?.expiry, k).toBe(w.expiry);
    else expect(Math.abs((g?.expiry ?? 0) - w.expiry), k).toBeLessThanOrEqual(1000);
  }
}

const SELECT = ["apikeys=apikey:*", "!apikey:idx:*", "!apikey:set:*", "!apikey:hash_map"];

describe("redis hashes as rows (?hashes=rows)", () => {
  it("copies API-key hashes to a PostgreSQL table (key, ttl, a column per field) and back to hashes with their expiries", async () => {
    const src = await redis.fresh();
    const back = await redis.fresh();
    await seedApiKeys(src);
    const s = await pgSchema("apikeys");
    const to = `${PG}?schema=${s}`;
    const r = await copy({ from: rows(src), to, collections: SELECT });
    expect(r.collections.apikeys).toMatchObject({ copied: 41, failed: 0 });
    const cols = await pgQuery(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = '${s}' AND table_name = 'apikeys' ORDER BY column_name`,
    );
    expect(Object.fromEntries(cols.rows.map((c) => [c.column_name, c.data_type]))).toEqual({
      apiKey: "text",
      createdAt: "text",
      id: "text",
      key: "text",
      name: "text",
      permissions: "text",
      raw: "bytea",
      tags: "text",
      ttl: "timestamp with time zone",
    });
    const one = await pgQuery(
      `SELECT key, ttl, name, tags FROM ${s}.apikeys WHERE key = 'apikey:00000003-aaaa-4bbb-8ccc-dddddddddddd'`,
    );
    expect(one.rows[0]).toMatchObject({ name: "key 3 — ünïcode", tags: '["a","b"]' });
    expect((one.rows[0].ttl as Date).getTime()).toBeGreaterThan(Date.now() + 364 * DAY);
    const persistent = await pgQuery(`SELECT ttl, tags FROM ${s}.apikeys WHERE key LIKE 'apikey:00000007%'`);
    expect(persistent.rows[0]).toEqual({ ttl: null, tags: null });

    const r2 = await copy({ from: to, to: rows(back), collections: ["apikeys"] });
    expect(r2.collections.apikeys).toMatchObject({ copied: 41, failed: 0 });
    expectSameKeys(await apiKeys(back), await apiKeys(src));
  });

  it("round-trips any hashes through SQLite: field names, values with any bytes, expiries (fast-check)", async () => {
    const names = fc.stringMatching(/^[a-zA-Z_é][a-zA-Z0-9_é -]{0,8}$/).filter((n) => n !== "key" && n !== "ttl");
    const hash = fc.dictionary(names, fc.uint8Array({ maxLength: 20 }), { minKeys: 1, maxKeys: 5 });
    let run = 0;
    const src = await redis.fresh();
    const back = await redis.fresh();
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(
          fc.tuple(fc.stringMatching(/^[a-z0-9:]{1,12}$/), hash, fc.option(fc.integer({ min: 1, max: 400 }))),
          {
            minLength: 1,
            maxLength: 15,
            selector: ([k]) => k,
          },
        ),
        async (items) => {
          await withClient(back, (c) => c.flushdb());
          await withClient(src, async (c) => {
            await c.flushdb();
            for (const [k, h, days] of items) {
              await c.hset(`h:${k}`, Object.fromEntries(Object.entries(h).map(([f, v]) => [f, Buffer.from(v)])));
              if (days !== null) await c.pexpire(`h:${k}`, days * DAY);
            }
          });
          const file = join(tmp.dir, `rows-${run++}.db`);
          const names = [...new Set(items.flatMap(([, h]) => Object.keys(h)))];
          if (new Set(names.map((f) => f.toLowerCase())).size < names.length) {
            // Fields differing only in case would be one SQLite column: refused, by name.
            const err = await copy({ from: rows(src), to: `sqlite://${file}`, collections: ["hashes=h:*"] }).catch(
              (e: unknown) => e,
            );
            expect(isFerryError(err, "E_CONFIG")).toBe(true);
            expect((err as Error).message).toMatch(/differ only in case/);
            return;
          }
          await copy({ from: rows(src), to: `sqlite://${file}`, collections: ["hashes=h:*"] });
          await copy({ from: `sqlite://${file}`, to: rows(back), collections: ["hashes"] });
          const dump = (url: string) =>
            withClient(url, async (c) => {
              const out: Record<string, unknown> = {};
              for (const k of (await c.keys("h:*")).sort()) {
                const h = await c.hgetallBuffer(k);
                out[k] = {
                  fields: Object.fromEntries(Object.entries(h).map(([f, v]) => [f, v.toString("hex")])),
                  persistent: Number(await c.pttl(k)) === -1,
                };
              }
              return out;
            });
          expect(await dump(back)).toEqual(await dump(src));
        },
      ),
      { numRuns: 30 },
    );
  });

  it("names the key that is not a hash when a selected collection cannot be rows", async () => {
    const src = await redis.fresh();
    await seedApiKeys(src);
    const to = `sqlite://${join(tmp.dir, "refused.db")}`;
    const err = await copy({ from: rows(src), to, collections: ["apikeys=apikey:*"] }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_CONFIG")).toBe(true);
    expect((err as Error).message).toMatch(/apikey:(idx|set):\S+ is a (zset|set), not a hash/);
    expect((err as Error).message).toMatch(/'!pattern'/);
  });

  it("refuses an unknown URL parameter by name", async () => {
    const src = await redis.fresh();
    const to = `sqlite://${join(tmp.dir, "x.db")}`;
    const err = await copy({ from: `${src}?hashes=columns`, to }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_CONFIG")).toBe(true);
    expect((err as Error).message).toMatch(/hashes=columns.*hashes=rows/);
  });
});
