import { createHash } from "node:crypto";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { client, startRedis, type TestRedis, withClient } from "../../../test/redis-server.js";
import "../index.js";
import { tempDir } from "../../../test/helpers.js";
import type { Checkpoint, Connector, UndoRow, WriteOp } from "../../core/connector.js";
import { copy } from "../../core/copy.js";
import { isFerryError } from "../../core/errors.js";
import { openConnector } from "../../core/registry.js";
import type { CollectionSchema } from "../../core/schema.js";
import { literalGlob, RedisConnector, scanPosition, tuning } from "./redis-connector.js";

let a: TestRedis;
let b: TestRedis;
const tmp = tempDir();
const DAY = 86_400_000;

beforeAll(async () => {
  a = await startRedis(64);
  b = await startRedis(64);
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  tmp.cleanup();
});

/** Guide 001's relay, in small: every type, TTLs, members with NUL bytes, a binary key. */
async function seedRelay(url: string): Promise<void> {
  await withClient(url, async (c) => {
    const now = Date.now();
    for (let i = 0; i < 25; i++) {
      const id = `0000000${i}-aaaa-4bbb-8ccc-dddddddddddd`.slice(-36);
      await c.hset(`apikey:${id}`, {
        id,
        name: `key ${i}`,
        apiKey: `sha256-${i}`,
        permissions: JSON.stringify(["claude", "gemini"]),
        isActive: i % 2 === 0 ? "true" : "false",
      });
      await c.pexpireat(`apikey:${id}`, now + 365 * DAY);
      await c.hset("apikey:hash_map", `sha256-${i}`, id);
      await c.zadd("apikey:idx:name", 0, `key ${i}\x00${id}`);
      await c.zadd("apikey:idx:createdAt", now - i * 1000, id);
      await c.sadd("apikey:set:active", id);
    }
    await c.set("apikey:index:version", "2");
    await c.hset("claude:account:c1", { email: "a@example.com", accessToken: "iv0011:cipherff" });
    await c.sadd("claude:account:index", "c1");
    await c.rpush("usage:records:k1", JSON.stringify({ t: 1 }), JSON.stringify({ t: 2 }), "third");
    await c.pexpireat("usage:records:k1", now + 90 * DAY);
    await c.set("usage:cost:daily:k1:2026-11-21", "0.123", "PX", 30 * DAY);
    await c.hset("session:admin_credentials", { username: "admin", passwordHash: "$2b$10$abc" });
    await c.pexpire("session:admin_credentials", DAY);
    await c.xadd("events:log", "1700000000000-0", "kind", "start", "by", "ops");
    await c.xadd("events:log", "1700000000001-5", "kind", "stop", "kind", "twice");
    await c.zadd("scores", "-inf", "low", "+inf", "high", 1.5, "mid");
    await c.set(Buffer.from([0xff, 0x00, 0x3a, 0x80]), Buffer.from([0x00, 0xfe, 0xff]));
    await c.hset("bin:hash", Buffer.from([0xc3, 0x28]), Buffer.from([0x01]));
    await c.set("counter", "41");
  });
}

/** Every key of a database: type, expiry (ms, -1 none) and value, comparable. */
async function snapshot(url: string): Promise<Map<string, { type: string; expiry: number; value: unknown }>> {
  return withClient(url, async (c) => {
    const out = new Map<string, { type: string; expiry: number; value: unknown }>();
    let cursor = "0";
    do {
      const [next, keys] = await c.scanBuffer(cursor, "COUNT", "100");
      cursor = next.toString();
      for (const k of keys) {
        if (k.toString().startsWith("ferry:")) continue;
        const type = await c.type(k);
        const expiry = Number(await c.pexpiretime(k));
        const hex = (x: Buffer[]) => x.map((y) => y.toString("hex"));
        let value: unknown;
        if (type === "string") value = (await c.getBuffer(k))?.toString("hex");
        else if (type === "hash") value = hex((await c.callBuffer("HGETALL", k)) as Buffer[]);
        else if (type === "list") value = hex(await c.lrangeBuffer(k, 0, -1));
        else if (type === "set") value = hex((await c.smembersBuffer(k)).sort(Buffer.compare));
        else if (type === "zset") value = hex(await c.zrangeBuffer(k, "0", "-1", "WITHSCORES"));
        else if (type === "stream") value = JSON.stringify(await c.xrange(k, "-", "+"));
        if (type === "hash") value = pairsSorted(value as string[]);
        // Large values compare by digest (a failing diff of a million elements takes minutes).
        const text = JSON.stringify(value);
        if (text.length > 100_000) value = `sha256:${createHash("sha256").update(text).digest("hex")}`;
        out.set(k.toString("hex"), { type, expiry, value });
      }
    } while (cursor !== "0");
    return out;
  });
}

function pairsSorted(flat: string[]): string[] {
  const pairs: string[] = [];
  for (let i = 0; i < flat.length; i += 2) pairs.push(`${flat[i]}=${flat[i + 1]}`);
  return pairs.sort();
}

/** Two snapshots equal in keys, types and values, expiries within `slackMs`. */
function expectSame(
  got: Map<string, { type: string; expiry: number; value: unknown }>,
  want: Map<string, { type: string; expiry: number; value: unknown }>,
  slackMs = 1000,
): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, w] of want) {
    const g = got.get(k);
    expect({ key: k, type: g?.type, value: g?.value }).toEqual({ key: k, type: w.type, value: w.value });
    if (w.expiry < 0) expect(g?.expiry).toBe(w.expiry);
    else expect(Math.abs((g?.expiry ?? 0) - w.expiry)).toBeLessThanOrEqual(slackMs);
  }
}

