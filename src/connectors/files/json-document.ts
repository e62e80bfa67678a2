/**
 * The `.json` layout: one JSON document, read whole (it is meant for small data; directories
 * and `.ndjson` files stream). A top-level object's arrays of objects are collections
 * (`{"schema_version": "1.0.0", "accounts": [...]}` holds `accounts`); a top-level array is
 * one collection. Rewriting a collection splices its new array into the original text, so
 * every other top-level field and collection is kept byte for byte.
 */
import { FerryError } from "../../core/errors.js";
import type { JsonValue, Row } from "../../core/values.js";
import { decodeInPlace, encodeLine, isJsonObject } from "./record-codec.js";

/** A parsed `.json` document with its original text. */
export interface JsonDocument {
  text: string;
  value: JsonValue;
}

/** One collection of a document: its name and raw (still encoded) records. */
export interface JsonCollection {
  name: string;
  raw: JsonValue[];
}

/**
 * Parses a `.json` file's text (a UTF-8 byte order mark is ignored).
 *
 * @throws FerryError `E_VALIDATION` naming the file when it is not JSON, or neither an object nor an array.
 */
export function parseJsonDocument(text: string, file: string): JsonDocument {
  const t = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let value: JsonValue;
  try {
    value = JSON.parse(t) as JsonValue;
  } catch (err) {
    throw new FerryError("E_VALIDATION", `${file}: not valid JSON: ${(err as Error).message}; fix the file`, {
      cause: err,
      details: { file },
    });
  }
  if (typeof value !== "object" || value === null) {
    throw new FerryError(
      "E_VALIDATION",
      `${file}: the document is a ${value === null ? "null" : typeof value}: a .json instance holds an object whose arrays are collections, or one array of records`,
      { details: { file } },
    );
  }
  return { text: t, value };
}

/**
 * The collections of a document: a top-level array is one collection named `single`;
 * in a top-level object, each array whose items are all objects (an empty array too).
 */
export function collectionsOf(doc: JsonDocument, single: string): JsonCollection[] {
  if (Array.isArray(doc.value)) return [{ name: single, raw: doc.value }];
  const out: JsonCollection[] = [];
  for (const [name, v] of Object.entries(doc.value as Record<string, JsonValue>)) {
    if (Array.isArray(v) && v.every(isJsonObject)) out.push({ name, raw: v });
  }
  return out;
}

/**
 * Decodes a collection's records (tagged values are decoded, as in NDJSON files).
 *
 * @throws FerryError `E_VALIDATION` naming the file, collection and index of an item that is not an object.
 */
export function decodeRecords(c: JsonCollection, file: string): Row[] {
  return c.raw.map((item, i) => {
    if (!isJsonObject(item)) {
      throw new FerryError("E_VALIDATION", `${file}: ${c.name}[${i}] is not an object: records must be JSON objects`, {
        details: { file, collection: c.name, index: i },
      });
    }
    // Decoding works in place: decode a copy so the parsed document stays as read.
    return decodeInPlace({ ...item });
  });
}

/** A collection's records as the text of a JSON array, one record per line. */
export function arrayText(rows: readonly Row[], indent: string): string {
  if (rows.length === 0) return "[]";
  const inner = `${indent}  `;
  return `[\n${inner}${rows.map(encodeLine).join(`,\n${inner}`)}\n${indent}]`;
}

interface MemberSpan {
  key: string;
  /** Start and end of the member's value in the text. */
  start: number;
  end: number;
}

function skipWs(t: string, i: number): number {
  for (;;) {
    const c = t.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
    else return i;
  }
}

function skipString(t: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const c = t.charCodeAt(j);
    if (c === 0x22) return j + 1;
    j += c === 0x5c ? 2 : 1;
  }
}

function skipValue(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === 0x22) return skipString(t, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    let j = i;
    for (;;) {
      const d = t.charCodeAt(j);
      if (d === 0x22) {
        j = skipString(t, j);
        continue;
      }
      if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
      j++;
    }
  }
  let j = i;
  while (j < t.length && !",}] \t\r\n".includes(t[j] as string)) j++;
  return j;
}

/** Spans of a top-level object's member values (the text must be valid JSON). */
function memberSpans(t: string): MemberSpan[] {
  const out: MemberSpan[] = [];
  let i = skipWs(t, 0) + 1; // past `{`
  for (;;) {
    i = skipWs(t, i);
    if (t[i] === "}") return out;
    const k = i;
    i = skipString(t, i);
    const key = JSON.parse(t.slice(k, i)) as string;
    i = skipWs(t, i) + 1; // past `:`
    i = skipWs(t, i);
    const start = i;
    i = skipValue(t, i);
    out.push({ key, start, end: i });
    i = skipWs(t, i);
    if (t[i] === ",") i++;
  }
}

/**
 * The UTF-8 bytes of collection `name`'s array in the document's text (from its `[` to its
 * `]`), or of the whole text when the document is one array; undefined when the document
 * holds no such array.
 */
export function arrayBytes(doc: JsonDocument, name: string, single: string): number | undefined {
  if (Array.isArray(doc.value)) return name === single ? Buffer.byteLength(doc.text, "utf8") : undefined;
  const value = (doc.value as Record<string, JsonValue>)[name];
  if (!Array.isArray(value)) return undefined;
  // With duplicate keys JSON.parse keeps the last one: so do we.
  const span = memberSpans(doc.text)
    .filter((s) => s.key === name)
    .at(-1);
  return span === undefined ? undefined : Buffer.byteLength(doc.text.slice(span.start, span.end), "utf8");
}

/**
 * The document's text with the given collections' arrays replaced (or added at the end of
 * the top-level object), everything else as it was. Without a document, a new object.
 */
export function rewriteDocument(doc: JsonDocument | undefined, updates: ReadonlyMap<string, readonly Row[]>): string {
  if (doc === undefined) {
    const members = [...updates].map(([k, rows]) => `  ${JSON.stringify(k)}: ${arrayText(rows, "  ")}`);
    return members.length === 0 ? "{}\n" : `{\n${members.join(",\n")}\n}\n`;
  }
  if (Array.isArray(doc.value)) {
    const rows = [...updates.values()][0];
    return rows ? `${arrayText(rows, "")}\n` : doc.text;
  }
  const spans = memberSpans(doc.text);
  let text = doc.text;
  const added: string[] = [];
  const edits: { start: number; end: number; with: string }[] = [];
  for (const [name, rows] of updates) {
    // With duplicate keys JSON.parse keeps the last one: so do we.
    const span = spans.filter((s) => s.key === name).at(-1);
    if (span) edits.push({ start: span.start, end: span.end, with: arrayText(rows, "  ") });
    else added.push(`${JSON.stringify(name)}: ${arrayText(rows, "  ")}`);
  }
  const last = spans.at(-1);
  if (added.length > 0) {
    if (last) edits.push({ start: last.end, end: last.end, with: added.map((a) => `,\n  ${a}`).join("") });
    else {
      const open = skipWs(text, 0);
      const close = text.lastIndexOf("}");
      edits.push({ start: open, end: close + 1, with: `{\n  ${added.join(",\n  ")}\n}` });
    }
  }
  edits.sort((a, b) => b.start - a.start);
  for (const e of edits) text = text.slice(0, e.start) + e.with + text.slice(e.end);
  return text;
}
