/**
 * examples/relay-redis: guide 001's job with the commands of its README, against two real
 * redis-servers seeded with the relay's keyspace (../shared/seeds/README.md).
 */
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ferry, ROOT, requireBuild } from "./cli.js";
import { client, startRedis, type TestRedis } from "./redis-server.js";

const DIR = join(ROOT, "examples", "relay-redis");
const DAY = 86_400_000;
const TYPES = "apikeys,claude,gemini,admins,usage,indexes";
let prod: TestRedis;
let qa: TestRedis;

beforeAll(async () => {
  requireBuild();
  prod = await startRedis(16);
  qa = await startRedis(16);
});

afterAll(async () => {
  await prod?.stop();
  await qa?.stop();
});

/** The relay's keyspace, in small. */
async function seedProd(c: Redis): Promise<void> {
  const now = Date.now();
  const p = c.pipeline();
  for (let i = 0; i < 30; i++) {
    const id = `0000000${i}-aaaa-4bbb-8ccc-dddddddddddd`.slice(-36);
    p.hset(`apikey:${id}`, {
      id,
      name: `key ${i}`,
      apiKey: `sha256-${i}`,
      permissions: '["claude"]',
      isActive: "true",
    });
    p.pexpireat(`apikey:${id}`, now + 365 * DAY);
    p.hset("apikey:hash_map", `sha256-${i}`, id);
    p.zadd("apikey:idx:name", 0, `key ${i}\x00${id}`);
    p.zadd("apikey:idx:createdAt", now - i, id);
    p.sadd("apikey:idx:all", id);
    p.sadd("apikey:set:active", id);
    p.hset(`usage:${id}`, { requests: String(i), tokens: String(i * 100) });
    p.hset(`usage:daily:${id}:2026-11-21`, { requests: "1" });
    p.pexpire(`usage:daily:${id}:2026-11-21`, 32 * DAY);
    p.rpush(`usage:records:${id}`, '{"t":1}', '{"t":2}');
    p.pexpire(`usage:records:${id}`, 90 * DAY);
    p.set(`usage:cost:daily:${id}:2026-11-21`, "0.25", "PX", 30 * DAY);
  }
  p.set("apikey:index:version", "3");
  for (const a of ["c1", "c2", "c3"]) {
    p.hset(`claude:account:${a}`, { email: `${a}@example.com`, accessToken: `iv:${a}`, refreshToken: `iv2:${a}` });
    p.sadd("claude:account:index", a);
  }
  p.hset("gemini_account:g1", { email: "g1@example.com", accessToken: "iv:g1" });
  p.sadd("gemini_account:index", "g1");
  p.sadd("shared_gemini_accounts", "g1");
  p.hset("session:admin_credentials", { username: "admin", passwordHash: "$2b$10$abc" });
  p.pexpire("session:admin_credentials", DAY);
  p.hset("session:abc123", { user: "admin" });
  p.pexpire("session:abc123", DAY);
  await p.exec();
}

/** Every key: type, value and expiry (ms since epoch, -1 none). */
async function dump(c: Redis): Promise<Map<string, { type: string; value: unknown; expiry: number }>> {
  const out = new Map<string, { type: string; value: unknown; expiry: number }>();
  for (const k of (await c.keys("*")).filter((k) => !k.startsWith("ferry:")).sort()) {
    const type = await c.type(k);
    const value =
      type === "hash"
        ? await c.hgetall(k)
        : type === "set"
          ? (await c.smembers(k)).sort()
          : type === "zset"
            ? await c.zrange(k, "0", "-1", "WITHSCORES")
            : type === "list"
              ? await c.lrange(k, "0", "-1")
              : await c.get(k);
    out.set(k, { type, value, expiry: Number(await c.pexpiretime(k)) });
  }
  return out;
}