describe("redis connector", () => {
  it("copies guide 001's relay data to another instance: every key, type, value and TTL", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await seedRelay(src);
    const bulk = vi.spyOn(RedisConnector.prototype, "bulkCopyFrom");
    const r = await copy({ from: src, to: dst, batchSize: 7 });
    expect(r.status).toBe("done");
    // Into an empty instance, keys move as DUMP/RESTORE payloads.
    expect(bulk.mock.results.filter((x) => x.type === "return").length).toBeGreaterThan(3);
    bulk.mockRestore();
    const want = await snapshot(src);
    expect(r.total.copied).toBe(want.size);
    expectSame(await snapshot(dst), want);
    // The 365-day TTLs stay 365 days (absolute expiry), not permanent.
    const some = [...want.values()].filter((v) => v.expiry > Date.now() + 300 * DAY);
    expect(some.length).toBe(25);
  });

  it("--conflict skip leaves a target's existing key untouched and copies the rest", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await seedRelay(src);
    await withClient(dst, async (c) => {
      await c.sadd("claude:account:index", "theirs");
      await c.set("counter", "7");
    });
    const r = await copy({ from: src, to: dst, conflict: "skip" });
    expect(r.total.skipped).toBe(2);
    await withClient(dst, async (c) => {
      expect(await c.smembers("claude:account:index")).toEqual(["theirs"]);
      expect(await c.get("counter")).toBe("7");
      expect(await c.hget("claude:account:c1", "email")).toBe("a@example.com");
    });
    const again = await copy({ from: src, to: dst, conflict: "skip" });
    expect(again.total.copied).toBe(0);
  });

  it("--conflict skip with a glob selection leaves the target's existing keys untouched", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await seedRelay(src);
    await withClient(dst, (c) => c.hset("apikey:00000001-aaaa-4bbb-8ccc-dddddddddddd", { id: "mine" }));
    const r = await copy({ from: src, to: dst, collections: ["keys=apikey:*", "!apikey:idx:*"], conflict: "skip" });
    expect(r.collections.keys).toMatchObject({ skipped: 1, failed: 0 });
    expect(await withClient(dst, (c) => c.hgetall("apikey:00000001-aaaa-4bbb-8ccc-dddddddddddd"))).toEqual({
      id: "mine",
    });
    expect(await withClient(dst, (c) => c.exists("apikey:idx:name"))).toBe(0);
  });

  it("merge adds hash fields and set/zset members, replaces lists, and refuses a type clash by key", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await withClient(src, async (c) => {
      await c.hset("h", { a: "new", b: "2" });
      await c.sadd("s", "x", "y");
      await c.zadd("z", 1, "m");
      await c.rpush("l", "1");
      await c.set("clash", "text");
    });
    await withClient(dst, async (c) => {
      await c.hset("h", { a: "old", c: "3" });
      await c.sadd("s", "z");
      await c.zadd("z", 5, "other");
      await c.rpush("l", "9", "9");
      await c.sadd("clash", "member");
    });
    const r = await copy({ from: src, to: dst, conflict: "merge" });
    expect(r.failures.map((f) => f.key)).toEqual([`key="clash"`]);
    expect(r.failures[0]?.reason).toMatch(/target's key is a set and the incoming one a string/);
    await withClient(dst, async (c) => {
      expect(await c.hgetall("h")).toEqual({ a: "new", b: "2", c: "3" });
      expect((await c.smembers("s")).sort()).toEqual(["x", "y", "z"]);
      expect(await c.zrange("z", "0", "-1")).toEqual(["m", "other"]);
      expect(await c.lrange("l", 0, -1)).toEqual(["1"]);
      expect(await c.type("clash")).toBe("set");
    });
  });

  it("round-trips every type through files, losslessly", async () => {
    const src = await a.fresh();
    const back = await b.fresh();
    await seedRelay(src);
    const dir = `${join(tmp.dir, "relay")}/`;
    const out = await copy({ from: src, to: dir });
    expect(out.status).toBe("done");
    const r = await copy({ from: dir, to: back });
    expect(r.status).toBe("done");
    expectSame(await snapshot(back), await snapshot(src));
  });

  it("selects key patterns with globs and excludes with !pattern", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await seedRelay(src);
    const r = await copy({ from: src, to: dst, collections: ["apikey:*", "!apikey:idx:*", "!apikey:set:*"] });
    expect(r.status).toBe("done");
    const keys = [...(await snapshot(dst)).keys()].map((k) => Buffer.from(k, "hex").toString());
    expect(keys.filter((k) => k.startsWith("apikey:idx:") || k.startsWith("apikey:set:"))).toEqual([]);
    expect(keys.filter((k) => /^apikey:0/.test(k))).toHaveLength(25);
    expect(keys).toContain("apikey:hash_map");
    expect(keys.some((k) => k.startsWith("claude:"))).toBe(false);
  });

  it("names a glob with name=glob, and takes a discovered name containing '=' as itself", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await withClient(src, async (c) => {
      await c.mset("k=v:1", "a", "k=v:2", "b", "account:1", "x", "account:2", "y", "account:3", "z", "user:1", "u");
    });
    const totals = new Map<string, number | undefined>();
    const r = await copy({
      from: src,
      to: dst,
      collections: ["k=v", "user=account:*"],
      onEvent: (e) => {
        if (e.type === "progress") totals.set(e.collection, e.total);
      },
    });
    expect(r.collections["k=v"]).toMatchObject({ copied: 2, failed: 0 });
    expect(r.collections.user).toMatchObject({ copied: 3, failed: 0 });
    // Named `user`: the account keys (3), not discover's count of the `user` prefix (1).
    expect(totals.get("user")).toBe(3);
    expect((await snapshot(dst)).size).toBe(5);
  });

  it("does not resurrect a key whose expiry passed before it was written", async () => {
    const dst = await b.fresh();
    const c = await openConnector(dst, { write: true });
    try {
      const { schema: ks } = await c.prepare({
        name: "gone",
        fields: ["key", "type", "ttl", "value"].map((name) => ({ name, type: "any" as const })),
        primaryKey: ["key"],
      });
      await c.write(ks, [
        { op: "insert", record: { key: "gone:1", type: "string", ttl: new Date(Date.now() - 1000), value: "x" } },
        { op: "insert", record: { key: "gone:2", type: "string", ttl: new Date(Date.now() + DAY), value: "y" } },
      ]);
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect(await r.exists("gone:1")).toBe(0);
      expect(await r.get("gone:2")).toBe("y");
    });
  });

  it("names the problem: unreachable server, wrong database", async () => {
    const unreachable = await openConnector("redis://127.0.0.1:1/0", {}).catch((e: unknown) => e);
    expect(isFerryError(unreachable, "E_CONNECTION")).toBe(true);
    expect((unreachable as Error).message).toMatch(/cannot reach Redis at 127\.0\.0\.1:1/);
    const wrongDb = await openConnector(`redis://127.0.0.1:${a.port}/5000`, {}).catch((e: unknown) => e);
    expect(isFerryError(wrongDb, "E_CONFIG")).toBe(true);
    expect((wrongDb as Error).message).toMatch(/database 5000 does not exist/);
  });
});

