/**
 * Applying a batch of write operations inside an open transaction: runs of inserts go in
 * one `COPY … FROM STDIN`, runs of replaces, updates and deletes through a temporary
 * staging table filled by COPY and one `INSERT … ON CONFLICT`, `UPDATE … FROM` or
 * `DELETE … USING`. A run the server refuses is undone (savepoint) and halved until each
 * refused operation stands alone, so it is reported by index and everything else of the
 * batch applies.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { WriteFailure, WriteOp } from "../../core/connector.js";
import { encodeValue, keyString, type Row, type Value } from "../../core/values.js";
import { type CopyField, escapeCopyText, formatCopyLine } from "./postgres-copy-text.js";
import type { ColumnInfo, TableInfo } from "./postgres-introspect.js";
import { describePgError, isRecordError, qualified, quoteIdent } from "./postgres-sql.js";
import { ValueRefused } from "./postgres-types.js";

/** Bytes of COPY data sent per chunk. */
const CHUNK_BYTES = 256 * 1024;

/** The fields of a record and the columns they are written to. */
interface Shape {
  /** The record's fields that have a value, in order. */
  fields: string[];
  /** Written columns: those fields, less generated columns. */
  names: string[];
  cols: ColumnInfo[];
  key: string;
  /** `key` of an insert (one string, so runs compare by identity). */
  insertKey: string;
  /** A field the table has no column for. */
  unknown: string | undefined;
}

/** One op, checked and encoded. */
interface Prepared {
  index: number;
  op: WriteOp["op"];
  /** Written columns (the record's fields, less generated columns). */
  names: string[];
  values: CopyField[];
  /** An insert's COPY text line. */
  line: string;
  matchNames: string[];
  matchValues: CopyField[];
  /** The match values as given, to name the record. */
  matchRaw: Value[];
  /** What ops of one statement share. */
  shape: string;
  /** The match values as one key (replace, update, delete), to keep a key out of a replace or update run twice. */
  matchKey: string;
}

/** Sends COPY text lines `lines[lo..hi]` into `sql` (a `COPY … FROM STDIN`); returns the row count. */
export async function copyLinesIn(
  client: pg.Client,
  sql: string,
  lines: readonly string[],
  lo = 0,
  hi = lines.length - 1,
): Promise<number> {
  const stream = client.query(copyFrom(sql));
  function* chunks(): Generator<string> {
    let buf = "";
    for (let i = lo; i <= hi; i++) {
      buf += lines[i];
      if (buf.length >= CHUNK_BYTES) {
        yield buf;
        buf = "";
      }
    }
    if (buf !== "") yield buf;
  }
  await pipeline(Readable.from(chunks(), { objectMode: false }), stream);
  return stream.rowCount;
}

/** A batch being applied to one table in one transaction. */
export class BatchWriter {
  readonly #client: pg.Client;
  readonly #schema: string;
  readonly #info: TableInfo;
  readonly #failures: WriteFailure[] = [];
  readonly #stages = new Map<string, string>();
  #lastShape: Shape | undefined;

  constructor(client: pg.Client, schema: string, info: TableInfo) {
    this.#client = client;
    this.#schema = schema;
    this.#info = info;
  }

  get #table(): string {
    return qualified(this.#schema, this.#info.name);
  }

  /** Applies `ops` in order; returns the refused ones (by index, ascending). */
  async apply(ops: readonly WriteOp[]): Promise<WriteFailure[]> {
    const prepared: Prepared[] = [];
    for (let i = 0; i < ops.length; i++) {
      const p = this.#prepare(i, ops[i] as WriteOp);
      if (p) prepared.push(p);
    }
    let start = 0;
    while (start < prepared.length) {
      const first = prepared[start] as Prepared;
      let end = start + 1;
      const keys = new Set([first.matchKey]);
      while (end < prepared.length) {
        const p = prepared[end] as Prepared;
        if (p.shape !== first.shape) break;
        if (first.op === "replace" || first.op === "update") {
          if (keys.has(p.matchKey)) break;
          keys.add(p.matchKey);
        }
        end++;
      }
      const run = prepared.slice(start, end);
      if (first.op === "insert") await this.#insertRun(run);
      else await this.#changeRun(run);
      start = end;
    }
    return this.#failures.sort((a, b) => a.index - b.index);
  }

