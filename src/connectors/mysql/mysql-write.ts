/**
 * Applying one batch of write ops inside an open transaction.
 *
 * Runs of inserts go to the server in bulk: `LOAD DATA LOCAL INFILE` from a stream when
 * the server allows it (measured on 1M rows into InnoDB, idle machine: 9.1 s with one
 * connection and 5.8 s with two, against 15.4 s and 10.4 s for multi-row INSERTs of ~1 MB;
 * `mariadb-dump | mariadb` takes 11.6 s), else multi-row
 * INSERT statements under `max_allowed_packet`. LOAD DATA LOCAL turns refusals into
 * warnings (the server cannot stop the upload), so a load with any warning is rolled back
 * to a savepoint and the run goes again as INSERTs. A refused multi-row INSERT is undone
 * by InnoDB as a whole statement; its rows are then inserted one by one, so each refused
 * record becomes a failure with the server's reason and the others apply.
 *
 * Runs of deletes go in one `DELETE … WHERE (key <=> …) OR …` per chunk, with foreign keys
 * checked (the session writes with `foreign_key_checks = 0`, which would let a delete leave
 * references to a record that is gone); a chunk the server refuses is deleted one record
 * at a time in the same way.
 */
import { Readable } from "node:stream";
import type { WriteFailure, WriteOp } from "../../core/connector.js";
import { type Row, type Value, valuesEqual } from "../../core/values.js";
import { isConnectionLost, isPermissionError } from "./mysql-errors.js";
import type { ColumnInfo, TableInfo } from "./mysql-introspect.js";
import { keyLiteral } from "./mysql-read.js";
import type { MysqlSession } from "./mysql-session.js";
import { ER, errnoOf, quoteIdent, refusalReason, tsvField } from "./mysql-sql.js";
import { type Encoder, encoderFor, RefusedValue } from "./mysql-values.js";

/** What {@link applyOps} needs besides the ops. */
export interface WriteContext {
  session: MysqlSession;
  database: string;
  info: TableInfo;
  /** The server's max_allowed_packet, in bytes. */
  maxPacket: number;
  /** LOAD DATA LOCAL is allowed (cleared for the connector when the server refuses it). */
  loadData: { enabled: boolean };
}

/** A failure that is not the record's fault: the whole batch fails (and is retried or reported). */
export class BatchError extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.cause = cause;
  }
}

/** Fewest rows for which LOAD DATA is worth its extra round trips (savepoint, load). */
const LOAD_DATA_MIN_ROWS = 20;
/** Most characters of one multi-row statement (bytes are at most 3× as many: utf8mb4 BMP). */
const STATEMENT_CHARS = 1 << 20;
/** Bytes per chunk of the LOAD DATA stream. */
const LOAD_CHUNK = 64 * 1024;
/** Records per DELETE statement, at most. */
const KEYS_PER_DELETE = 1000;

/** The columns an op writes: its record's fields, less generated columns and undefined values. */
interface Shape {
  names: string[];
  columns: (ColumnInfo | undefined)[];
  encoders: Encoder[];
  key: string;
}

const generic = new Map<string, Encoder>();

/** The shape of a delete, which writes no fields. */
const NO_FIELDS: Shape = { names: [], columns: [], encoders: [], key: "" };

function shapeOf(info: TableInfo, record: Row, previous: Shape | undefined): Shape {
  const names: string[] = [];
  for (const name in record) {
    if (record[name] === undefined || info.byName.get(name)?.generated === true) continue;
    names.push(name);
  }
  const key = names.join("\u0001");
  if (previous !== undefined && previous.key === key) return previous;
  const columns = names.map((n) => info.byName.get(n));
  const encoders = names.map((n, i) => {
    const c = columns[i];
    if (c) return c.encoder;
    // An unknown column: the server refuses it by name.
    let e = generic.get(n);
    if (!e) {
      e = encoderFor("other", n);
      generic.set(n, e);
    }
    return e;
  });
  return { names, columns, encoders, key };
}

/** True when the server refused the statement for the record's sake (not the batch's). */
function isRecordError(err: unknown): boolean {
  const n = errnoOf(err);
  if (n === undefined) return false;
  return !(isConnectionLost(err) || isPermissionError(err) || n === ER.LOCK_DEADLOCK || n === ER.LOCK_WAIT_TIMEOUT);
}