describe("redis delete", () => {
  const keyspace = (name: string): CollectionSchema => ({
    name,
    fields: ["key", "type", "ttl", "value"].map((f) => ({ name: f, type: "any" as const })),
    primaryKey: ["key"],
  });
  const checkpoint = (id: string) => ({
    runId: id,
    id,
    entry: (r: { failures: { index: number; reason: string }[] }) => ({ id, failures: r.failures.length }),
  });

  it("deletes a string, a hash and a key with a TTL in one batch with an insert, with its checkpoint", async () => {
    const dst = await b.fresh();
    await withClient(dst, async (r) => {
      await r.set("app:s", "text");
      await r.hset("app:h", { a: "1", b: "2" });
      await r.set("app:t", "expiring", "PX", DAY);
      await r.sadd("app:kept", "m");
    });
    const c = await openConnector(dst, { write: true });
    try {
      const { schema } = await c.prepare(keyspace("app"));
      const r = await c.write(
        schema,
        [
          { op: "delete", match: { key: "app:s" } },
          { op: "insert", record: { key: "app:new", type: "string", ttl: null, value: "v" } },
          { op: "delete", match: { key: "app:h" } },
          { op: "delete", match: { key: new Uint8Array(Buffer.from("app:t")) } },
          // Deleting what an earlier op of the batch wrote: ops apply in order.
          { op: "insert", record: { key: "app:brief", type: "string", ttl: null, value: "gone" } },
          { op: "delete", match: { key: "app:brief" } },
        ],
        checkpoint("run-1"),
      );
      expect(r.failures).toEqual([]);
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect(await r.exists("app:s", "app:h", "app:t", "app:brief")).toBe(0);
      expect(await r.get("app:new")).toBe("v");
      expect(await r.smembers("app:kept")).toEqual(["m"]);
      expect(JSON.parse((await r.hget("ferry:journal", "run-1")) ?? "null")).toEqual({ id: "run-1", failures: 0 });
    });
  });

  it("a missing key is no failure, and running the same deletes again changes nothing", async () => {
    const dst = await b.fresh();
    await withClient(dst, (r) => r.set("app:1", "x"));
    const c = await openConnector(dst, { write: true });
    try {
      const { schema } = await c.prepare(keyspace("app"));
      const ops = [
        { op: "delete" as const, match: { key: "app:1" } },
        { op: "delete" as const, match: { key: "app:never" } },
      ];
      expect((await c.write(schema, ops, checkpoint("run-2"))).failures).toEqual([]);
      expect((await c.write(schema, ops, checkpoint("run-2"))).failures).toEqual([]);
      expect(await c.lookup(schema, ["key"], [["app:1"], ["app:never"]])).toEqual(new Map());
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect(await r.dbsize()).toBe(1); // ferry:journal only
    });
  });

  it("refuses a delete without a key or of Ferry's own keys as failures, and applies the rest", async () => {
    const dst = await b.fresh();
    await withClient(dst, (r) => r.mset("app:1", "x", "app:2", "y"));
    const c = await openConnector(dst, { write: true });
    try {
      const { schema } = await c.prepare(keyspace("app"));
      await c.journal().save("old", { id: "old" });
      const r = await c.write(schema, [
        { op: "delete", match: { key: "app:1" } },
        { op: "delete", match: { id: 7 } },
        { op: "delete", match: { key: "ferry:journal" } },
        { op: "delete", match: { key: "app:2" } },
      ]);
      expect(r.failures.map((f) => f.index)).toEqual([1, 2]);
      expect(r.failures[0]?.reason).toMatch(/key must be text or bytes/);
      expect(r.failures[1]?.reason).toMatch(/Ferry's own/);
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect(await r.exists("app:1", "app:2")).toBe(0);
      expect(await r.hget("ferry:journal", "old")).not.toBeNull();
    });
  });

  it("deletes hashes of a ?hashes=rows table by key, a missing one too", async () => {
    const dst = await b.fresh();
    const c = await openConnector(`${dst}?hashes=rows`, { write: true });
    try {
      const { schema } = await c.prepare({
        name: "apikey",
        fields: [
          { name: "key", type: "text" },
          { name: "ttl", type: "datetime" },
          { name: "name", type: "text" },
        ],
        primaryKey: ["key"],
      });
      const ttl = new Date(Date.now() + DAY);
      const ins = await c.write(
        schema,
        ["apikey:1", "apikey:2", "apikey:3"].map((key) => ({ op: "insert", record: { key, ttl, name: key } })),
      );
      expect(ins.failures).toEqual([]);
      const r = await c.write(
        schema,
        [
          { op: "delete", match: { key: "apikey:1" } },
          { op: "insert", record: { key: "apikey:4", ttl: null, name: "four" } },
          { op: "delete", match: { key: "apikey:3" } },
          { op: "delete", match: { key: "apikey:missing" } },
        ],
        checkpoint("run-3"),
      );
      expect(r.failures).toEqual([]);
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect((await r.keys("apikey:*")).sort()).toEqual(["apikey:2", "apikey:4"]);
      expect(await r.hgetall("apikey:4")).toEqual({ name: "four" });
      expect(await r.hexists("ferry:journal", "run-3")).toBe(1);
    });
    const back = await openConnector(`${dst}?hashes=rows`, {});
    try {
      const apikey = (await back.discover()).find((s) => s.name === "apikey");
      expect(apikey?.fields.map((f) => f.name)).toEqual(["key", "ttl", "name"]);
      const rows: unknown[] = [];
      for await (const batch of back.read(apikey as CollectionSchema, { batchSize: 10 })) rows.push(...batch.records);
      expect(rows.map((x) => (x as { key: string }).key).sort()).toEqual(["apikey:2", "apikey:4"]);
    } finally {
      await back.close();
    }
  });

  it("deletes a table collection's hashes by primary key and by a natural key", async () => {
    const dst = await b.fresh();
    const users: CollectionSchema = {
      name: "users",
      fields: [
        { name: "id", type: "integer", nullable: false },
        { name: "email", type: "text" },
      ],
      primaryKey: ["id"],
    };
    const c = await openConnector(dst, { write: true });
    try {
      const { schema } = await c.prepare(users);
      await c.write(
        schema,
        [1, 2, 3, 4].map((id) => ({ op: "insert", record: { id, email: `u${id}@example.com` } })),
      );
      const r = await c.write(
        schema,
        [
          { op: "delete", match: { id: 1 } },
          { op: "delete", match: { email: "u3@example.com" } },
          { op: "delete", match: { id: 99 } },
          { op: "delete", match: { email: "nobody@example.com" } },
        ],
        checkpoint("run-4"),
      );
      expect(r.failures).toEqual([]);
      expect([...(await c.lookup(schema, ["id"], [[1], [2], [3], [4]])).keys()]).toEqual(["[2]", "[4]"]);
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect((await r.keys("users:*")).sort()).toEqual(["users:2", "users:4"]);
    });
  });
});