  #fail(index: number, reason: string): void {
    this.#failures.push({ index, reason });
  }

  /**
   * The written columns of `record`: its fields with a value, less generated columns. The
   * previous record's shape is reused when the record has the same fields (the usual case).
   */
  #shapeOf(record: Row): Shape {
    const last = this.#lastShape;
    if (last !== undefined) {
      const fields = last.fields;
      let k = 0;
      let same = true;
      for (const name in record) {
        if (record[name] === undefined) continue;
        if (fields[k] !== name) {
          same = false;
          break;
        }
        k++;
      }
      if (same && k === fields.length) return last;
    }
    const fields: string[] = [];
    const names: string[] = [];
    const cols: ColumnInfo[] = [];
    let unknown: string | undefined;
    for (const name in record) {
      if (record[name] === undefined) continue;
      fields.push(name);
      const col = this.#info.byName.get(name);
      if (col === undefined) unknown ??= name;
      else if (!col.generated) {
        names.push(name);
        cols.push(col);
      }
    }
    const key = names.join("\u0002");
    const shape: Shape = { fields, names, cols, key, insertKey: `insert\u0001${key}`, unknown };
    this.#lastShape = shape;
    return shape;
  }

  /**
   * The match of a replace, update or delete, encoded as its columns encode values; undefined
   * (and a failure recorded) when it names no field or a field the table lacks.
   *
   * @throws ValueRefused when a value cannot be encoded for its column.
   */
  #match(
    index: number,
    op: WriteOp & { match: Record<string, Value> },
  ): Pick<Prepared, "matchNames" | "matchValues" | "matchRaw" | "matchKey"> | undefined {
    const info = this.#info;
    const matchNames: string[] = [];
    const matchValues: CopyField[] = [];
    for (const name of Object.keys(op.match)) {
      const col = info.byName.get(name);
      if (col === undefined) {
        this.#fail(index, `no column ${name} in table ${info.name}: cannot match on it`);
        return undefined;
      }
      matchNames.push(name);
      matchValues.push(col.encode(op.match[name] as Value));
    }
    if (matchNames.length === 0) {
      this.#fail(index, `${op.op} without match fields: nothing to match`);
      return undefined;
    }
    const matchRaw = matchNames.map((n) => (op.match[n] ?? null) as Value);
    return { matchNames, matchValues, matchRaw, matchKey: keyString(matchRaw) };
  }

  /** Checks and encodes one op; undefined (and a failure recorded) when it cannot be written. */
  #prepare(index: number, op: WriteOp): Prepared | undefined {
    if (op.op === "delete") {
      try {
        const match = this.#match(index, op);
        if (match === undefined) return undefined;
        const shape = `delete\u0001\u0001${match.matchNames.join("\u0002")}`;
        return { index, op: "delete", names: [], values: [], line: "", ...match, shape };
      } catch (err) {
        if (err instanceof ValueRefused) {
          this.#fail(index, err.message);
          return undefined;
        }
        throw err;
      }
    }
    const info = this.#info;
    const shape = this.#shapeOf(op.record);
    if (shape.unknown !== undefined) {
      this.#fail(index, `no column ${shape.unknown} in table ${info.name}: field ${shape.unknown} cannot be written`);
      return undefined;
    }
    const { names, cols } = shape;
    try {
      if (op.op === "insert") {
        let line = "";
        for (let j = 0; j < cols.length; j++) {
          const text = (cols[j] as ColumnInfo).encode(op.record[names[j] as string]);
          if (j > 0) line += "\t";
          line += text === null ? "\\N" : escapeCopyText(text);
        }
        return {
          index,
          op: "insert",
          names,
          values: [],
          line: `${line}\n`,
          matchNames: [],
          matchValues: [],
          matchRaw: [],
          shape: shape.insertKey,
          matchKey: "",
        };
      }
      const values = cols.map((c, j) => c.encode(op.record[names[j] as string]));
      const match = this.#match(index, op);
      if (match === undefined) return undefined;
      return {
        index,
        op: op.op,
        names,
        values,
        line: "",
        ...match,
        shape: `${op.op}\u0001${shape.key}\u0001${match.matchNames.join("\u0002")}`,
      };
    } catch (err) {
      if (err instanceof ValueRefused) {
        this.#fail(index, err.message);
        return undefined;
      }
      throw err;
    }
  }

  /**
   * Runs `attempt` on ops `lo..hi` of a run inside a savepoint; when the server refuses it,
   * undoes it and tries each half, down to single ops, which are then reported.
   */
  async #bisect(run: Prepared[], attempt: (lo: number, hi: number) => Promise<void>): Promise<void> {
    const client = this.#client;
    const go = async (lo: number, hi: number): Promise<void> => {
      await client.query("SAVEPOINT ferry_run");
      try {
        await attempt(lo, hi);
        await client.query("RELEASE SAVEPOINT ferry_run");
      } catch (err) {
        if (!isRecordError(err)) throw err;
        await client.query("ROLLBACK TO SAVEPOINT ferry_run");
        await client.query("RELEASE SAVEPOINT ferry_run");
        if (lo === hi) this.#fail((run[lo] as Prepared).index, this.#reason(err));
        else {
          const mid = (lo + hi) >> 1;
          await go(lo, mid);
          await go(mid + 1, hi);
        }
      }
    };
    await go(0, run.length - 1);
  }

  /** A server error as a reason, naming the target table rather than Ferry's staging table. */
  #reason(err: unknown): string {
    return describePgError(err).replace(/\b_ferry_stage_\d+\b/g, this.#info.name);
  }

  async #insertRun(run: Prepared[]): Promise<void> {
    const first = run[0] as Prepared;
    const cols = first.names.map(quoteIdent).join(", ");
    const sql = first.names.length === 0 ? undefined : `COPY ${this.#table} (${cols}) FROM STDIN`;
    if (sql === undefined) {
      // Records without fields: every column takes its default.
      await this.#bisect(run, async (lo, hi) => {
        for (let i = lo; i <= hi; i++) await this.#client.query(`INSERT INTO ${this.#table} DEFAULT VALUES`);
      });
      return;
    }
    const lines = run.map((p) => p.line);
    await this.#bisect(run, async (lo, hi) => {
      await copyLinesIn(this.#client, sql, lines, lo, hi);
    });
  }

  /** A temporary table shaped like the run's columns and match values (one per shape per transaction). */
  async #stage(p: Prepared): Promise<string> {
    let name = this.#stages.get(p.shape);
    if (name === undefined) {
      name = `_ferry_stage_${this.#stages.size + 1}`;
      const cols = [
        "NULL::int4 AS _ferry_ord",
        ...p.names.map((n) => `t.${quoteIdent(n)}`),
        ...p.matchNames.map((n, i) => `t.${quoteIdent(n)} AS _ferry_m${i}`),
      ];
      await this.#client.query(
        `CREATE TEMP TABLE ${name} ON COMMIT DROP AS SELECT ${cols.join(", ")} FROM ${this.#table} t WITH NO DATA`,
      );
      this.#stages.set(p.shape, name);
    }
    return name;
  }

  /** Replaces, updates or deletes: stage the run, then one statement per attempt. */
  async #changeRun(run: Prepared[]): Promise<void> {
    const first = run[0] as Prepared;
    const info = this.#info;
    const stage = await this.#stage(first);
    const stageCols = [
      "_ferry_ord",
      ...first.names.map(quoteIdent),
      ...first.matchNames.map((_, i) => `_ferry_m${i}`),
    ].join(", ");
    const lines = run.map((p, i) => formatCopyLine([String(i), ...p.values, ...p.matchValues]));
    const statement = this.#changeSql(first, stage);
    await this.#bisect(run, async (lo, hi) => {
      await this.#client.query(`TRUNCATE ${stage}`);
      await copyLinesIn(this.#client, `COPY ${stage} (${stageCols}) FROM STDIN`, lines, lo, hi);
      const r = await this.#client.query<{ ord: number }>(statement.sql, [lo, hi]);
      if (!statement.returnsMatched) return;
      const matched = new Set(r.rows.map((row) => Number(row.ord)));
      for (let i = lo; i <= hi; i++) {
        if (matched.has(i)) continue;
        const p = run[i] as Prepared;
        const key = p.matchNames.map((n, k) => `${n}=${JSON.stringify(encodeValue(p.matchRaw[k] ?? null))}`).join(",");
        this.#fail(p.index, `no record of ${info.name} matches ${key}: nothing to ${p.op}`);
      }
    });
  }

  /** The statement applying staged rows `$1..$2`; `returnsMatched` when it returns the ords it matched. */
  #changeSql(p: Prepared, stage: string): { sql: string; returnsMatched: boolean } {
    const info = this.#info;
    const range = "s._ferry_ord BETWEEN $1 AND $2";
    const on = p.matchNames.map((n, i) => `t.${quoteIdent(n)} = s._ferry_m${i}`).join(" AND ");
    if (p.op === "delete") {
      // A record that is not there is not a failure: deleting again deletes nothing.
      return {
        sql: `DELETE FROM ${this.#table} AS t USING ${stage} s WHERE ${range} AND ${on}`,
        returnsMatched: false,
      };
    }
    const given = new Set(p.names);
    const inMatch = new Set(p.matchNames);
    const always = (c: ColumnInfo | undefined) => c?.identity === "a";
    const sets: string[] = [];
    for (const n of p.names) {
      if (inMatch.has(n) && p.op === "replace") continue;
      if (always(info.byName.get(n))) continue;
      sets.push(`${quoteIdent(n)} = %VALUE%${quoteIdent(n)}`);
    }
    if (p.op === "replace") {
      // The record becomes the row whole: columns it lacks take their default, except the
      // key and identity columns, which keep identifying the row.
      for (const c of info.columns) {
        if (given.has(c.name) || inMatch.has(c.name) || c.generated || c.identity !== "") continue;
        if (info.primaryKey.includes(c.name)) continue;
        sets.push(`${quoteIdent(c.name)} = DEFAULT`);
      }
    }
    const arbiter = info.uniqueSets.some((u) => u.length === p.matchNames.length && u.every((c) => inMatch.has(c)));
    if (p.op === "replace" && arbiter) {
      const insertCols = [...p.names];
      const selectCols = p.names.map((n) => `s.${quoteIdent(n)}`);
      p.matchNames.forEach((n, i) => {
        if (!given.has(n)) {
          insertCols.push(n);
          selectCols.push(`s._ferry_m${i}`);
        }
      });
      const overriding = insertCols.some((n) => always(info.byName.get(n))) ? " OVERRIDING SYSTEM VALUE" : "";
      const action =
        sets.length === 0
          ? "DO NOTHING"
          : `DO UPDATE SET ${sets.map((s) => s.replace("%VALUE%", "EXCLUDED.")).join(", ")}`;
      return {
        sql: `INSERT INTO ${this.#table} (${insertCols.map(quoteIdent).join(", ")})${overriding}
          SELECT ${selectCols.join(", ")} FROM ${stage} s WHERE ${range} ORDER BY s._ferry_ord
          ON CONFLICT (${p.matchNames.map(quoteIdent).join(", ")}) ${action}`,
        returnsMatched: false,
      };
    }
    if (sets.length === 0) {
      return {
        sql: `SELECT DISTINCT s._ferry_ord AS ord FROM ${stage} s JOIN ${this.#table} t ON ${on} WHERE ${range}`,
        returnsMatched: true,
      };
    }
    return {
      sql: `UPDATE ${this.#table} AS t SET ${sets.map((s) => s.replace("%VALUE%", "s.")).join(", ")}
        FROM ${stage} s WHERE ${range} AND ${on} RETURNING s._ferry_ord AS ord`,
      returnsMatched: true,
    };
  }
}
