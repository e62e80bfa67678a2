/**
 * One record ↔ one line of JSON, with the core's tagged-value codec. Decoding works in place
 * on the parsed object (no copy: this is the hot path of every file read).
 */
import { FerryError } from "../../core/errors.js";
import { decodeValue, encodeRow, type JsonValue, type Row, setField, type Value } from "../../core/values.js";

/** One record as one line of JSON (no newline). Throws a `TypeError` for unencodable values. */
export function encodeLine(row: Row): string {
  // Most records hold only strings, finite numbers, booleans and nulls, which the codec
  // leaves as they are: stringify those directly, without building an encoded copy.
  for (const k in row) {
    const v = row[k];
    const t = typeof v;
    if (t === "string" || t === "boolean" || v === null) continue;
    if (t === "number" && Number.isFinite(v) && (v !== 0 || 1 / (v as number) > 0)) continue;
    return JSON.stringify(encodeRow(row));
  }
  return JSON.stringify(row);
}

/** Decodes the tagged fields of a parsed JSON object in place and returns it as a record. */
export function decodeInPlace(obj: Record<string, JsonValue>): Row {
  const row = obj as Row;
  for (const k in obj) {
    const v = obj[k] as JsonValue;
    if (v === null || typeof v !== "object" || Array.isArray(v)) continue;
    const d = decodeValue(v);
    if (d !== v) setField(row, k, d);
  }
  return row;
}

/** True for a JSON object (not an array, not null). */
export function isJsonObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Where a line came from, for error messages. */
export interface LineOrigin {
  file: string;
  /** 1-based line number, when known. */
  line?: number;
  /** Byte offset of the line, when the line number is not known. */
  offset?: number;
}

function where(at: LineOrigin): string {
  return at.line !== undefined ? `${at.file}:${at.line}` : `${at.file} (line at byte ${at.offset ?? "?"})`;
}

/**
 * Parses one NDJSON line into a record.
 *
 * @throws FerryError `E_VALIDATION` naming `file:line` when the line is not a JSON object.
 */
export function parseLine(text: string, at: LineOrigin): Row {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new FerryError(
      "E_VALIDATION",
      `${where(at)}: not valid JSON: ${(err as Error).message}; fix or remove the line`,
      { cause: err, details: { ...at } },
    );
  }
  if (!isJsonObject(parsed)) {
    throw new FerryError(
      "E_VALIDATION",
      `${where(at)}: not a JSON object (${preview(text)}): each line must hold one record as an object`,
      { details: { ...at } },
    );
  }
  return decodeInPlace(parsed);
}

/** True when a line holds nothing but whitespace. */
export function isBlankLine(text: string): boolean {
  // Records start with `{`: check that before paying for a trim.
  return text.charCodeAt(0) !== 123 && text.trim() === "";
}

function preview(text: string): string {
  const t = text.trim();
  return t.length > 40 ? `${t.slice(0, 40)}…` : t;
}

/** Only `fields` of `row` (missing ones left out). */
export function project(row: Row, fields: readonly string[] | undefined): Row {
  if (!fields) return row;
  const out: Row = {};
  for (const f of fields) if (Object.hasOwn(row, f)) setField(out, f, row[f] as Value);
  return out;
}