describe("redis bulk path: large keys, credentials, refusals", () => {
  let locked: TestRedis;
  let tiny: TestRedis;
  beforeAll(async () => {
    locked = await startRedis(16, { args: ["--requirepass", "pa:ss@word"], password: "pa:ss@word" });
    tiny = await startRedis(4, { args: ["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"] });
  });
  afterAll(async () => {
    await locked?.stop();
    await tiny?.stop();
  });

  it("stages keys over 8 MB page by page: every type arrives whole, with its expiry, and no staging key is left", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    const at = Date.now() + 3 * DAY;
    await withClient(src, async (c) => {
      for (let i = 0; i < 200_000; i += 5000) {
        const p = c.pipeline();
        const z: (string | number)[] = [];
        const h: string[] = [];
        const l: string[] = [];
        const s: string[] = [];
        for (let j = i; j < i + 5000; j++) {
          z.push(j % 7 === 0 ? "inf" : j / 3, `member\x00${j}`);
          h.push(`field-${j}`, `value-${j}-${"v".repeat(40)}`);
          l.push(`item-${j}-${"l".repeat(40)}`);
          s.push(`m-${j}-${"s".repeat(40)}`);
        }
        p.zadd("big:zset", ...z);
        p.hset("big:hash", ...h);
        p.rpush("big:list", ...l);
        p.sadd("big:set", ...s);
        for (let j = i; j < i + 5000; j += 50) p.xadd("big:stream", `${j + 1}-0`, "f", "x".repeat(3000));
        await p.exec();
      }
      await c.set("big:string", Buffer.alloc(9 * 1024 * 1024, 0xab));
      await c.pexpireat("big:zset", at);
      await c.pexpireat("big:string", at);
      await c.set("small", "1");
      for (const k of ["big:zset", "big:hash", "big:list", "big:set", "big:stream", "big:string"]) {
        expect(Number(await c.memory("USAGE", k))).toBeGreaterThan(8 * 1024 * 1024);
      }
    });
    const r = await copy({ from: src, to: dst });
    expect(r.status).toBe("done");
    expect(r.total.copied).toBe(7);
    expectSame(await snapshot(dst), await snapshot(src));
    await withClient(dst, async (c) => {
      expect(await c.keys("ferry:stage:*")).toEqual([]);
      expect(Number(await c.pexpiretime("big:zset"))).toBe(at);
      expect(Number(await c.pexpiretime("big:hash"))).toBe(-1);
    });
  }, 60_000);

  it("copies between password-protected instances (the bulk connection authenticates too)", async () => {
    const src = await locked.fresh();
    const dst = await locked.fresh();
    await seedRelay(src);
    const bulk = vi.spyOn(RedisConnector.prototype, "bulkCopyFrom");
    const r = await copy({ from: src, to: dst });
    expect(r.status).toBe("done");
    expect(bulk.mock.results.some((x) => x.type === "return")).toBe(true);
    bulk.mockRestore();
    expectSame(await snapshot(dst), await snapshot(src));
    const wrong = await copy({ from: src.replace("pa%3Ass%40word", "nope"), to: dst }).catch((e: unknown) => e);
    expect(isFerryError(wrong, "E_CONNECTION")).toBe(true);
    expect((wrong as Error).message).toMatch(/refused the credentials/);
    expect((wrong as Error).message).not.toMatch(/nope/);
  });

  it("goes on with typed commands when the user may not DUMP (ACL)", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await seedRelay(src);
    await withClient(src, (c) => c.call("ACL", "SETUSER", "nodump", "on", ">pw", "~*", "+@all", "-dump"));
    const db = new URL(src).pathname;
    await withClient(src, (c) => c.call("ACL", "LOG", "RESET"));
    const r = await copy({ from: `redis://nodump:pw@127.0.0.1:${a.port}${db}`, to: dst });
    expect(r.status).toBe("done");
    expectSame(await snapshot(dst), await snapshot(src));
    // The bulk path met the refusal of DUMP, and nothing else was refused.
    const log = (await withClient(src, (c) => c.call("ACL", "LOG"))) as unknown[][];
    const denied = log.map((e) => String(e[e.indexOf("object") + 1]));
    expect(denied).toEqual(["dump"]);
  });

  it("names an out-of-memory target and says what to do; nothing is lost for --resume", async () => {
    const src = await a.fresh();
    const dst = await tiny.fresh();
    await withClient(src, async (c) => {
      const p = c.pipeline();
      for (let i = 0; i < 3000; i++) p.set(`blob:${i}`, "x".repeat(2000));
      await p.exec();
    });
    const failed = await copy({ from: src, to: dst }).catch((e: unknown) => e);
    const message = failed instanceof Error ? failed.message : JSON.stringify(failed);
    expect(message).toMatch(/out of memory \(maxmemory\)/);
    expect(message).toMatch(/raise maxmemory.*--resume/);
  });
});

