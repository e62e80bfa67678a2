/**
 * The Redis connector (`redis://`, `rediss://`), over ioredis (RESP2, Buffer replies so keys
 * and values that are not UTF-8 survive).
 *
 * Collections:
 * - **key-space collections** hold an application's own keys: by default one per key prefix
 *   (the text before the first `:`; a key without `:` is its own collection), or a Redis glob
 *   named in `--collections` (`apikey:*`; `!pattern` entries exclude keys from every pattern).
 *   A record is `{ key, type, ttl, value }` for every type (see `redis-values.ts`); `ttl` is
 *   the absolute expiry time, so a key keeps its expiry moment however long a copy takes.
 * - **table collections** are what a copy from another engine creates: a hash per record at
 *   `<collection>:<primary key>`, and the collection's schema in the hash `ferry:schemas`
 *   so values read back with their types.
 *
 * Reads SCAN (never KEYS), once: discover's SCAN is kept and collections read their keys from
 * it. A bookmark is a SCAN cursor, how many matching keys from it are done, and a check of
 * them (see `#keyBatches`). Aggregates are read in pages (HSCAN, SSCAN, ZRANGE, LRANGE, XRANGE).
 * Writes of a batch run in one MULTI/EXEC with the journal checkpoint (`ferry:journal` hash).
 *
 * A run's undo log (see `Checkpoint.undo`) rides the same MULTI/EXEC: the hash
 * `ferry:undo:<runId>` (field: the row's `seq`, zero-padded, → its entry as JSON) and the
 * sorted set `ferry:undo-seq:<runId>` (the same fields scored by `seq`), which orders and
 * pages the rows. Like every `ferry:` key they are never listed as data nor copied.
 */
import { isUtf8 } from "node:buffer";
import { randomUUID } from "node:crypto";
import type { Redis, RedisOptions } from "ioredis";
import type {
  BulkTransfer,
  Checkpoint,
  CollectionSpec,
  Connector,
  ConnectorFactory,
  ConnectorOptions,
  JournalStore,
  PrepareResult,
  ReadBatch,
  ReadOptions,
  UndoRow,
  WriteFailure,
  WriteOp,
  WriteResult,
} from "../../core/connector.js";
import { FerryError, isFerryError } from "../../core/errors.js";
import type { Bookmark } from "../../core/messages.js";
import type { CollectionSchema } from "../../core/schema.js";
import { redactUrl } from "../../core/url.js";
import { type JsonValue, keyString, type Row, type Value } from "../../core/values.js";
import { emptyShape, type HashShape, isRowsShape, notRows, recordOf, rowOf, rowsSchema } from "./redis-rows.js";
import { parseRedisUrl, type RedisLocation } from "./redis-url.js";
import {
  element,
  elementBytes,
  fieldBytes,
  fieldValue,
  globRegExp,
  isKeyspaceShape,
  keyspaceSchema,
  REDIS_TYPES,
  type RedisType,
  RedisValueError,
  scoreJson,
  scoreText,
  tableKey,
  textOrBytes,
  valueBytes,
} from "./redis-values.js";
import { commandHead, type Reply, RespConnection, RespError, RespWriter } from "./resp.js";

/** Keys Ferry keeps for itself; never listed as data. */
const INTERNAL = "ferry:";
const JOURNAL_KEY = "ferry:journal";
/** Schemas of table collections: a hash, collection name → schema JSON. */
const SCHEMAS_KEY = "ferry:schemas";
/** A run's undo rows: `ferry:undo:<runId>`, a hash, {@link undoField} → the row's entry (JSON). */
const UNDO_ROWS_PREFIX = "ferry:undo:";
/** A run's undo rows in order: `ferry:undo-seq:<runId>`, a sorted set of the hash's fields scored by `seq`. */
const UNDO_SEQ_PREFIX = "ferry:undo-seq:";
/** Undo rows listed per round when the log is read back. */
const UNDO_PAGE_ROWS = 100;
/** Bytes of undo entries fetched per round (at least one row, however large). */
const UNDO_PAGE_BYTES = 8 * 1024 * 1024;
/** Members per page when an aggregate is read or written in parts. */
const PAGE = 1000;
/** Keys per DUMP/RESTORE transaction (and checkpoint). */
const BULK_KEYS = 2000;
/** Keys above this size (MEMORY USAGE) skip DUMP/RESTORE and move in pages with typed commands. */
const BULK_VALUE_BYTES = 8 * 1024 * 1024;
/** Keys per pipelined round of MEMORY USAGE in {@link RedisConnector.size}. */
const SIZE_KEYS = 1000;
/** SCAN COUNT of discovery's pass over every key name. */
const DISCOVER_SCAN_COUNT = 10_000;
/** The largest SCAN COUNT (buckets visited per call, when a pattern matches few keys). */
const MAX_SCAN_COUNT = 100_000;
/** DUMP batches requested at the source before the first of them is taken. */
const READ_AHEAD = 3;
/**
 * Tunables, exported for tests. `scanCacheBytes`: how much of discover's SCAN (key names)
 * is kept for reading the collections, so a copy passes over the key space once, not once
 * more per collection (about 28 MB per million keys of ~20 bytes). `discoverScanCount`:
 * discover's SCAN COUNT.
 */
export const tuning = { scanCacheBytes: 64 * 1024 * 1024, discoverScanCount: DISCOVER_SCAN_COUNT };
/** Members (or string bytes / 100) per page when a large key is staged. */
const STAGE_PAGE = 10_000;
/** A staged key left by a stopped run expires after this long. */
const STAGE_EXPIRY_MS = 24 * 3600 * 1000;
const EMPTY = Buffer.alloc(0);

// Commands of the bulk path's hot loops, encoded once.
const MEMORY_USAGE = commandHead(3, "MEMORY", "USAGE");
const PEXPIRETIME = commandHead(2, "PEXPIRETIME");
const PTTL = commandHead(2, "PTTL");
const DUMP = commandHead(2, "DUMP");
const RESTORE_4 = commandHead(4, "RESTORE");
const RESTORE_5 = commandHead(5, "RESTORE");
const ZERO = Buffer.from("0");
const ABSTTL = Buffer.from("ABSTTL");

/** One SCAN reply as {@link RedisConnector.discover} saw it: key `i` is `keys[ends[i-1] ?? 0, ends[i])`. */
interface ScanStep {
  cursor: string;
  keys: Buffer;
  ends: Uint32Array;
}

/** Discover's SCAN replies, from cursor 0 up to `next` ("0": the whole key space). */
interface ScanCache {
  steps: ScanStep[];
  index: Map<string, number>;
  next: string;
}

/** One batch of the bulk path as read at the source. */
interface DumpBatch {
  items: { key: Buffer; expiry: number; payload: Buffer }[];
  /** Keys too large to DUMP: staged in pages. */
  large: { key: Buffer; expiry: number }[];
  bookmark: Bookmark;
}

/**
 * Opens `redis://` and `rediss://` instances.
 *
 * @example
 * const source = await redisFactory.open("redis://:secret@cache:6379/0", {});
 */
export const redisFactory: ConnectorFactory = {
  schemes: ["redis", "rediss"],
  usage: "redis://[USER:PASSWORD@]HOST:PORT/DB (rediss:// for TLS)",
  engine: "redis",
  async open(url: string, options: ConnectorOptions): Promise<Connector> {
    return RedisConnector.open(url, options);
  },
};

/**
 * A key-space collection: the SCAN pattern, the patterns excluded, and for a prefix
 * collection its prefix (it holds the key `user` itself and `user:…`, not `username:…`).
 */
interface Pattern {
  /** SCAN's MATCH, as bytes (keys need not be UTF-8). */
  match: Buffer;
  exclude: RegExp[];
  /** Latin1 text of the prefix's bytes. */
  prefix?: string;
  /** A collection of several globs: `match` is `*` and a key must match one of these. */
  include?: RegExp[];
  /** Keys of the profile's never-exported collections: matching one `match` and no `except`. */
  hidden?: { match: RegExp[]; except: RegExp[] }[];
}

/** One Redis database as a Ferry instance (see the module comment). */
export class RedisConnector implements Connector, BulkTransfer {
  readonly engine = "redis";
  /**
   * Several writes may run at once: each is one MULTI/EXEC block (or one bulk batch), sent
   * whole on the shared connection, so blocks never interleave.
   */
  readonly concurrentWrites = true;
  readonly displayUrl: string;
  readonly identity: string;
  readonly #client: Redis;
  readonly #location: RedisLocation;
  /** The server's `redis_version`. */
  #version = "?";
  /** PEXPIRETIME exists (Redis 7): expiry read as absolute time in one step. */
  #absoluteTtl = false;
  readonly #tables = new Map<string, CollectionSchema>();
  readonly #patterns = new Map<string, Pattern>();
  /** Natural-key lookups of table collections: key string → record, built by one scan. */
  readonly #indexes = new Map<string, Map<string, Row>>();
  /** The bulk path's own connection (see resp.ts), opened on first use. */
  #resp: Promise<RespConnection> | undefined;
  /** The bulk path's read-ahead per key range (collection and `upTo`): where its next batch starts, and the batches. */
  readonly #ahead = new Map<string, { at: string; batches: AsyncGenerator<DumpBatch> }>();
  /** Keys per prefix collection as {@link discover} counted them (cleared by writes). */
  readonly #counted = new Map<string, number>();
  /** {@link #counted} holds what discover counted (no write since). */
  #discovered = false;
  /** What one pass found about the hashes of a key set (`?hashes=rows`), by pattern (cleared by writes). */
  readonly #shapes = new Map<string, HashShape>();
  /** Hash-rows collections (`?hashes=rows`), by name: their table schema. */
  readonly #rows = new Map<string, CollectionSchema>();
  /** Discover's SCAN, kept for reading (cleared by writes). */
  #scanned: ScanCache | undefined;
  /** Whether the database held a key with an expiry when the bulk path last looked (INFO keyspace). */
  #expiring = true;
  /** Why bulk batches go with typed commands (no DUMP/RESTORE), once that is known. */
  #typedOnly: string | undefined;
  /** Opened with `write: true` (needed to forget a run). */
  readonly #writable: boolean;
  #closed = false;

  private constructor(url: string, location: RedisLocation, client: Redis, writable: boolean) {
    this.displayUrl = redactUrl(url);
    this.#location = location;
    this.#writable = writable;
    this.identity = `redis://${location.host}:${location.port}/${location.db}`;
    this.#client = client;
  }

  /**
   * Connects, selects the database and checks the server.
   *
   * @throws FerryError `E_CONNECTION` (unreachable, wrong password), `E_CONFIG` (no such
   * database), `E_UNSUPPORTED` (Redis Cluster).
   */
  static async open(url: string, connectorOptions: ConnectorOptions): Promise<RedisConnector> {
    const location = parseRedisUrl(url);
    const where = redactUrl(url);
    const options: RedisOptions = {
      host: location.host,
      port: location.port,
      protocol: 2,
      lazyConnect: true,
      connectTimeout: 10_000,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: true,
      retryStrategy: () => null,
      ...(location.username === undefined ? {} : { username: location.username }),
      ...(location.password === undefined ? {} : { password: location.password }),
      ...(location.tls ? { tls: { servername: location.host } } : {}),
    };
    // The driver is loaded with the first Redis connection, not on every command.
    const { Redis } = await import("ioredis");
    const client = new Redis(options);
    // Errors surface on the commands that meet them; a dropped idle connection must not crash.
    // The first one is kept: a refused AUTH closes the connection, and connect() then only
    // says "Connection is closed".
    let first: unknown;
    client.on("error", (err: unknown) => {
      first ??= err;
    });
    try {
      await client.connect();
      // Selected here, not by ioredis at connect, so a database that does not exist is an error.
      if (location.db !== 0) await client.select(location.db);
    } catch (err) {
      client.disconnect();
      throw connectionError(first ?? err, where, location);
    }
    const c = new RedisConnector(url, location, client, connectorOptions.write === true);
    try {
      const info = await client.info();
      if (/^cluster_enabled:1/m.test(info)) {
        throw new FerryError(
          "E_UNSUPPORTED",
          `${where} is a Redis Cluster node: Ferry copies standalone Redis (and replicas) only; copy each shard's primary separately, or use a standalone target`,
        );
      }
      const version = /^redis_version:(\d+)/m.exec(info)?.[1];
      c.#absoluteTtl = Number(version ?? 0) >= 7;
      c.#version = /^redis_version:(\S+)/m.exec(info)?.[1] ?? "?";
    } catch (err) {
      client.disconnect();
      if (isFerryError(err)) throw err;
      throw connectionError(err, where, location);
    }
    return c;
  }