/** Runs a statement that may be refused for its record: resolves with the error, or undefined. */
async function attempt(s: MysqlSession, sql: string): Promise<{ err?: unknown; affected: number }> {
  try {
    const r = await s.exec(sql);
    return { affected: r.affectedRows };
  } catch (err) {
    if (!isRecordError(err)) throw new BatchError(err);
    return { err, affected: 0 };
  }
}

/**
 * Applies `ops` in order inside the session's open transaction; returns the refused ones.
 *
 * @throws BatchError when the batch as a whole failed (connection lost, deadlock, no privilege).
 */
export async function applyOps(ctx: WriteContext, ops: WriteOp[]): Promise<WriteFailure[]> {
  const { info } = ctx;
  const failures: WriteFailure[] = [];
  const shapes: Shape[] = new Array(ops.length);
  let previous: Shape | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as WriteOp;
    if (op.op === "delete") shapes[i] = NO_FIELDS;
    else {
      previous = shapeOf(info, op.record, previous);
      shapes[i] = previous;
    }
  }
  let i = 0;
  while (i < ops.length) {
    const op = ops[i] as WriteOp;
    const shape = shapes[i] as Shape;
    if (op.op === "delete") {
      const fields = Object.keys(op.match).join("\u0001");
      let j = i + 1;
      while (j < ops.length) {
        const next = ops[j] as WriteOp;
        if (next.op !== "delete" || Object.keys(next.match).join("\u0001") !== fields) break;
        j++;
      }
      await deleteRun(ctx, ops, i, j, failures);
      i = j;
      continue;
    }
    const upsertKey = op.op === "replace" ? upsertMatch(info, op) : undefined;
    if ((op.op === "insert" || upsertKey !== undefined) && shape.names.length > 0) {
      let j = i + 1;
      while (j < ops.length && shapes[j] === shape && (ops[j] as WriteOp).op === op.op) {
        if (op.op === "replace" && upsertMatch(info, ops[j] as WriteOp) !== upsertKey) break;
        j++;
      }
      await bulk(ctx, ops, shape, i, j, upsertKey, failures);
      i = j;
      continue;
    }
    await single(ctx, op, shape, i, failures);
    i++;
  }
  failures.sort((a, b) => a.index - b.index);
  return failures;
}

/**
 * For a replace whose match is the primary key or a unique key (and whose record holds the
 * same values), the key's name: it can be written as INSERT … ON DUPLICATE KEY UPDATE.
 */
function upsertMatch(info: TableInfo, op: WriteOp): string | undefined {
  if (op.op !== "replace") return undefined;
  const match = Object.keys(op.match);
  if (match.length === 0) return undefined;
  for (const m of match) {
    const v = op.record[m];
    if (v === undefined || !valuesEqual(v, op.match[m] as Value)) return undefined;
  }
  const same = (k: string[]): boolean => k.length === match.length && k.every((f) => match.includes(f));
  if (same(info.primaryKey)) return "PRIMARY";
  const u = info.uniqueKeys.find(same);
  return u === undefined ? undefined : u.join("\u0001");
}

/** `(v1, v2, …)` of a record, or the refusal of one of its values. */
function tuple(shape: Shape, record: Row): string | RefusedValue {
  const parts: string[] = new Array(shape.names.length);
  try {
    for (let k = 0; k < shape.names.length; k++) {
      const v = record[shape.names[k] as string] as Value;
      parts[k] = v === null ? "NULL" : (shape.encoders[k] as Encoder).sql(v);
    }
  } catch (err) {
    if (err instanceof RefusedValue) return err;
    throw err;
  }
  return `(${parts.join(", ")})`;
}