describe("redis bulk path: a batch whose keys already exist (a run stopped before its checkpoint)", () => {
  it("is refused whole by key, its checkpoint not saved, and a copy redoes it key by key", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await seedRelay(src);
    // As if a run had restored some keys and stopped before saving the checkpoint.
    await withClient(dst, async (c) => {
      await c.set("counter", "stale");
      await c.set("apikey:index:version", "stale");
    });
    const source = (await openConnector(src, {})) as RedisConnector;
    const target = (await openConnector(dst, { write: true })) as RedisConnector;
    try {
      const [collection] = await source.resolve(["*"]);
      const refused = await target
        .bulkCopyFrom(source, collection as CollectionSchema, { limit: 1000 }, (count, bookmark) => ({
          runId: "r",
          id: "r/part",
          entry: () => ({ count, bookmark }) as never,
        }))
        .catch((e: unknown) => e);
      expect(isFerryError(refused, "E_WRITE")).toBe(true);
      expect((refused as Error).message).toMatch(/key (counter|apikey:index:version): BUSYKEY/);
      expect((refused as Error).message).toMatch(/checkpoint was not saved/);
      await withClient(dst, async (c) => expect(await c.hget("ferry:journal", "r/part")).toBeNull());
    } finally {
      await source.close();
      await target.close();
    }
    await withClient(dst, (c) => c.del("ferry:journal"));
    const r = await copy({ from: src, to: dst, conflict: "overwrite" });
    expect(r.status).toBe("done");
    expectSame(await snapshot(dst), await snapshot(src));
  });
});