describe("examples/relay-redis", () => {
  it("copies the relay's types with every TTL, skips existing keys, merges the indexes, keeps sessions home", async () => {
    const src = await prod.fresh();
    const dst = await qa.fresh();
    const s = client(src);
    const d = client(dst);
    try {
      await seedProd(s);
      // The target already has its own account, key and index entries.
      await d.hset("claude:account:own", { email: "own@example.com" });
      await d.sadd("claude:account:index", "own");
      await d.sadd("apikey:idx:all", "own-key");
      await d.hset("apikey:00000003-aaaa-4bbb-8ccc-dddddddddddd", { id: "3", name: "the target's own" });
      const before = await dump(d);
      const env = {
        SOURCE_REDIS_PORT: String(prod.port),
        SOURCE_REDIS_DB: new URL(src).pathname.slice(1),
        TARGET_REDIS_PORT: String(qa.port),
        TARGET_REDIS_DB: new URL(dst).pathname.slice(1),
      };
      const check = ferry(["check"], { cwd: DIR, env });
      expect(check.stdout).toMatch(/prod\s+ok\s+Redis/);
      expect(check.code).toBe(0);

      const dry = ferry(["copy", "--from", "prod", "--to", "qa", "--types", TYPES, "--conflict", "skip", "--dry-run"], {
        cwd: DIR,
        env,
      });
      expect(dry.code).toBe(0);
      expect(await dump(d)).toEqual(before);
      // Totals count each collection's own keys (the index collection spans several globs).
      const planned = ferry(
        ["copy", "--from", "prod", "--to", "qa", "--types", TYPES, "--conflict", "skip", "--dry-run", "--json"],
        {
          cwd: DIR,
          env,
        },
      );
      const start = planned.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { type: string; collections?: { name: string; total: number }[] })
        .find((e) => e.type === "run-start");
      const totals = Object.fromEntries((start?.collections ?? []).map((c) => [c.name, c.total]));
      expect(totals).toEqual({ apikeys: 31, claude: 3, gemini: 1, admins: 1, usage: 120, indexes: 8 });

      const r = ferry(["copy", "--from", "prod", "--to", "qa", "--types", TYPES, "--conflict", "skip", "--yes"], {
        cwd: DIR,
        env,
      });
      expect(r.stderr).toMatch(/done/);
      expect(r.code).toBe(0);

      const want = await dump(s);
      const got = await dump(d);
      for (const [k, w] of want) {
        if (k === "session:abc123") {
          expect(got.has(k), "a session is never exported").toBe(false);
          continue;
        }
        const g = got.get(k);
        expect(g, k).toBeDefined();
        if (k === "apikey:00000003-aaaa-4bbb-8ccc-dddddddddddd") {
          expect(g?.value, "an existing key is skipped").toEqual({ id: "3", name: "the target's own" });
          continue;
        }
        if (k === "claude:account:index") {
          expect(g?.value).toEqual(["c1", "c2", "c3", "own"]);
        } else if (k === "apikey:idx:all") {
          expect(g?.value).toEqual([...(w.value as string[]), "own-key"].sort());
        } else {
          expect(g?.value, k).toEqual(w.value);
        }
        expect(g?.type, k).toBe(w.type);
        if (w.expiry < 0) expect(g?.expiry, k).toBe(w.expiry);
        else expect(Math.abs((g?.expiry ?? 0) - w.expiry), k).toBeLessThanOrEqual(1000);
      }
      expect(got.get("claude:account:own")?.value).toEqual({ email: "own@example.com" });

      // Sessions are refused by name, and left out when everything is copied.
      const named = ferry(["copy", "--from", "prod", "--to", "qa", "--types", "sessions", "--yes"], { cwd: DIR, env });
      expect(named.code).toBe(2);
      expect(named.stderr).toMatch(/sessions is marked export: false/);
      const all = await qa.fresh();
      const everything = ferry(["copy", "--from", "prod", "--to", "qa", "--yes"], {
        cwd: DIR,
        env: { ...env, TARGET_REDIS_DB: new URL(all).pathname.slice(1) },
      });
      expect(everything.code).toBe(0);
      const copied = await dump(client(all));
      expect(copied.has("session:abc123")).toBe(false);
      expect(copied.has("session:admin_credentials")).toBe(true);
      const lost = [...want.keys()].filter((k) => k !== "session:abc123" && !copied.has(k));
      expect(lost).toEqual([]);
      expect(copied.size).toBe(want.size - 1);
    } finally {
      s.disconnect();
      d.disconnect();
    }
  });
});
