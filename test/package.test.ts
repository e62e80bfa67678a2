/**
 * Packages (issue 6): export → import round trips, exact record by record, for every engine;
 * every bad package refused before any write, the target unchanged; secrets left out; the
 * reference `age` opening an encrypted package.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  copyFileSync as copyFile,
  createReadStream,
  createWriteStream,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compress as zstdCompress, decompress as zstdDecompress } from "zstd-napi";
import "../src/connectors/index.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import type { Bookmark } from "../src/core/messages.js";
import { unlock } from "../src/package/encryption.js";
import { type Manifest, manifestDigest, PACKAGE_VERSION } from "../src/package/format.js";
import { exportPackage, importPackage, inspectPackage, validatePackage } from "../src/package/package.js";
import { PackageReader } from "../src/package/reader.js";
import { canonicalRecords, ensurePgDatabase, myExec, pgQuery, readAll, tempDir } from "./helpers.js";
import { client, startRedis, type TestRedis } from "./redis-server.js";
import { MY_DDL, MY_ROWS, PG_DDL } from "./type-fixtures.js";

const SHOP = `sqlite:${join(import.meta.dirname, "..", "examples", "quickstart", "shop.db")}`;
const PG_DB = "ferry_test";
const PG = `postgres://postgres@127.0.0.1:5432/${PG_DB}`;
const MY = "mysql://root@127.0.0.1:3306";
const tag = randomBytes(3).toString("hex");
const schemas: string[] = [];
const databases: string[] = [];
const tmp = tempDir();
const pgExec = (sql: string) => pgQuery(PG_DB, sql);
let redis: TestRedis;
let n = 0;
const file = (name: string): string => join(tmp.dir, `${n++}-${name}`);

async function pgSchema(name: string, ddl?: string): Promise<string> {
  const s = `pkg_${tag}_${name}`;
  schemas.push(s);
  await pgExec(
    `DROP SCHEMA IF EXISTS ${s} CASCADE; CREATE SCHEMA ${s};${ddl ? ` SET search_path TO ${s}; ${ddl}` : ""}`,
  );
  return `${PG}?schema=${s}`;
}

async function myDb(name: string, ddl?: string): Promise<string> {
  const d = `ferry_pkg_${tag}_${name}`;
  databases.push(d);
  await myExec(
    `DROP DATABASE IF EXISTS ${d}; CREATE DATABASE ${d} CHARACTER SET utf8mb4;${ddl ? ` USE ${d}; ${ddl}` : ""}`,
  );
  return `${MY}/${d}`;
}

beforeAll(async () => {
  await ensurePgDatabase(PG_DB);
  redis = await startRedis(16);
});

afterAll(async () => {
  for (const s of schemas) await pgExec(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => {});
  for (const d of databases) await myExec(`DROP DATABASE IF EXISTS ${d}`).catch(() => {});
  await redis?.stop();
  tmp.cleanup();
});

const canonical = canonicalRecords;

/** Rewrites a package entry by entry: `edit` returns the new body, or undefined to drop the entry. */
async function rewrite(
  src: string,
  dst: string,
  edit: (name: string, body: Buffer) => Buffer | undefined,
): Promise<void> {
  const extract = tar.extract();
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(dst));
  const reading = pipeline(createReadStream(src), extract);
  for await (const entry of extract) {
    const parts: Buffer[] = [];
    for await (const p of entry) parts.push(p as Buffer);
    const body = edit(entry.header.name, Buffer.concat(parts));
    if (body)
      await new Promise<void>((ok, fail) =>
        pack.entry({ name: entry.header.name, size: body.length }, body, (e) => (e ? fail(e) : ok())),
      );
  }
  await reading;
  pack.finalize();
  await done;
}

function editManifest(src: string, dst: string, change: (m: Manifest) => void, fixDigest: boolean): Promise<void> {
  return rewrite(src, dst, (name, body) => {
    if (name !== "manifest.json") return body;
    const m = JSON.parse(body.toString()) as Manifest;
    change(m);
    if (fixDigest) m.digest = manifestDigest(m);
    return Buffer.from(JSON.stringify(m));
  });
}