describe("redis reading: one pass over the key space", () => {
  // Small SCAN steps, so a few thousand keys take many of them.
  const count = tuning.discoverScanCount;
  beforeAll(() => {
    tuning.discoverScanCount = 400;
  });
  afterAll(() => {
    tuning.discoverScanCount = count;
  });
  const N = 1500;
  /** 3 × N keys under three prefixes (strings, hashes, sorted sets), some with expiries. */
  async function seedMany(url: string): Promise<void> {
    await withClient(url, async (c) => {
      const p = c.pipeline();
      for (let i = 0; i < N; i++) {
        p.set(`user:${i}`, `u${i}`);
        p.hset(`order:${i}`, "id", String(i), "total", String(i * 3));
        p.zadd(`idx${i % 7 === 0 ? "" : `:${i}`}`, i, `m${i}`);
        if (i % 10 === 0) p.pexpire(`user:${i}`, 3 * DAY);
      }
      await p.exec();
    });
    // Let the server finish rehashing the grown table, so runs see the same SCAN steps (else
    // a resume reads some done keys again: "reads them again when not" below).
    await new Promise((r) => setTimeout(r, 500));
  }

  async function scanCalls(url: string): Promise<number> {
    const stats = await withClient(url, (c) => c.info("commandstats"));
    return Number(/cmdstat_scan:calls=(\d+)/.exec(stats)?.[1] ?? 0);
  }

  /** A connector on a seeded database, discovered, with its `user` collection. */
  async function seededUsers() {
    const src = await a.fresh();
    await seedMany(src);
    const c = await openConnector(src, {});
    await c.discover();
    const [user] = await (c.resolve as NonNullable<typeof c.resolve>)(["user"]);
    return { c, user };
  }

  it("reads every collection from discovery's SCAN: one pass, whatever the number of collections", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await seedMany(src);
    let steps = 0;
    await withClient(src, async (c) => {
      let cursor = "0";
      do {
        [cursor] = await c.scan(cursor, "COUNT", 400);
        steps++;
      } while (cursor !== "0");
      await c.call("CONFIG", "RESETSTAT");
    });
    const r = await copy({ from: src, to: dst, batchSize: 100 });
    expect(Object.keys(r.collections).sort()).toEqual(["idx", "order", "user"]);
    expect(steps).toBeGreaterThan(5);
    expect(await scanCalls(src)).toBe(steps);
    expectSame(await snapshot(dst), await snapshot(src));
  });

  it("resumes between a kept SCAN and a live one with no key lost or copied twice", async () => {
    const saved = tuning.scanCacheBytes;
    try {
      // [first run's kept SCAN bytes, resumed run's]: kept → live, live → kept, part kept → part kept.
      for (const [first, second] of [
        [saved, 0],
        [0, saved],
        [20_000, 20_000],
      ] as const) {
        const src = await a.fresh();
        const dst = await b.fresh();
        await seedMany(src);
        tuning.scanCacheBytes = first;
        const controller = new AbortController();
        let batches = 0;
        const err = await copy({
          from: src,
          to: dst,
          jobs: 1,
          batchSize: 100,
          signal: controller.signal,
          onEvent: (e) => {
            if (e.type === "progress" && e.collection === "order" && ++batches === 3) controller.abort();
          },
        }).catch((e: unknown) => e);
        expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
        tuning.scanCacheBytes = second;
        const r = await copy({ from: src, to: dst, resume: true, batchSize: 100 });
        expect(r.status).toBe("done");
        for (const name of ["user", "order", "idx"]) {
          expect(r.collections[name], `${name} (${first} → ${second})`).toMatchObject({
            copied: name === "idx" ? (await snapshot(src)).size - 2 * N : N,
            failed: 0,
          });
        }
        expectSame(await snapshot(dst), await snapshot(src));
      }
    } finally {
      tuning.scanCacheBytes = saved;
    }
  });

  it("splits a collection into key ranges that together read every key once", async () => {
    const { c, user } = await seededUsers();
    try {
      const bounds = await (c.split as NonNullable<typeof c.split>)(user as CollectionSchema, 3);
      expect(bounds).toHaveLength(2);
      const ranges = [{ upTo: bounds[0] }, { after: bounds[0], upTo: bounds[1] }, { after: bounds[1] }];
      const seen: string[][] = [];
      for (const r of ranges) {
        const keys: string[] = [];
        for await (const batch of c.read(user as CollectionSchema, { ...r, batchSize: 70 })) {
          for (const rec of batch.records) keys.push(String(rec.key));
        }
        seen.push(keys);
      }
      for (const keys of seen) expect(keys.length).toBeGreaterThan(N / 6);
      const all = seen.flat();
      expect(new Set(all).size).toBe(all.length);
      expect(all.sort()).toEqual(Array.from({ length: N }, (_, i) => `user:${i}`).sort());
    } finally {
      await c.close();
    }
  });

  it("copies key ranges in parallel, and resumes each where it stopped, kept SCAN or not", async () => {
    const saved = tuning.scanCacheBytes;
    try {
      for (const second of [saved, 0]) {
        const src = await a.fresh();
        const dst = await b.fresh();
        await seedMany(src);
        tuning.scanCacheBytes = saved;
        const controller = new AbortController();
        let batches = 0;
        const opts = { from: src, to: dst, batchSize: 50, jobs: 3 };
        const err = await copy({
          ...opts,
          signal: controller.signal,
          onEvent: (e) => {
            if (e.type === "progress" && e.collection === "order" && ++batches === 5) controller.abort();
          },
        }).catch((e: unknown) => e);
        expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
        tuning.scanCacheBytes = second;
        const r = await copy({ ...opts, resume: true });
        expect(r.status).toBe("done");
        expect(r.collections.order, `resumed with kept SCAN bytes ${second}`).toMatchObject({ copied: N, failed: 0 });
        expect(r.collections.user).toMatchObject({ copied: N, failed: 0 });
        expectSame(await snapshot(dst), await snapshot(src));
      }
    } finally {
      tuning.scanCacheBytes = saved;
    }
  });

  it("resumes after the done keys when they are listed as before, and reads them again when not", async () => {
    const { c, user } = await seededUsers();
    try {
      const col = user as CollectionSchema;
      const read = async (
        after?: Record<string, unknown>,
      ): Promise<{ keys: string[]; marks: Record<string, unknown>[] }> => {
        const keys: string[] = [];
        const marks: Record<string, unknown>[] = [];
        for await (const batch of c.read(col, { ...(after ? { after } : {}), batchSize: 130 })) {
          for (const rec of batch.records) keys.push(String(rec.key));
          marks.push(batch.bookmark);
        }
        return { keys, marks };
      };
      const all = await read();
      expect(all.keys).toHaveLength(N);
      const mark = all.marks[2] as Record<string, unknown>;
      expect(mark.skip).toBeGreaterThan(0);
      const done = all.keys.slice(0, 3 * 130);
      // As listed before: exactly the rest.
      expect((await read(mark)).keys).toEqual(all.keys.slice(3 * 130));
      // Listed otherwise since (another check): the done keys of that step come again, and nothing is lost.
      const again = (await read({ ...mark, check: ((mark.check as number) + 1) >>> 0 })).keys;
      expect(new Set([...done, ...again]).size).toBe(N);
      expect(again.length).toBe(N - 3 * 130 + (mark.skip as number));
    } finally {
      await c.close();
    }
  });

  it("orders SCAN cursors by position: reversed bits grow call by call, while the table grows too", async () => {
    const url = await a.fresh();
    await withClient(url, async (c) => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 0, max: 3000 }), async (count, grow) => {
          await c.flushdb();
          const p = c.pipeline();
          for (let i = 0; i < 500; i++) p.set(`k:${i}`, "1");
          await p.exec();
          let cursor = "0";
          let last = -1n;
          let added = 0;
          do {
            [cursor] = await c.scan(cursor, "COUNT", count);
            if (cursor === "0") break;
            const at = scanPosition(cursor);
            expect(at > last).toBe(true);
            last = at;
            // Keys added meanwhile make the table grow (rehash) under the iteration.
            if (added < grow) {
              const q = c.pipeline();
              for (let i = 0; i < 500; i++) q.set(`new:${added + i}`, "1");
              await q.exec();
              added += 500;
            }
          } while (cursor !== "0");
        }),
        { numRuns: 30 },
      );
    });
  });

  it("matches keys to a literal or literal-then-* glob exactly as the server's SCAN MATCH does", async () => {
    const url = await a.fresh();
    const alphabet = fc.constantFrom("a", "b", ":", "*", "?", "\\", "[", "]", "^", "é");
    const text = (max: number) => fc.array(alphabet, { maxLength: max }).map((cs) => cs.join(""));
    await withClient(url, async (c) => {
      await fc.assert(
        fc.asyncProperty(fc.uniqueArray(text(5), { minLength: 1, maxLength: 30 }), text(5), async (keys, glob) => {
          const match = Buffer.from(glob, "utf8");
          const literal = literalGlob(match);
          fc.pre(literal !== undefined);
          await c.flushdb();
          await c.mset(...keys.flatMap((k) => [k, "1"]));
          const server = ((await c.callBuffer("KEYS", match)) as Buffer[]).map((k) => k.toString("utf8")).sort();
          const { bytes, prefix } = literal as { bytes: Buffer; prefix: boolean };
          const ours = keys
            .filter((k) => {
              const b = Buffer.from(k, "utf8");
              return prefix ? b.subarray(0, bytes.length).equals(bytes) : b.equals(bytes);
            })
            .sort();
          expect(ours).toEqual(server);
        }),
        { numRuns: 300 },
      );
    });
  });
});

