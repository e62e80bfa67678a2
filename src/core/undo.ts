/**
 * The undo log of a run: per batch, what its ops changed at the target, saved with the
 * batch's checkpoint in the same transaction (see `Checkpoint.undo`), so `rollback` can put
 * the target back as it was: the keys the run added (to remove) and the prior content of what
 * it replaced or merged (to restore), compactly — never a dump of the collection.
 *
 * To know whether a record was changed after the run wrote it, each entry keeps a digest of
 * the record as written, over the fields written, with values normalised so that the same
 * value read back from another engine's column digests alike: numbers and numeric text by
 * their canonical decimal (12.50 = 12.5), timestamps and timestamp text by their instant (at
 * microseconds, a zoneless text as UTC), JSON and JSON text by their content (keys sorted),
 * booleans as 1/0, bytes by their content. (So a change from `12.50` to `12.5` in a text
 * field goes unseen: it is the price of comparing across engines' spellings.)
 */
import { createHash } from "node:crypto";
import type { UndoRow } from "./connector.js";
import { FerryError } from "./errors.js";
import type { CollectionSchema } from "./schema.js";
import { decodeValue, type JsonValue, PreciseDate, parseTimestamp, type Row, type Value } from "./values.js";

/** One batch's undo row entry (`UndoRow.entry`). */
export interface UndoEntry {
  /** The collection at the target (its name there). */
  collection: string;
  /** The collection as the run wrote it (a rollback writes through it). */
  schema: CollectionSchema;
  /** The fields that identify its records (the target's primary key, else the run's match key). */
  key: string[];
  /** The fields the batch wrote (the digests are over these, unless an item names its own). */
  fields: string[];
  /**
   * Keys (encoded values of `key`) of the records the batch added, with the digest of what was
   * written (over `fields`, or the record's own fields when they differ; "" when unknown).
   */
  added: { key: JsonValue[]; digest: string; fields?: string[] }[];
  /**
   * Records the batch replaced or merged: where it left them (`key`: a replace matched on a
   * natural key may change the primary key), their whole prior content, the digest of what was written.
   */
  prior: { key?: JsonValue[]; record: Record<string, JsonValue>; digest: string; fields?: string[] }[];
  /**
   * Records the batch added on a bulk path (besides `added`): their keys, each the encoded
   * value of a one-field key, else the array of its values; and the row version the target
   * gave them all (see `BulkAdded`): a record whose version differs was changed since.
   */
  bulk?: { version: string; keys: JsonValue[] };
}

/** A value in the form two engines' readings of it share. */
function normal(v: Value | undefined): JsonValue {
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case "boolean":
      return v ? "1" : "0";
    case "number":
      // A number's own spelling is canonical (no trailing zeros): what numeric text becomes.
      return Object.is(v, -0) ? "0" : String(v);
    case "bigint":
      return v.toString();
    case "string":
      return normalText(v);
    default:
      break;
  }
  if (v instanceof Uint8Array) return `b64:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64")}`;
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) return "date:invalid";
    const micro = v instanceof PreciseDate ? v.microseconds : 0;
    return `date:${v.getTime()}.${String(micro).padStart(3, "0")}`;
  }
  if (Array.isArray(v)) return v.map((x) => normal(x as Value));
  const o = v as Record<string, JsonValue>;
  const out: Record<string, JsonValue> = {};
  for (const k of Object.keys(o).sort()) out[k] = normal(o[k] as Value);
  return out;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const TIMESTAMP_TEXT = /^[+-]?\d{4,6}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?\s*(Z|[+-]\d\d(:?\d\d)?)?$/i;

/** Text in the form its number, instant or JSON content takes (else itself). */
function normalText(t: string): JsonValue {
  // Only text starting like a number, a date or JSON can be spelled another way.
  const c = t.charCodeAt(0);
  const digit = c >= 48 && c <= 57;
  if (!digit && c !== 43 && c !== 45 && c !== 46 && c !== 123 && c !== 91) return t;
  if (NUMBER.test(t)) return canonicalNumber(t);
  if (TIMESTAMP_TEXT.test(t)) {
    const d = parseTimestamp(t);
    if (!Number.isNaN(d.getTime())) return normal(d);
  }
  if (c === 123 || c === 91) {
    try {
      return normal(JSON.parse(t) as Value);
    } catch {
      return t;
    }
  }
  return t;
}