  async check(): Promise<void> {
    await this.#call(() => this.#client.ping(), "ping");
  }

  async version(): Promise<string> {
    return `Redis ${this.#version}`;
  }

  // -------------------------------------------------------------------------------------
  // Discovery

  /**
   * Table collections (those with a schema in `ferry:schemas`) and one key-space collection per
   * key prefix of every other key (a full SCAN of the key names). The SCAN's replies are kept
   * (up to {@link tuning}`.scanCacheBytes`) and reading the collections walks them instead of
   * scanning again: keys created after discovery may be left out, as SCAN allows for keys
   * created during an iteration; keys gone since are skipped when read.
   */
  async discover(): Promise<CollectionSchema[]> {
    await this.#loadTables();
    // prefix (latin1 text of the key's bytes) → whether some key continues it with `:`, and
    // how many keys it has (so `count` need not scan again).
    const prefixes = new Map<string, { continued: boolean; keys: number; table: boolean }>();
    const conn = await this.#respConnection();
    const steps: ScanStep[] = [];
    let kept = 0;
    let stopped: string | undefined; // the cursor where keeping steps stopped
    let cursor = "0";
    do {
      const [next, keys] = await this.#scanStep(conn, cursor, "*", tuning.discoverScanCount);
      if (stopped === undefined) {
        const step = packStep(cursor, keys);
        kept += step.keys.length + step.ends.byteLength + 100;
        if (kept <= tuning.scanCacheBytes) steps.push(step);
        else stopped = cursor;
      }
      for (const k of keys) {
        if (isInternal(k)) continue;
        const colon = k.indexOf(58); // ':'
        const prefix = k.toString("latin1", 0, colon < 0 ? k.length : colon);
        let p = prefixes.get(prefix);
        if (p === undefined) {
          p = { continued: false, keys: 0, table: this.#tables.has(Buffer.from(prefix, "latin1").toString("utf8")) };
          prefixes.set(prefix, p);
        }
        p.continued ||= colon >= 0;
        p.keys++;
      }
      cursor = next;
    } while (cursor !== "0");
    this.#scanned = { steps, index: new Map(steps.map((st, i) => [st.cursor, i])), next: stopped ?? "0" };
    for (const [prefix, p] of prefixes) if (p.table) prefixes.delete(prefix);
    const out: CollectionSchema[] = [...this.#tables.values()];
    this.#counted.clear();
    this.#discovered = true;
    for (const [prefix, { continued, keys }] of [...prefixes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const name = Buffer.from(prefix, "latin1").toString("utf8");
      this.#counted.set(name, keys);
      // `user:*` holds the user keys; a key with no `:` (and no keys under it) is its own collection.
      const exact = escapeGlob(prefix);
      if (continued) this.#patterns.set(name, { match: Buffer.from(`${exact}*`, "latin1"), exclude: [], prefix });
      else this.#patterns.set(name, { match: Buffer.from(exact, "latin1"), exclude: [] });
      out.push(await this.#shapeOf(name, false));
    }
    return out;
  }

  /**
   * The collections `names` selects (after {@link discover}): discovered names, Redis globs
   * (`apikey:*`, a key-space collection named by the glob), `name=glob` (the same, named
   * `name`: a table's name in another engine), and `!pattern` entries that exclude matching
   * keys from every selected key-space collection.
   *
   * @throws FerryError `E_NOT_FOUND` for a name that is neither discovered nor a glob.
   */
  async resolve(
    names: string[],
    specs?: Record<string, CollectionSpec>,
    options: { rest?: string[] } = {},
  ): Promise<CollectionSchema[]> {
    const exclude = names.filter((n) => n.startsWith("!")).map((n) => globRegExp(latin1(n.slice(1))));
    const regexps = (globs: string[] | undefined): RegExp[] => (globs ?? []).map((g) => globRegExp(latin1(g)));
    // Keys the profile's collections hold: the never-exported ones stay out of every collection
    // it does not declare, and the `rest` collections leave out all of them.
    const claims = (keep: (sp: CollectionSpec) => boolean) =>
      Object.values(specs ?? {})
        .filter((sp) => sp.match !== undefined && keep(sp))
        .map((sp) => ({ match: regexps(sp.match), except: regexps(sp.exclude) }));
    const never = claims((sp) => sp.export === false);
    const claimed = claims(() => true);
    const out: CollectionSchema[] = [];
    for (const entry of names) {
      if (entry.startsWith("!")) continue;
      // A profile collection: its globs, less its own exclusions and the selection's.
      const spec = specs?.[entry];
      if (spec?.match !== undefined && spec.match.length > 0) {
        const own = [...regexps(spec.exclude), ...exclude];
        const [first] = spec.match;
        this.#patterns.set(
          entry,
          spec.match.length === 1
            ? { match: Buffer.from(first as string, "utf8"), exclude: own }
            : { match: Buffer.from("*"), exclude: own, include: regexps(spec.match) },
        );
        this.#counted.delete(entry);
        out.push(await this.#shapeOf(entry, true));
        continue;
      }
      // `name=glob` names the collection (a table's name elsewhere); else the entry is both. A
      // known collection is itself even with a `=`; a glob with one is written `name=glob`.
      const plain = this.#patterns.has(entry) || this.#tables.has(entry);
      const named = plain ? null : /^([A-Za-z0-9_.-]+)=(.+)$/s.exec(entry);
      const n = named ? (named[1] as string) : entry;
      const glob = named ? (named[2] as string) : entry;
      const table = named ? undefined : this.#tables.get(glob);
      if (table) {
        out.push(table);
        continue;
      }
      const known = this.#patterns.get(glob);
      if (known === undefined && !/[*?[]/.test(glob)) {
        const all = [...this.#tables.keys(), ...this.#patterns.keys()].join(", ") || "none";
        throw new FerryError(
          "E_NOT_FOUND",
          `no collection ${glob} at ${this.displayUrl}: collections there are ${all} (or name keys with a glob, e.g. '${glob}:*')`,
          { details: { missing: [glob] } },
        );
      }
      if (named && this.#tables.has(n)) {
        throw new FerryError(
          "E_CONFIG",
          `${entry}: ${n} is a table collection at ${this.displayUrl}: name the keys otherwise`,
        );
      }
      // Discover counted the prefix `n`, not what `name=glob` now holds.
      if (named) this.#counted.delete(n);
      const base = known ?? { match: Buffer.from(glob, "utf8"), exclude: [] };
      const hidden = options.rest?.includes(entry) ? claimed : never;
      this.#patterns.set(n, {
        ...base,
        exclude: [...base.exclude, ...exclude],
        ...(hidden.length > 0 ? { hidden } : {}),
      });
      if (hidden.length > 0) this.#counted.delete(n);
      out.push(await this.#shapeOf(n, !options.rest?.includes(entry)));
    }
    return out;
  }

  /**
   * A key-space collection's schema: with `?hashes=rows`, the table of its hashes when every
   * key is a hash (see `redis-rows.ts`), else the key-space shape.
   *
   * @throws FerryError `E_CONFIG` when the user named the collection (`named`) with
   * `?hashes=rows` and it cannot be rows: which key is not a hash, and how to exclude it.
   */
  async #shapeOf(name: string, named: boolean): Promise<CollectionSchema> {
    this.#rows.delete(name);
    if (!this.#location.hashRows) return keyspaceSchema(name);
    // One pass per key set: resolve reuses discover's for a collection it selects unchanged.
    const p = this.#patternOf(keyspaceSchema(name));
    const id = JSON.stringify([
      p.match.toString("hex"),
      p.prefix ?? "",
      p.exclude.map((e) => e.source),
      (p.include ?? []).map((e) => e.source),
      (p.hidden ?? []).map((h) => [h.match.map((e) => e.source), h.except.map((e) => e.source)]),
    ]);
    let shape = this.#shapes.get(id);
    if (shape === undefined) {
      shape = await this.#hashShape(keyspaceSchema(name));
      this.#shapes.set(id, shape);
    }
    const why = notRows(shape);
    if (why === undefined) {
      const schema = rowsSchema(name, shape);
      this.#rows.set(name, schema);
      return schema;
    }
    // An empty collection (a target's, before the copy) has no shape to refuse.
    if (named && shape.hashes + (shape.other ? 1 : 0) > 0) {
      throw new FerryError(
        "E_CONFIG",
        `collection ${name} at ${this.displayUrl} cannot be read as rows (?hashes=rows): ${why}; exclude such keys with '!pattern' in --collections, or drop ?hashes=rows to copy the keys as they are`,
      );
    }
    return keyspaceSchema(name);
  }

  /** One pass over the collection's keys: their types, and the field names of the hashes. */
  async #hashShape(collection: CollectionSchema): Promise<HashShape> {
    const shape = emptyShape();
    const conn = await this.#respConnection();
    const note = (pairs: Reply[]): void => {
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        const field = pairs[i] as Buffer;
        const name = field.toString("utf8");
        if (!isUtf8(field) || name === "key" || name === "ttl") shape.badField ??= show(field);
        shape.fields.set(name, (shape.fields.get(name) ?? false) || !isUtf8(pairs[i + 1] as Buffer));
      }
    };
    for await (const { keys } of this.#keyBatches(collection, undefined, 500)) {
      const w = new RespWriter();
      for (const k of keys) {
        w.command(["TYPE", k]);
        w.command(["HLEN", k]);
      }
      const r = await this.#respSend(conn, w, "read key types");
      const small: Buffer[] = [];
      const big: Buffer[] = [];
      keys.forEach((k, i) => {
        const type = String(r[2 * i]);
        if (type === "none") return; // gone meanwhile
        if (type !== "hash") {
          shape.other ??= { key: show(k), type };
          return;
        }
        shape.hashes++;
        if (!isUtf8(k)) shape.binaryKey = true;
        ((r[2 * i + 1] as number) > PAGE ? big : small).push(k);
      });
      if (shape.other) return shape;
      for (const k of small) w.command(["HGETALL", k]);
      for (const reply of await this.#respSend(conn, w, "read hash fields")) if (Array.isArray(reply)) note(reply);
      for (const k of big) {
        for await (const page of pages(conn, "hash", k, PAGE)) note(page);
      }
    }
    return shape;
  }

  /**
   * Keys of the collection: from {@link discover}'s scan when it counted them and nothing was
   * written or excluded since, else by a SCAN of the collection's pattern.
   */
  async count(collection: CollectionSchema): Promise<number | undefined> {
    let n = 0;
    const pattern = this.#patternOf(collection);
    if (pattern.exclude.length === 0 && !pattern.include && !pattern.hidden && this.#discovered) {
      const counted = this.#counted.get(collection.name);
      if (counted !== undefined) return counted;
      // `*`: every key-space key discover counted.
      if (pattern.match.toString("latin1") === "*" && this.#tables.size === 0) {
        return [...this.#counted.values()].reduce((a, b) => a + b, 0);
      }
    }
    const from = this.#cached(pattern, "0");
    if (from !== undefined) {
      for (const { key } of from.keys) if (!isInternal(key) && !excluded(key, pattern)) n++;
      if (from.next === "0") return n;
    }
    for await (const batch of this.#scan(pattern.match, from?.next ?? "0")) {
      n += batch.keys.filter((k) => !excluded(k, pattern)).length;
    }
    return n;
  }

  /**
   * The memory the collection's keys take at the server: the sum of `MEMORY USAGE` over its
   * keys (as {@link read} lists them), pipelined {@link SIZE_KEYS} keys at a time. Redis
   * samples the elements of large aggregates, so a large hash or set's figure is an
   * estimate. Undefined when the user may not run MEMORY USAGE (ACL).
   */
  async size(collection: CollectionSchema): Promise<number | undefined> {
    const conn = await this.#respConnection();
    let bytes = 0;
    for await (const { keys } of this.#keyBatches(collection, undefined, SIZE_KEYS)) {
      for (const reply of await this.#memoryUsage(conn, keys)) {
        if (reply instanceof RespError) {
          if (/NOPERM|unknown command|not allowed|disabled/i.test(reply.message)) return undefined;
          throw connectionError(new Error(reply.message), this.displayUrl, this.#location, "read key sizes");
        }
        if (typeof reply === "number") bytes += reply; // null: gone since the SCAN
      }
    }
    return bytes;
  }

  /**
   * Key ranges of similar size for parallel reads, cut where discover's kept SCAN steps start
   * (`{ cursor, skip: 0 }`), so each range reads whole steps. None when the collection's keys
   * are not all in the kept SCAN, or it is a table collection. A range resumed by a later run
   * without the kept SCAN scans with discover's COUNT, so its steps end at the same cursors;
   * if the server resized its table in between, a step may run past the range's end, and
   * those keys are read by both ranges (written twice, never lost).
   */
  async split(collection: CollectionSchema, parts: number): Promise<Bookmark[]> {
    if (this.#tables.has(collection.name) || parts < 2) return [];
    const cached = this.#cached(this.#patternOf(collection), "0");
    if (cached === undefined || cached.next !== "0") return [];
    const steps: { cursor: string; keys: number }[] = [];
    for (const { cursor } of cached.keys) {
      const last = steps[steps.length - 1];
      if (last?.cursor === cursor) last.keys++;
      else steps.push({ cursor, keys: 1 });
    }
    const total = steps.reduce((n, st) => n + st.keys, 0);
    const out: Bookmark[] = [];
    let done = 0;
    for (let i = 0; i < steps.length - 1 && out.length < parts - 1; i++) {
      done += (steps[i] as (typeof steps)[number]).keys;
      if (done >= (total * (out.length + 1)) / parts)
        out.push({ cursor: (steps[i + 1] as (typeof steps)[number]).cursor, skip: 0 });
    }
    return out;
  }

  // -------------------------------------------------------------------------------------
  // Reading

  /**
   * Records batch by batch in SCAN order, `batchSize` per batch. The bookmark after a batch
   * is `{ cursor, skip, check }`: the SCAN cursor of the reply its last key came from, how many
   * matching keys of that reply are done, and a check of them; a resumed read repeats that
   * SCAN call and passes over them (see `#keyBatches` for when it reads them again).
   */
  async *read(collection: CollectionSchema, options: ReadOptions): AsyncGenerator<ReadBatch> {
    const table = this.#tables.get(collection.name);
    const rows = this.#rows.get(collection.name);
    const { after, upTo, batchSize } = options;
    for await (const { keys, bookmark } of this.#keyBatches(collection, after, batchSize, upTo)) {
      let records = table ? await this.#readTableRows(table, keys) : await this.#readKeys(keys);
      if (rows) records = records.map((r) => this.#rowOf(r, rows));
      yield { records, bookmark };
    }
  }

  /** A key read as a row of a hash-rows collection (see `redis-rows.ts`). */
  #rowOf(record: Row, rows: CollectionSchema): Row {
    try {
      return rowOf(record, rows);
    } catch (err) {
      if (!(err instanceof RedisValueError)) throw err;
      throw new FerryError(
        "E_VALIDATION",
        `key ${show(record.key as Value)} of collection ${rows.name} at ${this.displayUrl} ${err.message}: it cannot be a row of the table read at the start (?hashes=rows); run the copy again`,
      );
    }
  }

  /**
   * The collection's keys in SCAN order, `size` per batch, with the bookmark after each (see
   * {@link read}), up to `upTo` (a boundary from {@link split}) when given.
   *
   * A bookmark `{ cursor, skip, check }` says: of the keys the pattern matches from that SCAN
   * cursor on, the first `skip` are done, and `check` is a hash of that set of keys. A server
   * that rehashed its table since may list other keys first from that cursor; then the hash
   * differs and those keys are read again (written twice, never lost).
   */
  async *#keyBatches(
    collection: CollectionSchema,
    after: Bookmark | undefined,
    batchSize: number,
    upTo?: Bookmark,
  ): AsyncGenerator<{ keys: Buffer[]; bookmark: Bookmark }> {
    const pattern = this.#patternOf(collection);
    const from = after === undefined ? { cursor: "0", skip: 0 } : positionOf(after, collection.name);
    const size = Math.max(1, Math.floor(batchSize));
    type Entry = { key: Buffer; cursor: string; index: number; check: number };
    let pending: Entry[] = [];
    const emit = (n: number): { keys: Buffer[]; bookmark: Bookmark } => {
      const batch = pending.slice(0, n);
      pending = pending.slice(n);
      // SCAN may return a key twice (while the server rehashes): once per batch is enough.
      const seen = new Set<string>();
      const keys = batch
        .map((b) => b.key)
        .filter((k) => {
          const id = k.toString("latin1");
          if (seen.has(id)) return false;
          seen.add(id);
          return true;
        });
      const last = batch[batch.length - 1] as Entry;
      return { keys, bookmark: { cursor: last.cursor, skip: last.index + 1, check: last.check } };
    };
    // The end: SCAN calls from a cursor past `upTo`'s are not made, and the one from its cursor
    // gives its first `skip` matches only.
    const end = upTo === undefined ? undefined : positionOf(upTo, collection.name);
    const endAt = end === undefined ? undefined : scanPosition(end.cursor);
    const limitAt = (c: string): number => {
      if (end === undefined) return Number.POSITIVE_INFINITY;
      if (c === end.cursor) return end.skip;
      return scanPosition(c) > (endAt as bigint) ? 0 : Number.POSITIVE_INFINITY;
    };
    // Every match in order: the first `from.skip` are held until their set's hash is known.
    let held: Entry[] | undefined = from.skip > 0 ? [] : undefined;
    let heldHash = 0;
    let seen = 0;
    let step = "";
    let stepHash = 0;
    const take = (key: Buffer, cursor: string, index: number): void => {
      if (cursor !== step) {
        step = cursor;
        stepHash = 0;
      }
      stepHash = (stepHash + fnv(key)) >>> 0;
      const wanted = !isInternal(key) && !excluded(key, pattern);
      if (held !== undefined) {
        heldHash = (heldHash + fnv(key)) >>> 0;
        if (wanted) held.push({ key, cursor, index, check: stepHash });
        if (++seen < from.skip) return;
        // The done keys are the same: drop them; else read them again.
        if (from.check !== undefined && heldHash !== from.check) pending.push(...held);
        held = undefined;
        return;
      }
      if (wanted) pending.push({ key, cursor, index, check: stepHash });
    };
    let cursor = from.cursor;
    let first = true;
    const cached = this.#cached(pattern, cursor);
    if (cached !== undefined) {
      // Discover's kept SCAN: the same keys in the same order as SCAN MATCH from `cursor`.
      let limit = Number.POSITIVE_INFINITY;
      let limitStep = "";
      for (const { key, cursor: at, index } of cached.keys) {
        if (at !== limitStep) {
          limitStep = at;
          limit = limitAt(at);
        }
        if (index >= limit) break;
        take(key, at, index);
        if (pending.length >= size) yield emit(size);
      }
      cursor = limit === Number.POSITIVE_INFINITY ? cached.next : "0";
      first = false;
    }
    // SCAN's COUNT grows while replies hold few keys (a pattern matching a small part of the
    // key space), so a batch takes few round trips. Replies from one cursor list the same
    // keys in the same order whatever the COUNT, so the done keys may go on into the next
    // replies. A range with an end keeps discover's COUNT: from one of its cursors, SCAN then
    // returns the steps discover saw (the table unchanged), so the range ends where split cut it.
    let count = end === undefined ? Math.min(size, 10_000) : tuning.discoverScanCount;
    while (first || cursor !== "0") {
      first = false;
      const limit = limitAt(cursor);
      if (limit === 0) break;
      const [next, raw] = await this.#scanOnce(cursor, pattern.match, count);
      for (let index = 0; index < raw.length && index < limit; index++) take(raw[index] as Buffer, cursor, index);
      while (pending.length >= size) yield emit(size);
      if (limit !== Number.POSITIVE_INFINITY) break;
      if (raw.length < size / 4 && end === undefined) count = Math.min(count * 2, MAX_SCAN_COUNT);
      cursor = next.toString();
    }
    // Fewer keys than the done ones are left: read again those that are.
    if (held !== undefined && from.check !== undefined) pending.push(...held);
    while (pending.length >= size) yield emit(size);
    if (pending.length > 0) yield emit(pending.length);
  }

  // -------------------------------------------------------------------------------------
  // Bulk transfer: DUMP/RESTORE

  /**
   * Redis → Redis for key-space collections: keys move as DUMP payloads (the server's own
   * serialisation), never decoded here.
   */
  canBulkCopyFrom(source: Connector, collection: CollectionSchema): boolean {
    return (
      source instanceof RedisConnector &&
      !source.#closed &&
      !this.#closed &&
      !source.#tables.has(collection.name) &&
      isKeyspaceShape(collection)
    );
  }

  /**
   * The next at most `limit` keys after `after`, as DUMP payloads.
   *
   * The source reads each batch's sizes, then its expiries and DUMP payloads in one
   * MULTI (see #dumpKeys), {@link READ_AHEAD} batches ahead over a {@link RespConnection}. The
   * target takes RESTORE … ABSTTL per key in one pipeline, then the checkpoint once every key
   * was written (a run stopped in between redoes the batch, which is then refused because its
   * keys exist, and redone key by key by the record path, which overwrites them).
   *
   * Keys over {@link BULK_VALUE_BYTES} (by MEMORY USAGE) are staged instead: copied member
   * page by member page into a temporary key at the target, renamed in with the batch.
   * Keys gone or expired meanwhile are left out (never resurrected). When the target cannot
   * take the source's payloads (an older RDB version) or either side may not run the
   * commands, batches go with typed commands from then on.
   *
   * @throws FerryError `E_WRITE` when the target refuses a key (one that exists, out of
   * memory): the checkpoint is not saved, and the record path redoes the batch key by key.
   */
  async bulkCopyFrom(
    source: Connector,
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number },
    checkpoint: (count: number, bookmark: Bookmark) => Checkpoint,
  ): Promise<{ count: number; bookmark: Bookmark }> {
    const src = source as RedisConnector;
    this.#discovered = false;
    this.#scanned = undefined;
    this.#shapes.clear();
    // Checkpoints every BULK_KEYS keys at most: a batch holds every payload of it in memory.
    const size = Math.min(options.limit, BULK_KEYS);
    let batch = await src.#nextDumps(collection, options.after, options.upTo, size);
    let passed: Bookmark | undefined = options.after;
    // A batch whose keys all went away (or expired) meanwhile: on to the next, since a count
    // of 0 means the end of the collection.
    while (batch !== undefined && batch.items.length === 0 && batch.large.length === 0) {
      passed = batch.bookmark;
      batch = await src.#nextDumps(collection, passed, options.upTo, size);
    }
    if (batch === undefined) return { count: 0, bookmark: passed ?? { cursor: "0", skip: 0 } };
    const where = `bulk copy of ${collection.name} from ${src.displayUrl}`;
    if (this.#typedOnly !== undefined || src.#typedOnly !== undefined) {
      return this.#typedBatch(src, collection, batch, checkpoint);
    }
    const staged = await this.#stageAll(src, batch);
    const count = batch.items.length + staged.length;
    // Before any key is written: a checkpoint asking for an undo row is a bug in the caller.
    const cp = withoutUndo(checkpoint(count, batch.bookmark));
    const conn = await this.#respConnection();
    const w = new RespWriter();
    for (const s of staged) {
      w.command(["RENAMENX", s.tmp, s.key]);
      w.command(s.expiry === 0 ? ["PERSIST", s.key] : ["PEXPIREAT", s.key, String(s.expiry)]);
    }
    for (const i of batch.items) {
      // RESTORE key 0 payload | RESTORE key ms payload ABSTTL
      w.head(i.expiry === 0 ? RESTORE_4 : RESTORE_5);
      w.arg(i.key);
      w.arg(i.expiry === 0 ? ZERO : i.expiry);
      w.arg(i.payload);
      if (i.expiry !== 0) w.arg(ABSTTL);
    }
    const replies = await this.#respSend(conn, w, where);
    const refused: string[] = [];
    staged.forEach((s, i) => {
      if (replies[2 * i] === 0) refused.push(`key ${show(s.key)}: BUSYKEY Target key name already exists.`);
    });
    batch.items.forEach((item, i) => {
      const r = replies[2 * staged.length + i];
      if (r instanceof RespError) refused.push(`key ${show(item.key)}: ${r.message}`);
    });
    if (refused.length === batch.items.length + staged.length && this.#typedOnly === undefined) {
      const first = refused[0] ?? "";
      if (/payload version|checksum|NOPERM|unknown command/i.test(first)) {
        // Nothing was written: payloads of a newer Redis than the target, or a user that may
        // not RESTORE. Typed commands from now on.
        this.#typedOnly = first;
        return this.#typedBatch(src, collection, batch, checkpoint);
      }
    }
    if (refused.length > 0) {
      throw bulkWriteError(
        refused[0] as string,
        collection.name,
        this.displayUrl,
        where,
        `${refused.length} of ${count} keys of this batch were refused; the checkpoint was not saved, so the batch is redone key by key`,
      );
    }
    // After the keys: a run stopped in between redoes the batch (its keys then exist, so it is
    // refused and redone key by key, which overwrites them).
    w.command(["HSET", JOURNAL_KEY, cp.id, JSON.stringify(cp.entry({ failures: [] }))]);
    checkReplies(await this.#respSend(conn, w, "save checkpoint"), this.displayUrl, collection.name);
    return { count, bookmark: batch.bookmark };
  }

  /**
   * A bulk batch with typed commands (the target cannot RESTORE the source's payloads, or may
   * not run scripts): the keys are read as records and written as in {@link write}; large
   * keys are staged as on the DUMP path.
   */
  async #typedBatch(
    src: RedisConnector,
    collection: CollectionSchema,
    batch: DumpBatch,
    checkpoint: (count: number, bookmark: Bookmark) => Checkpoint,
  ): Promise<{ count: number; bookmark: Bookmark }> {
    const records = await src.#readKeys(batch.items.map((i) => i.key));
    const staged = await this.#stageAll(src, batch);
    const failures: WriteFailure[] = [];
    const tx = this.#client.multi();
    await this.#writeKeyspace(
      tx,
      records.map((record) => ({ op: "insert", record })),
      failures,
    );
    for (const s of staged) {
      tx.rename(s.tmp, s.key);
      if (s.expiry === 0) tx.persist(s.key);
      else tx.pexpireat(s.key, s.expiry);
    }
    const count = records.length + staged.length;
    const cp = withoutUndo(checkpoint(count, batch.bookmark));
    try {
      if (failures.length > 0) throw new Error(failures.map((f) => f.reason).join("; "));
      tx.hset(JOURNAL_KEY, cp.id, JSON.stringify(cp.entry({ failures: [] })));
      const replies = await tx.exec();
      if (replies === null) throw new Error("transaction aborted");
      for (const [err] of replies) if (err) throw err;
    } catch (err) {
      throw bulkWriteError(
        err instanceof Error ? err.message : String(err),
        collection.name,
        this.displayUrl,
        `bulk copy of ${collection.name} from ${src.displayUrl}`,
        "the checkpoint was not saved, so the batch is redone key by key",
      );
    }
    return { count, bookmark: batch.bookmark };
  }

  /** The batch's large keys staged at this instance (keys gone meanwhile left out). */
  async #stageAll(src: RedisConnector, batch: DumpBatch): Promise<{ tmp: Buffer; key: Buffer; expiry: number }[]> {
    const staged: { tmp: Buffer; key: Buffer; expiry: number }[] = [];
    for (const big of batch.large) {
      const tmp = await this.#stage(src, big.key);
      if (tmp !== undefined) staged.push({ tmp, ...big });
    }
    return staged;
  }

  /**
   * Copies one large key into a temporary key at this (the target) instance, page by page
   * with typed commands, so neither side's value is ever held whole here. The temporary key
   * (`ferry:stage:…`, never listed as data) expires in a day should the run stop before the
   * batch renames it in. Undefined when the key went away meanwhile.
   */
  async #stage(src: RedisConnector, key: Buffer): Promise<Buffer | undefined> {
    const type = String(await src.#call(() => src.#client.type(key), "read type"));
    if (!(REDIS_TYPES as readonly string[]).includes(type)) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `key ${show(key)} has type ${type}, which Ferry does not copy in pages (module types): exclude it with --collections '!${show(key)}'`,
      );
    }
    const tmp = Buffer.from(`${INTERNAL}stage:${randomUUID()}`, "latin1");
    const from = await src.#respConnection();
    const to = await this.#respConnection();
    const where = `large key ${show(key)}`;
    let wrote = false;
    let pending: Promise<Reply[]> | undefined;
    const send = async (w: RespWriter): Promise<void> => {
      if (!wrote) w.command(["PEXPIRE", tmp, String(STAGE_EXPIRY_MS)]);
      wrote = true;
      // One page in flight while the next is read.
      if (pending) checkReplies(await pending, this.displayUrl, where);
      pending = to.send(w);
      pending.catch(() => {});
    };
    for await (const page of pages(from, type as RedisType, key, STAGE_PAGE)) {
      if (page.length === 0) continue;
      const w = new RespWriter();
      const items = page as Buffer[];
      switch (type as RedisType) {
        case "string":
          w.command(["APPEND", tmp, items[0] as Buffer]);
          break;
        case "hash":
          w.command(["HSET", tmp, ...items]);
          break;
        case "set":
          w.command(["SADD", tmp, ...items]);
          break;
        case "list":
          w.command(["RPUSH", tmp, ...items]);
          break;
        case "zset": {
          const args: (string | Buffer)[] = ["ZADD", tmp];
          for (let i = 0; i < items.length; i += 2) args.push(items[i + 1] as Buffer, items[i] as Buffer);
          w.command(args);
          break;
        }
        case "stream":
          for (const [id, fields] of page as unknown as [Buffer, Buffer[]][]) w.command(["XADD", tmp, id, ...fields]);
          break;
      }
      await send(w);
    }
    if (pending) checkReplies(await pending, this.displayUrl, where);
    return wrote ? tmp : undefined;
  }

  /**
   * The next batch of DUMP payloads of `collection` after `after`, from the read-ahead that
   * the previous call left (or a new one when the caller asks for another position).
   */
  async #nextDumps(
    collection: CollectionSchema,
    after: Bookmark | undefined,
    upTo: Bookmark | undefined,
    size: number,
  ): Promise<DumpBatch | undefined> {
    // One read-ahead per key range (ranges of a collection are copied at the same time).
    const range = `${collection.name}\u0000${JSON.stringify(upTo ?? null)}`;
    const at = `${size}:${JSON.stringify(after ?? null)}`;
    let ahead = this.#ahead.get(range);
    if (ahead === undefined || ahead.at !== at) {
      await ahead?.batches.return(undefined);
      ahead = { at, batches: this.#dumpBatches(collection, after, upTo, size) };
      this.#ahead.set(range, ahead);
    }
    try {
      const next = await ahead.batches.next();
      if (next.done) {
        this.#ahead.delete(range);
        return undefined;
      }
      ahead.at = `${size}:${JSON.stringify(next.value.bookmark)}`;
      return next.value;
    } catch (err) {
      this.#ahead.delete(range);
      throw err;
    }
  }

  /** DUMP payloads batch by batch, each requested {@link READ_AHEAD} batches before it is taken. */
  async *#dumpBatches(
    collection: CollectionSchema,
    after: Bookmark | undefined,
    upTo: Bookmark | undefined,
    size: number,
  ): AsyncGenerator<DumpBatch> {
    const conn = await this.#respConnection();
    const ahead: Promise<DumpBatch>[] = [];
    for await (const { keys, bookmark } of this.#keyBatches(collection, after, size, upTo)) {
      const p = this.#dumpKeys(conn, keys, bookmark);
      p.catch(() => {}); // awaited in turn below; a batch never taken must not go unhandled
      ahead.push(p);
      if (ahead.length >= READ_AHEAD) yield await (ahead.shift() as Promise<DumpBatch>);
    }
    while (ahead.length > 0) yield await (ahead.shift() as Promise<DumpBatch>);
  }