describe("redis bulk path: a database without expiring keys", () => {
  it("reads no expiries while none exist, and reads a batch again when one appears meanwhile", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await withClient(src, async (c) => {
      const p = c.pipeline();
      for (let i = 0; i < 1000; i++) p.set(`user:${i}`, `u${i}`);
      await p.exec();
      await c.call("CONFIG", "RESETSTAT");
    });
    // Batches read once INFO showed no key with an expiry ask for none (the first three are
    // read before any INFO came back).
    const plain = await copy({ from: src, to: await b.fresh(), batchSize: 100 });
    expect(plain.collections.user).toMatchObject({ copied: 1000, failed: 0 });
    const stats = await withClient(src, (c) => c.info("commandstats"));
    expect(Number(/cmdstat_pexpiretime:calls=(\d+)/.exec(stats)?.[1])).toBeLessThanOrEqual(300);
    // A connection ready before the copy, so the change is on the wire before the handler returns.
    const c = client(src);
    await c.ping();
    let batches = 0;
    let changed: Promise<unknown> | undefined;
    const r = await copy({
      from: src,
      to: dst,
      jobs: 1,
      batchSize: 100,
      onEvent: (e) => {
        // After the first batch is written, every key gets an expiry (one atomic command). The
        // batches read before that (at most 3) are copied as they were read; later ones carry it.
        if (e.type === "progress" && e.collection === "user" && ++batches === 1) {
          changed = c.eval("for i = 0, 999 do redis.call('PEXPIRE', 'user:' .. i, ARGV[1]) end", 0, String(5 * DAY));
        }
      },
    });
    await changed;
    await c.quit();
    expect(r.collections.user).toMatchObject({ copied: 1000, failed: 0 });
    const got = await snapshot(dst);
    const persistent = [...got.values()].filter((v) => v.expiry === -1).length;
    expect(persistent).toBeGreaterThanOrEqual(100);
    expect(persistent).toBeLessThanOrEqual(300);
    for (const [k, v] of got)
      if (v.expiry !== -1) expect(Math.abs(v.expiry - Date.now() - 5 * DAY), k).toBeLessThan(60_000);
  });
});