/** Inserts (or upserts) ops `from`…`to`−1, all of one shape. */
async function bulk(
  ctx: WriteContext,
  ops: WriteOp[],
  shape: Shape,
  from: number,
  to: number,
  upsertKey: string | undefined,
  failures: WriteFailure[],
): Promise<void> {
  const { session: s, info } = ctx;
  const table = quoteIdent(info.name);
  const cols = shape.names.map(quoteIdent).join(", ");
  if (
    upsertKey === undefined &&
    ctx.loadData.enabled &&
    info.loadable &&
    info.transactional &&
    to - from >= LOAD_DATA_MIN_ROWS
  ) {
    const loaded = await loadData(ctx, ops, shape, from, to, failures);
    if (loaded) return;
  }
  const head = `INSERT INTO ${table} (${cols}) VALUES `;
  const tail =
    upsertKey === undefined ? "" : ` ON DUPLICATE KEY UPDATE ${upsertAssignments(info, shape, ops[from] as WriteOp)}`;
  // One row per statement where a refused statement would leave part of itself behind.
  const limit = info.transactional
    ? Math.max(1024, Math.min(STATEMENT_CHARS, Math.floor((ctx.maxPacket - 1024) / 3)))
    : 0;
  let rows: string[] = [];
  let indexes: number[] = [];
  let size = 0;
  const flush = async (): Promise<void> => {
    if (rows.length === 0) return;
    const sql = `${head}${rows.join(", ")}${tail}`;
    const r = await attempt(s, sql);
    if (r.err !== undefined) {
      if (rows.length === 1)
        failures.push({ index: indexes[0] as number, reason: refusalReason(ctx.database, info.name, r.err) });
      else {
        // InnoDB undid the whole statement: find the refused rows one by one.
        for (let k = 0; k < rows.length; k++) {
          const one = await attempt(s, `${head}${rows[k]}${tail}`);
          if (one.err !== undefined) {
            failures.push({ index: indexes[k] as number, reason: refusalReason(ctx.database, info.name, one.err) });
          }
        }
      }
    }
    rows = [];
    indexes = [];
    size = 0;
  };
  for (let i = from; i < to; i++) {
    const t = tuple(shape, (ops[i] as WriteOp & { op: "insert" | "replace" }).record);
    if (t instanceof RefusedValue) {
      failures.push({ index: i, reason: t.message });
      continue;
    }
    if (head.length + t.length + tail.length > limit) {
      const bytes = Buffer.byteLength(head) + Buffer.byteLength(t) + Buffer.byteLength(tail);
      if (bytes > ctx.maxPacket - 1024) {
        failures.push({
          index: i,
          reason: `${ctx.database}.${info.name}: the record is ${bytes} bytes as SQL, more than the server's max_allowed_packet (${ctx.maxPacket}): raise max_allowed_packet`,
        });
        continue;
      }
    }
    if (size + t.length > limit) await flush();
    rows.push(t);
    indexes.push(i);
    size += t.length + 2;
  }
  await flush();
}

/**
 * `col = VALUES(col)` for the record's columns other than the match key, and `DEFAULT` for
 * the table's other columns (the record becomes the row whole), except primary-key and
 * generated ones.
 */
function upsertAssignments(info: TableInfo, shape: Shape, op: WriteOp): string {
  const match = new Set(op.op === "insert" ? [] : Object.keys(op.match));
  const given = new Set(shape.names);
  const sets = shape.names.filter((n) => !match.has(n)).map((n) => `${quoteIdent(n)} = VALUES(${quoteIdent(n)})`);
  for (const c of info.columns) {
    if (c.generated || given.has(c.name) || info.primaryKey.includes(c.name) || c.field.autoIncrement) continue;
    sets.push(`${quoteIdent(c.name)} = DEFAULT(${quoteIdent(c.name)})`);
  }
  if (sets.length === 0) {
    const first = quoteIdent(shape.names[0] as string);
    sets.push(`${first} = ${first}`);
  }
  return sets.join(", ");
}

/**
 * One LOAD DATA LOCAL for ops `from`…`to`−1 (inserts of one shape), streamed as it is
 * encoded. Returns false (everything undone) when the server warned or refused: the caller
 * then inserts the run with INSERT statements, which name each refused record.
 */