  /**
   * One batch at the source, in two pipelined rounds: MEMORY USAGE of every key (the size
   * guard), then one MULTI/EXEC with the expiry and DUMP of each key small enough, so a key's
   * expiry and payload are read at the same moment (no other client's command in between).
   * Plain commands, not a script: a Lua script doing the same cost the source's single
   * thread 7.2 s per million keys against 5.6 s (bench/README.md).
   */
  async #dumpKeys(conn: RespConnection, keys: Buffer[], bookmark: Bookmark): Promise<DumpBatch> {
    const batch: DumpBatch = { items: [], large: [], bookmark };
    if (keys.length === 0) return batch;
    if (this.#typedOnly !== undefined) {
      // DUMP is not allowed here: the keys go typed, their expiry and size read by #readKeys.
      for (const key of keys) batch.items.push({ key, expiry: 0, payload: EMPTY });
      return batch;
    }
    const sizes = await this.#memoryUsage(conn, keys);
    const small: Buffer[] = [];
    for (let i = 0; i < keys.length; i++) {
      const size = sizes[i];
      if (size instanceof RespError) return this.#dumpRefused(conn, keys, bookmark, size);
      if (size === null) continue; // gone since the SCAN
      if ((size as number) > BULK_VALUE_BYTES) batch.large.push({ key: keys[i] as Buffer, expiry: 0 });
      else small.push(keys[i] as Buffer);
    }
    // MULTI, INFO keyspace, [TIME], then per key its expiry and DUMP, and the large keys'
    // expiry (their values are staged later, page by page). While the database holds no key
    // with an expiry, batches ask none: INFO in the same MULTI says whether that still held
    // when the batch was read, else the batch is read again with expiries.
    const w = new RespWriter();
    const withTtl = this.#expiring;
    w.command(["MULTI"]);
    w.command(["INFO", "keyspace"]);
    if (!this.#absoluteTtl) w.command(["TIME"]);
    const ttl = this.#absoluteTtl ? PEXPIRETIME : PTTL;
    for (const k of small) {
      if (withTtl) {
        w.head(ttl);
        w.arg(k);
      }
      w.head(DUMP);
      w.arg(k);
    }
    if (withTtl) {
      for (const { key } of batch.large) {
        w.head(ttl);
        w.arg(key);
      }
    }
    w.command(["EXEC"]);
    const replies = await this.#respSend(conn, w, "dump keys");
    const exec = replies[replies.length - 1];
    if (!Array.isArray(exec)) {
      const queued = replies.find((r): r is RespError => r instanceof RespError);
      return this.#dumpRefused(conn, keys, bookmark, queued ?? (exec as RespError));
    }
    let at = 0;
    const keyspace = String(exec[at++]);
    const expires = new RegExp(`^db${this.#location.db}:.*\\bexpires=(\\d+)`, "m").exec(keyspace)?.[1];
    this.#expiring = Number(expires ?? 0) > 0;
    if (this.#expiring && !withTtl) return this.#dumpKeys(conn, keys, bookmark);
    let clock = 0;
    if (!this.#absoluteTtl) {
      const [sec, usec] = exec[at++] as Buffer[];
      clock = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    }
    const expiryOf = (t: Reply): number | undefined => {
      if (!withTtl) return 0;
      if (t instanceof RespError)
        throw connectionError(new Error(t.message), this.displayUrl, this.#location, "read expiry");
      const n = t as number;
      if (n === -2) return undefined; // gone
      if (n < 0) return 0;
      return this.#absoluteTtl ? n : clock + n;
    };
    const now = Date.now();
    for (const key of small) {
      const expiry = expiryOf(withTtl ? (exec[at++] as Reply) : 0);
      const payload = exec[at++] as Reply;
      if (payload instanceof RespError) return this.#dumpRefused(conn, keys, bookmark, payload);
      if (expiry === undefined || payload === null) continue; // gone since the SCAN
      if (expiry !== 0 && expiry <= now) continue; // expired: not resurrected
      batch.items.push({ key, expiry, payload: payload as Buffer });
    }
    const large = batch.large;
    batch.large = [];
    for (const { key } of large) {
      const expiry = expiryOf(withTtl ? (exec[at++] as Reply) : 0);
      if (expiry === undefined || (expiry !== 0 && expiry <= now)) continue;
      batch.large.push({ key, expiry });
    }
    return batch;
  }

  /**
   * `MEMORY USAGE` of each of `keys`, pipelined in one round: bytes (a number), null for a
   * key gone since the SCAN, or the server's refusal (a {@link RespError}) per key.
   */
  async #memoryUsage(conn: RespConnection, keys: Buffer[]): Promise<Reply[]> {
    const w = new RespWriter();
    for (const k of keys) {
      w.head(MEMORY_USAGE);
      w.arg(k);
    }
    return this.#respSend(conn, w, "read key sizes");
  }

  /** A batch the source refused: on a permission error (no DUMP or MEMORY for this user), typed commands from now on. */
  async #dumpRefused(conn: RespConnection, keys: Buffer[], bookmark: Bookmark, reply: RespError): Promise<DumpBatch> {
    if (/NOPERM|unknown command|not allowed|disabled/i.test(reply.message)) {
      this.#typedOnly = reply.message;
      return this.#dumpKeys(conn, keys, bookmark);
    }
    throw connectionError(new Error(reply.message), this.displayUrl, this.#location, "dump keys");
  }

  /** This instance's connection for the bulk path (opened on first use). */
  async #respConnection(): Promise<RespConnection> {
    this.#resp ??= RespConnection.open(this.#location).catch((err: unknown) => {
      this.#resp = undefined;
      throw connectionError(err, this.displayUrl, this.#location, "open bulk connection");
    });
    return this.#resp;
  }

  async #respSend(conn: RespConnection, w: RespWriter, what: string): Promise<Reply[]> {
    try {
      return await conn.send(w);
    } catch (err) {
      throw connectionError(err, this.displayUrl, this.#location, what);
    }
  }

  /**
   * The keys `pattern.match` matches in discover's kept SCAN from `cursor` on, each with its
   * step's cursor and its index among that step's matches (as SCAN MATCH from that cursor
   * lists them), and the cursor where the kept steps end ("0": the end of the key space).
   * Undefined when nothing is kept, `cursor` starts none of the kept steps, or the pattern is
   * more than a literal or a literal then `*` (its matches are left to the server).
   */
  #cached(
    pattern: Pattern,
    cursor: string,
  ): { keys: Iterable<{ key: Buffer; cursor: string; index: number }>; next: string } | undefined {
    const scanned = this.#scanned;
    const first = scanned?.index.get(cursor);
    const literal = literalGlob(pattern.match);
    if (scanned === undefined || first === undefined || literal === undefined) return undefined;
    const { bytes, prefix } = literal;
    const n = bytes.length;
    function* keys(): Generator<{ key: Buffer; cursor: string; index: number }> {
      for (const step of (scanned as ScanCache).steps.slice(first)) {
        const { keys: data, ends } = step;
        let index = 0;
        let start = 0;
        for (let i = 0; i < ends.length; start = ends[i++] as number) {
          const end = ends[i] as number;
          if (prefix ? end - start < n : end - start !== n) continue;
          let same = true;
          for (let j = 0; j < n && same; j++) same = data[start + j] === bytes[j];
          if (same) yield { key: data.subarray(start, end), cursor: step.cursor, index: index++ };
        }
      }
    }
    return { keys: keys(), next: scanned.next };
  }

  /** One SCAN call over `conn`: the next cursor and the keys. */
  async #scanStep(
    conn: RespConnection,
    cursor: string,
    match: string | Buffer,
    count: number,
  ): Promise<[string, Buffer[]]> {
    const w = new RespWriter();
    w.command(["SCAN", cursor, "MATCH", match, "COUNT", String(count)]);
    const [reply] = await this.#respSend(conn, w, "scan");
    if (reply instanceof RespError)
      throw connectionError(new Error(reply.message), this.displayUrl, this.#location, "scan");
    const [next, keys] = reply as [Buffer, Buffer[]];
    return [next.toString("latin1"), keys];
  }

  /** One SCAN call; `match` as bytes (ioredis types it as a string). */
  async #scanOnce(cursor: string, match: string | Buffer, count: number): Promise<[Buffer, Buffer[]]> {
    const reply = await this.#call(
      () => this.#client.callBuffer("SCAN", cursor, "MATCH", match, "COUNT", String(Math.max(10, count))),
      "scan",
    );
    return reply as [Buffer, Buffer[]];
  }

  /** SCAN replies from `cursor` to the end, keys as Buffers. */
  async *#scan(
    match: string | Buffer,
    cursor: string,
    count = 1000,
  ): AsyncGenerator<{ keys: Buffer[]; cursor: string }> {
    let c = cursor;
    do {
      const [next, keys] = await this.#scanOnce(c, match, count);
      c = next.toString();
      yield { keys: keys.filter((k) => !isInternal(k)), cursor: c };
    } while (c !== "0");
  }

  /** Key-space records of `keys` (keys gone meanwhile are left out). */
  async #readKeys(keys: Buffer[]): Promise<Row[]> {
    if (keys.length === 0) return [];
    const head = this.#client.pipeline();
    for (const k of keys) {
      head.type(k);
      if (this.#absoluteTtl) head.pexpiretime(k);
      else head.pttl(k);
    }
    const now = Date.now();
    const heads = await this.#exec(head, "read types");
    const sizes = this.#client.pipeline();
    const found: { key: Buffer; type: RedisType; ttl: Date | null }[] = [];
    keys.forEach((key, i) => {
      const type = heads[i * 2] as string;
      const t = Number(heads[i * 2 + 1]);
      if (type === "none" || t === -2) return; // gone since the SCAN
      if (!(REDIS_TYPES as readonly string[]).includes(type)) {
        throw new FerryError(
          "E_UNSUPPORTED",
          `key ${show(key)} has type ${type}, which Ferry does not copy (module types): exclude it with --collections '!${show(key)}'`,
        );
      }
      const ttl = t < 0 ? null : new Date(this.#absoluteTtl ? t : now + t);
      found.push({ key, type: type as RedisType, ttl });
      sizeCommand(sizes, type as RedisType, key);
    });
    const counts = await this.#exec(sizes, "read sizes");
    const whole = this.#client.pipeline();
    const paged: number[] = [];
    found.forEach((f, i) => {
      const n = Number(counts[i]);
      if (f.type === "string" || n <= PAGE) wholeCommand(whole, f.type, f.key);
      else paged.push(i);
    });
    const values = await this.#exec(whole, "read values");
    const out: Row[] = [];
    let w = 0;
    for (let i = 0; i < found.length; i++) {
      const f = found[i] as (typeof found)[number];
      let value: Value = null;
      const v = paged.includes(i) ? await this.#readPaged(f.type, f.key) : redisValue(f.type, values[w++]);
      if (v === undefined) continue;
      value = v;
      out.push({ key: textOrBytes(f.key), type: f.type, ttl: f.ttl, value });
    }
    return out;
  }

  /** A large aggregate, page by page (the record still holds it whole). */
  async #readPaged(type: RedisType, key: Buffer): Promise<Value> {
    const c = this.#client;
    switch (type) {
      case "hash":
      case "set": {
        const pairs: Buffer[] = [];
        let cursor = "0";
        do {
          const [next, items] = await this.#call(
            () =>
              type === "hash"
                ? c.hscanBuffer(key, cursor, "COUNT", String(PAGE))
                : c.sscanBuffer(key, cursor, "COUNT", String(PAGE)),
            "scan members",
          );
          cursor = next.toString();
          pairs.push(...items);
        } while (cursor !== "0");
        return type === "hash" ? hashValue(pairs) : setValue(pairs);
      }
      case "list":
      case "zset": {
        const all: Buffer[] = [];
        for (let start = 0; ; start += PAGE) {
          const page =
            type === "list"
              ? await this.#call(() => c.lrangeBuffer(key, start, start + PAGE - 1), "read list")
              : await this.#call(
                  () => c.zrangeBuffer(key, String(start), String(start + PAGE - 1), "WITHSCORES"),
                  "read sorted set",
                );
          all.push(...page);
          if (page.length < (type === "list" ? PAGE : PAGE * 2)) break;
        }
        return redisValue(type, all) ?? null;
      }
      case "stream": {
        const entries: unknown[] = [];
        let from = "-";
        for (;;) {
          const page = (await this.#call(
            () => c.xrangeBuffer(key, from, "+", "COUNT", String(PAGE)),
            "read stream",
          )) as unknown as [Buffer, Buffer[]][];
          entries.push(...page);
          const last = page[page.length - 1];
          if (page.length < PAGE || last === undefined) break;
          from = `(${last[0].toString()}`;
        }
        return redisValue("stream", entries) ?? null;
      }
      default:
        return null;
    }
  }

  /** Records of a table collection: one hash per key. */
  async #readTableRows(table: CollectionSchema, keys: Buffer[]): Promise<Row[]> {
    if (keys.length === 0) return [];
    const p = this.#client.pipeline();
    for (const k of keys) p.hscanBuffer(k, "0", "COUNT", "100000");
    const replies = await this.#exec(p, "read records");
    const byName = new Map(table.fields.map((f) => [f.name, f]));
    const out: Row[] = [];
    for (const reply of replies) {
      const items = (reply as [Buffer, Buffer[]])[1];
      if (items.length === 0) continue;
      const row: Row = {};
      for (let i = 0; i < items.length; i += 2) {
        const name = (items[i] as Buffer).toString("utf8");
        row[name] = fieldValue(byName.get(name), items[i + 1] as Buffer);
      }
      for (const f of table.fields) if (!(f.name in row)) row[f.name] = null;
      out.push(row);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------
  // Writing

  /**
   * A key-space collection needs nothing (its keys carry their types). Another engine's
   * collection becomes a table collection: its schema is kept in the hash `ferry:schemas`
   * (an existing one is kept as it is).
   */
  async prepare(collection: CollectionSchema): Promise<PrepareResult> {
    if (isKeyspaceShape(collection)) {
      if (!this.#patterns.has(collection.name)) {
        this.#patterns.set(collection.name, namePattern(collection.name));
      }
      return { schema: keyspaceSchema(collection.name), created: false };
    }
    if (this.#location.hashRows && isRowsShape(collection)) {
      // Each row a hash at its own key: nothing to create, no schema kept.
      const schema: CollectionSchema = { ...collection, engine: "redis" };
      delete schema.native;
      this.#rows.set(collection.name, schema);
      if (!this.#patterns.has(collection.name)) this.#patterns.set(collection.name, namePattern(collection.name));
      return { schema, created: false };
    }
    await this.#loadTables();
    const existing = this.#tables.get(collection.name);
    if (existing) return { schema: existing, created: false };
    const schema: CollectionSchema = { ...collection, engine: "redis" };
    delete schema.native;
    await this.#call(() => this.#client.hset(SCHEMAS_KEY, collection.name, JSON.stringify(schema)), "save schema");
    this.#tables.set(collection.name, schema);
    return { schema, created: true };
  }

  /**
   * Which of `keys` exist. Key-space collections and table collections by primary key ask
   * EXISTS; a table collection matched by other fields (a natural key) is scanned once and
   * kept in memory for the rest of the run.
   */
  async lookup(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, Row>> {
    const out = new Map<string, Row>();
    const table = this.#tables.get(collection.name);
    const byPrimary = table !== undefined && fields.join("\u0000") === table.primaryKey.join("\u0000");
    if (table === undefined || byPrimary) {
      const redisKeys = keys.map((k) =>
        table
          ? tableKey(table, Object.fromEntries(fields.map((f, i) => [f, k[i] as Value])))
          : valueBytes(k[0] as Value, "key"),
      );
      const p = this.#client.pipeline();
      for (const k of redisKeys) p.exists(k);
      const found = await this.#exec(p, "look up keys");
      // The records whole (type, expiry, value; a table's row): a rollback restores them as they were.
      const at = keys.flatMap((_, i) => (Number(found[i]) > 0 ? [i] : []));
      const present = at.map((i) => redisKeys[i] as Buffer);
      const rows = this.#rows.get(collection.name);
      const records = table ? await this.#readTableRows(table, present) : await this.#readKeys(present);
      const byKey = new Map<string, Row>();
      records.forEach((r, n) => {
        // Table rows come in the order asked (every key exists); key-space records name their key.
        const id = table ? (present[n] as Buffer).toString("hex") : valueBytes(r.key as Value, "key").toString("hex");
        byKey.set(id, rows ? this.#rowOf(r, rows) : r);
      });
      for (const i of at) {
        const r = byKey.get((redisKeys[i] as Buffer).toString("hex"));
        if (r) out.set(keyString(keys[i] as Value[]), r);
      }
      return out;
    }
    const index = await this.#index(table, fields);
    for (const k of keys) {
      const row = index.get(keyString(k));
      if (row) out.set(keyString(k), row);
    }
    return out;
  }

  async #index(table: CollectionSchema, fields: string[]): Promise<Map<string, Row>> {
    const id = `${table.name}\u0000${fields.join("\u0000")}`;
    let index = this.#indexes.get(id);
    if (index) return index;
    index = new Map();
    for await (const batch of this.read(table, { batchSize: PAGE })) {
      for (const r of batch.records) index.set(keyString(fields.map((f) => r[f] ?? null)), r);
    }
    this.#indexes.set(id, index);
    return index;
  }

  /**
   * Applies the ops in one MULTI/EXEC with the checkpoint. Per op: `insert` and `replace`
   * write the whole key (DEL first); `update` merges: hash fields and set/sorted-set members
   * are added (incoming values win, the target's others stay), lists, strings and streams are
   * replaced, and the expiry becomes the incoming one. A merge into a key of another type is
   * refused with the key named (before anything is sent). `delete` unlinks the key its
   * match names (a table collection: the hash of the matched record); a key that does not
   * exist is no failure, and Ferry's own `ferry:` keys are refused.
   */
  async write(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult> {
    const table = this.#tables.get(collection.name);
    const failures: WriteFailure[] = [];
    this.#discovered = false;
    this.#scanned = undefined;
    this.#shapes.clear();
    const tx = this.#client.multi();
    const rows = this.#rows.get(collection.name);
    if (table) await this.#writeTable(tx, table, ops, failures);
    else if (rows)
      await this.#writeKeyspace(
        tx,
        ops.map((op) => (op.op === "delete" ? op : { ...op, record: recordOf(op.record, rows) })),
        failures,
      );
    else await this.#writeKeyspace(tx, ops, failures);
    if (checkpoint) {
      const result: WriteResult = { failures };
      const entry = checkpoint.entry(result);
      tx.hset(JOURNAL_KEY, checkpoint.id, JSON.stringify(entry));
      // The undo row rides the same MULTI/EXEC: saved exactly when the batch and its entry are.
      const row = checkpoint.undo?.(result);
      if (row) queueUndo(tx, row);
    }
    try {
      const replies = await tx.exec();
      if (replies === null) throw new Error("transaction aborted");
      for (const [err] of replies) if (err) throw err;
    } catch (err) {
      throw writeError(err, collection.name, this.displayUrl);
    }
    for (const id of [...this.#indexes.keys()]) if (id.startsWith(`${collection.name}\u0000`)) this.#indexes.delete(id);
    return { failures };
  }

  /**
   * The record an `update` leaves at a key holding `prior`, as {@link #writeKeyspace} merges:
   * a hash's fields, a set's members and a sorted set's members (with the update's scores)
   * added to the key's own, the update's expiry; any other type replaced whole; a table row's
   * fields set. Undefined for a hash in pairs form (field names that are not UTF-8).
   */
  merged(prior: Row, update: Row): Row | undefined {
    const type = String(update.type);
    // A table row (a hash per row): the update's fields are set, the others kept.
    if (prior.type === undefined || update.type === undefined) return { ...prior, ...update };
    const additive = prior.type === type && (type === "hash" || type === "set" || type === "zset");
    if (!additive) return { ...update, key: prior.key ?? (update.key as Value) };
    const a = prior.value as unknown;
    const b = update.value as unknown;
    let value: JsonValue;
    if (type === "hash") {
      if (Array.isArray(a) || Array.isArray(b) || typeof a !== "object" || typeof b !== "object") return undefined;
      value = { ...(a as Record<string, JsonValue>), ...(b as Record<string, JsonValue>) };
    } else if (type === "set") {
      const members = new Map<string, Buffer>();
      for (const m of [...(a as JsonValue[]), ...(b as JsonValue[])]) {
        const bytes = elementBytes(m, "member");
        members.set(bytes.toString("hex"), bytes);
      }
      value = setValue([...members.values()]);
    } else {
      const scores = new Map<string, { member: Buffer; score: number }>();
      for (const pair of [...(a as JsonValue[][]), ...(b as JsonValue[][])]) {
        const member = elementBytes(pair[0], "member");
        const text = scoreText(pair[1], "score");
        const score =
          text === "+inf" ? Number.POSITIVE_INFINITY : text === "-inf" ? Number.NEGATIVE_INFINITY : Number(text);
        scores.set(member.toString("hex"), { member, score });
      }
      value = [...scores.values()]
        .sort((x, y) => x.score - y.score || Buffer.compare(x.member, y.member))
        .map((x) => [element(x.member), scoreJson(String(x.score))]);
    }
    return { key: prior.key as Value, type, ttl: (update.ttl ?? null) as Value, value };
  }

  async #writeKeyspace(tx: ReturnType<Redis["multi"]>, ops: WriteOp[], failures: WriteFailure[]): Promise<void> {
    // A merge needs the target's key to have the same type: known before the transaction.
    const merges = ops.flatMap((op, index) => (op.op === "update" ? [{ op, index }] : []));
    const types = new Map<number, string>();
    if (merges.length > 0) {
      const p = this.#client.pipeline();
      for (const m of merges) p.type(valueBytes(m.op.match.key as Value, "key"));
      const replies = await this.#exec(p, "read types");
      merges.forEach((m, i) => {
        types.set(m.index, String(replies[i]));
      });
    }
    ops.forEach((op, index) => {
      try {
        if (op.op === "delete") {
          tx.unlink(deletableKey(valueBytes(op.match.key as Value, "key")));
          return;
        }
        const r = op.record;
        const key = valueBytes((op.op === "insert" ? r.key : op.match.key) as Value, "key");
        const type = String(r.type);
        if (!(REDIS_TYPES as readonly string[]).includes(type)) {
          throw new RedisValueError(
            `field type: ${JSON.stringify(r.type)} is not a Redis type (${REDIS_TYPES.join(", ")})`,
          );
        }
        const ttl = ttlOf(r.ttl);
        const existing = types.get(index);
        const merge = op.op === "update" && existing !== undefined && existing !== "none";
        if (merge && existing !== type) {
          throw new RedisValueError(
            `the target's key is a ${existing} and the incoming one a ${type}: a merge needs the same type (--conflict overwrite replaces it)`,
          );
        }
        const additive = merge && (type === "hash" || type === "set" || type === "zset");
        const commands: [string, ...(string | Buffer)[]][] = [];
        if (!additive) commands.push(["del", key]);
        commands.push(...valueCommands(type as RedisType, key, r.value as Value));
        if (ttl !== null) commands.push(["pexpireat", key, String(ttl)]);
        else if (additive) commands.push(["persist", key]);
        for (const [name, ...args] of commands) tx.call(name, ...args);
      } catch (err) {
        if (!(err instanceof RedisValueError)) throw err;
        failures.push({ index, reason: err.message });
      }
    });
  }

  async #writeTable(
    tx: ReturnType<Redis["multi"]>,
    table: CollectionSchema,
    ops: WriteOp[],
    failures: WriteFailure[],
  ): Promise<void> {
    const byName = new Map(table.fields.map((f) => [f.name, f]));
    // A delete by fields other than the primary key finds its hash in a lookup index: built
    // now when no lookup built it (an update's match always had its lookup first).
    for (const op of ops) {
      if (op.op === "delete" && !coversKey(table, op.match)) await this.#index(table, Object.keys(op.match));
    }
    ops.forEach((op, index) => {
      try {
        if (op.op === "delete") {
          const found = this.#indexFor(table, op.match);
          // No record matched: nothing to delete (a rollback may run again).
          if (found === undefined && !coversKey(table, op.match)) return;
          tx.unlink(deletableKey(tableKey(table, found ?? op.match)));
          return;
        }
        if (op.op === "update") {
          const found = this.#indexFor(table, op.match);
          const key = tableKey(table, found ?? op.match);
          const nulls = Object.keys(op.record).filter((f) => op.record[f] === null);
          const set = Object.entries(op.record).filter(([, v]) => v !== null);
          if (set.length > 0) tx.hset(key, ...set.flatMap(([f, v]) => [f, fieldBytes(byName.get(f), v as Value)]));
          if (nulls.length > 0) tx.hdel(key, ...nulls);
          return;
        }
        const unknown = Object.keys(op.record).find((f) => !byName.has(f));
        if (unknown !== undefined) throw new RedisValueError(`collection ${table.name} has no field ${unknown}`);
        const key = tableKey(table, op.record);
        const set = Object.entries(op.record).filter(([, v]) => v !== null && v !== undefined);
        tx.del(key);
        if (set.length > 0) tx.hset(key, ...set.flatMap(([f, v]) => [f, fieldBytes(byName.get(f), v as Value)]));
        else tx.hset(key, table.primaryKey[0] ?? "id", "null");
      } catch (err) {
        if (!(err instanceof RedisValueError)) throw err;
        failures.push({ index, reason: err.message });
      }
    });
  }

  /** The record a natural-key match found in the lookup index (its primary key names the hash). */
  #indexFor(table: CollectionSchema, match: Record<string, Value>): Row | undefined {
    const fields = Object.keys(match);
    const index = this.#indexes.get(`${table.name}\u0000${fields.join("\u0000")}`);
    return index?.get(keyString(fields.map((f) => match[f] ?? null)));
  }

  async finish(_collection: CollectionSchema): Promise<void> {}

  journal(): JournalStore {
    const call = this.#call.bind(this);
    const client = this.#client;
    return {
      async save(runId, entry) {
        await call(() => client.hset(JOURNAL_KEY, runId, JSON.stringify(entry)), "save journal");
      },
      async get(runId) {
        const s = await call(() => client.hget(JOURNAL_KEY, runId), "read journal");
        return s === null ? undefined : JSON.parse(s);
      },
      async list() {
        const all = await call(() => client.hgetall(JOURNAL_KEY), "read journal");
        const entries = Object.values(all).map((s) => JSON.parse(s) as { startedAt?: string });
        return entries.sort((a, b) => String(b.startedAt ?? "").localeCompare(String(a.startedAt ?? "")));
      },
      undo: (runId) => this.#undoRows(runId),
      forget: (runId) => this.#forget(runId),
    };
  }

  /**
   * A run's undo rows, highest `seq` first: the sorted set is listed {@link UNDO_PAGE_ROWS}
   * fields at a time (below the last score seen), and their entries fetched in rounds of at
   * most {@link UNDO_PAGE_BYTES} (HSTRLEN first), so memory holds one round, never the log.
   */
  async *#undoRows(runId: string): AsyncGenerator<UndoRow> {
    const rowsKey = undoRowsKey(runId);
    const seqKey = undoSeqKey(runId);
    const what = `read the undo log of run ${runId}`;
    let max = "+inf";
    for (;;) {
      const page = await this.#call(
        () => this.#client.zrevrangebyscore(seqKey, max, "-inf", "WITHSCORES", "LIMIT", 0, UNDO_PAGE_ROWS),
        what,
      );
      if (page.length === 0) return;
      const fields: string[] = [];
      const seqs: number[] = [];
      for (let i = 0; i + 1 < page.length; i += 2) {
        fields.push(page[i] as string);
        seqs.push(Number(page[i + 1]));
      }
      const p = this.#client.pipeline();
      for (const f of fields) p.hstrlen(rowsKey, f);
      const sizes = (await this.#exec(p, what)).map(Number);
      for (let i = 0; i < fields.length; ) {
        let j = i;
        let bytes = 0;
        do bytes += sizes[j++] as number;
        while (j < fields.length && bytes + (sizes[j] as number) <= UNDO_PAGE_BYTES);
        const round = fields.slice(i, j);
        const values = await this.#call(() => this.#client.hmget(rowsKey, ...round), what);
        for (let k = 0; k < values.length; k++) {
          const v = values[k];
          if (v === null || v === undefined) {
            // Listed but gone: forgotten meanwhile (then the order key went too), or evicted.
            if ((await this.#call(() => this.#client.exists(seqKey), what)) === 0) return;
            throw new FerryError(
              "E_CHECKSUM",
              `run ${runId}'s undo log at ${this.displayUrl} lost row ${seqs[i + k]} (evicted under maxmemory?): it cannot be rolled back exactly`,
            );
          }
          yield { runId, seq: seqs[i + k] as number, entry: JSON.parse(v) };
        }
        i = j;
      }
      // Strictly below the last score: each seq has one field, so none is skipped.
      max = `(${page[page.length - 1]}`;
    }
  }

  /**
   * Removes run `runId`'s entry, its ranges' rows (fields `<runId>/…`, found by HSCAN) and its
   * undo log in one MULTI/EXEC. Other runs' fields, even those whose id starts with `runId`
   * but not `runId/`, are kept.
   */
  async #forget(runId: string): Promise<void> {
    if (!this.#writable) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `${this.displayUrl} was opened read-only: open it with { write: true } to forget run ${runId}`,
      );
    }
    const prefix = Buffer.from(`${runId}/`, "utf8");
    // Sent as UTF-8, as the fields were; only ASCII glob characters are escaped.
    const match = `${escapeGlob(`${runId}/`)}*`;
    const fields: Buffer[] = [];
    let cursor = "0";
    do {
      const [next, items] = await this.#call(
        () => this.#client.hscanBuffer(JOURNAL_KEY, cursor, "MATCH", match, "COUNT", "1000"),
        "read journal",
      );
      cursor = String(next);
      for (let i = 0; i < items.length; i += 2) {
        const f = items[i] as Buffer;
        if (f.length > prefix.length && f.subarray(0, prefix.length).equals(prefix)) fields.push(f);
      }
    } while (cursor !== "0");
    const tx = this.#client.multi();
    tx.hdel(JOURNAL_KEY, runId, ...fields);
    tx.del(undoRowsKey(runId), undoSeqKey(runId));
    try {
      const replies = await tx.exec();
      if (replies === null) throw new Error("transaction aborted");
      for (const [err] of replies) if (err) throw err;
    } catch (err) {
      if (isFerryError(err)) throw err;
      throw connectionError(err, this.displayUrl, this.#location, `forget run ${runId}`);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const a of this.#ahead.values()) await a.batches.return(undefined).catch(() => {});
    this.#ahead.clear();
    if (this.#resp) (await this.#resp.catch(() => undefined))?.close();
    await this.#client.quit().catch(() => this.#client.disconnect());
  }

  // -------------------------------------------------------------------------------------

  async #loadTables(): Promise<void> {
    const all = await this.#call(() => this.#client.hgetall(SCHEMAS_KEY), "read schemas");
    for (const v of Object.values(all)) {
      const schema = JSON.parse(v) as CollectionSchema;
      this.#tables.set(schema.name, schema);
      this.#patterns.set(schema.name, namePattern(schema.name));
    }
  }

  #patternOf(collection: CollectionSchema): Pattern {
    return this.#patterns.get(collection.name) ?? namePattern(collection.name);
  }

  async #exec(p: ReturnType<Redis["pipeline"]>, what: string): Promise<unknown[]> {
    const replies = await this.#call(() => p.exec(), what);
    return (replies ?? []).map(([err, v]) => {
      if (err) throw connectionError(err, this.displayUrl, this.#location, what);
      return v;
    });
  }

  async #call<T>(f: () => Promise<T>, what: string): Promise<T> {
    try {
      return await f();
    } catch (err) {
      if (isFerryError(err)) throw err;
      throw connectionError(err, this.displayUrl, this.#location, what);
    }
  }
}