describe("export → import round trips, record by record", () => {
  it("SQLite, with every collection's count and checksum in the manifest", async () => {
    const out = file("shop.ferry");
    const e = await exportPackage({ from: SHOP, output: out, description: "shop" });
    expect(e.manifest.collections.map((c) => [c.name, c.records])).toEqual([
      ["customers", 50],
      ["products", 20],
      ["orders", 200],
      ["order_items", 479],
    ]);
    expect(e.manifest.description).toBe("shop");
    expect(e.manifest.source).toMatchObject({ engine: "sqlite", version: expect.stringMatching(/^SQLite 3\./) });
    expect(e.bytes).toBe(statSync(out).size);
    const to = `sqlite:${file("restored.db")}`;
    const r = await importPackage({ input: out, to });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(SHOP));
  });

  it("files (a directory of NDJSON), gzip-compressed", async () => {
    const dir = `${file("dir")}/`;
    await copy({ from: SHOP, to: dir });
    const out = file("dir.ferry");
    const e = await exportPackage({ from: dir, output: out, compression: "gzip" });
    expect(e.manifest.compression).toBe("gzip");
    const back = `${file("back")}/`;
    await importPackage({ input: out, to: back });
    expect(await canonical(back)).toEqual(await canonical(dir));
  });

  it("PostgreSQL, every type, into a new schema", async () => {
    const src = await pgSchema("src", PG_DDL);
    const out = file("pg.ferry");
    const e = await exportPackage({ from: src, output: out });
    // A table with a generated column is kept as records (see the next test for text).
    expect(e.manifest.collections[0]?.text).toBeUndefined();
    const to = await pgSchema("dst");
    const r = await importPackage({ input: out, to });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(src));
  });

  it("PostgreSQL, kept as its COPY text, imports into other engines as PostgreSQL's own read gives each record", async () => {
    // A generated column's value is not written into PostgreSQL, so its table goes as records (tested above).
    const src = await pgSchema("text", `${PG_DDL}; ALTER TABLE everything DROP COLUMN doubled;`);
    const out = file("pg-text.ferry");
    const e = await exportPackage({ from: src, output: out });
    const everything = e.manifest.collections.find((c) => c.name === "everything");
    expect(everything?.text?.fields).toHaveLength(21);
    expect(everything?.chunks[0]?.entry).toMatch(/^data\/everything\/000001\.tsv\.zst$/);
    for (const [name, to] of [
      ["sqlite", `sqlite:${file("from-text.db")}`],
      ["files", `${file("from-text")}/`],
      ["mysql", await myDb("fromtext")],
    ] as const) {
      // MariaDB keeps instants without their zone: the same plan, accepted on both paths.
      const viaPackage = await importPackage({ input: out, to, allowLossy: true });
      expect(viaPackage.status, name).toBe("done");
      const direct =
        name === "mysql"
          ? await myDb("direct")
          : name === "sqlite"
            ? `sqlite:${file("direct.db")}`
            : `${file("direct")}/`;
      await copy({ from: src, to: direct, allowLossy: true });
      expect(await canonical(to), name).toEqual(await canonical(direct));
    }
  });

  it("a collection of several chunks, read in parts, gives each record once, as records and as text", async () => {
    const src = await pgSchema(
      "parts",
      "CREATE TABLE big (id bigint PRIMARY KEY, body text); INSERT INTO big SELECT x, repeat('x', 200) || x FROM generate_series(1, 40000) x;",
    );
    const out = file("parts.ferry");
    await exportPackage({ from: src, output: out });
    const reader = await PackageReader.open(out);
    try {
      const [big] = await reader.discover();
      if (!big) throw new Error("no collection");
      expect(reader.manifest.collections[0]?.chunks.length).toBeGreaterThanOrEqual(2);
      const bounds = await reader.split(big, 2);
      expect(bounds).toHaveLength(1);
      const ranges = [undefined, ...bounds, undefined];
      const viaRecords: number[] = [];
      const viaText: number[] = [];
      for (let i = 0; i + 1 < ranges.length; i++) {
        const [after, upTo] = [ranges[i], ranges[i + 1]];
        const bounded = { ...(after ? { after } : {}), ...(upTo ? { upTo } : {}) };
        for await (const b of reader.read(big, { batchSize: 7000, ...bounded })) {
          viaRecords.push(...b.records.map((r) => Number(r.id)));
        }
        // Text in batches of 5,000 lines, each continuing from the last one's bookmark.
        let from: Bookmark | undefined = after;
        for (;;) {
          let rows = 0;
          for await (const chunk of reader.exportText(big, {
            ...(from ? { after: from } : {}),
            ...(upTo ? { upTo } : {}),
            limit: 5000,
          })) {
            const lines = Buffer.from(chunk.text).toString("utf8").split("\n");
            expect(lines.pop()).toBe("");
            expect(lines).toHaveLength(chunk.rows);
            viaText.push(...lines.map((l) => Number(l.split("\t")[0])));
            rows += chunk.rows;
            from = chunk.bookmark;
          }
          if (rows === 0) break;
          expect(rows).toBeLessThanOrEqual(5000);
        }
      }
      const all = Array.from({ length: 40000 }, (_, i) => i + 1);
      expect(viaRecords).toEqual(all);
      expect(viaText).toEqual(all);
    } finally {
      await reader.close();
    }
    // Two parts imported at once, on the bulk path.
    const to = await pgSchema("parts_dst");
    const r = await importPackage({ input: out, to, jobs: 2, batchSize: 1000 });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(src));
  });

  it("MariaDB, every type, into a new database", async () => {
    const src = await myDb("src", `${MY_DDL} ${MY_ROWS}`);
    const out = file("my.ferry");
    await exportPackage({ from: src, output: out });
    const to = await myDb("dst");
    const r = await importPackage({ input: out, to });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(src));
  });

  it("Redis, every type with its expiry", async () => {
    const from = await redis.fresh();
    const c = client(from);
    const in1h = Date.now() + 3_600_000;
    try {
      await c.set("s:plain", "value");
      await c.set("s:bytes", Buffer.from([0, 255, 1, 254]));
      await c.pexpireat("s:bytes", in1h);
      await c.hset("h:1", { a: "1", b: "two" });
      await c.pexpireat("h:1", in1h + 5000);
      await c.rpush("l:1", "x", "y", "x");
      await c.sadd("set:1", "m1", "m2");
      await c.zadd("z:1", 1.5, "a", -2, "b");
      await c.xadd("st:1", "1-1", "f", "v");
    } finally {
      c.disconnect();
    }
    const out = file("redis.ferry");
    await exportPackage({ from, output: out });
    const to = await redis.fresh();
    const r = await importPackage({ input: out, to });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(from));
    const t = client(to);
    try {
      expect(Math.abs((await t.pexpiretime("h:1")) - (in1h + 5000))).toBeLessThan(1000);
      expect(await t.pttl("s:plain")).toBe(-1);
    } finally {
      t.disconnect();
    }
  });
});