async function loadData(
  ctx: WriteContext,
  ops: WriteOp[],
  shape: Shape,
  from: number,
  to: number,
  failures: WriteFailure[],
): Promise<boolean> {
  const { session: s, info } = ctx;
  const targets: string[] = [];
  const sets: string[] = [];
  shape.names.forEach((n, k) => {
    if ((shape.encoders[k] as Encoder).hex) {
      targets.push(`@h${k}`);
      sets.push(`${quoteIdent(n)} = UNHEX(@h${k})`);
    } else targets.push(quoteIdent(n));
  });
  // Values the columns cannot hold are refused here; those records are not sent.
  const refused: WriteFailure[] = [];
  let sent = 0;
  function* chunks(): Generator<Buffer> {
    let text = "";
    for (let i = from; i < to; i++) {
      const record = (ops[i] as WriteOp & { op: "insert" }).record;
      let line = "";
      try {
        for (let k = 0; k < shape.names.length; k++) {
          const v = record[shape.names[k] as string] as Value;
          const f = v === null ? "\\N" : tsvField((shape.encoders[k] as Encoder).text(v));
          line += k === 0 ? f : `\t${f}`;
        }
      } catch (err) {
        if (!(err instanceof RefusedValue)) throw err;
        refused.push({ index: i, reason: err.message });
        continue;
      }
      text += `${line}\n`;
      sent++;
      if (text.length >= LOAD_CHUNK) {
        yield Buffer.from(text);
        text = "";
      }
    }
    if (text.length > 0) yield Buffer.from(text);
  }
  const sql =
    `LOAD DATA LOCAL INFILE 'ferry' INTO TABLE ${quoteIdent(info.name)} CHARACTER SET utf8mb4 ` +
    `FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (${targets.join(", ")})` +
    (sets.length > 0 ? ` SET ${sets.join(", ")}` : "");
  await s.exec("SAVEPOINT ferry_load");
  let ok = false;
  try {
    const r = await s.exec(sql, { infile: () => Readable.from(chunks(), { objectMode: false }) });
    ok = r.warningStatus === 0 && r.affectedRows === sent;
  } catch (err) {
    const n = errnoOf(err);
    if (
      n === ER.NOT_ALLOWED_COMMAND ||
      n === ER.CLIENT_LOCAL_FILES_DISABLED ||
      n === ER.LOAD_INFILE_CAPABILITY_DISABLED
    ) {
      ctx.loadData.enabled = false;
    } else if (!isRecordError(err)) throw new BatchError(err);
  }
  if (ok) {
    failures.push(...refused);
    await s.exec("RELEASE SAVEPOINT ferry_load");
    return true;
  }
  await s.exec("ROLLBACK TO SAVEPOINT ferry_load");
  return false;
}

/**
 * The condition matching `match` (a replace's, an update's or a delete's): `field <=> value`
 * for each field, values spelled as the column reads keys.
 *
 * @throws RefusedValue when a value cannot be spelled for its column.
 */
function matchWhere(info: TableInfo, match: Record<string, Value>): string {
  return Object.keys(match)
    .map((m) => {
      const c = info.byName.get(m);
      const v = match[m] as Value;
      const lit = v === null ? "NULL" : c ? keyLiteral(c, v) : encoderFor("other", m).sql(v);
      return `${quoteIdent(m)} <=> ${lit}`;
    })
    .join(" AND ");
}

/**
 * Deletes ops `from`…`to`−1 (deletes matching on the same fields): one statement per chunk,
 * each record's condition as {@link matchWhere} spells it, with foreign keys checked while
 * they run. A chunk the server refuses (InnoDB undoes the statement whole) is deleted
 * record by record, so each refused one becomes a failure and the others go. A record that
 * is not there is not a failure.
 */