// ---------------------------------------------------------------------------------------

/** The hash of run `runId`'s undo entries. */
function undoRowsKey(runId: string): string {
  return `${UNDO_ROWS_PREFIX}${runId}`;
}

/** The sorted set ordering run `runId`'s undo rows. */
function undoSeqKey(runId: string): string {
  return `${UNDO_SEQ_PREFIX}${runId}`;
}

/** An undo row's field: its `seq`, zero-padded when a whole number (so the hash reads in order). */
function undoField(seq: number): string {
  return Number.isSafeInteger(seq) && seq >= 0 ? String(seq).padStart(16, "0") : String(seq);
}

/**
 * Queues an undo row with the batch: its entry in the run's hash, its field in the run's
 * sorted set (a row saved again under the same `seq` replaces the first).
 *
 * @throws FerryError `E_INTERNAL` for a row without a run id or a finite `seq`, or whose entry is not JSON.
 */
function queueUndo(tx: ReturnType<Redis["multi"]>, row: UndoRow): void {
  if (typeof row.runId !== "string" || typeof row.seq !== "number" || !Number.isFinite(row.seq)) {
    throw new FerryError("E_INTERNAL", `an undo row needs a run id and a finite seq, got ${row.runId} #${row.seq}`);
  }
  let json: string;
  try {
    json = JSON.stringify(row.entry) ?? "null";
  } catch (err) {
    throw new FerryError(
      "E_INTERNAL",
      `undo row ${row.seq} of run ${row.runId} is not JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const field = undoField(row.seq);
  tx.hset(undoRowsKey(row.runId), field, json);
  tx.zadd(undoSeqKey(row.runId), String(row.seq), field);
}

/**
 * The bulk path writes no undo log (core takes the record path for a run that keeps one).
 *
 * @throws FerryError `E_INTERNAL` when the checkpoint asks for an undo row: it would be lost.
 */
function withoutUndo(cp: Checkpoint): Checkpoint {
  if (cp.undo !== undefined) {
    throw new FerryError(
      "E_INTERNAL",
      `the Redis bulk path keeps no undo log, but run ${cp.runId} asked for one: such a run must take the record path`,
    );
  }
  return cp;
}

/** Whether `match` names every primary key field of a table collection (so it names the hash). */
function coversKey(table: CollectionSchema, match: Record<string, Value>): boolean {
  return table.primaryKey.length > 0 && table.primaryKey.every((k) => match[k] !== undefined && match[k] !== null);
}

/**
 * A key a `delete` may remove: any but Ferry's own (`ferry:…`, the journal and schemas).
 *
 * @throws RedisValueError for an internal key.
 */
function deletableKey(key: Buffer): Buffer {
  if (isInternal(key)) throw new RedisValueError(`key ${key.toString("utf8")} is Ferry's own and is never deleted`);
  return key;
}

/** The keys `<name>:…` of a collection named `name` (a table collection's, or one a target was given). */
function namePattern(name: string): Pattern {
  return { match: Buffer.from(`${escapeGlob(latin1(name))}:*`, "latin1"), exclude: [] };
}

function latin1(s: string): string {
  return Buffer.from(s, "utf8").toString("latin1");
}

const INTERNAL_BYTES = Buffer.from(INTERNAL, "latin1");

/** A key of Ferry's own (`ferry:…`). */
function isInternal(key: Buffer): boolean {
  const n = INTERNAL_BYTES.length;
  if (key.length < n) return false;
  for (let i = 0; i < n; i++) if (key[i] !== INTERNAL_BYTES[i]) return false;
  return true;
}

/**
 * Where a SCAN cursor is in the iteration: SCAN walks buckets in reverse-binary order, so the
 * cursor's 64 bits reversed grow from call to call (whatever the table's size meanwhile).
 */
export function scanPosition(cursor: string): bigint {
  let v = BigInt(cursor);
  let r = 0n;
  for (let i = 0; i < 64; i++) {
    r = (r << 1n) | (v & 1n);
    v >>= 1n;
  }
  return r;
}

/** FNV-1a of `key` and its length. A bookmark's check is the sum of its done keys' (any order). */
function fnv(key: Buffer): number {
  let x = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) x = Math.imul(x ^ (key[i] as number), 16777619);
  return Math.imul(x ^ (key.length & 0xff), 16777619) >>> 0;
}

/** SCAN replies' keys packed into one Buffer (the replies' own Buffers are slices of socket chunks). */
function packStep(cursor: string, keys: Buffer[]): ScanStep {
  const ends = new Uint32Array(keys.length);
  let total = 0;
  keys.forEach((k, i) => {
    total += k.length;
    ends[i] = total;
  });
  return { cursor, keys: Buffer.concat(keys, total), ends };
}

/**
 * A Redis glob that is a literal (`user:1`) or a literal then one `*` (`user:*`), as the
 * literal's bytes (backslash escapes undone); undefined for any other glob.
 */
export function literalGlob(match: Buffer): { bytes: Buffer; prefix: boolean } | undefined {
  const out: number[] = [];
  for (let i = 0; i < match.length; i++) {
    const c = match[i] as number;
    if (c === 92) {
      // '\' escapes the next byte; a trailing one is left to the server.
      if (i + 1 >= match.length) return undefined;
      out.push(match[++i] as number);
    } else if (c === 42 && i === match.length - 1) {
      return { bytes: Buffer.from(out), prefix: true };
    } else if (c === 42 || c === 63 || c === 91) {
      return undefined;
    } else out.push(c);
  }
  return { bytes: Buffer.from(out), prefix: false };
}

/** Whether a key SCAN returned for `p` is not in its collection. */
function excluded(key: Buffer, p: Pattern): boolean {
  if (p.include !== undefined) {
    const text = key.toString("latin1");
    if (!p.include.some((re) => re.test(text))) return true;
  }
  if (p.prefix !== undefined) {
    // The prefix's own key, or the prefix then ':' (byte by byte: this runs for every key).
    const n = p.prefix.length;
    if (key.length < n || (key.length > n && key[n] !== 58)) return true;
    for (let i = 0; i < n; i++) if (key[i] !== p.prefix.charCodeAt(i)) return true;
  }
  if (p.exclude.length === 0 && p.hidden === undefined) return false;
  const text = key.toString("latin1");
  if (p.hidden?.some((h) => h.match.some((re) => re.test(text)) && !h.except.some((re) => re.test(text)))) return true;
  return p.exclude.some((re) => re.test(text));
}

/** Escapes Redis glob characters so `s` matches itself. */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, "\\$&");
}