describe("redis undo log and forget", () => {
  const keyspace: CollectionSchema = {
    name: "app",
    fields: ["key", "type", "ttl", "value"].map((f) => ({ name: f, type: "any" as const })),
    primaryKey: ["key"],
  };
  /** A checkpoint of run `runId` (journal row `id`) whose batch has undo row `seq`. */
  const withUndo = (runId: string, seq: number, payload?: unknown, id = runId): Checkpoint => ({
    runId,
    id,
    entry: (r) => ({ id, status: "running", seq, failed: r.failures.length }),
    undo: () => ({ runId, seq, entry: payload ?? { seq } }),
  });
  const insert = (n: number): WriteOp[] => [
    { op: "insert", record: { key: `app:${n}`, type: "string", ttl: null, value: `v${n}` } },
  ];

  async function undoRows(c: Connector, runId: string): Promise<UndoRow[]> {
    const out: UndoRow[] = [];
    for await (const r of c.journal().undo(runId)) out.push(r);
    return out;
  }

  it("saves each batch's undo row in its MULTI and reads them back highest seq first, page by page", async () => {
    const dst = await b.fresh();
    const c = await openConnector(dst, { write: true });
    const { schema } = await c.prepare(keyspace);
    // Seqs out of write order (read back by seq, pages of 100), rows larger than one round of
    // reads (8 MB) after them, and a seq saved again (the later row replaces it).
    const big = (n: number) => ({ n, blob: String.fromCharCode(97 + n).repeat(3 * 1024 * 1024) });
    const seqs = [...Array.from({ length: 230 }, (_, i) => (i * 37) % 230), 230, 231, 232, 7];
    let n = 0;
    try {
      for (const seq of seqs) {
        const payload = seq >= 230 ? big(seq - 230) : seq === 7 && n > 0 ? { seq, again: true } : undefined;
        expect((await c.write(schema, insert(n++), withUndo("imp-1", seq, payload))).failures).toEqual([]);
      }
      await c.write(schema, insert(n++), { runId: "imp-1", id: "imp-1", entry: () => ({ id: "imp-1" }) });
      await c.write(schema, insert(n++), withUndo("imp-2", 0));
      const rows = await undoRows(c, "imp-1");
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 233 }, (_, i) => 232 - i));
      expect(rows.every((r) => r.runId === "imp-1")).toBe(true);
      expect(rows.slice(0, 3).map((r) => r.entry)).toEqual([big(2), big(1), big(0)]);
      expect(rows.find((r) => r.seq === 7)?.entry).toEqual({ seq: 7, again: true });
      expect(rows.find((r) => r.seq === 8)?.entry).toEqual({ seq: 8 });
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect(await r.type("ferry:undo:imp-1")).toBe("hash");
      expect(await r.zcard("ferry:undo-seq:imp-1")).toBe(233);
      expect(await r.hget("ferry:undo:imp-1", "0000000000000008")).toBe(JSON.stringify({ seq: 8 }));
    });

    // Read-only: undo and list work; the undo log is never data, listed, or copied.
    const ro = await openConnector(dst);
    try {
      expect((await undoRows(ro, "imp-1")).length).toBe(233);
      expect(await undoRows(ro, "imp-2")).toEqual([{ runId: "imp-2", seq: 0, entry: { seq: 0 } }]);
      expect(await undoRows(ro, "nope")).toEqual([]);
      for await (const x of ro.journal().undo("imp-1")) {
        expect(x.seq).toBe(232); // stopping early is fine
        break;
      }
      expect(((await ro.journal().list()) as { id: string }[]).map((e) => e.id).sort()).toEqual(["imp-1", "imp-2"]);
      expect((await ro.discover()).map((s) => s.name)).toEqual(["app"]);
      expect(
        isFerryError(
          await ro
            .journal()
            .forget("imp-1")
            .catch((e: unknown) => e),
          "E_UNSUPPORTED",
        ),
      ).toBe(true);
    } finally {
      await ro.close();
    }
    const other = await b.fresh();
    expect((await copy({ from: dst, to: other })).total.copied).toBe(n);
    await withClient(other, async (r) => expect(await r.keys("ferry:undo*")).toEqual([]));
  }, 60_000);

  it("a batch that fails or throws leaves no undo row, no entry and no data", async () => {
    const dst = await b.fresh();
    const db = new URL(dst).pathname;
    // A user who may write the data and the journal, not the undo log: the server refuses the
    // transaction while queueing it (EXECABORT), so nothing of it applies.
    await withClient(dst, (r) =>
      r.call(
        "ACL",
        "SETUSER",
        "noundo",
        "on",
        ">pw",
        "resetkeys",
        "~app:*",
        "~ferry:journal",
        "~ferry:schemas",
        "+@all",
      ),
    );
    const c = await openConnector(`redis://noundo:pw@127.0.0.1:${b.port}${db}`, { write: true });
    try {
      const { schema } = await c.prepare(keyspace);
      await c.write(schema, insert(0), { runId: "imp-1", id: "imp-1", entry: () => ({ id: "imp-1" }) });
      const refused = await c.write(schema, insert(1), withUndo("imp-1", 0)).catch((e: unknown) => e);
      expect(isFerryError(refused, "E_WRITE")).toBe(true);
      expect((refused as Error).message).toMatch(/NOPERM|EXECABORT/);
      // Building the row throws, or its entry is not JSON (E_INTERNAL): nothing is sent.
      const throwing: Checkpoint = {
        ...withUndo("imp-1", 0),
        undo: () => {
          throw new Error("no undo");
        },
      };
      expect(await c.write(schema, insert(2), throwing).catch((e: unknown) => e)).toMatchObject({ message: "no undo" });
      const bigint = await c.write(schema, insert(3), withUndo("imp-1", 0, { n: 1n })).catch((e: unknown) => e);
      expect(isFerryError(bigint, "E_INTERNAL")).toBe(true);
    } finally {
      await c.close();
      await withClient(dst, (r) => r.call("ACL", "DELUSER", "noundo"));
    }
    // Only the first batch (no undo row) is there.
    await withClient(dst, async (r) => {
      expect((await r.keys("*")).sort()).toEqual(["app:0", "ferry:journal"]);
      expect(JSON.parse((await r.hget("ferry:journal", "imp-1")) ?? "null")).toEqual({ id: "imp-1" });
    });
  });

  it("the bulk path refuses a checkpoint with an undo row (E_INTERNAL) before writing a key", async () => {
    const src = await a.fresh();
    const dst = await b.fresh();
    await withClient(src, async (r) => {
      for (let i = 0; i < 10; i++) await r.set(`app:${i}`, `v${i}`);
    });
    const from = await openConnector(src);
    const to = (await openConnector(dst, { write: true })) as RedisConnector;
    try {
      const [collection] = await from.discover();
      await to.prepare(collection as CollectionSchema);
      const err = await to
        .bulkCopyFrom(from, collection as CollectionSchema, { limit: 100 }, () => withUndo("imp-1", 0))
        .catch((e: unknown) => e);
      expect(isFerryError(err, "E_INTERNAL")).toBe(true);
    } finally {
      await from.close();
      await to.close();
    }
    await withClient(dst, async (r) => expect(await r.dbsize()).toBe(0));
  });

  it("forget removes a run's entry, its range rows and undo log, not a run whose id starts the same", async () => {
    const dst = await b.fresh();
    const c = await openConnector(dst, { write: true });
    try {
      const { schema } = await c.prepare(keyspace);
      const j = c.journal();
      // "imp-1" and "imp-10"; "imp*" (a glob character: never matched as one).
      for (const id of ["imp-1", "imp-10", "imp*"]) await j.save(id, { id, startedAt: "2026-01-01T00:00:00Z" });
      await c.write(schema, insert(0), withUndo("imp-1", 0, undefined, "imp-1/app/0"));
      await c.write(schema, insert(1), withUndo("imp-1", 1, undefined, "imp-1/app/1"));
      await c.write(schema, insert(2), withUndo("imp-10", 0, undefined, "imp-10/app/0"));
      await c.write(schema, insert(3), withUndo("imp*", 0, undefined, "imp*/app/0"));

      await j.forget("imp*");
      await j.forget("imp-1");
      await j.forget("imp-1"); // not there: no error
      await j.forget("never");
      expect(await j.get("imp-1")).toBeUndefined();
      expect(await undoRows(c, "imp-1")).toEqual([]);
      expect(await undoRows(c, "imp*")).toEqual([]);
      expect(await undoRows(c, "imp-10")).toEqual([{ runId: "imp-10", seq: 0, entry: { seq: 0 } }]);
      // A run forgotten can start again under its id.
      await c.write(schema, insert(4), withUndo("imp-1", 3));
      expect((await undoRows(c, "imp-1")).map((r) => r.seq)).toEqual([3]);
    } finally {
      await c.close();
    }
    await withClient(dst, async (r) => {
      expect((await r.hkeys("ferry:journal")).sort()).toEqual(["imp-1", "imp-10", "imp-10/app/0"]);
      expect((await r.keys("ferry:undo*")).sort()).toEqual([
        "ferry:undo-seq:imp-1",
        "ferry:undo-seq:imp-10",
        "ferry:undo:imp-1",
        "ferry:undo:imp-10",
      ]);
      expect(await r.exists("app:0", "app:1", "app:2", "app:3", "app:4")).toBe(5);
    });
  });
});
