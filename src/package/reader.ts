/**
 * Reads a `.ferry` package as a copy's source. Opening it reads the whole package once and
 * checks everything that can be checked without a target: the tar structure, each entry's
 * compression, every chunk's and collection's SHA-256 and count against the manifest, the
 * manifest's own digest and its format version. Nothing is trusted before that pass; reads
 * check each chunk's SHA-256 again before yielding its records (the file could change between).
 */
import { createHash } from "node:crypto";
import { closeSync, createReadStream, openSync, readSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { parseLine, project } from "../connectors/files/record-codec.js";
import type {
  Connector,
  JournalStore,
  PrepareResult,
  ReadBatch,
  ReadOptions,
  TextChunk,
  TextExport,
  WriteResult,
} from "../core/connector.js";
import { countLines } from "../core/delimited-text.js";
import { FerryError, isFerryError } from "../core/errors.js";
import type { Bookmark } from "../core/messages.js";
import { factoryForEngine } from "../core/registry.js";
import type { CollectionSchema } from "../core/schema.js";
import type { Row } from "../core/values.js";
import { decompressChunk } from "./compression.js";
import { decryptStream, isAgeEncrypted, isEncryptedFile, type UnlockedKeys, unlock } from "./encryption.js";
import {
  type ChunkInfo,
  type Compression,
  MANIFEST_ENTRY,
  MAX_ENTRY_BYTES,
  type Manifest,
  type ManifestCollection,
  manifestDigest,
  PACKAGE_FORMAT,
  PACKAGE_VERSION,
} from "./format.js";
import { MemoryJournal } from "./memory-journal.js";

/** One entry of the tar. */
interface Entry {
  name: string;
  /** Undefined when the caller did not want it (its bytes were skipped). */
  body: Buffer | undefined;
}

/** What the opening pass found. */
export interface PackageCheck {
  manifest: Manifest;
  encrypted: boolean;
  /** Bytes of the package file. */
  fileBytes: number;
  /** The keys given, with an encrypted package's file key once unwrapped. */
  keys: UnlockedKeys;
}

/** A package opened and checked, to be read. */
export class PackageReader implements Connector, TextExport {
  readonly engine = "package";
  readonly displayUrl: string;
  readonly identity: string;
  /** The manifest's digest: a resumed import must read the same package. */
  readonly revision: string;
  readonly manifest: Manifest;
  readonly encrypted: boolean;
  readonly fileBytes: number;
  readonly #path: string;
  readonly #keys: UnlockedKeys;
  readonly #journal = new MemoryJournal();

  private constructor(path: string, keys: UnlockedKeys, check: PackageCheck) {
    this.#path = resolve(path);
    this.#keys = keys;
    this.displayUrl = path;
    this.identity = `package:${this.#path}`;
    this.manifest = check.manifest;
    this.revision = check.manifest.digest;
    this.encrypted = check.encrypted;
    this.fileBytes = check.fileBytes;
  }

  /**
   * Opens and checks a package (one pass over all of it).
   *
   * @throws FerryError `E_NOT_FOUND` when there is no such file, `E_DECRYPT` when it is
   * encrypted and the keys given do not open it, `E_CHECKSUM` listing every check that failed
   * and where (damaged, truncated, edited, or from a newer Ferry).
   */
  static async open(path: string, keys: UnlockedKeys = {}): Promise<PackageReader> {
    const check = await checkPackage(path, keys);
    // An encrypted package's key, derived once by the check, serves every later pass.
    return new PackageReader(path, check.keys, check);
  }

  async check(): Promise<void> {}

  async version(): Promise<string> {
    return `Ferry package v${this.manifest.version}`;
  }

  async discover(): Promise<CollectionSchema[]> {
    return this.manifest.collections.map((c) => ({ ...c.schema, name: c.name }));
  }

  async count(collection: CollectionSchema): Promise<number | undefined> {
    return this.#collection(collection.name).records;
  }

  async size(collection: CollectionSchema): Promise<number | undefined> {
    return this.#collection(collection.name).bytes;
  }

  #collection(name: string): ManifestCollection {
    const c = this.manifest.collections.find((x) => x.name === name);
    if (!c) throw new FerryError("E_NOT_FOUND", `${this.displayUrl} holds no collection ${name}`);
    return c;
  }

  /**
   * Records in the order they were exported; a bookmark is `{ chunk, line }`. A collection
   * kept as text is decoded by its engine's connector.
   */
  async *read(collection: CollectionSchema, options: ReadOptions): AsyncIterable<ReadBatch> {
    const mc = this.#collection(collection.name);
    const after = options.after as Position | undefined;
    const upTo = options.upTo as Position | undefined;
    const first = after?.chunk ?? 0;
    const decodeText = mc.text ? this.#textDecoder(mc, mc.text.fields) : undefined;
    for await (const { index: i, name, data } of this.#chunks(mc, first, upTo)) {
      const lines = data.toString("utf8").split("\n");
      lines.pop(); // the text ends with a newline
      const stop = upTo?.chunk === i ? upTo.line : lines.length;
      let line = i === first ? (after?.line ?? 0) : 0;
      while (line < stop) {
        const end = Math.min(line + options.batchSize, stop);
        const records: Row[] = [];
        for (let n = line; n < end; n++) {
          const text = lines[n] as string;
          const where = { file: `${this.displayUrl}:${name}`, line: n + 1 };
          const r = decodeText ? decodeTextLine(decodeText, text, where) : parseLine(text, where);
          records.push(options.fields ? project(r, options.fields) : r);
        }
        line = end;
        const bookmark: Bookmark = line === lines.length ? { chunk: i + 1, line: 0 } : { chunk: i, line };
        yield { records, bookmark };
      }
    }
  }

  /** The fields of a collection kept as text (see {@link TextExport}); undefined for records. */
  textFields(collection: CollectionSchema): string[] | undefined {
    return this.manifest.collections.find((x) => x.name === collection.name)?.text?.fields;
  }

  /**
   * Up to `parts − 1` bookmarks cutting the collection at chunk boundaries into parts of
   * similar record counts (a range runs from one to the next: `after` where it starts,
   * `upTo` where the next starts).
   */
  async split(collection: CollectionSchema, parts: number): Promise<Bookmark[]> {
    const mc = this.#collection(collection.name);
    const out: Bookmark[] = [];
    let seen = 0;
    mc.chunks.forEach((c, i) => {
      if (i > 0 && seen >= (mc.records * (out.length + 1)) / parts) out.push({ chunk: i, line: 0 });
      seen += c.records;
    });
    return out.slice(0, Math.max(0, Math.floor(parts) - 1));
  }

  /**
   * A collection kept as text, as it is stored: at most `limit` lines from `after` (a
   * bookmark `{ chunk, line }`: where to start) and before `upTo`, in chunks of whole lines.
   * Consecutive calls continue one pass over the file.
   */
  async *exportText(
    collection: CollectionSchema,
    options: { after?: Bookmark; upTo?: Bookmark; limit: number },
  ): AsyncIterable<TextChunk> {
    const mc = this.#collection(collection.name);
    if (!mc.text) throw new FerryError("E_INTERNAL", `${mc.name} is not kept as text: a bug in Ferry`);
    const after = options.after as Position | undefined;
    const upTo = options.upTo as Position | undefined;
    let chunk = after?.chunk ?? 0;
    let line = after?.line ?? 0;
    let left = Math.max(1, Math.floor(options.limit));
    const end = upTo ?? { chunk: mc.chunks.length, line: 0 };
    while (left > 0 && (chunk < end.chunk || (chunk === end.chunk && line < end.line))) {
      const data = await this.#chunkAt(mc, chunk);
      const total = chunk === end.chunk ? end.line : (mc.chunks[chunk] as ChunkInfo).records;
      let start = 0;
      for (let n = 0; n < line; n++) start = data.indexOf(10, start) + 1;
      let stop = start;
      let rows = 0;
      while (rows < left && line + rows < total) {
        stop = data.indexOf(10, stop) + 1;
        rows++;
      }
      line += rows;
      left -= rows;
      if (line >= (mc.chunks[chunk] as ChunkInfo).records) {
        chunk++;
        line = 0;
      }
      if (rows > 0) yield { text: data.subarray(start, stop), rows, bookmark: { chunk, line } };
    }
  }

  /** The decoder of a collection's text, from its engine's connector. */
  #textDecoder(mc: ManifestCollection, fields: string[]): (line: string) => Row {
    const engine = mc.schema.engine ?? "?";
    const factory = factoryForEngine(engine);
    if (!factory?.textDecoder) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `${this.displayUrl} keeps ${mc.name} as ${engine} text, which no registered connector decodes (import "ferry/connectors")`,
      );
    }
    return factory.textDecoder(mc.schema, fields);
  }

  /**
   * Passes over the file that {@link exportText} continues from one call to the next (one
   * per range read at once), most recently used last.
   */
  #cursors: Cursor[] = [];

  /** Chunk `index` of `mc` (checked), continuing an open pass that holds it or is just before it. */
  async #chunkAt(mc: ManifestCollection, index: number): Promise<Buffer> {
    const at = this.#cursors.findIndex((c) => c.name === mc.name && (c.held?.index === index || c.next === index));
    let cur = at >= 0 ? (this.#cursors.splice(at, 1)[0] as Cursor) : undefined;
    if (cur?.held?.index !== index) {
      if (!cur) {
        cur = { name: mc.name, next: index, it: this.#chunks(mc, index)[Symbol.asyncIterator]() };
        if (this.#cursors.length >= MAX_CURSORS) await this.#cursors.shift()?.it.return?.();
      }
      const r = await cur.it.next();
      if (r.done) throw new FerryError("E_INTERNAL", `${mc.name}: no chunk ${index}: a bug in Ferry`);
      cur.held = r.value;
      cur.next = index + 1;
    }
    this.#cursors.push(cur);
    return (cur.held as ChunkData).data;
  }

  /**
   * The collection's chunks from `first` on (up to the one `upTo` is in), in order, each
   * checked against its SHA-256 and record count again.
   *
   * @throws FerryError `E_CHECKSUM` when a chunk changed or the file ends before the last one.
   */
  async *#chunks(mc: ManifestCollection, first: number, upTo?: Position): AsyncGenerator<ChunkData> {
    const last = upTo
      ? Math.min(mc.chunks.length, upTo.line > 0 ? upTo.chunk + 1 : upTo.chunk) - 1
      : mc.chunks.length - 1;
    if (first > last) return;
    const index = new Map(mc.chunks.map((c, i) => [c.entry, i]));
    const kind = this.manifest.compression;
    for await (const e of entriesOf(this.#path, this.#keys, (name) => (index.get(name) ?? -1) >= first)) {
      const i = index.get(e.name);
      if (i === undefined || i < first || !e.body) continue;
      const info = mc.chunks[i] as ChunkInfo;
      const data = decompressChunk(e.body, kind, e.name);
      if (createHash("sha256").update(data).digest("hex") !== info.sha256) {
        throw new FerryError(
          "E_CHECKSUM",
          `${this.displayUrl}: ${e.name} changed since the package was checked (its SHA-256 differs from the manifest's): stopped before writing its records`,
          { details: { entry: e.name } },
        );
      }
      const lines = countLines(data);
      if (lines !== info.records || (data.length > 0 && data[data.length - 1] !== 10)) {
        throw new FerryError(
          "E_CHECKSUM",
          `${this.displayUrl}: ${e.name} holds ${lines} records, the manifest says ${info.records}: stopped before writing its records`,
          { details: { entry: e.name } },
        );
      }
      yield { index: i, name: e.name, data };
      if (i === last) return;
    }
    // The tar ended before this collection's last entry: the file changed since it was checked.
    const missing = mc.chunks[last]?.entry;
    throw new FerryError(
      "E_CHECKSUM",
      `${this.displayUrl}: ends before ${missing} (the file changed since it was checked): stopped before writing the missing records`,
      { details: { entry: missing } },
    );
  }

  async prepare(): Promise<PrepareResult> {
    throw this.#readOnly();
  }

  async lookup(): Promise<Map<string, Row>> {
    throw this.#readOnly();
  }

  async write(): Promise<WriteResult> {
    throw this.#readOnly();
  }

  async finish(): Promise<void> {
    throw this.#readOnly();
  }

  #readOnly(): FerryError {
    return new FerryError(
      "E_UNSUPPORTED",
      `${this.displayUrl} is a package: it is read, never written (ferry export writes a new one)`,
    );
  }

  journal(): JournalStore {
    return this.#journal;
  }

  async close(): Promise<void> {
    const open = this.#cursors;
    this.#cursors = [];
    for (const c of open) await c.it.return?.();
  }
}

