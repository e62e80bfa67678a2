/**
 * One NDJSON collection on disk: its data file (one encoded record per line) and its pending
 * file of replace/update/delete operations that `finish` applies in one rewrite. This module
 * does the file work; when to truncate, checkpoint and finish is the connector's business.
 *
 * A delete in the pending file carries `before`: the data file's length when it was written.
 * It removes the matching records whose lines start before that byte, never one appended
 * after it (a record deleted and then inserted again, in this run or a later one, stays).
 * Data lines only move when `finish` rewrites the file and removes the pending file with it;
 * preparing again cuts both back to the same checkpoint, so `before` always names the same lines.
 */
import { createHash, type Hash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { open, rename } from "node:fs/promises";
import { dirname } from "node:path";
import type { ReadBatch, ReadOptions, WriteOp } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { keyOf, keyString, type Row, type Value } from "../../core/values.js";
import { AppendFile, sizeOf } from "./append-file.js";
import { fsyncDir, TEMP_SUFFIX, writeAll } from "./atomic-file.js";
import { countLines, readLineChunks } from "./line-reader.js";
import { decodeInPlace, encodeLine, isBlankLine, isJsonObject, parseLine, project } from "./record-codec.js";

/** Suffix of the pending file beside a data file. */
export const PENDING_SUFFIX = ".ferry-pending";

/**
 * A delete as a pending file keeps it. `before` (NDJSON data files): it removes only records
 * whose lines start before this byte; absent (`.json` logs, replayed in order): every match.
 */
export type LoggedDelete = Extract<WriteOp, { op: "delete" }> & { before?: number };

/** An operation of a pending file (a `.json` log holds inserts too). */
export type LoggedOp = Exclude<WriteOp, { op: "delete" }> | LoggedDelete;

/** A replace, update or delete waiting in the pending file. */
export type PendingOp = Exclude<LoggedOp, { op: "insert" }>;

/** Position in an NDJSON file: the byte after a batch's last line, and lines consumed. */
export interface NdjsonBookmark {
  /** Byte offset just after the last line of the batch. */
  offset: number;
  /** Lines consumed up to there (records so far, plus any blank lines). */
  line: number;
  [key: string]: unknown;
}

const FLUSH_BYTES = 1 << 20;
const LOOKUP_WINDOW = 64 << 10;

/**
 * The line of a pending file for one operation:
 * `{"op":"update","match":{…},"record":{…}}`, `{"op":"delete","match":{…},"before":123}`
 * (values encoded as in data lines).
 * Throws a `TypeError` when a value cannot be encoded.
 */
export function encodePendingLine(op: LoggedOp): string {
  if (op.op === "delete") {
    const before = op.before === undefined ? "" : `,"before":${op.before}`;
    return `{"op":"delete","match":${encodeLine(op.match)}${before}}`;
  }
  const record = encodeLine(op.record);
  if (op.op === "insert") return `{"op":"insert","record":${record}}`;
  return `{"op":${JSON.stringify(op.op)},"match":${encodeLine(op.match)},"record":${record}}`;
}

/** The operations of a pending file, in order. */
export async function* readPendingOps(path: string, end?: number): AsyncGenerator<LoggedOp> {
  let line = 0;
  for await (const c of readLineChunks(path, 0, end)) {
    for (const text of c.lines) {
      line++;
      if (isBlankLine(text)) continue;
      let p: { op?: unknown; match?: unknown; record?: unknown; before?: unknown };
      try {
        p = JSON.parse(text) as typeof p;
      } catch (err) {
        throw new FerryError("E_VALIDATION", `${path}:${line}: not valid JSON: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (p.op === "delete" && isJsonObject(p.match)) {
        const before = p.before;
        if (before === undefined) {
          yield { op: "delete", match: decodeInPlace(p.match) };
          continue;
        }
        if (typeof before === "number" && Number.isSafeInteger(before) && before >= 0) {
          yield { op: "delete", match: decodeInPlace(p.match), before };
          continue;
        }
      }
      const record = isJsonObject(p.record) ? decodeInPlace(p.record) : undefined;
      if (record && p.op === "insert") yield { op: "insert", record };
      else if (record && (p.op === "replace" || p.op === "update") && isJsonObject(p.match)) {
        yield { op: p.op, match: decodeInPlace(p.match), record };
      } else throw new FerryError("E_VALIDATION", `${path}:${line}: not a pending operation: ${text.slice(0, 80)}`);
    }
  }
}

/** Pending replace/update/delete operations grouped by their match fields, then by key, with their order. */
export type PendingGroups = Map<string, { fields: string[]; byKey: Map<string, { seq: number; op: PendingOp }[]> }>;

/**
 * Loads a pending file (up to byte `end`) into {@link PendingGroups}; `undefined` when it is
 * missing or empty. With `deletesOnly`, just its deletes (all lookups need).
 */
export async function loadPendingGroups(
  path: string,
  end?: number,
  deletesOnly = false,
): Promise<PendingGroups | undefined> {
  const size = await sizeOf(path);
  if (!size || end === 0) return undefined;
  const groups: PendingGroups = new Map();
  let seq = 0;
  for await (const op of readPendingOps(path, end)) {
    if (op.op === "insert" || (deletesOnly && op.op !== "delete")) continue;
    addToGroups(groups, op, seq++);
  }
  return groups;
}

/** Adds one operation (the `seq`-th of its file) to {@link PendingGroups}. */
export function addToGroups(groups: PendingGroups, op: PendingOp, seq: number): void {
  const fields = Object.keys(op.match);
  const sig = JSON.stringify(fields);
  let g = groups.get(sig);
  if (!g) {
    g = { fields, byKey: new Map() };
    groups.set(sig, g);
  }
  const key = keyString(keyOf(op.match, fields));
  const list = g.byKey.get(key);
  const item = { seq, op };
  if (list) list.push(item);
  else g.byKey.set(key, [item]);
}

/** Whether a pending delete removes the record `row` whose line starts at byte `offset`. */
export function isDeleted(row: Row, offset: number, groups: PendingGroups): boolean {
  for (const g of groups.values()) {
    const found = g.byKey.get(keyString(keyOf(row, g.fields)));
    if (found?.some((o) => o.op.op === "delete" && (o.op.before ?? Number.POSITIVE_INFINITY) > offset)) return true;
  }
  return false;
}

/** Whether the groups hold a delete. */
export function hasDeletes(groups: PendingGroups | undefined): boolean {
  if (!groups) return false;
  for (const g of groups.values())
    for (const list of g.byKey.values()) if (list.some((o) => o.op.op === "delete")) return true;
  return false;
}

/**
 * The record (whose line starts at byte `offset`) with the pending operations that match it
 * applied in order: `null` when a delete removes it, `undefined` when nothing changes it.
 * A delete written after the record was appended (see {@link LoggedDelete}) does not touch it.
 */
export function applyGroups(row: Row, groups: PendingGroups, offset: number): Row | null | undefined {
  let ops: { seq: number; op: PendingOp }[] | undefined;
  for (const g of groups.values()) {
    const found = g.byKey.get(keyString(keyOf(row, g.fields)));
    if (found) ops = ops ? [...ops, ...found] : found;
  }
  if (!ops) return undefined;
  if (ops.some((o) => o.op.op === "delete" && (o.op.before ?? Number.POSITIVE_INFINITY) > offset)) return null;
  if (ops.every((o) => o.op.op === "delete")) return undefined;
  if (ops.length > 1) ops = [...ops].sort((a, b) => a.seq - b.seq);
  return applyOps(
    row,
    ops.map((o) => o.op),
  );
}

/**
 * What a reader may see of a collection a run is still writing: the data file up to `end`
 * (its length at the last checkpoint) with the committed pending operations applied.
 */
export interface CommittedView {
  end?: number;
  pending?: PendingGroups;
}

/** Offsets of lines per key: one number, or several for duplicate keys. */
type KeyIndex = Map<string, number | number[]>;

function addToIndex(index: KeyIndex, key: string, offset: number): void {
  const had = index.get(key);
  if (had === undefined) index.set(key, offset);
  else if (typeof had === "number") index.set(key, [had, offset]);
  else had.push(offset);
}

/**
 * Applies operations, in order, to one record: replace takes the whole record, update merges
 * fields. Deletes are not applied here (see {@link applyGroups}).
 */
export function applyOps(row: Row, ops: readonly PendingOp[]): Row {
  let out = row;
  for (const o of ops) {
    if (o.op === "delete") continue;
    out = o.op === "replace" ? { ...o.record } : { ...out, ...o.record };
  }
  return out;
}

/** An NDJSON collection's files. */
export class NdjsonStore {
  readonly data: AppendFile;
  readonly pending: AppendFile;
  private readonly indexes = new Map<string, KeyIndex>();
  /** See {@link pendingDeletes}; null: not loaded. */
  private deletes: PendingGroups | null = null;
  private deleteSeq = 0;

  /** @param display how the data file is named in messages (`./backup/users.ndjson`). */
  constructor(
    readonly dataPath: string,
    readonly display: string,
  ) {
    this.data = new AppendFile(dataPath);
    this.pending = new AppendFile(`${dataPath}${PENDING_SUFFIX}`);
  }

  /** Record count: non-blank lines (up to byte `end`), by a byte scan. */
  async count(end?: number): Promise<number> {
    if ((await sizeOf(this.dataPath)) === undefined) return 0;
    return countLines(this.dataPath, end);
  }

  /** Batches of records in file order, resuming strictly after `options.after`. */
  async *read(options: ReadOptions, view: CommittedView = {}): AsyncGenerator<ReadBatch> {
    const fileSize = await sizeOf(this.dataPath);
    if (fileSize === undefined) return;
    const size = Math.min(fileSize, view.end ?? fileSize);
    const { offset, line: startLine } = await this.resumePoint(options.after, size);
    const pending = view.pending;
    const file = this.display;
    let line = startLine;
    let records: Row[] = [];
    let lastEnd = offset;
    let lastLine = line;
    for await (const c of readLineChunks(this.dataPath, offset, size)) {
      const { lines, ends } = c;
      for (let i = 0; i < lines.length; i++) {
        line++;
        const text = lines[i] as string;
        if (isBlankLine(text)) continue;
        let row = parseLine(text, { file, line });
        if (pending) {
          const changed = applyGroups(row, pending, i === 0 ? c.start : (ends[i - 1] as number));
          if (changed === null) continue;
          row = changed ?? row;
        }
        records.push(project(row, options.fields));
        lastEnd = ends[i] as number;
        lastLine = line;
        if (records.length >= options.batchSize) {
          yield { records, bookmark: { offset: lastEnd, line: lastLine } satisfies NdjsonBookmark };
          records = [];
        }
      }
    }
    if (records.length > 0) yield { records, bookmark: { offset: lastEnd, line: lastLine } satisfies NdjsonBookmark };
  }

  private async resumePoint(after: ReadOptions["after"], size: number): Promise<{ offset: number; line: number }> {
    if (!after) return { offset: 0, line: 0 };
    const { offset, line } = after as Partial<NdjsonBookmark>;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(line) || (offset as number) < 0) {
      throw new FerryError(
        "E_CONFIG",
        `cannot resume reading ${this.display} from ${JSON.stringify(after)}: not a position in an NDJSON file; start over without resuming`,
      );
    }
    const o = offset as number;
    let atLineStart = o === 0 || o === size;
    if (!atLineStart && o < size) {
      const fh = await open(this.dataPath, "r");
      try {
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, o - 1);
        atLineStart = b[0] === 0x0a;
      } finally {
        await fh.close();
      }
    }
    if (!atLineStart) {
      throw new FerryError(
        "E_CONFIG",
        `cannot resume reading ${this.display} at byte ${o}: the file is ${size} bytes and changed since the run began (that byte is not a line start); start over without resuming`,
        { details: { file: this.display, offset: o, size } },
      );
    }
    return { offset: o, line: line as number };
  }

  /**
   * For each key tuple of `fields`, the existing record with those values. The first call
   * for a set of fields indexes the file (key → line offset; the keys must fit in memory),
   * later calls only read the matched lines. With `end`, only the file's first `end` bytes count.
   * With `pending`, records its deletes remove do not exist.
   */
  async lookup(fields: string[], keys: Value[][], end?: number, pending?: PendingGroups): Promise<Map<string, Row>> {
    const index = await this.index(fields, end);
    let wanted: { key: string; at: number[]; i: number }[] = [];
    const asked = new Set<string>();
    for (const k of keys) {
      const key = keyString(k);
      if (asked.has(key)) continue;
      asked.add(key);
      const at = index.get(key);
      if (at !== undefined) wanted.push({ key, at: typeof at === "number" ? [at] : at, i: 0 });
    }
    const out = new Map<string, Row>();
    const ops = pending !== undefined && pending.size > 0 ? pending : undefined;
    // A deleted record's key may have been inserted again further on: its next line is asked then.
    while (wanted.length > 0) {
      const rows = this.readLinesAt(wanted.map((w) => w.at[w.i] as number));
      const again: typeof wanted = [];
      for (const w of wanted) {
        const offset = w.at[w.i] as number;
        const row = rows.get(offset) as Row;
        // The record as the pending replace/update/delete operations leave it.
        const now = ops === undefined ? row : applyGroups(row, ops, offset);
        if (now !== null) out.set(w.key, now ?? row);
        else if (w.i + 1 < w.at.length) again.push({ ...w, i: w.i + 1 });
      }
      wanted = again;
    }
    return out;
  }

  /** The records whose lines start at `offsets`, by offset. */
  private readLinesAt(offsets: number[]): Map<number, Row> {
    const out = new Map<number, Row>();
    if (offsets.length === 0) return out;
    const sorted = [...new Set(offsets)].sort((a, b) => a - b);
    // Synchronous positional reads through a window: the lines are small and usually in the
    // page cache, where an async read per line would cost more in thread-pool hops than I/O.
    const fd = openSync(this.dataPath, "r");
    try {
      let buf = Buffer.allocUnsafe(LOOKUP_WINDOW);
      let winStart = 0;
      let winLen = 0;
      for (const offset of sorted) {
        let nl = -1;
        if (offset >= winStart && offset < winStart + winLen) {
          nl = buf.subarray(0, winLen).indexOf(0x0a, offset - winStart);
        }
        if (nl === -1) {
          // Read a window starting at this line, growing it until the whole line is in.
          winStart = offset;
          winLen = 0;
          for (;;) {
            const n = readSync(fd, buf, winLen, buf.length - winLen, winStart + winLen);
            winLen += n;
            nl = buf.subarray(0, winLen).indexOf(0x0a);
            if (nl !== -1 || n === 0) break;
            if (winLen === buf.length) {
              const bigger = Buffer.allocUnsafe(buf.length * 4);
              buf.copy(bigger, 0, 0, winLen);
              buf = bigger;
            }
          }
        }
        const text = buf.toString("utf8", offset - winStart, nl === -1 ? winLen : nl);
        out.set(offset, parseLine(text, { file: this.display, offset }));
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }

  private async index(fields: string[], end?: number): Promise<KeyIndex> {
    const sig = JSON.stringify(fields);
    let index = this.indexes.get(sig);
    if (index) return index;
    index = new Map();
    if ((await sizeOf(this.dataPath)) !== undefined) {
      let line = 0;
      for await (const c of readLineChunks(this.dataPath, 0, end)) {
        let start = c.start;
        for (let i = 0; i < c.lines.length; i++) {
          line++;
          const text = c.lines[i] as string;
          const at = start;
          start = c.ends[i] as number;
          if (isBlankLine(text)) continue;
          addToIndex(index, keyString(keyOf(parseLine(text, { file: this.display, line }), fields)), at);
        }
      }
    }
    this.indexes.set(sig, index);
    return index;
  }

  /** Whether any lookup index is held (then appends must report their offsets). */
  get indexed(): boolean {
    return this.indexes.size > 0;
  }

  /** Adds records this connector appended (each starting at `offsets[i]`) to the lookup indexes. */
  noteAppended(rows: readonly Row[], offsets: readonly number[]): void {
    for (const [sig, index] of this.indexes) {
      const fields = JSON.parse(sig) as string[];
      rows.forEach((r, i) => {
        addToIndex(index, keyString(keyOf(r, fields)), offsets[i] as number);
      });
    }
  }

  /**
   * The replace/update/delete operations of the whole pending file (this session's and the
   * committed ones), for lookups: loaded once, then kept current by {@link noteDeletes}.
   */
  async pendingDeletes(): Promise<PendingGroups | undefined> {
    if (this.deletes === null) {
      this.deletes = (await loadPendingGroups(this.pending.path)) ?? new Map();
      // This session's operations come after those loaded (lookups apply them in order).
      let loaded = 0;
      for (const g of this.deletes.values()) for (const list of g.byKey.values()) loaded += list.length;
      this.deleteSeq = loaded;
    }
    return this.deletes;
  }

  /** Adds the operations this connector appended to the pending file to {@link pendingDeletes}. */
  noteDeletes(ops: readonly PendingOp[]): void {
    if (this.deletes === null) return;
    for (const op of ops) addToGroups(this.deletes, op, this.deleteSeq++);
  }

  /** Forgets the lookup indexes and deletes (after the files were rewritten or cut back). */
  invalidate(): void {
    this.indexes.clear();
    this.deletes = null;
  }

  /**
   * Rewrites the data file with the pending operations applied (each record gets the
   * operations that match it, in the order they were written; a deleted one is left out),
   * through a temp file that is fsynced and renamed over the data file. Untouched lines are
   * copied byte for byte. `beforeRename` gets the SHA-256 of the new content once it is
   * durable in the temp file, and must record it durably: the rewrite moves lines, so a
   * delete's `before` (see {@link LoggedDelete}) is only right for the file it was written
   * against, and after a crash the hash tells whether the rename happened (then the pending
   * operations must not be applied again). Returns false when there was nothing pending.
   * Memory: the pending operations.
   */
  async applyPending(beforeRename?: (sha256: string) => Promise<void>): Promise<boolean> {
    await this.pending.close();
    const groups = await loadPendingGroups(this.pending.path);
    if (groups === undefined) return false;
    await this.data.close();
    const tmp = `${this.dataPath}${TEMP_SUFFIX}`;
    const out = await open(tmp, "w");
    const hash: Hash = createHash("sha256");
    try {
      let parts: string[] = [];
      let bytes = 0;
      const flush = async () => {
        const chunk = Buffer.from(parts.join(""));
        hash.update(chunk);
        await writeAll(out, chunk);
        parts = [];
        bytes = 0;
      };
      if ((await sizeOf(this.dataPath)) !== undefined) {
        let line = 0;
        for await (const c of readLineChunks(this.dataPath)) {
          for (let i = 0; i < c.lines.length; i++) {
            const text = c.lines[i] as string;
            line++;
            if (isBlankLine(text)) continue;
            const at = i === 0 ? c.start : (c.ends[i - 1] as number);
            const changed = applyGroups(parseLine(text, { file: this.display, line }), groups, at);
            if (changed === null) continue;
            const piece = changed ? `${encodeLine(changed)}\n` : `${text}\n`;
            parts.push(piece);
            bytes += piece.length;
            if (bytes >= FLUSH_BYTES) await flush();
          }
        }
      }
      await flush();
      await out.datasync();
    } finally {
      await out.close();
    }
    await beforeRename?.(hash.digest("hex"));
    await rename(tmp, this.dataPath);
    await fsyncDir(dirname(this.dataPath));
    this.invalidate();
    return true;
  }

  async close(): Promise<void> {
    await this.data.close();
    await this.pending.close();
  }
}
