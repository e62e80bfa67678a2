/**
 * The run journal of a files target, kept in one sidecar JSON file
 * (`<dir>/.ferry-journal.json`, `<file>.ferry-journal.json`):
 *
 * ```json
 * { "runs": { "<runId>": <entry> }, "offsets": { "<file name>": { "runId": "…", "length": 1234 } } }
 * ```
 *
 * `offsets` holds, for every data or pending file an unfinished run has appended to, its
 * length at that run's last checkpoint. It lives in the same file as the entries on purpose:
 * one atomic rename makes a checkpoint's bookmark (in the entry) and the byte lengths it
 * corresponds to durable together. Two files could not be: a crash between the two renames
 * would leave a bookmark and lengths from different batches, and resume would duplicate or
 * lose that batch.
 *
 * Undo logs (see `Checkpoint.undo`) live beside it, one append-only NDJSON file per run in the
 * undo directory (`<dir>/.ferry-undo/`, `<file>.ferry-undo/`), one line per row:
 * `{"seq":N,"runId":"…","entry":…}`. `undo` holds, per run, its file and committed length:
 *
 * ```json
 * { "runs": { … }, "undo": { "<runId>": { "file": "<runId>.<hash>.ndjson", "length": 5678 } } }
 * ```
 *
 * A batch's undo line is appended and fsynced with its data, and its new length saved in the
 * checkpoint's one atomic write, so an uncommitted line is cut back exactly like uncommitted
 * data: readers read a log only up to its committed length, and the first append of a session
 * (or a writable `prepare`) cuts each log back to it and removes logs no journal names.
 * `forget` removes the run from this file first (one atomic write), then its log: a crash in
 * between leaves a log no journal names, which no reader reads and the next writer removes.
 */
import { createHash } from "node:crypto";
import { type FileHandle, mkdir, open, readdir, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { JournalStore, UndoRow } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { AppendFile, sizeOf } from "./append-file.js";
import { fsyncDir, readTextIfExists, removeDurably, writeFileAtomic } from "./atomic-file.js";

/** A file's length at the last checkpoint of the run that is appending to it. */
export interface FileOffset {
  /** The run whose checkpoint recorded it; `null` before its first checkpoint (a baseline). */
  runId: string | null;
  /** Bytes that are committed; anything after them is cut off when the file is prepared again. */
  length: number;
  /**
   * Set while `finish` rewrites the collection: the file must not be truncated but finished.
   * The SHA-256 of the content being written, to tell whether the rewrite already happened
   * (NDJSON: set on the data file just before the rename; `.json`: on the pending log).
   * `true` (NDJSON, written by older versions): re-apply the pending operations.
   */
  finishing?: true | string;
}

/** A run's undo log: its file in the undo directory and how many of its bytes are committed. */
export interface UndoLog {
  file: string;
  length: number;
}

/** The journal file's content. */
export interface JournalDoc {
  runs: Record<string, unknown>;
  offsets?: Record<string, FileOffset>;
  /** The undo log of each run that keeps one (never listed as entries). */
  undo?: Record<string, UndoLog>;
}

/** An undo row as its log's line (with the newline), ready to append. */
export interface EncodedUndo {
  runId: string;
  line: Buffer;
}

/** Bytes of an undo line's start that hold its `seq` (`{"seq":…,`). */
const UNDO_HEAD_BYTES = 64;
/** Bytes read per call when a log is indexed. */
const UNDO_SCAN_BYTES = 1 << 20;
/** Bytes of adjacent undo lines read at once when a log is read back (one line may be larger). */
const UNDO_PAGE_BYTES = 8 * 1024 * 1024;

/**
 * The undo log file name of run `runId`: the id escaped (`%XX`) for any file system, then a
 * hash of it, so two ids never share a file (not even on a case-insensitive file system).
 */
export function undoFileName(runId: string): string {
  const escaped = encodeURIComponent(runId)
    .replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/^\./, "%2E")
    .slice(0, 100);
  const hash = createHash("sha256").update(runId).digest("hex").slice(0, 16);
  return `${escaped}.${hash}.ndjson`;
}

/**
 * An undo row as a line of its log. `seq` comes first, so a log is indexed by reading each
 * line's first bytes only.
 *
 * @throws FerryError `E_INTERNAL` for a row without a run id or a finite `seq`, or whose entry is not JSON.
 */
