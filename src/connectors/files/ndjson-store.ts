/**
 * One NDJSON collection on disk: its data file (one encoded record per line) and its pending
 * file of replace/update operations that `finish` applies in one rewrite. This module does
 * the file work; when to truncate, checkpoint and finish is the connector's business.
 */
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

/** A replace or update waiting in the pending file. */
export type PendingOp = Exclude<WriteOp, { op: "insert" }>;

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
 * `{"op":"update","match":{…},"record":{…}}` (values encoded as in data lines).
 * Throws a `TypeError` when a value cannot be encoded.
 */
export function encodePendingLine(op: WriteOp): string {
  const record = encodeLine(op.record);
  if (op.op === "insert") return `{"op":"insert","record":${record}}`;
  return `{"op":${JSON.stringify(op.op)},"match":${encodeLine(op.match)},"record":${record}}`;
}

/** The operations of a pending file, in order. */
export async function* readPendingOps(path: string, end?: number): AsyncGenerator<WriteOp> {
  let line = 0;
  for await (const c of readLineChunks(path, 0, end)) {
    for (const text of c.lines) {
      line++;
      if (isBlankLine(text)) continue;
      let p: { op?: unknown; match?: unknown; record?: unknown };
      try {
        p = JSON.parse(text) as typeof p;
      } catch (err) {
        throw new FerryError("E_VALIDATION", `${path}:${line}: not valid JSON: ${(err as Error).message}`, {
          cause: err,
        });
      }
      const record = isJsonObject(p.record) ? decodeInPlace(p.record) : undefined;
      if (record && p.op === "insert") yield { op: "insert", record };
      else if (record && (p.op === "replace" || p.op === "update") && isJsonObject(p.match)) {
        yield { op: p.op, match: decodeInPlace(p.match), record };
      } else throw new FerryError("E_VALIDATION", `${path}:${line}: not a pending operation: ${text.slice(0, 80)}`);
    }
  }
}

/** Pending replace/update operations grouped by their match fields, then by key, with their order. */
export type PendingGroups = Map<string, { fields: string[]; byKey: Map<string, { seq: number; op: PendingOp }[]> }>;

/** Loads a pending file (up to byte `end`) into {@link PendingGroups}; `undefined` when it is missing or empty. */
export async function loadPendingGroups(path: string, end?: number): Promise<PendingGroups | undefined> {
  const size = await sizeOf(path);
  if (!size || end === 0) return undefined;
  const groups: PendingGroups = new Map();
  let seq = 0;
  for await (const op of readPendingOps(path, end)) {
    if (op.op === "insert") continue;
    const fields = Object.keys(op.match);
    const sig = JSON.stringify(fields);
    let g = groups.get(sig);
    if (!g) {
      g = { fields, byKey: new Map() };
      groups.set(sig, g);
    }
    const key = keyString(keyOf(op.match, fields));
    const list = g.byKey.get(key);
    const item = { seq: seq++, op };
    if (list) list.push(item);
    else g.byKey.set(key, [item]);
  }
  return groups;
}

/** The record with the pending operations that match it applied in order, or `undefined` when none match. */
export function applyGroups(row: Row, groups: PendingGroups): Row | undefined {
  let ops: { seq: number; op: PendingOp }[] | undefined;
  for (const g of groups.values()) {
    const found = g.byKey.get(keyString(keyOf(row, g.fields)));
    if (found) ops = ops ? [...ops, ...found] : found;
  }
  if (!ops) return undefined;
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

/** Applies operations, in order, to one record: replace takes the whole record, update merges fields. */
export function applyOps(row: Row, ops: readonly PendingOp[]): Row {
  let out = row;
  for (const o of ops) out = o.op === "replace" ? { ...o.record } : { ...out, ...o.record };
  return out;
}

/** An NDJSON collection's files. */
export class NdjsonStore {
  readonly data: AppendFile;
  readonly pending: AppendFile;
  private readonly indexes = new Map<string, KeyIndex>();

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
        if (pending) row = applyGroups(row, pending) ?? row;
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
   */
  async lookup(fields: string[], keys: Value[][], end?: number): Promise<Map<string, Row>> {
    const index = await this.index(fields, end);
    const wanted: { key: string; offset: number }[] = [];
    const asked = new Set<string>();
    for (const k of keys) {
      const key = keyString(k);
      if (asked.has(key)) continue;
      asked.add(key);
      const at = index.get(key);
      if (at !== undefined) wanted.push({ key, offset: typeof at === "number" ? at : (at[0] as number) });
    }
    const out = new Map<string, Row>();
    if (wanted.length === 0) return out;
    wanted.sort((a, b) => a.offset - b.offset);
    // Synchronous positional reads through a window: the lines are small and usually in the
    // page cache, where an async read per line would cost more in thread-pool hops than I/O.
    const fd = openSync(this.dataPath, "r");
    try {
      let buf = Buffer.allocUnsafe(LOOKUP_WINDOW);
      let winStart = 0;
      let winLen = 0;
      for (const w of wanted) {
        let nl = -1;
        if (w.offset >= winStart && w.offset < winStart + winLen) {
          nl = buf.subarray(0, winLen).indexOf(0x0a, w.offset - winStart);
        }
        if (nl === -1) {
          // Read a window starting at this line, growing it until the whole line is in.
          winStart = w.offset;
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
        const text = buf.toString("utf8", w.offset - winStart, nl === -1 ? winLen : nl);
        out.set(w.key, parseLine(text, { file: this.display, offset: w.offset }));
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

  /** Forgets the lookup indexes (after the file was rewritten or cut back). */
  invalidate(): void {
    this.indexes.clear();
  }

  /**
   * Rewrites the data file with the pending operations applied (each record gets the
   * operations that match it, in the order they were written), through a temp file that is
   * fsynced and renamed over the data file. Untouched lines are copied byte for byte.
   * Re-running it on its own output gives the same output, so a crash at any point is
   * recovered by running it again. Returns false when there was nothing pending.
   * Memory: the pending operations.
   */
  async applyPending(): Promise<boolean> {
    await this.pending.close();
    const groups = await loadPendingGroups(this.pending.path);
    if (groups === undefined) return false;
    await this.data.close();
    const tmp = `${this.dataPath}${TEMP_SUFFIX}`;
    const out = await open(tmp, "w");
    try {
      let parts: string[] = [];
      let bytes = 0;
      const flush = async () => {
        await writeAll(out, Buffer.from(parts.join("")));
        parts = [];
        bytes = 0;
      };
      if ((await sizeOf(this.dataPath)) !== undefined) {
        let line = 0;
        for await (const c of readLineChunks(this.dataPath)) {
          for (const text of c.lines) {
            line++;
            if (isBlankLine(text)) continue;
            const changed = applyGroups(parseLine(text, { file: this.display, line }), groups);
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