async function deleteRun(
  ctx: WriteContext,
  ops: WriteOp[],
  from: number,
  to: number,
  failures: WriteFailure[],
): Promise<void> {
  const { session: s, info, database } = ctx;
  const head = `DELETE FROM ${quoteIdent(info.name)} WHERE `;
  const limit = Math.max(1024, Math.min(STATEMENT_CHARS, Math.floor((ctx.maxPacket - 1024) / 3)));
  let conds: string[] = [];
  let indexes: number[] = [];
  let size = head.length;
  const flush = async (): Promise<void> => {
    if (conds.length === 0) return;
    const r = await attempt(s, `${head}(${conds.join(") OR (")})`);
    if (r.err !== undefined) {
      if (conds.length === 1)
        failures.push({ index: indexes[0] as number, reason: refusalReason(database, info.name, r.err) });
      else {
        for (let k = 0; k < conds.length; k++) {
          const one = await attempt(s, `${head}(${conds[k]})`);
          if (one.err !== undefined) {
            failures.push({ index: indexes[k] as number, reason: refusalReason(database, info.name, one.err) });
          }
        }
      }
    }
    conds = [];
    indexes = [];
    size = head.length;
  };
  await s.exec("SET SESSION foreign_key_checks = 1");
  try {
    for (let i = from; i < to; i++) {
      const match = (ops[i] as WriteOp & { op: "delete" }).match;
      if (Object.keys(match).length === 0) {
        failures.push({ index: i, reason: "delete without match fields: nothing to match" });
        continue;
      }
      let cond: string;
      try {
        cond = matchWhere(info, match);
      } catch (err) {
        if (!(err instanceof RefusedValue)) throw err;
        failures.push({ index: i, reason: err.message });
        continue;
      }
      if (conds.length >= KEYS_PER_DELETE || (conds.length > 0 && size + cond.length + 8 > limit)) await flush();
      conds.push(cond);
      indexes.push(i);
      size += cond.length + 8;
    }
    await flush();
  } finally {
    // A session that cannot be put back to unchecked writes is never used again.
    await s.exec("SET SESSION foreign_key_checks = 0").catch(() => s.destroy());
  }
}

/** One replace (by a non-unique match) or update: an UPDATE of the matched rows. */
async function single(
  ctx: WriteContext,
  op: Exclude<WriteOp, { op: "delete" }>,
  shape: Shape,
  index: number,
  failures: WriteFailure[],
): Promise<void> {
  const { session: s, info, database } = ctx;
  const table = quoteIdent(info.name);
  const refuse = (reason: string): void => {
    failures.push({ index, reason });
  };
  if (op.op === "insert") {
    // A record with no writable field: every column takes its default.
    const r = await attempt(s, `INSERT INTO ${table} () VALUES ()`);
    if (r.err !== undefined) refuse(refusalReason(database, info.name, r.err));
    return;
  }
  const matchNames = Object.keys(op.match);
  if (matchNames.length === 0) {
    refuse(`${op.op} without match fields: nothing to match`);
    return;
  }
  let where: string;
  const sets: string[] = [];
  try {
    where = matchWhere(info, op.match);
    for (let k = 0; k < shape.names.length; k++) {
      const v = op.record[shape.names[k] as string] as Value;
      sets.push(
        `${quoteIdent(shape.names[k] as string)} = ${v === null ? "NULL" : (shape.encoders[k] as Encoder).sql(v)}`,
      );
    }
  } catch (err) {
    if (err instanceof RefusedValue) {
      refuse(err.message);
      return;
    }
    throw err;
  }
  if (op.op === "replace") {
    const given = new Set(shape.names);
    for (const c of info.columns) {
      if (c.generated || given.has(c.name) || info.primaryKey.includes(c.name) || c.field.autoIncrement) continue;
      sets.push(`${quoteIdent(c.name)} = DEFAULT`);
    }
  }
  let matched: number;
  if (sets.length === 0) {
    try {
      const rows = await s.rows<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`);
      matched = Number(rows[0]?.n ?? 0);
    } catch (err) {
      if (!isRecordError(err)) throw new BatchError(err);
      refuse(refusalReason(database, info.name, err));
      return;
    }
  } else {
    const r = await attempt(s, `UPDATE ${table} SET ${sets.join(", ")} WHERE ${where}`);
    if (r.err !== undefined) {
      refuse(refusalReason(database, info.name, r.err));
      return;
    }
    matched = r.affected;
  }
  if (matched === 0) refuse(`no record matches ${matchNames.join(", ")}: nothing to ${op.op}`);
}

/** Whether an error thrown by {@link applyOps} is worth retrying the whole transaction for. */
export function isRetryable(err: unknown): boolean {
  const cause = err instanceof BatchError ? err.cause : err;
  return errnoOf(cause) === ER.LOCK_DEADLOCK;
}

/** Reason text for unexpected failures of the batch as a whole. */
export function batchCause(err: unknown): unknown {
  return err instanceof BatchError ? err.cause : err;
}