/** A place in a collection: its `line`th record of chunk `chunk` (a package's bookmark). */
interface Position {
  chunk: number;
  line: number;
}

/** Most passes over one package open at once. */
const MAX_CURSORS = 32;

/** An open pass over a package, at the chunk it holds. */
interface Cursor {
  name: string;
  next: number;
  it: AsyncIterator<ChunkData>;
  held?: ChunkData;
}

/** A chunk of a collection, decompressed and checked. */
interface ChunkData {
  index: number;
  name: string;
  data: Buffer;
}

/** A line of a collection kept as text, decoded; a line that does not decode names its place. */
function decodeTextLine(decode: (line: string) => Row, text: string, where: { file: string; line: number }): Row {
  try {
    return decode(text);
  } catch (err) {
    throw new FerryError(
      "E_CHECKSUM",
      `${where.file} line ${where.line}: not a row of its collection (${(err as Error).message})`,
      { cause: err, details: where },
    );
  }
}

/** The package's bytes, decrypted when it is encrypted. */
async function plainStream(path: string, keys: UnlockedKeys): Promise<{ stream: Readable; encrypted: boolean }> {
  const head = Buffer.alloc(64);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FerryError(
      code === "ENOENT" ? "E_NOT_FOUND" : "E_CONFIG",
      code === "ENOENT" ? `no package ${path}: check the path` : `cannot read ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let n: number;
  try {
    n = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  // 1 MB reads: tar-stream handles 64 KB pieces several times slower.
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  if (!isAgeEncrypted(head.subarray(0, n))) return { stream: file, encrypted: false };
  try {
    return { stream: await decryptStream(file, keys, path), encrypted: true };
  } catch (err) {
    file.destroy();
    throw err;
  }
}

/**
 * The package's tar entries in order; bodies of entries `want` refuses are skipped.
 *
 * @throws FerryError `E_CHECKSUM` when the tar is damaged or ends early, or the encrypted
 * payload fails its authentication.
 */
async function* entriesOf(path: string, keys: UnlockedKeys, want: (name: string) => boolean): AsyncGenerator<Entry> {
  const { stream, encrypted } = await plainStream(path, keys);
  const extract = tar.extract();
  stream.on("error", (err) => extract.destroy(err));
  stream.pipe(extract as unknown as NodeJS.WritableStream);
  let current = "(the first entry)";
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      current = name;
      if (entry.header.size !== undefined && entry.header.size > MAX_ENTRY_BYTES) {
        throw new FerryError(
          "E_CHECKSUM",
          `${path}: entry ${name} is ${entry.header.size} bytes: not a Ferry package entry`,
        );
      }
      if (!want(name)) {
        entry.resume();
        yield { name, body: undefined };
        continue;
      }
      const parts: Buffer[] = [];
      for await (const part of entry) parts.push(part as Buffer);
      yield { name, body: Buffer.concat(parts) };
    }
  } catch (err) {
    if (isFerryError(err)) throw err;
    const why = (err as Error).message;
    throw new FerryError(
      "E_CHECKSUM",
      encrypted && /tag|auth|decrypt|chunk|stream/i.test(why)
        ? `${path}: the encrypted data is damaged or truncated near ${current} (${why})`
        : `${path}: damaged or truncated near ${current} (${why}): not a whole Ferry package`,
      { cause: err, details: { entry: current } },
    );
  } finally {
    stream.unpipe(extract as unknown as NodeJS.WritableStream);
    stream.destroy();
    extract.destroy();
  }
}

/** The compression a data entry's name says. */
function compressionOf(name: string): Compression | undefined {
  return name.endsWith(".zst") ? "zstd" : name.endsWith(".gz") ? "gzip" : undefined;
}

/** What one pass over a package's entries found. */
interface Scan {
  problems: string[];
  /** Per data entry: the SHA-256 of its stored bytes; with `text`, also of its text, its lines and bytes. */
  found: Map<string, { stored: string; sha256?: string; records?: number; bytes?: number }>;
  /** With `text`: per collection, the SHA-256 of its chunks' text. */
  collectionHashes: Map<string, ReturnType<typeof createHash>>;
  manifestText: string | undefined;
}

/** One pass over a package's entries: each data entry hashed as stored and, with `text`, decompressed. */
async function scanEntries(path: string, keys: UnlockedKeys, text: boolean): Promise<Scan> {
  const problems: string[] = [];
  const found: Scan["found"] = new Map();
  const collectionHashes = new Map<string, ReturnType<typeof createHash>>();
  let manifestText: string | undefined;
  let afterManifest = false;
  for await (const e of entriesOf(path, keys, () => true)) {
    const body = e.body as Buffer;
    if (e.name === MANIFEST_ENTRY) {
      manifestText = body.toString("utf8");
      continue;
    }
    if (manifestText !== undefined && !afterManifest) {
      afterManifest = true;
      problems.push(`${e.name}: an entry after the manifest (the manifest is the last entry)`);
    }
    const kind = compressionOf(e.name);
    const m = /^data\/([^/]+)\/\d+\.(ndjson|tsv)\.(zst|gz)$/.exec(e.name);
    if (!m || !kind) {
      problems.push(`${e.name}: not an entry of a Ferry package`);
      continue;
    }
    const stored = createHash("sha256").update(body).digest("hex");
    if (!text) {
      found.set(e.name, { stored });
      continue;
    }
    let data: Buffer;
    try {
      data = decompressChunk(body, kind, e.name);
    } catch (err) {
      problems.push((err as Error).message);
      continue;
    }
    const collection = decodeURIComponent(m[1] as string);
    let h = collectionHashes.get(collection);
    if (!h) {
      h = createHash("sha256");
      collectionHashes.set(collection, h);
    }
    h.update(data);
    const records = countLines(data);
    found.set(e.name, {
      stored,
      sha256: createHash("sha256").update(data).digest("hex"),
      records,
      bytes: data.length,
    });
  }
  return { problems, found, collectionHashes, manifestText };
}

/**
 * Reads the whole package and checks it; every failed check is listed. A package whose
 * manifest has every entry's `stored` checksum is checked byte for byte without being
 * decompressed (its text is checked again as it is read); an older one is decompressed.
 */
export async function checkPackage(path: string, keys: UnlockedKeys = {}): Promise<PackageCheck> {
  let fileBytes: number;
  try {
    fileBytes = statSync(path).size;
  } catch (err) {
    throw new FerryError("E_NOT_FOUND", `no package ${path}: check the path`, { cause: err });
  }
  const encrypted = isEncryptedFile(path);
  if (encrypted) keys = await unlock(path, keys);
  // First every entry's stored bytes; their text too when the manifest has no `stored` checksums (version 1).
  let scan = await scanEntries(path, keys, false);
  const { manifestText } = scan;
  let problems = scan.problems;
  if (manifestText === undefined) {
    throw new FerryError(
      "E_CHECKSUM",
      `${path}: no manifest: the package is truncated (or not a Ferry package)${problems.length > 0 ? `; also:\n  ${problems.join("\n  ")}` : ""}`,
      { details: { problems: ["no manifest", ...problems] } },
    );
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(manifestText) as Manifest;
  } catch (err) {
    throw new FerryError(
      "E_CHECKSUM",
      `${path}: ${MANIFEST_ENTRY} is not valid JSON (${(err as Error).message}): the package is damaged`,
      {
        details: { problems: [`${MANIFEST_ENTRY}: not JSON`] },
      },
    );
  }
  if (manifest?.format !== PACKAGE_FORMAT) {
    throw new FerryError(
      "E_CHECKSUM",
      `${path}: ${MANIFEST_ENTRY} is not a Ferry package manifest (format ${JSON.stringify(manifest?.format)})`,
    );
  }
  if (typeof manifest.version !== "number" || manifest.version > PACKAGE_VERSION) {
    throw new FerryError(
      "E_CHECKSUM",
      `${path}: made by a newer Ferry (package format version ${manifest.version}; this Ferry reads up to ${PACKAGE_VERSION}): upgrade Ferry to read it`,
      { details: { problems: [`format version ${manifest.version}`] } },
    );
  }
  const byStored = (manifest.collections ?? []).every((c) => (c.chunks ?? []).every((k) => k.stored !== undefined));
  if (!byStored) {
    scan = await scanEntries(path, keys, true);
    problems = scan.problems;
  }
  const { found, collectionHashes } = scan;
  if (manifestDigest(manifest) !== manifest.digest) {
    problems.push(
      `${MANIFEST_ENTRY}: the package digest does not match its content (the manifest or a checksum in it was edited)`,
    );
  }
  const listed = new Set<string>();
  for (const c of manifest.collections ?? []) {
    let records = 0;
    let bytes = 0;
    if (c.text !== undefined && (manifest.version < 2 || !Array.isArray(c.text.fields))) {
      problems.push(`collection ${c.name}: kept as text in a package of format version ${manifest.version}`);
    } else if (c.text !== undefined) {
      const unknown = c.text.fields.filter((f) => !(c.schema?.fields ?? []).some((x) => x.name === f));
      if (unknown.length > 0)
        problems.push(`collection ${c.name}: its text has fields its schema lacks (${unknown.join(", ")})`);
    }
    for (const chunk of c.chunks ?? []) {
      listed.add(chunk.entry);
      if (/\.tsv\./.test(chunk.entry) !== (c.text !== undefined)) {
        problems.push(
          `${chunk.entry}: not the kind of entry collection ${c.name} keeps (${c.text ? "text" : "records"})`,
        );
      }
      const f = found.get(chunk.entry);
      if (!f) {
        problems.push(
          `${chunk.entry}: listed in the manifest (collection ${c.name}) but not in the package (truncated?)`,
        );
        continue;
      }
      if (byStored) {
        // The bytes are the ones written: their text is checked again as each chunk is read.
        if (f.stored !== chunk.stored)
          problems.push(`${chunk.entry}: its SHA-256 differs from the manifest's (collection ${c.name})`);
        records += chunk.records;
        bytes += chunk.bytes;
        continue;
      }
      if (f.sha256 !== chunk.sha256)
        problems.push(`${chunk.entry}: its SHA-256 differs from the manifest's (collection ${c.name})`);
      if (f.records !== chunk.records) {
        problems.push(`${chunk.entry}: holds ${f.records} records, the manifest says ${chunk.records}`);
      }
      records += f.records ?? 0;
      bytes += f.bytes ?? 0;
    }
    const h = collectionHashes.get(c.name)?.digest("hex") ?? createHash("sha256").digest("hex");
    if (!byStored && h !== c.sha256) problems.push(`collection ${c.name}: its SHA-256 differs from the manifest's`);
    if (records !== c.records)
      problems.push(`collection ${c.name}: holds ${records} records, the manifest says ${c.records}`);
    if (bytes !== c.bytes) problems.push(`collection ${c.name}: holds ${bytes} bytes, the manifest says ${c.bytes}`);
  }
  for (const name of found.keys()) {
    if (!listed.has(name)) problems.push(`${name}: in the package but not in the manifest`);
  }
  if (problems.length > 0) {
    throw new FerryError(
      "E_CHECKSUM",
      `${path} failed ${problems.length === 1 ? "a check" : `${problems.length} checks`}; nothing was read from it:\n  ${problems.join("\n  ")}`,
      { details: { problems } },
    );
  }
  return { manifest, encrypted, fileBytes, keys };
}