function show(key: Buffer | Value): string {
  const s = key instanceof Uint8Array ? Buffer.from(key).toString("utf8") : String(key);
  return s.length > 80 ? `${s.slice(0, 77)}…` : s;
}

function positionOf(bookmark: Bookmark, name: string): { cursor: string; skip: number; check?: number } {
  const { cursor, skip, check } = bookmark;
  if (
    typeof cursor !== "string" ||
    !/^\d+$/.test(cursor) ||
    typeof skip !== "number" ||
    !Number.isSafeInteger(skip) ||
    (check !== undefined && typeof check !== "number")
  ) {
    throw new FerryError("E_CONFIG", `bookmark does not fit Redis collection ${name}: start this collection over`);
  }
  return check === undefined ? { cursor, skip } : { cursor, skip, check };
}

function ttlOf(v: Value | undefined): number | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date && !Number.isNaN(v.getTime())) return v.getTime();
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "string") {
    const t = Date.parse(v);
    if (!Number.isNaN(t)) return t;
  }
  throw new RedisValueError(`field ttl: ${JSON.stringify(v)} is not a time (an absolute expiry, or null)`);
}

function sizeCommand(p: ReturnType<Redis["pipeline"]>, type: RedisType, key: Buffer): void {
  switch (type) {
    case "string":
      p.strlen(key);
      return;
    case "hash":
      p.hlen(key);
      return;
    case "list":
      p.llen(key);
      return;
    case "set":
      p.scard(key);
      return;
    case "zset":
      p.zcard(key);
      return;
    case "stream":
      p.xlen(key);
      return;
  }
}

