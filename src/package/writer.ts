/**
 * Writes a `.ferry` package as a copy's target: records stream into compressed data entries
 * of a tar file ({@link CHUNK_BYTES} at most in memory per collection), the manifest last.
 * The file appears under its name only once `commit` wrote the manifest; until then it is
 * `<name>.partial`, removed by `close` when the export did not finish.
 */
import { createHash, type Hash } from "node:crypto";
import { createWriteStream, existsSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { encodeLine } from "../connectors/files/record-codec.js";
import {
  type BulkTransfer,
  type Checkpoint,
  type Connector,
  hasTextExport,
  type JournalStore,
  type PrepareResult,
  type ReadBatch,
  type WriteOp,
  type WriteResult,
} from "../core/connector.js";
import { FerryError } from "../core/errors.js";
import type { Bookmark } from "../core/messages.js";
import { factoryForEngine } from "../core/registry.js";
import type { CollectionSchema } from "../core/schema.js";
import { withoutSecrets } from "../core/secrets.js";
import type { Row } from "../core/values.js";
import { compressChunk } from "./compression.js";
import { type EncryptTo, encryptStream } from "./encryption.js";
import {
  CHUNK_BYTES,
  type ChunkInfo,
  type Compression,
  chunkEntry,
  MANIFEST_ENTRY,
  MAX_RECORD_BYTES,
  type Manifest,
  type ManifestCollection,
  manifestDigest,
  PACKAGE_FORMAT,
  PACKAGE_VERSION,
} from "./format.js";
import { MemoryJournal } from "./memory-journal.js";

/** What a package says about itself besides its data. */
export interface PackageWriterOptions {
  compression: Compression;
  encryption?: EncryptTo;
  description?: string;
  app: Manifest["app"];
  source: Manifest["source"];
  exportedBy: string;
  /** Fields left out of each collection's records and schema (the secret ones). */
  omitFields?: Record<string, string[]>;
  /** Never-exported collections left out, recorded in the manifest. */
  omittedCollections?: string[];
}

interface Open {
  name: string;
  schema: CollectionSchema;
  omit: Set<string>;
  records: number;
  bytes: number;
  hash: Hash;
  chunks: ChunkInfo[];
  /** Pending records as JSON lines, or (a collection kept as text) pending lines of text. */
  lines: (string | Uint8Array)[];
  pending: number;
  pendingBytes: number;
  /** Set when the collection is kept as its source's delimited text (see `ManifestCollection.text`). */
  text?: string[];
}

/**
 * A package being written: a copy target that takes inserts only. From a source that
 * exports delimited text its connector can decode again (PostgreSQL), a collection is kept as
 * that text (its bulk path): no record is built on the way.
 */
export class PackageWriter implements Connector, BulkTransfer {
  readonly engine = "package";
  readonly displayUrl: string;
  readonly identity: string;
  readonly #path: string;
  readonly #partial: string;
  readonly #o: PackageWriterOptions;
  readonly #pack = tar.pack();
  readonly #collections = new Map<string, Open>();
  readonly #order: string[] = [];
  readonly #journal = new MemoryJournal();
  #done: Promise<void> | undefined;
  #failed: unknown;
  #committed: Manifest | undefined;
  /** Entries are added one after another. */
  #tail: Promise<void> = Promise.resolve();

  constructor(path: string, options: PackageWriterOptions) {
    this.#path = resolve(path);
    this.#partial = `${this.#path}.partial`;
    this.#o = options;
    this.displayUrl = path;
    this.identity = `package:${this.#path}`;
  }

  async check(): Promise<void> {
    const dir = dirname(this.#path);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new FerryError("E_CONFIG", `cannot write ${this.displayUrl}: no directory ${dir} (create it first)`);
    }
    if (existsSync(this.#path) && statSync(this.#path).isDirectory()) {
      throw new FerryError(
        "E_CONFIG",
        `cannot write ${this.displayUrl}: it is a directory; name a file such as app.ferry`,
      );
    }
    await this.#start();
  }

  /** Opens the output: tar → (age) → `<file>.partial`. */
  async #start(): Promise<void> {
    if (this.#done) return;
    // The encryption first: a bad recipient is refused before any file is opened.
    const source: Readable = this.#o.encryption
      ? await encryptStream(this.#pack as unknown as AsyncIterable<Uint8Array>, this.#o.encryption)
      : Readable.from(this.#pack as unknown as AsyncIterable<Uint8Array>);
    const out = createWriteStream(this.#partial, { mode: 0o600 });
    this.#done = pipeline(source, out).catch((err: unknown) => {
      this.#failed ??= err;
    });
  }

  async discover(): Promise<CollectionSchema[]> {
    return [];
  }

  async count(): Promise<number | undefined> {
    return 0;
  }

  // biome-ignore lint/correctness/useYield: a package being written has nothing to read yet
  async *read(): AsyncIterable<ReadBatch> {
    throw new FerryError("E_UNSUPPORTED", `${this.displayUrl} is being written: it cannot be read in the same run`);
  }

  async prepare(collection: CollectionSchema): Promise<PrepareResult> {
    const omit = new Set(this.#o.omitFields?.[collection.name] ?? []);
    const schema: CollectionSchema = omit.size === 0 ? collection : withoutFields(collection, omit);
    if (!this.#collections.has(collection.name)) {
      this.#collections.set(collection.name, {
        name: collection.name,
        schema,
        omit,
        records: 0,
        bytes: 0,
        hash: createHash("sha256"),
        chunks: [],
        lines: [],
        pending: 0,
        pendingBytes: 0,
      });
      this.#order.push(collection.name);
    }
    return { schema, created: true };
  }

  async lookup(): Promise<Map<string, Row>> {
    return new Map();
  }

  async write(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult> {
    const c = this.#collections.get(collection.name);
    if (!c) throw new FerryError("E_INTERNAL", `package: ${collection.name} written before it was prepared`);
    const failures: WriteResult["failures"] = [];
    ops.forEach((op, index) => {
      if (op.op !== "insert") {
        failures.push({ index, reason: "a package being written takes new records only" });
        return;
      }
      let line: string;
      try {
        line = `${encodeLine(c.omit.size === 0 ? op.record : withoutSecrets(op.record, c.omit))}\n`;
      } catch (err) {
        failures.push({ index, reason: `cannot be written as JSON: ${(err as Error).message}` });
        return;
      }
      const bytes = Buffer.byteLength(line);
      if (bytes > MAX_RECORD_BYTES) {
        failures.push({
          index,
          reason: `is ${bytes} bytes as JSON: a package takes records up to ${MAX_RECORD_BYTES}`,
        });
        return;
      }
      if (c.text) {
        failures.push({ index, reason: "its collection is kept as text in this package: a bug in Ferry" });
        return;
      }
      c.lines.push(line);
      c.pending++;
      c.pendingBytes += bytes;
      if (c.pendingBytes >= CHUNK_BYTES) this.#flush(c);
    });
    await this.#settled();
    const result = { failures };
    if (checkpoint) await this.#journal.save(checkpoint.id, checkpoint.entry(result));
    return result;
  }

  /** Writes the collection's pending lines as one entry (queued after the entries before it). */
  #flush(c: Open): void {
    if (c.pending === 0) return;
    const data = c.text ? Buffer.concat(c.lines as Uint8Array[], c.pendingBytes) : Buffer.from(c.lines.join(""));
    const info: ChunkInfo = {
      entry: chunkEntry(c.name, c.chunks.length + 1, this.#o.compression, c.text !== undefined),
      records: c.pending,
      bytes: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
    };
    c.hash.update(data);
    c.records += c.pending;
    c.bytes += data.length;
    c.chunks.push(info);
    c.lines = [];
    c.pending = 0;
    c.pendingBytes = 0;
    const body = compressChunk(data, this.#o.compression);
    info.stored = createHash("sha256").update(body).digest("hex");
    this.#tail = this.#tail.then(() => this.#entry(info.entry, body));
  }

  /**
   * True for a collection with no field left out, not written as records yet, from a source
   * that exports it as text its engine's connector decodes again.
   */
  canBulkCopyFrom(source: Connector, collection: CollectionSchema): boolean {
    const c = this.#collections.get(collection.name);
    return (
      c !== undefined &&
      c.omit.size === 0 &&
      (c.text !== undefined || c.records + c.pending === 0) &&
      hasTextExport(source) &&
      source.textFields(collection) !== undefined &&
      collection.engine !== undefined &&
      factoryForEngine(collection.engine)?.textDecoder !== undefined
    );
  }

  /** Keeps the next at most `limit` rows of the source's text as they come. */
  async bulkCopyFrom(
    source: Connector,
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number; undo?: boolean },
    checkpoint: (count: number, bookmark: Bookmark) => Checkpoint,
  ): Promise<{ count: number; bookmark: Bookmark }> {
    const c = this.#collections.get(collection.name);
    const fields = hasTextExport(source) ? source.textFields(collection) : undefined;
    if (!c || !fields || !hasTextExport(source) || (c.text === undefined && c.records + c.pending > 0)) {
      throw new FerryError("E_INTERNAL", `package: no text path for ${collection.name}: a bug in Ferry`);
    }
    c.text ??= fields;
    let count = 0;
    let bookmark: Bookmark | undefined;
    const { after, upTo } = options;
    for await (const chunk of source.exportText(collection, {
      ...(after ? { after } : {}),
      ...(upTo ? { upTo } : {}),
      limit: options.limit,
    })) {
      const bytes = typeof chunk.text === "string" ? Buffer.from(chunk.text) : chunk.text;
      const long = longestLine(bytes);
      if (long.bytes > MAX_RECORD_BYTES) {
        throw new FerryError(
          "E_UNSUPPORTED",
          `${collection.name}: record ${c.records + c.pending + long.index + 1} is ${long.bytes} bytes: a package takes records up to ${MAX_RECORD_BYTES}; no package was written`,
          { details: { collection: collection.name } },
        );
      }
      c.lines.push(bytes);
      c.pending += chunk.rows;
      c.pendingBytes += bytes.length;
      count += chunk.rows;
      bookmark = chunk.bookmark;
      if (c.pendingBytes >= CHUNK_BYTES) {
        this.#flush(c);
        await this.#settled();
      }
    }
    if (count === 0 || bookmark === undefined) return { count: 0, bookmark: after ?? { after: [] } };
    await this.#settled();
    const cp = checkpoint(count, bookmark);
    await this.#journal.save(cp.id, cp.entry({ failures: [] }));
    return { count, bookmark };
  }

  #entry(name: string, body: Buffer): Promise<void> {
    return new Promise((ok, fail) => {
      this.#pack.entry({ name, size: body.length, mode: 0o600, mtime: new Date(0) }, body, (err) =>
        err ? fail(err) : ok(),
      );
    });
  }

  /** Waits for the queued entries; a failed output is reported by its cause (a full disk), not tar's. */
  async #settled(): Promise<void> {
    try {
      await this.#tail;
    } catch (err) {
      this.#failed ??= err;
    }
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#failed !== undefined) {
      throw new FerryError("E_WRITE", `cannot write ${this.displayUrl}: ${(this.#failed as Error).message}`, {
        cause: this.#failed,
      });
    }
  }

  async finish(collection: CollectionSchema): Promise<void> {
    const c = this.#collections.get(collection.name);
    if (c) this.#flush(c);
    await this.#settled();
  }

  /**
   * Writes the manifest, ends the tar and gives the file its name.
   *
   * @returns the manifest written.
   */
  async commit(): Promise<Manifest> {
    for (const c of this.#collections.values()) this.#flush(c);
    await this.#settled();
    const collections: ManifestCollection[] = this.#order.map((n) => {
      const c = this.#collections.get(n) as Open;
      return {
        name: c.name,
        schema: c.schema,
        records: c.records,
        bytes: c.bytes,
        sha256: c.hash.digest("hex"),
        chunks: c.chunks,
        ...(c.text ? { text: { fields: c.text } } : {}),
      };
    });
    const omittedFields = Object.fromEntries(
      Object.entries(this.#o.omitFields ?? {}).filter(([n, f]) => f.length > 0 && this.#collections.has(n)),
    );
    const body: Omit<Manifest, "digest"> = {
      format: PACKAGE_FORMAT,
      version: PACKAGE_VERSION,
      app: this.#o.app,
      source: this.#o.source,
      exportedBy: this.#o.exportedBy,
      createdAt: new Date().toISOString(),
      ...(this.#o.description ? { description: this.#o.description } : {}),
      compression: this.#o.compression,
      collections,
      omitted: { fields: omittedFields, collections: this.#o.omittedCollections ?? [] },
    };
    const manifest: Manifest = { ...body, digest: manifestDigest(body) };
    await this.#entry(MANIFEST_ENTRY, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
    this.#pack.finalize();
    await this.#done;
    this.#throwIfFailed();
    renameSync(this.#partial, this.#path);
    this.#committed = manifest;
    return manifest;
  }

  journal(): JournalStore {
    return this.#journal;
  }

  /** Ends the output; a package not committed is removed (no half-written file is left). */
  async close(): Promise<void> {
    if (this.#committed) return;
    this.#pack.destroy();
    await this.#done?.catch(() => {});
    rmSync(this.#partial, { force: true });
  }

  /** The name the package gets once committed. */
  get file(): string {
    return basename(this.#path);
  }
}

/** The longest line of whole lines of text: its bytes and its index. */
function longestLine(text: Uint8Array): { bytes: number; index: number } {
  let best = { bytes: 0, index: 0 };
  let start = 0;
  for (let i = 0, nl = text.indexOf(10); nl >= 0; i++, start = nl + 1, nl = text.indexOf(10, start)) {
    if (nl + 1 - start > best.bytes) best = { bytes: nl + 1 - start, index: i };
  }
  return best;
}

function withoutFields(s: CollectionSchema, omit: Set<string>): CollectionSchema {
  // The source's DDL would recreate the left-out columns: the schema alone describes them.
  const { native: _native, indexes, uniqueKeys, ...rest } = s;
  return {
    ...rest,
    fields: s.fields.filter((f) => !omit.has(f.name)),
    ...(indexes ? { indexes: indexes.filter((i) => !i.fields.some((f) => omit.has(f))) } : {}),
    ...(uniqueKeys ? { uniqueKeys: uniqueKeys.filter((k) => !k.some((f) => omit.has(f))) } : {}),
  };
}