/** A decimal's canonical spelling: no sign on zero, no leading or trailing zeros, no exponent below 1e21. */
function canonicalNumber(t: string): string {
  const n = Number(t);
  if (!/[eE]/.test(t) && /\./.test(t)) {
    const [int = "", frac = ""] = t.replace(/^\+/, "").split(".");
    const neg = int.startsWith("-");
    const whole = (neg ? int.slice(1) : int).replace(/^0+(?=\d)/, "") || "0";
    const f = frac.replace(/0+$/, "");
    const out = f ? `${whole}.${f}` : whole;
    return neg && out !== "0" ? `-${out}` : out;
  }
  if (/^[+-]?\d+$/.test(t)) {
    const b = BigInt(t);
    return b.toString();
  }
  return Number.isFinite(n) ? String(n) : t;
}

/** The digest of `record` over `fields` (a field it lacks counts as null). */
export function recordDigest(record: Row, fields: readonly string[]): string {
  return createHash("sha256")
    .update(JSON.stringify(fields.map((f) => normal(record[f]))))
    .digest("base64url")
    .slice(0, 22);
}

/** Whether `x` is an {@link UndoEntry} (a row of this format). */
export function isUndoEntry(x: unknown): x is UndoEntry {
  const e = x as UndoEntry;
  return (
    typeof x === "object" &&
    x !== null &&
    typeof e.collection === "string" &&
    Array.isArray(e.key) &&
    Array.isArray(e.added) &&
    Array.isArray(e.prior) &&
    (e.bulk === undefined || (typeof e.bulk.version === "string" && Array.isArray(e.bulk.keys)))
  );
}

/** The keys (values of `e.key`) of the records a bulk batch added. */
export function bulkKeys(e: UndoEntry): Value[][] {
  const one = e.key.length === 1;
  return (e.bulk?.keys ?? []).map((k) => (one ? [decodeValue(k)] : (k as JsonValue[]).map((v) => decodeValue(v))));
}

/** Characters of undo entries a journal reads in one query (a larger row alone). */
export const UNDO_PAGE_CHARS = 8 * 1024 * 1024;

/**
 * For journals that keep the undo log in a table: cuts a page of `[seq, size]` (highest seq
 * first) into `[highest, lowest]` seq ranges whose entries together stay under `maxChars`
 * (a larger row alone), so each range is one query of bounded size.
 */
export function undoPageGroups(
  page: readonly (readonly [number, number])[],
  maxChars = UNDO_PAGE_CHARS,
): [number, number][] {
  const out: [number, number][] = [];
  let start: number | undefined;
  let end = 0;
  let chars = 0;
  for (const [seq, size] of page) {
    if (start !== undefined && chars + size > maxChars) {
      out.push([start, end]);
      start = undefined;
    }
    if (start === undefined) {
      start = seq;
      chars = 0;
    }
    end = seq;
    chars += size;
  }
  if (start !== undefined) out.push([start, end]);
  return out;
}

/**
 * An undo row's entry as the JSON text a journal stores.
 *
 * @throws FerryError `E_INTERNAL` when the row is malformed (a `seq` that is not a safe
 * integer) or its entry is not JSON-serialisable.
 */
export function undoJson(row: UndoRow): string {
  if (typeof row.runId !== "string" || !Number.isSafeInteger(row.seq)) {
    throw new FerryError(
      "E_INTERNAL",
      `undo row ${String(row.runId)}#${String(row.seq)} needs a run id and an integer seq: a bug in Ferry`,
    );
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(row.entry);
  } catch (cause) {
    throw new FerryError("E_INTERNAL", `undo row ${row.runId}#${row.seq} is not JSON-serialisable`, { cause });
  }
  if (json === undefined) throw new FerryError("E_INTERNAL", `undo row ${row.runId}#${row.seq} is not a JSON value`);
  return json;
}