function wholeCommand(p: ReturnType<Redis["pipeline"]>, type: RedisType, key: Buffer): void {
  switch (type) {
    case "string":
      p.getBuffer(key);
      return;
    case "hash":
      p.hscanBuffer(key, "0", "COUNT", String(PAGE * 10));
      return;
    case "list":
      p.lrangeBuffer(key, 0, -1);
      return;
    case "set":
      p.sscanBuffer(key, "0", "COUNT", String(PAGE * 10));
      return;
    case "zset":
      p.zrangeBuffer(key, "0", "-1", "WITHSCORES");
      return;
    case "stream":
      p.xrangeBuffer(key, "-", "+");
      return;
  }
}

/** The record value of a reply (undefined: the key went away meanwhile). */
function redisValue(type: RedisType, reply: unknown): Value | undefined {
  switch (type) {
    case "string":
      return reply === null ? undefined : textOrBytes(reply as Buffer);
    case "hash":
      return hashValue(scanned(reply));
    case "set":
      return setValue(scanned(reply));
    case "list":
      return (reply as Buffer[]).map(element);
    case "zset": {
      const flat = reply as Buffer[];
      const out: JsonValue[] = [];
      for (let i = 0; i < flat.length; i += 2) {
        out.push([element(flat[i] as Buffer), scoreJson((flat[i + 1] as Buffer).toString())]);
      }
      return out;
    }
    case "stream":
      return (reply as [Buffer, Buffer[]][]).map(([id, fields]) => [id.toString(), fields.map(element)]);
  }
}

