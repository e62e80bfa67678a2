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
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { JournalStore } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { readTextIfExists, writeFileAtomic } from "./atomic-file.js";

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

/** The journal file's content. */
export interface JournalDoc {
  runs: Record<string, unknown>;
  offsets?: Record<string, FileOffset>;
}

/** The `offsets` of a journal document, created when missing. */
export function offsetsOf(doc: JournalDoc): Record<string, FileOffset> {
  if (!doc.offsets) doc.offsets = {};
  return doc.offsets;
}

/** A {@link JournalStore} over a sidecar JSON file, plus the checkpointed file lengths. */
export class SidecarJournal implements JournalStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

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
   * concurrent updates from one connector never lose each other's changes.
   */
  update(change: (doc: JournalDoc) => void): Promise<void> {
    const next = this.queue.then(async () => {
      const doc = await this.read();
      change(doc);
      if (doc.offsets && Object.keys(doc.offsets).length === 0) delete doc.offsets;
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
}