describe("a bad package is refused before any write, the target unchanged", () => {
  let good: string;
  let target: string;
  let before: Buffer;

  beforeAll(async () => {
    good = file("good.ferry");
    await exportPackage({ from: SHOP, output: good, app: { name: "shop", version: "1.2.0" } });
    const db = file("target.db");
    target = `sqlite:${db}`;
    await copy({ from: SHOP, to: target, collections: ["products"] });
    before = readFileSync(db);
  });

  async function refused(input: string, extra: Partial<Parameters<typeof importPackage>[0]> = {}): Promise<Error> {
    const err = await importPackage({ input, to: target, conflict: "overwrite", ...extra }).catch((e: unknown) => e);
    expect(readFileSync(target.slice("sqlite:".length)).equals(before)).toBe(true);
    expect(err).toBeInstanceOf(Error);
    return err as Error;
  }

  it("a flipped bit in a data entry", async () => {
    const bad = file("flip.ferry");
    const bytes = readFileSync(good);
    // The first entry's data starts after its 512-byte header: flip a bit in the middle of it.
    bytes[512 + 100] = (bytes[512 + 100] as number) ^ 0x10;
    writeFileSync(bad, bytes);
    const err = await refused(bad);
    expect(isFerryError(err, "E_CHECKSUM")).toBe(true);
    expect(err.message).toMatch(/data\/customers\/000001\.ndjson\.zst: (its SHA-256 differs|does not decompress)/);
  });

  it("a truncated file", async () => {
    const bad = file("cut.ferry");
    const bytes = readFileSync(good);
    writeFileSync(bad, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const err = await refused(bad);
    expect(isFerryError(err, "E_CHECKSUM")).toBe(true);
    expect(err.message).toMatch(/truncated/);
  });

  it("an edited manifest (a count changed, the digest left)", async () => {
    const bad = file("manifest.ferry");
    await editManifest(
      good,
      bad,
      (m) => {
        (m.collections[0] as Manifest["collections"][number]).records = 49;
      },
      false,
    );
    const err = await refused(bad);
    expect(isFerryError(err, "E_CHECKSUM")).toBe(true);
    expect(err.message).toMatch(/the package digest does not match its content/);
    expect(err.message).toMatch(/collection customers: holds 50 records, the manifest says 49/);
  });

  it("a record edited with its checksums fixed up but not the digest", async () => {
    const bad = file("record.ferry");
    let newChunk = "";
    await rewrite(good, file("tmp.ferry"), (name, body) => {
      if (name === "data/customers/000001.ndjson.zst")
        newChunk = zstdDecompress(body).toString().replace('"id":1,', '"id":1001,');
      return body;
    });
    const data = Buffer.from(newChunk);
    const sha = createHash("sha256").update(data).digest("hex");
    const stored = zstdCompress(data);
    await rewrite(good, bad, (name, body) => {
      if (name === "data/customers/000001.ndjson.zst") return stored;
      if (name === "manifest.json") {
        const m = JSON.parse(body.toString()) as Manifest;
        const c = m.collections[0] as Manifest["collections"][number];
        const chunk = c.chunks[0] as Manifest["collections"][number]["chunks"][number];
        chunk.sha256 = sha;
        chunk.stored = createHash("sha256").update(stored).digest("hex");
        c.bytes += data.length - chunk.bytes;
        chunk.bytes = data.length;
        c.sha256 = sha;
        return Buffer.from(JSON.stringify(m));
      }
      return body;
    });
    const err = await refused(bad);
    expect(isFerryError(err, "E_CHECKSUM")).toBe(true);
    expect(err.message).toMatch(/failed a check;[\s\S]*manifest\.json: the package digest does not match its content/);
  });

  it("a package of another app, or another major version of this one", async () => {
    const other = await refused(good, { app: { name: "blog" } });
    expect(isFerryError(other, "E_VALIDATION")).toBe(true);
    expect(other.message).toMatch(/exported from app shop, and this profile is app blog/);
    const major = await refused(good, { app: { name: "shop", version: "2.0.0" } });
    expect(major.message).toMatch(/shop 1\.2\.0, and this profile is shop 2\.0\.0: another major version/);
    // The same major version imports.
    const ok = await importPackage({
      input: good,
      to: `sqlite:${file("ok.db")}`,
      app: { name: "shop", version: "1.9.1" },
    });
    expect(ok.status).toBe("done");
  });

  it("a package from a newer format version", async () => {
    const bad = file("newer.ferry");
    await editManifest(
      good,
      bad,
      (m) => {
        m.version = PACKAGE_VERSION + 1;
      },
      true,
    );
    const err = await refused(bad);
    expect(isFerryError(err, "E_CHECKSUM")).toBe(true);
    expect(err.message).toContain(
      `made by a newer Ferry (package format version ${PACKAGE_VERSION + 1}; this Ferry reads up to ${PACKAGE_VERSION})`,
    );
  });

  it("a wrong passphrase, and an encrypted package without one", async () => {
    const enc = file("enc.ferry");
    await exportPackage({ from: SHOP, output: enc, encryption: { passphrase: "right horse battery" } });
    const wrong = await refused(enc, { keys: { passphrase: "wrong" } });
    expect(isFerryError(wrong, "E_DECRYPT")).toBe(true);
    expect(wrong.message).toMatch(/the passphrase does not open it/);
    const none = await refused(enc);
    expect(isFerryError(none, "E_DECRYPT")).toBe(true);
    const r = await validatePackage({ input: enc, keys: { passphrase: "right horse battery" } });
    expect(r.manifest.collections).toHaveLength(4);
  });
});

describe("secrets and never-exported collections", () => {
  it("are left out unless asked for, and the manifest says what was left out", async () => {
    const specs = {
      customers: { secret: ["email"] },
      orders: { export: false },
    };
    const out = file("secret.ferry");
    const e = await exportPackage({ from: SHOP, output: out, collectionSpecs: specs });
    expect(e.manifest.collections.map((c) => c.name)).not.toContain("orders");
    expect(e.manifest.omitted).toEqual({ fields: { customers: ["email"] }, collections: ["orders"] });
    const customers = e.manifest.collections.find((c) => c.name === "customers");
    expect(customers?.schema.fields.map((f) => f.name)).not.toContain("email");
    const all = (await readAll(SHOP)).customers ?? [];
    const text = execFileSync("tar", ["-xOf", out, "data/customers/000001.ndjson.zst"]);
    const plain = zstdDecompress(text).toString();
    for (const c of all) expect(plain).not.toContain(String(c.email));

    const full = file("full.ferry");
    const f = await exportPackage({ from: SHOP, output: full, collectionSpecs: specs, includeSecrets: true });
    expect(f.manifest.omitted).toEqual({ fields: {}, collections: [] });
    expect(f.manifest.collections.map((c) => c.name)).toContain("orders");
  });
});

describe("packages and runs that change underneath", () => {
  it("a Redis hash's secret fields are left out of the package, its other fields kept", async () => {
    const from = await redis.fresh();
    const c = client(from);
    try {
      await c.hset("apikey:1", { name: "ci", apiKey: "cr_live_SECRET_1", limit: "10" });
      await c.hset("apikey:2", { name: "bot", apiKey: "cr_live_SECRET_2" });
    } finally {
      c.disconnect();
    }
    const out = file("redis-secret.ferry");
    const e = await exportPackage({
      from,
      output: out,
      collections: ["apikeys"],
      collectionSpecs: { apikeys: { match: ["apikey:*"], secret: ["apiKey"] } },
    });
    expect(e.manifest.omitted.fields).toEqual({ apikeys: ["apiKey"] });
    const chunk = e.manifest.collections[0]?.chunks[0]?.entry as string;
    const plain = zstdDecompress(execFileSync("tar", ["-xOf", out, chunk])).toString();
    expect(plain).not.toContain("SECRET");
    expect(plain).toContain('"name":"ci"');
    const to = await redis.fresh();
    await importPackage({ input: out, to });
    const t = client(to);
    try {
      expect(await t.hgetall("apikey:1")).toEqual({ name: "ci", limit: "10" });
    } finally {
      t.disconnect();
    }
  });

  it("an interrupted import resumes only from the same package", async () => {
    const out = file("resume.ferry");
    await exportPackage({ from: SHOP, output: out });
    const to = `sqlite:${file("resume.db")}`;
    const controller = new AbortController();
    const stopped = await importPackage({
      input: out,
      to,
      batchSize: 20,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress") controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(isFerryError(stopped, "E_INTERRUPTED")).toBe(true);
    // Another package at the same path: its bookmarks would mean other records.
    await exportPackage({ from: SHOP, output: out, description: "another export" });
    const other = await importPackage({ input: out, to, resume: true }).catch((e: unknown) => e);
    expect(isFerryError(other, "E_DIRTY")).toBe(true);
    expect((other as Error).message).toMatch(/is not the data it started on/);
    // Started over (the records the first run wrote are skipped): every record once.
    const r = await importPackage({ input: out, to, force: true, conflict: "skip" });
    expect(r.status).toBe("done");
    expect(await canonical(to)).toEqual(await canonical(SHOP));
  });

  it("a read stops with an error when the package lost entries after it was checked", async () => {
    const { PackageReader } = await import("../src/package/reader.js");
    const path = file("shrinks.ferry");
    await exportPackage({ from: SHOP, output: path });
    const reader = await PackageReader.open(path);
    const cut = file("cut.ferry");
    await rewrite(path, cut, (name, body) =>
      name.startsWith("data/order_items/") || name === "manifest.json" ? undefined : body,
    );
    copyFile(cut, path);
    const [items] = (await reader.discover()).filter((c) => c.name === "order_items");
    const err = await (async () => {
      for await (const _ of reader.read(items as NonNullable<typeof items>, { batchSize: 100 })) {
        // reading
      }
    })().catch((e: unknown) => e);
    expect(isFerryError(err, "E_CHECKSUM")).toBe(true);
    expect((err as Error).message).toMatch(/ends before data\/order_items\/000001/);
  });
});

describe("an encrypted package's file key", () => {
  it("is unwrapped once and opens every later pass alone; another file's key is refused", async () => {
    const a = file("a.ferry");
    const b = file("b.ferry");
    for (const output of [a, b]) {
      await exportPackage({ from: SHOP, output, collections: ["products"], encryption: { passphrase: "p1" } });
    }
    const { fileKey } = await unlock(a, { passphrase: "p1" });
    expect(fileKey).toBeInstanceOf(Uint8Array);
    const reader = await PackageReader.open(a, { fileKey: fileKey as Uint8Array });
    try {
      const [products] = await reader.discover();
      let n = 0;
      for await (const batch of reader.read(products as NonNullable<typeof products>, { batchSize: 7 })) {
        n += batch.records.length;
      }
      expect(n).toBe(20);
    } finally {
      await reader.close();
    }
    // Each file has its own key: b's header does not verify with a's.
    const err = await PackageReader.open(b, { fileKey: fileKey as Uint8Array }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_CHECKSUM")).toBe(true);
    expect((err as Error).message).toMatch(/age header no longer verifies/);
    // Nor does a file replaced under a reader that opened it.
    const open = await PackageReader.open(a, { passphrase: "p1" });
    try {
      copyFile(b, a);
      const [products] = await open.discover();
      const swapped = await (async () => {
        for await (const _ of open.read(products as NonNullable<typeof products>, { batchSize: 7 })) {
          // reading
        }
      })().catch((e: unknown) => e);
      expect(isFerryError(swapped, "E_CHECKSUM")).toBe(true);
      expect((swapped as Error).message).toMatch(/replaced since it was opened/);
    } finally {
      await open.close();
    }
  });
});

describe("encryption interoperates with the reference age", () => {
  it("age -d opens a package encrypted for a recipient, and the decrypted file imports", async () => {
    const key = file("key.txt");
    execFileSync("age-keygen", ["-o", key], { stdio: "ignore" });
    const recipient = execFileSync("age-keygen", ["-y", key]).toString().trim();
    const enc = file("age.ferry");
    await exportPackage({ from: SHOP, output: enc, encryption: { recipients: [recipient] } });
    expect(readFileSync(enc).subarray(0, 21).toString()).toBe("age-encryption.org/v1");
    const plain = file("plain.ferry");
    execFileSync("age", ["-d", "-i", key, "-o", plain, enc]);
    const i = await inspectPackage(plain);
    expect(i.encrypted).toBe(false);
    const to = `sqlite:${file("from-age.db")}`;
    await importPackage({ input: plain, to });
    expect(await canonical(to)).toEqual(await canonical(SHOP));
    // Ferry opens the encrypted one with the identity file too.
    const to2 = `sqlite:${file("from-id.db")}`;
    await importPackage({ input: enc, to: to2, keys: { identityFiles: [key] } });
    expect(await canonical(to2)).toEqual(await canonical(SHOP));
  });
});