/** Items of an HSCAN/SSCAN reply `[cursor, items]`, or a plain item list. */
function scanned(reply: unknown): Buffer[] {
  const r = reply as unknown[];
  return Array.isArray(r[1]) ? (r[1] as Buffer[]) : (r as Buffer[]);
}

function hashValue(flat: Buffer[]): JsonValue {
  const names: Buffer[] = [];
  for (let i = 0; i < flat.length; i += 2) names.push(flat[i] as Buffer);
  if (names.every((n) => element(n) === n.toString("utf8") && n.toString("utf8") !== "__proto__")) {
    const obj: Record<string, JsonValue> = {};
    for (let i = 0; i < flat.length; i += 2) obj[(flat[i] as Buffer).toString("utf8")] = element(flat[i + 1] as Buffer);
    return obj;
  }
  const pairs: JsonValue[] = [];
  for (let i = 0; i < flat.length; i += 2) pairs.push([element(flat[i] as Buffer), element(flat[i + 1] as Buffer)]);
  return pairs;
}

function setValue(members: Buffer[]): JsonValue {
  return [...members].sort(Buffer.compare).map(element);
}

/** Commands that write `value` as a key of `type` (after DEL, or added to an existing key). */
function valueCommands(type: RedisType, key: Buffer, value: Value): [string, ...(string | Buffer)[]][] {
  const out: [string, ...(string | Buffer)[]][] = [];
  const what = "field value";
  const chunks = <T>(items: T[], n: number): T[][] => {
    const c: T[][] = [];
    for (let i = 0; i < items.length; i += n) c.push(items.slice(i, i + n));
    return c;
  };
  const list = (v: Value): JsonValue[] => {
    if (!Array.isArray(v)) throw new RedisValueError(`${what}: a ${type} is written from an array`);
    return v as JsonValue[];
  };
  switch (type) {
    case "string":
      out.push([
        "set",
        key,
        typeof value === "string" || value instanceof Uint8Array
          ? valueBytes(value, what)
          : elementBytes(value as JsonValue, what),
      ]);
      break;
    case "hash": {
      const pairs: [Buffer, Buffer][] = Array.isArray(value)
        ? (value as JsonValue[]).map((p) => {
            if (!Array.isArray(p) || p.length !== 2)
              throw new RedisValueError(`${what}: hash pairs are [field, value]`);
            return [elementBytes(p[0], what), elementBytes(p[1], what)];
          })
        : value !== null && typeof value === "object" && !(value instanceof Uint8Array) && !(value instanceof Date)
          ? Object.entries(value as Record<string, JsonValue>).map(([f, v]) => [
              Buffer.from(f, "utf8"),
              elementBytes(v, what),
            ])
          : (() => {
              throw new RedisValueError(`${what}: a hash is written from an object or [field, value] pairs`);
            })();
      if (pairs.length === 0) throw new RedisValueError(`${what}: a hash needs a field (Redis keeps no empty hash)`);
      for (const c of chunks(pairs, PAGE)) out.push(["hset", key, ...c.flat()]);
      break;
    }
    case "list":
      for (const c of chunks(list(value), PAGE)) out.push(["rpush", key, ...c.map((e) => elementBytes(e, what))]);
      break;
    case "set":
      for (const c of chunks(list(value), PAGE)) out.push(["sadd", key, ...c.map((e) => elementBytes(e, what))]);
      break;
    case "zset":
      for (const c of chunks(list(value), PAGE)) {
        out.push([
          "zadd",
          key,
          ...c.flatMap((p) => {
            if (!Array.isArray(p) || p.length !== 2)
              throw new RedisValueError(`${what}: sorted-set items are [member, score]`);
            return [scoreText(p[1], what), elementBytes(p[0], what)];
          }),
        ]);
      }
      break;
    case "stream":
      for (const e of list(value)) {
        if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== "string" || !Array.isArray(e[1])) {
          throw new RedisValueError(`${what}: stream entries are [id, [field, value, …]]`);
        }
        out.push(["xadd", key, e[0], ...(e[1] as JsonValue[]).map((x) => elementBytes(x, what))]);
      }
      break;
  }
  if (out.length === 0 && type !== "string") {
    throw new RedisValueError(`${what}: an empty ${type} cannot exist in Redis`);
  }
  return out;
}

