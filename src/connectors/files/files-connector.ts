/**
 * The files connector: a directory of NDJSON files, one `.ndjson`/`.jsonl` file, or one
 * `.json` document (see {@link FilesLayout}).
 *
 * Durability (what makes resume exactly-once): appends are fsynced before each checkpoint;
 * the checkpoint's journal entry and the byte length of every file appended to are saved in
 * one atomic write of the journal file; preparing a collection again cuts its files back to
 * those lengths, so bytes a killed process wrote after its last checkpoint disappear.
 * Records are never changed in place: replace/update/delete operations wait in a pending file
 * (appended and checkpointed like the data) and `finish` applies them in one rewrite (temp +
 * fsync + rename). A pending delete names the data file's length when it was written and
 * removes only records before it (see `ndjson-store.ts`); before the rename the journal records
 * the new content's SHA-256, so a finish interrupted after it is never applied twice.
 * A checkpoint's undo row (`Checkpoint.undo`) is appended to its run's undo log and fsynced
 * with the batch's data, and the log's length committed in the same journal write, so it is
 * kept exactly when the batch is (see `sidecar-journal.ts`).
 */
import { createHash } from "node:crypto";
import { constants, statSync } from "node:fs";
import { access, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import type {
  Checkpoint,
  Connector,
  JournalStore,
  PrepareResult,
  ReadBatch,
  ReadOptions,
  WriteFailure,
  WriteOp,
  WriteResult,
} from "../../core/connector.js";
import { FerryError, isFerryError } from "../../core/errors.js";
import type { CollectionSchema } from "../../core/schema.js";
import type { Row, Value } from "../../core/values.js";
import { AppendFile, sizeOf } from "./append-file.js";
import { fsyncDir, readTextIfExists, removeDurably, sha256File, writeFileAtomic } from "./atomic-file.js";
import { INFER_SAMPLE, inferSchema } from "./infer-schema.js";
import {
  arrayBytes,
  collectionsOf,
  decodeRecords,
  type JsonDocument,
  parseJsonDocument,
  rewriteDocument,
} from "./json-document.js";
import {
  type CommittedView,
  encodePendingLine,
  hasDeletes,
  type LoggedDelete,
  loadPendingGroups,
  NdjsonStore,
  PENDING_SUFFIX,
  type PendingOp,
  readPendingOps,
} from "./ndjson-store.js";
import { encodeLine, project } from "./record-codec.js";
import { RowTable } from "./row-table.js";
import { DIR_FORMAT, mergeSchemas, readSchemaFile, SIDECAR_FORMAT, writeSchemaFile } from "./schema-file.js";
import {
  type EncodedUndo,
  encodeUndo,
  type FileOffset,
  type JournalDoc,
  offsetsOf,
  SidecarJournal,
} from "./sidecar-journal.js";

/**
 * How a path stores collections:
 * - `dir`: `<collection>.ndjson` per collection plus `ferry.schema.json`;
 * - `ndjson`: one `.ndjson`/`.jsonl` file, one collection (schema in `<file>.schema.json`);
 * - `json`: one `.json` document whose top-level arrays are collections (read whole: small data).
 */
export type FilesLayout = "dir" | "ndjson" | "json";

/** Name of a directory's schema file. */
export const DIR_SCHEMA_FILE = "ferry.schema.json";
/** Name of a directory's journal file (for a file: `<file>.ferry-journal.json`). */
export const DIR_JOURNAL_FILE = ".ferry-journal.json";
/** Name of a directory's undo log directory (for a file: `<file>.ferry-undo`). */
export const DIR_UNDO_DIR = ".ferry-undo";

/** A checkpoint with its entry and undo row built from the batch's outcome (known before anything is appended). */
interface ResolvedCheckpoint {
  runId: string;
  /** The journal row to save the entry under (see {@link Checkpoint.id}). */
  id: string;
  entry: unknown;
  /** The batch's undo row, as its log's line. */
  undo?: EncodedUndo;
}

function resolve(cp: Checkpoint | undefined, failures: WriteFailure[]): ResolvedCheckpoint | undefined {
  if (cp === undefined) return undefined;
  const result: WriteResult = { failures };
  const entry = cp.entry(result);
  const row = cp.undo?.(result);
  return { runId: cp.runId, id: cp.id, entry, ...(row ? { undo: encodeUndo(row) } : {}) };
}

/** Run statuses under which a file shorter than its checkpoint means lost data (see core/journal.ts). */
const UNFINISHED = new Set(["running", "interrupted", "failed"]);

/** A collection name as a file name: path separators, reserved characters and a leading dot %-escaped. */
export function fileNameFor(name: string): string {
  let out = "";
  for (let i = 0; i < name.length; i++) {
    const ch = name[i] as string;
    const code = ch.charCodeAt(0);
    const special = code < 0x20 || '\\/:*?"<>|%'.includes(ch) || (i === 0 && ch === ".");
    out += special ? `%${code.toString(16).toUpperCase().padStart(2, "0")}` : ch;
  }
  return out || "%00";
}

function nameOfFile(fileBase: string): string {
  try {
    return decodeURIComponent(fileBase);
  } catch {
    return fileBase;
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Write state of a `.json` collection: the records in memory and the durable log of operations. */
interface JsonTarget {
  table: RowTable;
  pending: AppendFile;
}

/** Where the connector's files are. */
export interface FilesLocation {
  layout: FilesLayout;
  /** The path as the user gave it (for messages). */
  given: string;
  /** Absolute path of the directory or file. */
  path: string;
}

/**
 * A connector over files. Open it through {@link filesFactory} (or `openConnector`).
 *
 * Limits: lookups index the existing keys of a collection in memory (key → byte offset);
 * `finish` holds the pending replace/update operations in memory; a `.json` document is
 * parsed whole and its written collection is held in memory.
 */
export class FilesConnector implements Connector {
  readonly engine = "files";
  private readonly journalStore: SidecarJournal;
  private readonly stores = new Map<string, NdjsonStore>();
  /** Collections whose leftovers were recovered (truncated, finished) in this session. */
  private readonly prepared = new Set<string>();
  /** Collections appended to in this session: their file lengths go into every checkpoint. */
  private readonly written = new Set<string>();
  private readonly jsonTargets = new Map<string, JsonTarget>();
  private readonly jsonReadTables = new Map<string, RowTable>();
  private jsonDoc: JsonDocument | undefined | null = null; // null: not loaded
  /** The collection a single-collection file holds in this session. */
  private singleName: string | undefined;

  constructor(
    private readonly loc: FilesLocation,
    readonly displayUrl: string,
    readonly identity: string,
    private readonly writable: boolean,
  ) {
    const dir = loc.layout === "dir";
    this.journalStore = new SidecarJournal(dir ? join(loc.path, DIR_JOURNAL_FILE) : `${loc.path}${DIR_JOURNAL_FILE}`, {
      undoDir: dir ? join(loc.path, DIR_UNDO_DIR) : `${loc.path}${DIR_UNDO_DIR}`,
      display: loc.given,
      writable,
    });
  }

  // ---- paths ---------------------------------------------------------------------------

  /** The directory holding every file of this instance. */
  private get baseDir(): string {
    return this.loc.layout === "dir" ? this.loc.path : dirname(this.loc.path);
  }

  private get schemaPath(): string {
    return this.loc.layout === "dir" ? join(this.loc.path, DIR_SCHEMA_FILE) : `${this.loc.path}.schema.json`;
  }

  /** Name of the collection of a single-collection file when nothing names it: the basename. */
  private get baseName(): string {
    const b = basename(this.loc.path);
    return b.slice(0, b.length - extname(b).length);
  }

  private display(fileName: string): string {
    return this.loc.layout === "dir" ? join(this.loc.given, fileName) : this.loc.given;
  }

  private storeFor(name: string, fileName?: string): NdjsonStore {
    const id = this.loc.layout === "dir" ? name : "";
    let store = this.stores.get(id);
    if (store) return store;
    if (this.loc.layout === "dir") {
      let f = fileName;
      if (f === undefined) {
        const base = fileNameFor(name);
        f = `${base}.ndjson`;
        // A directory written by hand may hold `.jsonl` files.
        try {
          statSync(join(this.loc.path, f));
        } catch {
          try {
            if (statSync(join(this.loc.path, `${base}.jsonl`)).isFile()) f = `${base}.jsonl`;
          } catch {
            // Neither exists: a new collection gets `.ndjson`.
          }
        }
      }
      store = new NdjsonStore(join(this.loc.path, f), this.display(f));
    } else {
      store = new NdjsonStore(this.loc.path, this.loc.given);
    }
    this.stores.set(id, store);
    return store;
  }

  private jsonPendingPath(name: string): string {
    return `${this.loc.path}.${fileNameFor(name)}${PENDING_SUFFIX}`;
  }

  // ---- connection and discovery ------------------------------------------------------------

  async check(): Promise<void> {
    const st = await stat(this.loc.path).catch(() => undefined);
    if (st) {
      if (this.loc.layout === "dir" && !st.isDirectory()) {
        throw new FerryError("E_CONFIG", `${this.loc.given} is a file, not a directory: remove the trailing "/"`);
      }
      if (this.loc.layout !== "dir" && !st.isFile()) {
        throw new FerryError("E_CONFIG", `${this.loc.given} is not a file: end a directory's path with "/"`);
      }
    }
    let probe = st ? this.loc.path : dirname(this.loc.path);
    while (!(await stat(probe).catch(() => undefined)) && dirname(probe) !== probe) probe = dirname(probe);
    try {
      await access(probe, this.writable ? constants.R_OK | constants.W_OK : constants.R_OK);
    } catch (err) {
      throw new FerryError(
        "E_CONNECTION",
        `cannot ${this.writable ? "write to" : "read"} ${this.loc.given} (${(err as NodeJS.ErrnoException).code ?? errMessage(err)} on ${probe}): check its permissions`,
        { cause: err },
      );
    }
  }

  async discover(): Promise<CollectionSchema[]> {
    switch (this.loc.layout) {
      case "dir":
        return this.discoverDir();
      case "ndjson": {
        if ((await sizeOf(this.loc.path)) === undefined) return [];
        const declared = (await readSchemaFile(this.schemaPath))?.[0];
        return [declared ?? inferSchema(this.baseName, await this.sample(this.storeFor("")))];
      }
      case "json": {
        const doc = await this.loadJson();
        const declaredList = (await readSchemaFile(this.schemaPath)) ?? [];
        const declared = new Map(declaredList.map((s) => [s.name, s]));
        const found = (doc ? collectionsOf(doc, this.baseName) : []).map(
          (c) =>
            declared.get(c.name) ??
            inferSchema(c.name, decodeRecords({ name: c.name, raw: c.raw.slice(0, INFER_SAMPLE) }, this.loc.given)),
        );
        // A collection an unfinished run is adding exists once a checkpoint committed some of it.
        const off = await this.journalStore.offsets();
        for (const s of declaredList) {
          if (!found.some((f) => f.name === s.name) && off[basename(this.jsonPendingPath(s.name))]) found.push(s);
        }
        return found;
      }
    }
  }

  private async discoverDir(): Promise<CollectionSchema[]> {
    let entries: string[];
    try {
      entries = await readdir(this.loc.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const out = [...((await readSchemaFile(this.schemaPath)) ?? [])];
    const names = new Set(out.map((s) => s.name));
    // Collections without a schema entry: NDJSON files put there by hand, in name order.
    const files = entries.filter((f) => /\.(ndjson|jsonl)$/i.test(f) && !f.startsWith(".")).sort();
    for (const f of files) {
      const name = nameOfFile(f.slice(0, f.length - extname(f).length));
      if (names.has(name) || this.stores.has(name)) continue;
      names.add(name);
      out.push(inferSchema(name, await this.sample(this.storeFor(name, f))));
    }
    return out;
  }

  private async sample(store: NdjsonStore): Promise<Row[]> {
    for await (const b of store.read({ batchSize: INFER_SAMPLE }, await this.committedView(store))) return b.records;
    return [];
  }

  async count(collection: CollectionSchema): Promise<number | undefined> {
    if (this.loc.layout !== "json") {
      const store = this.storeFor(collection.name);
      const view = await this.committedView(store);
      if (!hasDeletes(view.pending)) return store.count(view.end);
      // Committed deletes not applied yet: count what reading yields.
      let n = 0;
      for await (const b of store.read({ batchSize: 10_000, fields: [] }, view)) n += b.records.length;
      return n;
    }
    const target = this.jsonTargets.get(collection.name);
    return (target?.table ?? (await this.readTable(collection.name))).rows.length;
  }

  /**
   * Bytes of the collection's own file: its `.ndjson` (or `.jsonl`) file in a directory, the
   * file itself for a single-collection file (0 when it does not exist yet). In a `.json`
   * document, the UTF-8 bytes of the collection's array as the document's text holds it
   * (the whole file for a document that is one array); undefined for a collection only an
   * unfinished run holds so far.
   */
  async size(collection: CollectionSchema): Promise<number | undefined> {
    if (this.loc.layout !== "json") return (await sizeOf(this.storeFor(collection.name).dataPath)) ?? 0;
    const doc = await this.loadJson();
    return doc === undefined ? undefined : arrayBytes(doc, collection.name, this.baseName);
  }

  /**
   * What readers see of a collection that a run is still writing: the data up to its last
   * checkpoint, with the replace/update/delete operations committed so far applied (as a
   * database shows committed transactions).
   */
  private async committedView(store: NdjsonStore): Promise<CommittedView> {
    const off = await this.journalStore.offsets();
    const d = off[basename(store.dataPath)];
    const p = off[basename(store.pending.path)];
    if (!d && !p) return {};
    if (d?.finishing) {
      // The rewrite landed (the data file is the content finish recorded): nothing is pending.
      if (typeof d.finishing === "string" && (await sha256File(store.dataPath)) === d.finishing) return {};
      // While finishing, all of the pending file is committed.
      return { pending: await loadPendingGroups(store.pending.path) };
    }
    return {
      ...(d ? { end: d.length } : {}),
      ...(p ? { pending: await loadPendingGroups(store.pending.path, p.length) } : {}),
    };
  }

  async *read(collection: CollectionSchema, options: ReadOptions): AsyncGenerator<ReadBatch> {
    if (this.loc.layout !== "json") {
      const store = this.storeFor(collection.name);
      yield* store.read(options, await this.committedView(store));
      return;
    }
    const rows = (await this.readTable(collection.name)).rows;
    let index = 0;
    if (options.after) {
      const i = (options.after as { index?: unknown }).index;
      if (!Number.isSafeInteger(i) || (i as number) < 0 || (i as number) > rows.length) {
        throw new FerryError(
          "E_CONFIG",
          `cannot resume reading ${collection.name} of ${this.loc.given} from ${JSON.stringify(options.after)}: the file holds ${rows.length} records and changed since the run began; start over without resuming`,
        );
      }
      index = i as number;
    }
    while (index < rows.length) {
      const end = Math.min(index + options.batchSize, rows.length);
      const records = rows.slice(index, end).map((r) => project(r, options.fields));
      index = end;
      yield { records, bookmark: { index } };
    }
  }

  async lookup(collection: CollectionSchema, fields: string[], keys: Value[][]): Promise<Map<string, Row>> {
    if (this.loc.layout !== "json") {
      const store = this.storeFor(collection.name);
      // Before prepare cuts back what a killed run left, only the committed part counts.
      if (!this.prepared.has(collection.name)) {
        const view = await this.committedView(store);
        return store.lookup(fields, keys, view.end, view.pending);
      }
      // Records as the pending operations leave them: a deleted one is gone, a replaced one new.
      return store.lookup(fields, keys, undefined, await store.pendingDeletes());
    }
    const table = this.jsonTargets.get(collection.name)?.table ?? (await this.readTable(collection.name));
    return table.lookup(fields, keys);
  }

  journal(): JournalStore {
    return this.journalStore;
  }

  // ---- writing --------------------------------------------------------------------------

  private assertWritable(what: string): void {
    if (!this.writable) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `${this.loc.given} was opened read-only: open it with { write: true } to ${what}`,
      );
    }
  }

  async prepare(collection: CollectionSchema): Promise<PrepareResult> {
    this.assertWritable(`prepare ${collection.name}`);
    await mkdir(this.baseDir, { recursive: true });
    // Undo lines a killed process appended after its last checkpoint are cut off (once).
    await this.journalStore.recoverUndo();
    if (this.loc.layout === "json") return this.prepareJson(collection);
    if (this.loc.layout === "ndjson") await this.claimSingle(collection.name);

    const store = this.storeFor(collection.name);
    // Once per session: later calls must not cut off what this session wrote.
    if (!this.prepared.has(collection.name)) await this.recover(collection.name, store);
    this.prepared.add(collection.name);
    if (await store.data.open()) await fsyncDir(dirname(store.dataPath));
    await store.pending.learnLength();
    // Appends must start on a line of their own, even after a file written by hand.
    const last = await store.data.lastByte();
    if (last !== undefined && last !== 0x0a) {
      await store.data.append(Buffer.from("\n"));
      await store.data.sync();
    }
    const empty = store.data.length === 0;

    const declared = (await readSchemaFile(this.schemaPath)) ?? [];
    const existing = this.loc.layout === "ndjson" ? declared[0] : declared.find((s) => s.name === collection.name);
    let stored = collection;
    if (!empty) {
      const current = existing ?? inferSchema(collection.name, await this.sample(store));
      stored = mergeSchemas({ ...current, name: collection.name }, collection);
    }
    const others = this.loc.layout === "dir" ? declared.filter((s) => s.name !== collection.name) : [];
    const at = declared.findIndex((s) => s.name === collection.name);
    const list = [...others];
    list.splice(at < 0 ? others.length : at, 0, stored);
    await writeSchemaFile(this.schemaPath, this.loc.layout === "dir" ? DIR_FORMAT : SIDECAR_FORMAT, list);
    return { schema: stored, created: empty };
  }

  /** A single-collection file holds one collection: refuses a second one. */
  private async claimSingle(name: string): Promise<void> {
    const refuse = (held: string) =>
      new FerryError(
        "E_CONFIG",
        `${this.loc.given} holds the collection "${held}": it cannot also hold "${name}"; write each collection to its own file, or all of them to a directory (./dir/)`,
        { details: { collection: name, held } },
      );
    if (this.loc.layout === "ndjson") {
      if (this.singleName !== undefined && this.singleName !== name) throw refuse(this.singleName);
      const held = (await readSchemaFile(this.schemaPath))?.[0]?.name;
      if (held !== undefined && held !== name && ((await sizeOf(this.loc.path)) ?? 0) > 0) throw refuse(held);
      this.singleName = name;
    } else {
      // A `.json` object holds any number of collections; a top-level array just one.
      const doc = await this.loadJson(true);
      if (doc && Array.isArray(doc.value) && name !== this.baseName) throw refuse(this.baseName);
    }
  }

  async write(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult> {
    this.assertWritable(`write to ${collection.name}`);
    if (this.loc.layout === "json") return this.writeJson(collection, ops, checkpoint);
    if (!this.prepared.has(collection.name)) await this.prepare(collection);
    const store = this.storeFor(collection.name);

    const failures: WriteFailure[] = [];
    const dataLines: string[] = [];
    const inserted: Row[] = [];
    const pendingLines: string[] = [];
    const deleted: PendingOp[] = [];
    // Where the next inserted line will start: a delete removes the records before it only.
    let end = store.data.length;
    ops.forEach((op, index) => {
      try {
        if (op.op === "insert") {
          const line = encodeLine(op.record);
          dataLines.push(line);
          inserted.push(op.record);
          end += Buffer.byteLength(line) + 1;
        } else {
          if (Object.keys(op.match).length === 0) throw new Error(`${op.op} without match fields`);
          if (op.op === "delete") {
            const logged: LoggedDelete = { op: "delete", match: op.match, before: end };
            pendingLines.push(encodePendingLine(logged));
            deleted.push(logged);
          } else {
            pendingLines.push(encodePendingLine(op));
            deleted.push(op);
          }
        }
      } catch (err) {
        failures.push({ index, reason: `cannot store this record as JSON: ${errMessage(err)}` });
      }
    });

    const files = [store.data, store.pending];
    const before = files.map((f) => f.length);
    const pendingExisted = (await sizeOf(store.pending.path)) !== undefined;
    await this.durably(store.display, files, before, resolve(checkpoint, failures), async () => {
      if (dataLines.length + pendingLines.length === 0) return;
      if (!this.written.has(collection.name)) {
        await this.saveBaseline(files);
        this.written.add(collection.name);
      }
      if (dataLines.length > 0) await store.data.append(Buffer.from(`${dataLines.join("\n")}\n`));
      if (pendingLines.length > 0) await store.pending.append(Buffer.from(`${pendingLines.join("\n")}\n`));
      await Promise.all(files.map((f) => f.sync()));
      if (pendingLines.length > 0 && !pendingExisted) await fsyncDir(dirname(store.pending.path));
    }).catch((err: unknown) => {
      store.invalidate();
      throw err;
    });
    store.noteDeletes(deleted);
    if (store.indexed && inserted.length > 0) {
      const offsets: number[] = [];
      let at = before[0] as number;
      for (const line of dataLines) {
        offsets.push(at);
        at += Buffer.byteLength(line) + 1;
      }
      store.noteAppended(inserted, offsets);
    }
    return { failures };
  }

  async finish(collection: CollectionSchema): Promise<void> {
    this.assertWritable(`finish ${collection.name}`);
    if (this.loc.layout === "json") return this.finishJson(collection);
    const store = this.storeFor(collection.name);
    if (!this.prepared.has(collection.name)) await this.recover(collection.name, store);
    await this.completeFinish(store);
    this.prepared.delete(collection.name);
    this.written.delete(collection.name);
  }

  /**
   * Applies the pending file and forgets the collection's checkpointed lengths. Before the
   * rewrite is renamed over the data file, the journal marks the data file `finishing` with
   * the new content's SHA-256, so a crash after that is recovered by finishing (never by
   * truncating): when the data file has that content, the rename happened and the pending
   * operations are not applied again (a delete's position would be wrong in the new file);
   * otherwise they are applied to the old file as the first time. A mark of `true` (older
   * versions, no deletes) is finished by applying again, which replace/update allow.
   */
  private async completeFinish(store: NdjsonStore): Promise<void> {
    const pendingSize = await sizeOf(store.pending.path);
    const dKey = basename(store.dataPath);
    if (pendingSize) {
      const mark = (await this.journalStore.offsets())[dKey]?.finishing;
      const landed = typeof mark === "string" && (await sha256File(store.dataPath)) === mark;
      if (landed) store.invalidate();
      else {
        await store.applyPending(async (sha) => {
          await this.journalStore.update((doc) => {
            const off = offsetsOf(doc);
            off[dKey] = { ...(off[dKey] ?? { runId: null, length: store.data.length }), finishing: sha };
          });
        });
      }
    }
    await store.close();
    if (pendingSize !== undefined) await removeDurably(store.pending.path);
    await this.clearOffsets([store.dataPath, store.pending.path]);
  }

  /**
   * Undoes what a killed process left after its last checkpoint: cuts the collection's
   * files back to the checkpointed lengths, or completes an interrupted `finish`.
   */
  private async recover(name: string, store: NdjsonStore): Promise<void> {
    const doc = await this.journalStore.read();
    const off = doc.offsets ?? {};
    const dKey = basename(store.dataPath);
    const pKey = basename(store.pending.path);
    if (!off[dKey] && !off[pKey]) return;
    if (off[dKey]?.finishing || off[pKey]?.finishing) {
      await this.completeFinish(store);
      return;
    }
    await this.cutBack([store.data, store.pending], doc, store.display);
    store.invalidate();
    // Lengths still recorded: later checkpoints update them, no new baseline is needed.
    const left = await this.journalStore.offsets();
    if (left[dKey] || left[pKey]) this.written.add(name);
  }

  /** Truncates each file to its checkpointed length; a file shorter than that has lost data. */
  private async cutBack(files: AppendFile[], doc: JournalDoc, display: string): Promise<void> {
    const off = doc.offsets ?? {};
    const dropped: string[] = [];
    for (const f of files) {
      const key = basename(f.path);
      const e = off[key];
      if (!e) continue;
      const size = (await sizeOf(f.path)) ?? 0;
      if (size > e.length) {
        await f.truncate(e.length);
        await f.close();
      } else if (size < e.length) {
        const status = e.runId === null ? undefined : (doc.runs[e.runId] as { status?: unknown } | undefined)?.status;
        if (typeof status === "string" && UNFINISHED.has(status)) {
          throw new FerryError(
            "E_CHECKSUM",
            `${display}: ${f.path} is ${size} bytes, shorter than the ${e.length} bytes recorded at the last checkpoint of run ${e.runId}: it was changed outside Ferry, so that run cannot resume; restore the file, or start over with --force`,
            { details: { file: f.path, size, expected: e.length, runId: e.runId } },
          );
        }
        dropped.push(key);
      }
    }
    if (dropped.length > 0) {
      // The run was abandoned (or never checkpointed): forget the lengths of all these files.
      await this.journalStore.update((d) => {
        for (const f of files) delete d.offsets?.[basename(f.path)];
      });
    }
  }

  private async saveBaseline(files: AppendFile[]): Promise<void> {
    await this.journalStore.update((doc) => {
      const off = offsetsOf(doc);
      for (const f of files) off[basename(f.path)] ??= { runId: null, length: f.length };
    });
  }

  /** The journal entry, the lengths of every file appended to and of the undo log, in one atomic write. */
  private async saveCheckpoint(cp: ResolvedCheckpoint, undo: AppendFile | undefined): Promise<void> {
    const files: AppendFile[] = [];
    for (const name of this.written) {
      const t = this.jsonTargets.get(name);
      if (t) files.push(t.pending);
      else if (this.loc.layout !== "json") {
        const s = this.storeFor(name);
        files.push(s.data, s.pending);
      }
    }
    await this.journalStore.update((doc) => {
      doc.runs[cp.id] = cp.entry;
      const off = offsetsOf(doc);
      for (const f of files) off[basename(f.path)] = { runId: cp.runId, length: f.length } satisfies FileOffset;
      if (cp.undo && undo) SidecarJournal.commitUndo(doc, cp.undo.runId, undo);
    });
  }

  private async clearOffsets(paths: string[]): Promise<void> {
    const off = await this.journalStore.offsets();
    const keys = paths.map((p) => basename(p)).filter((k) => off[k] !== undefined);
    if (keys.length === 0) return;
    await this.journalStore.update((doc) => {
      for (const k of keys) delete doc.offsets?.[k];
    });
  }

  /**
   * Runs `append` (which appends to `files` and fsyncs them), appends and fsyncs the
   * checkpoint's undo row, then saves `checkpoint`. On a failure the appended bytes (undo row
   * included) are cut off again, unless the checkpoint reached the journal anyway (a rename
   * that landed before an error): either way the data, the undo log and the journal agree.
   */
  private async durably(
    where: string,
    files: AppendFile[],
    before: number[],
    checkpoint: ResolvedCheckpoint | undefined,
    append: () => Promise<void>,
  ): Promise<void> {
    const all = [...files];
    const lengths = [...before];
    let undo: AppendFile | undefined;
    try {
      if (checkpoint?.undo) {
        undo = await this.journalStore.openUndo(checkpoint.undo.runId);
        all.push(undo);
        lengths.push(undo.length);
      }
      await append();
      if (undo && checkpoint?.undo) {
        await undo.append(checkpoint.undo.line);
        await undo.sync();
      }
    } catch (err) {
      await this.rollBack(all, lengths);
      if (checkpoint?.undo) await this.journalStore.discardUndo(checkpoint.undo.runId);
      throw this.writeError(where, err);
    }
    if (!checkpoint) return;
    try {
      await this.saveCheckpoint(checkpoint, undo);
    } catch (err) {
      const doc = await this.journalStore.read().catch(() => undefined);
      const off = doc?.offsets ?? {};
      const landed =
        doc !== undefined &&
        files.every((f) => {
          const e = off[basename(f.path)];
          return e?.runId === checkpoint.runId && e.length === f.length;
        }) &&
        (!undo || !checkpoint.undo || doc.undo?.[checkpoint.undo.runId]?.length === undo.length);
      if (!landed) await this.rollBack(all, lengths);
      if (checkpoint.undo) await this.journalStore.discardUndo(checkpoint.undo.runId);
      throw this.writeError(where, err);
    }
  }

  private async rollBack(files: AppendFile[], lengths: number[]): Promise<void> {
    for (let i = 0; i < files.length; i++) {
      const f = files[i] as AppendFile;
      if (f.length !== lengths[i]) await f.truncate(lengths[i] as number).catch(() => {});
    }
  }

  private writeError(where: string, err: unknown): FerryError {
    if (isFerryError(err)) return err;
    return new FerryError(
      "E_WRITE",
      `cannot write to ${where}: ${errMessage(err)}; nothing of this batch was kept, fix the cause and resume`,
      { cause: err },
    );
  }

  // ---- the .json layout -----------------------------------------------------------------

  private async loadJson(fresh = false): Promise<JsonDocument | undefined> {
    if (this.jsonDoc !== null && !fresh) return this.jsonDoc;
    const text = await readTextIfExists(this.loc.path);
    this.jsonDoc = text === undefined ? undefined : parseJsonDocument(text, this.loc.given);
    this.jsonReadTables.clear();
    return this.jsonDoc;
  }

  private docRows(name: string, doc: JsonDocument | undefined): Row[] {
    const c = doc ? collectionsOf(doc, this.baseName).find((x) => x.name === name) : undefined;
    return c ? decodeRecords(c, this.loc.given) : [];
  }

  /** A `.json` collection as readers see it: the document, plus what an unfinished run committed. */
  private async readTable(name: string): Promise<RowTable> {
    const cached = this.jsonReadTables.get(name);
    if (cached) return cached;
    const table = new RowTable(this.docRows(name, await this.loadJson()));
    const pendingPath = this.jsonPendingPath(name);
    const e = (await this.journalStore.offsets())[basename(pendingPath)];
    if (e) {
      let end: number | undefined = e.length;
      if (typeof e.finishing === "string") {
        const bytes = await readFile(this.loc.path).catch(() => undefined);
        end = bytes && sha256(bytes) === e.finishing ? 0 : undefined;
      }
      if (end !== 0 && (await sizeOf(pendingPath)))
        for await (const op of readPendingOps(pendingPath, end)) table.apply(op);
    }
    this.jsonReadTables.set(name, table);
    return table;
  }

  /**
   * Loads a `.json` collection for writing: its records from the document, then the
   * operations of an unfinished run replayed from its pending log.
   */
  private async openJsonTarget(name: string): Promise<JsonTarget> {
    const had = this.jsonTargets.get(name);
    if (had) return had;
    const pending = new AppendFile(this.jsonPendingPath(name));
    await this.settleJsonFinishes();
    await this.cutBack([pending], await this.journalStore.read(), this.loc.given);
    await pending.learnLength();
    const table = new RowTable(this.docRows(name, await this.loadJson(true)));
    if (pending.length > 0) for await (const op of readPendingOps(pending.path)) table.apply(op);
    if ((await this.journalStore.offsets())[basename(pending.path)]) this.written.add(name);
    const target = { table, pending };
    this.jsonTargets.set(name, target);
    return target;
  }

  /**
   * Settles every interrupted `finish` of this document (of any collection, before any other
   * rewrite can change the document): when the document is the one that finish wrote, its
   * pending log was applied and is removed; otherwise the log is still to be applied.
   */
  private async settleJsonFinishes(): Promise<void> {
    const prefix = `${basename(this.loc.path)}.`;
    const marked = Object.entries(await this.journalStore.offsets()).filter(
      ([k, e]) => k.startsWith(prefix) && k.endsWith(PENDING_SUFFIX) && typeof e.finishing === "string",
    );
    if (marked.length === 0) return;
    const bytes = await readFile(this.loc.path).catch(() => undefined);
    const current = bytes ? sha256(bytes) : undefined;
    for (const [key, e] of marked) {
      if (e.finishing === current) {
        await removeDurably(join(this.baseDir, key));
        await this.clearOffsets([key]);
      } else {
        await this.journalStore.update((d) => {
          const x = d.offsets?.[key];
          if (x) delete x.finishing;
        });
      }
    }
  }

  private async prepareJson(collection: CollectionSchema): Promise<PrepareResult> {
    // The instance exists once prepared, as a directory or an .ndjson file does: readers find
    // what checkpoints committed before `finish` writes the collection into the document.
    if ((await sizeOf(this.loc.path)) === undefined) {
      await writeFileAtomic(this.loc.path, "{}\n");
      this.jsonDoc = null;
    }
    await this.claimSingle(collection.name);
    const t = await this.openJsonTarget(collection.name);
    const empty = t.table.rows.length === 0;
    const declared = (await readSchemaFile(this.schemaPath)) ?? [];
    const existing = declared.find((s) => s.name === collection.name);
    let stored = collection;
    if (!empty) {
      stored = mergeSchemas(existing ?? inferSchema(collection.name, t.table.rows.slice(0, INFER_SAMPLE)), collection);
    }
    const at = declared.findIndex((s) => s.name === collection.name);
    const list = [...declared];
    if (at < 0) list.push(stored);
    else list[at] = stored;
    await writeSchemaFile(this.schemaPath, SIDECAR_FORMAT, list);
    return { schema: stored, created: empty };
  }

  private async writeJson(collection: CollectionSchema, ops: WriteOp[], checkpoint?: Checkpoint): Promise<WriteResult> {
    const name = collection.name;
    const t = this.jsonTargets.get(name) ?? (await this.openJsonTarget(name));
    const failures: WriteFailure[] = [];
    const lines: string[] = [];
    const applied: WriteOp[] = [];
    ops.forEach((op, index) => {
      try {
        if (op.op !== "insert" && Object.keys(op.match).length === 0) throw new Error(`${op.op} without match fields`);
        lines.push(encodePendingLine(op));
        applied.push(op);
      } catch (err) {
        failures.push({ index, reason: `cannot store this record as JSON: ${errMessage(err)}` });
      }
    });
    const existed = (await sizeOf(t.pending.path)) !== undefined;
    await this.durably(t.pending.path, [t.pending], [t.pending.length], resolve(checkpoint, failures), async () => {
      if (lines.length === 0) return;
      if (!this.written.has(name)) {
        await this.saveBaseline([t.pending]);
        this.written.add(name);
      }
      await t.pending.append(Buffer.from(`${lines.join("\n")}\n`));
      await t.pending.sync();
      if (!existed) await fsyncDir(dirname(t.pending.path));
    });
    for (const op of applied) t.table.apply(op);
    return { failures };
  }

  /**
   * Writes the document with the collection's records, keeping every other field and
   * collection as it was. The journal first records the SHA-256 of the new text, so a crash
   * between the rename and removing the pending log is told apart from one before the rename.
   */
  private async finishJson(collection: CollectionSchema): Promise<void> {
    const name = collection.name;
    const t = await this.openJsonTarget(name);
    const doc = await this.loadJson(true);
    const pendingSize = await sizeOf(t.pending.path);
    const present = doc !== undefined && collectionsOf(doc, this.baseName).some((c) => c.name === name);
    if (pendingSize || !present) {
      const text = Buffer.from(rewriteDocument(doc, new Map([[name, t.table.rows]])));
      const pKey = basename(t.pending.path);
      if (pendingSize) {
        await this.journalStore.update((d) => {
          const off = offsetsOf(d);
          off[pKey] = { ...(off[pKey] ?? { runId: null, length: t.pending.length }), finishing: sha256(text) };
        });
      }
      await writeFileAtomic(this.loc.path, text);
    }
    await t.pending.close();
    if (pendingSize !== undefined) await removeDurably(t.pending.path);
    await this.clearOffsets([t.pending.path]);
    this.jsonTargets.delete(name);
    this.written.delete(name);
    this.jsonDoc = null;
    this.jsonReadTables.clear();
  }

  async close(): Promise<void> {
    for (const s of this.stores.values()) await s.close();
    for (const t of this.jsonTargets.values()) await t.pending.close();
    await this.journalStore.close();
  }
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