export function encodeUndo(row: UndoRow): EncodedUndo {
  if (typeof row.runId !== "string" || typeof row.seq !== "number" || !Number.isFinite(row.seq)) {
    throw new FerryError("E_INTERNAL", `an undo row needs a run id and a finite seq, got ${row.runId} #${row.seq}`);
  }
  let text: string;
  try {
    text = JSON.stringify({ seq: row.seq, runId: row.runId, entry: row.entry ?? null });
  } catch (err) {
    throw new FerryError(
      "E_INTERNAL",
      `undo row ${row.seq} of run ${row.runId} is not JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return { runId: row.runId, line: Buffer.from(`${text}\n`) };
}

/** One line of an undo log: its `seq` and its bytes `[start, end)` (the newline included). */
interface UndoLine {
  seq: number;
  start: number;
  end: number;
}

/** Reads exactly `length` bytes at `position` (fewer only at the end of the file). */
async function readAt(fh: FileHandle, buf: Buffer, length: number, position: number): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** The `offsets` of a journal document, created when missing. */
export function offsetsOf(doc: JournalDoc): Record<string, FileOffset> {
  if (!doc.offsets) doc.offsets = {};
  return doc.offsets;
}

/** Where a {@link SidecarJournal} keeps undo logs, and how it names its instance. */
export interface SidecarOptions {
  /** The directory of the undo logs. */
  undoDir: string;
  /** The instance as the user gave it (for messages). */
  display: string;
  /** Opened for writing (`forget` needs it). */
  writable: boolean;
}

/** A {@link JournalStore} over a sidecar JSON file, plus the checkpointed file lengths and the undo logs. */
export class SidecarJournal implements JournalStore {
  private queue: Promise<unknown> = Promise.resolve();
  /** Undo logs appended to in this session, by run. */
  private readonly undoFiles = new Map<string, Promise<AppendFile>>();
  /** The once-per-session recovery of the undo logs (see {@link recoverUndo}). */
  private undoRecovered: Promise<void> | undefined;

  constructor(
    readonly path: string,
    private readonly options: SidecarOptions = { undoDir: `${path}.undo`, display: path, writable: true },
  ) {}

  /** The directory of the undo logs. */
  get undoDir(): string {
    return this.options.undoDir;
  }

  /** Reads the journal file (an empty journal when there is none). */
  async read(): Promise<JournalDoc> {
    const text = await readTextIfExists(this.path);
    if (text === undefined) return { runs: {} };
    let doc: JournalDoc;
    try {
      doc = JSON.parse(text) as JournalDoc;
    } catch (err) {
      throw new FerryError(
        "E_VALIDATION",
        `${this.path}: the run journal is not valid JSON (${(err as Error).message}): restore it from a backup, or remove it to forget the runs it recorded`,
        { cause: err },
      );
    }
    if (typeof doc !== "object" || doc === null || typeof doc.runs !== "object" || doc.runs === null) {
      throw new FerryError("E_VALIDATION", `${this.path}: not a Ferry run journal (no "runs" object): move it away`);
    }
    return doc;
  }

  /**
   * Read-modify-write of the journal file, atomically and durably; calls are serialised so
   * concurrent updates from one connector never lose each other's changes. A `change` that
   * returns `false` changed nothing: the file is not written.
   */
  update(change: (doc: JournalDoc) => unknown): Promise<void> {
    const next = this.queue.then(async () => {
      const doc = await this.read();
      if (change(doc) === false) return;
      if (doc.offsets && Object.keys(doc.offsets).length === 0) delete doc.offsets;
      if (doc.undo && Object.keys(doc.undo).length === 0) delete doc.undo;
      await mkdir(dirname(this.path), { recursive: true });
      await writeFileAtomic(this.path, `${JSON.stringify(doc)}\n`);
    });
    this.queue = next.catch(() => {});
    return next;
  }

  async save(runId: string, entry: unknown): Promise<void> {
    await this.update((doc) => {
      doc.runs[runId] = entry;
    });
  }

  async get(runId: string): Promise<unknown | undefined> {
    return (await this.read()).runs[runId];
  }

  /** Entries newest first, by `startedAt` (entries without one last, newest saved first). */
  async list(): Promise<unknown[]> {
    const entries = Object.values((await this.read()).runs).reverse();
    const started = (e: unknown) => {
      const s = (e as { startedAt?: unknown } | null)?.startedAt;
      return typeof s === "string" ? s : "";
    };
    return entries
      .map((e, i) => ({ e, i, s: started(e) }))
      .sort((a, b) => (a.s < b.s ? 1 : a.s > b.s ? -1 : a.i - b.i))
      .map((x) => x.e);
  }

  /** The checkpointed file lengths. */
  async offsets(): Promise<Record<string, FileOffset>> {
    return (await this.read()).offsets ?? {};
  }

  // ---- undo logs -------------------------------------------------------------------------

  private lost(runId: string, path: string, size: number | undefined, length: number): FerryError {
    return new FerryError(
      "E_CHECKSUM",
      `${this.options.display}: the undo log of run ${runId} (${path}) is ${size ?? 0} bytes, shorter than the ${length} bytes its last checkpoint recorded: it was changed outside Ferry, so the run cannot be rolled back; restore the file from a backup`,
      { details: { file: path, size: size ?? 0, expected: length, runId } },
    );
  }

  private damaged(runId: string, path: string, at: number): FerryError {
    return new FerryError(
      "E_CHECKSUM",
      `${this.options.display}: the undo log of run ${runId} (${path}) is damaged at byte ${at}: it was changed outside Ferry; restore the file from a backup`,
      { details: { file: path, at, runId } },
    );
  }

  /**
   * Cuts every undo log back to its committed length and removes the logs no journal entry
   * names (a run killed before its first checkpoint, a `forget` killed before removing its
   * log). Once per session, before this session appends to any log: the connector calls it
   * when preparing a collection, and {@link openUndo} before the first append.
   */
  recoverUndo(): Promise<void> {
    this.undoRecovered ??= (async () => {
      let names: string[];
      try {
        names = await readdir(this.undoDir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
        throw err;
      }
      const committed = new Map(Object.values((await this.read()).undo ?? {}).map((u) => [u.file, u.length]));
      let removed = false;
      for (const name of names) {
        const path = join(this.undoDir, name);
        const length = committed.get(name);
        if (length === undefined) {
          await rm(path, { force: true });
          removed = true;
          continue;
        }
        // Shorter: lost data, reported by whoever reads or appends to that log.
        if (((await sizeOf(path)) ?? 0) > length) {
          const f = new AppendFile(path);
          try {
            await f.truncate(length);
          } finally {
            await f.close();
          }
        }
      }
      if (removed) await fsyncDir(this.undoDir);
    })().catch((err: unknown) => {
      this.undoRecovered = undefined;
      throw err;
    });
    return this.undoRecovered;
  }

  /**
   * The undo log of run `runId`, open for appending at its committed length (anything after
   * it cut off first). The caller appends a row, fsyncs, and commits the new length with its
   * checkpoint ({@link commitUndo}), or cuts the row off again.
   *
   * @throws FerryError `E_CHECKSUM` when the log is shorter than its committed length.
   */
  openUndo(runId: string): Promise<AppendFile> {
    let opened = this.undoFiles.get(runId);
    if (!opened) {
      opened = (async () => {
        await this.recoverUndo();
        const log = (await this.read()).undo?.[runId];
        const path = join(this.undoDir, log?.file ?? undoFileName(runId));
        const committed = log?.length ?? 0;
        const size = await sizeOf(path);
        if (size !== undefined && size < committed) throw this.lost(runId, path, size, committed);
        if (size === undefined) {
          if (committed > 0) throw this.lost(runId, path, size, committed);
          if ((await mkdir(this.undoDir, { recursive: true })) !== undefined) await fsyncDir(dirname(this.undoDir));
        }
        const f = new AppendFile(path);
        if (await f.open()) await fsyncDir(this.undoDir);
        if (f.length > committed) await f.truncate(committed);
        return f;
      })();
      this.undoFiles.set(runId, opened);
      opened.catch(() => {
        if (this.undoFiles.get(runId) === opened) this.undoFiles.delete(runId);
      });
    }
    return opened;
  }

  /**
   * Forgets this session's handle of run `runId`'s log (after a failed batch): the next
   * {@link openUndo} opens it again at its committed length, whatever a failed cut-back left.
   */
  async discardUndo(runId: string): Promise<void> {
    const had = this.undoFiles.get(runId);
    this.undoFiles.delete(runId);
    await (await had?.catch(() => undefined))?.close().catch(() => {});
  }

  /** Records `file`'s current length as run `runId`'s committed undo log, in a checkpoint's `update`. */
  static commitUndo(doc: JournalDoc, runId: string, file: AppendFile): void {
    doc.undo ??= {};
    doc.undo[runId] = { file: basename(file.path), length: file.length };
  }

  /**
   * The committed undo rows of run `runId`, highest `seq` first (a row saved again under the
   * same `seq`: the later one). The log is indexed first (each line's `seq` and place, read from
   * its first bytes), then read line by line, adjacent lines up to {@link UNDO_PAGE_BYTES} at a
   * time: memory holds the index and one page, never the log.
   *
   * @throws FerryError `E_CHECKSUM` when the log is shorter than committed, or damaged.
   */
  async *undo(runId: string): AsyncGenerator<UndoRow> {
    const log = (await this.read()).undo?.[runId];
    if (!log || log.length === 0) return;
    const path = join(this.undoDir, log.file);
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw this.lost(runId, path, undefined, log.length);
      throw err;
    }
    try {
      const size = (await fh.stat()).size;
      if (size < log.length) throw this.lost(runId, path, size, log.length);
      const lines = await this.indexUndo(fh, log.length, runId, path);
      // Highest seq first; of equal seqs, the one appended last wins.
      lines.sort((a, b) => b.seq - a.seq || b.start - a.start);
      const latest = lines.filter((l, i) => i === 0 || l.seq !== (lines[i - 1] as UndoLine).seq);
      for (let i = 0; i < latest.length; ) {
        // A page: lines adjacent in the file (each just before the previous), up to the budget.
        let j = i + 1;
        while (
          j < latest.length &&
          (latest[j] as UndoLine).end === (latest[j - 1] as UndoLine).start &&
          (latest[i] as UndoLine).end - (latest[j] as UndoLine).start <= UNDO_PAGE_BYTES
        ) {
          j++;
        }
        const first = latest[j - 1] as UndoLine;
        const from = first.start;
        const bytes = Buffer.allocUnsafe((latest[i] as UndoLine).end - from);
        if ((await readAt(fh, bytes, bytes.length, from)) < bytes.length)
          throw this.lost(runId, path, size, log.length);
        const page: UndoRow[] = [];
        for (let k = i; k < j; k++) {
          const l = latest[k] as UndoLine;
          let row: { seq?: unknown; entry?: unknown };
          try {
            row = JSON.parse(bytes.toString("utf8", l.start - from, l.end - from)) as typeof row;
          } catch {
            throw this.damaged(runId, path, l.start);
          }
          page.push({ runId, seq: l.seq, entry: row.entry });
        }
        yield* page;
        i = j;
      }
    } finally {
      await fh.close();
    }
  }

  /** Each committed line's `seq` and place, from one pass over the log reading line ends and heads. */
  private async indexUndo(fh: FileHandle, end: number, runId: string, path: string): Promise<UndoLine[]> {
    const lines: UndoLine[] = [];
    const buf = Buffer.allocUnsafe(Math.min(UNDO_SCAN_BYTES, end));
    const head = Buffer.allocUnsafe(UNDO_HEAD_BYTES);
    let headLength = 0;
    let start = 0;
    for (let pos = 0; pos < end; ) {
      const n = await readAt(fh, buf, Math.min(buf.length, end - pos), pos);
      if (n === 0) break;
      const view = buf.subarray(0, n);
      for (let i = 0; i < n; ) {
        const nl = view.indexOf(0x0a, i);
        const stop = nl < 0 ? n : nl;
        if (headLength < UNDO_HEAD_BYTES) {
          const take = Math.min(UNDO_HEAD_BYTES - headLength, stop - i);
          view.copy(head, headLength, i, i + take);
          headLength += take;
        }
        if (nl < 0) break;
        const m = /^\{"seq":(-?[0-9][0-9.eE+-]*)[,}]/.exec(head.toString("latin1", 0, headLength));
        const seq = m ? Number(m[1]) : Number.NaN;
        if (!Number.isFinite(seq)) throw this.damaged(runId, path, start);
        lines.push({ seq, start, end: pos + nl + 1 });
        start = pos + nl + 1;
        headLength = 0;
        i = nl + 1;
      }
      pos += n;
    }
    // Committed lengths end at a line's end.
    if (start !== end) throw this.damaged(runId, path, start);
    return lines;
  }

  /**
   * Removes run `runId`: its entry, its ranges' rows (`<runId>/…`) and its undo log. The
   * journal file is rewritten first (one atomic rename: entry, rows and the log's committed
   * length go together), then the log removed; a crash in between leaves a log no journal
   * names, which no reader reads, the next writer removes (see {@link recoverUndo}), and a
   * new run under the same id starts over (its committed length is 0).
   */
  async forget(runId: string): Promise<void> {
    if (!this.options.writable) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `${this.options.display} was opened read-only: open it with { write: true } to forget run ${runId}`,
      );
    }
    const prefix = `${runId}/`;
    let file: string | undefined;
    await this.update((doc) => {
      let changed = false;
      for (const id of Object.keys(doc.runs)) {
        if (id === runId || id.startsWith(prefix)) {
          delete doc.runs[id];
          changed = true;
        }
      }
      const log = doc.undo?.[runId];
      if (log) {
        file = log.file;
        delete doc.undo?.[runId];
        changed = true;
      }
      // Nothing recorded (no journal file either): nothing is written.
      return changed;
    });
    await this.discardUndo(runId);
    for (const name of new Set([file, undoFileName(runId)])) {
      if (name === undefined) continue;
      const path = join(this.undoDir, name);
      if ((await sizeOf(path)) !== undefined) await removeDurably(path);
    }
  }

  /** Closes the undo logs this session appended to. */
  async close(): Promise<void> {
    const files = [...this.undoFiles.values()];
    this.undoFiles.clear();
    for (const f of files) await (await f.catch(() => undefined))?.close();
  }
}