/** A server or network failure as a FerryError naming the instance (never the password). */
function connectionError(err: unknown, where: string, location: RedisLocation, what?: string): FerryError {
  const message = err instanceof Error ? err.message : String(err);
  const doing = what ? ` (${what})` : "";
  if (/WRONGPASS|NOAUTH|invalid username-password/i.test(message)) {
    return new FerryError(
      "E_CONNECTION",
      `${where} refused the credentials${doing}: check the user and password in the URL`,
      { cause: err },
    );
  }
  if (/DB index is out of range|invalid DB index/i.test(message)) {
    return new FerryError(
      "E_CONFIG",
      `${where}: database ${location.db} does not exist on this server (see its "databases" setting): use a number below it`,
      { cause: err },
    );
  }
  if (/NOPERM/i.test(message)) {
    return new FerryError("E_PERMISSION", `${where}: the user may not run this command${doing}: ${message}`, {
      cause: err,
    });
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (
    location.tls &&
    (/certificate|self[- ]signed|altnames/i.test(message) || (typeof code === "string" && /CERT|TLS/.test(code)))
  ) {
    return new FerryError(
      "E_CONNECTION",
      `${where}: the server's TLS certificate is not trusted (${message}): give Node its CA with NODE_EXTRA_CA_CERTS=/path/ca.pem, and use the host name the certificate names`,
      { cause: err },
    );
  }
  if (/ECONNREFUSED|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|Connection is closed|connect/i.test(message)) {
    return new FerryError(
      "E_CONNECTION",
      `cannot reach Redis at ${location.host}:${location.port}${doing}: ${message.replace(/\s+/g, " ")}: is it running, and is the URL right?`,
      { cause: err },
    );
  }
  return new FerryError("E_CONNECTION", `${where}${doing}: ${message}`, { cause: err });
}

/**
 * A large key's members page by page, as RESP replies: string bytes (GETRANGE), hash
 * field/value and set member lists (HSCAN/SSCAN), list items (LRANGE), sorted-set
 * member/score lists (ZRANGE by rank), stream entries `[id, fields]` (XRANGE).
 */
async function* pages(conn: RespConnection, type: RedisType, key: Buffer, n: number): AsyncGenerator<Reply[]> {
  const one = async (args: (string | Buffer)[]): Promise<Reply> => {
    const w = new RespWriter();
    w.command(args);
    const [r] = await conn.send(w);
    if (r instanceof RespError) throw new Error(r.message);
    return r as Reply;
  };
  switch (type) {
    case "string": {
      const size = n * 100;
      for (let at = 0; ; at += size) {
        const part = (await one(["GETRANGE", key, String(at), String(at + size - 1)])) as Buffer;
        yield [part];
        if (part.length < size) return;
      }
    }
    case "hash":
    case "set": {
      let cursor = "0";
      do {
        const [next, items] = (await one([type === "hash" ? "HSCAN" : "SSCAN", key, cursor, "COUNT", String(n)])) as [
          Buffer,
          Buffer[],
        ];
        cursor = next.toString();
        yield items;
      } while (cursor !== "0");
      return;
    }
    case "list":
    case "zset":
      for (let at = 0; ; at += n) {
        const range = [String(at), String(at + n - 1)];
        const page = (await one(
          type === "list" ? ["LRANGE", key, ...range] : ["ZRANGE", key, ...range, "WITHSCORES"],
        )) as Buffer[];
        yield page;
        if (page.length < (type === "list" ? n : 2 * n)) return;
      }
    case "stream": {
      let from = "-";
      for (;;) {
        const page = (await one(["XRANGE", key, from, "+", "COUNT", String(n)])) as [Buffer, Buffer[]][];
        yield page as unknown as Reply[];
        const last = page[page.length - 1];
        if (page.length < n || last === undefined) return;
        from = `(${last[0].toString()}`;
      }
    }
  }
}

/** Throws on the first error reply of a batch of commands. */
function checkReplies(replies: Reply[], where: string, what: string): void {
  for (const r of replies) {
    if (r instanceof RespError) throw writeError(new Error(r.message), what, where);
  }
}

/** A bulk batch the target refused, worded by what happened (`outcome`). */
function bulkWriteError(message: string, collection: string, where: string, what: string, outcome: string): FerryError {
  if (/OOM/.test(message)) return writeError(new Error(message), collection, where);
  return new FerryError("E_WRITE", `${what} failed: ${message}: ${outcome}`, { details: { collection } });
}

function writeError(err: unknown, collection: string, where: string): FerryError {
  // EXECABORT carries the refusals that aborted the transaction (ioredis: previousErrors).
  const previous = (err as { previousErrors?: unknown[] } | null)?.previousErrors ?? [];
  const message = [err, ...previous].map((e) => (e instanceof Error ? e.message : String(e))).join("; ");
  if (/OOM/.test(message)) {
    return new FerryError(
      "E_WRITE",
      `${where} is out of memory (maxmemory) while writing ${collection}: nothing of this batch was written; free memory or raise maxmemory, then run again with --resume`,
      { cause: err, details: { collection } },
    );
  }
  return new FerryError("E_WRITE", `${where}: writing ${collection} failed: ${message}`, {
    cause: err,
    details: { collection },
  });
}
