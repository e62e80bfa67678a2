/**
 * PostgreSQL's COPY text format (one row per line, fields separated by tabs, `\N` for NULL,
 * backslash escapes) and its array literal syntax (`{1,"a b",NULL,{2,3}}`), both ways.
 * Values are text here; {@link ./postgres-types.ts} turns them into Ferry values.
 */
import { StringDecoder } from "node:string_decoder";

/** A COPY text field: its text, or `null` for `\N`. */
export type CopyField = string | null;

const SIMPLE_ESCAPES: Record<string, string> = {
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
};

function isOctal(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "7";
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(c);
}

/**
 * Undoes COPY text escaping of one field (not `\N`, which the caller handles): `\b \f \n \r
 * \t \v \\`, `\ddd` octal and `\xhh` hex bytes (a run of them is decoded as UTF-8), and any
 * other backslashed character stands for itself.
 */
export function unescapeCopyText(raw: string): string {
  if (raw.indexOf("\\") < 0) return raw;
  let out = "";
  let bytes: number[] | undefined;
  const flush = (): void => {
    if (bytes !== undefined) {
      out += Buffer.from(bytes).toString("utf8");
      bytes = undefined;
    }
  };
  const n = raw.length;
  let i = 0;
  while (i < n) {
    const c = raw[i] as string;
    if (c !== "\\" || i + 1 >= n) {
      flush();
      out += c;
      i++;
      continue;
    }
    const e = raw[i + 1] as string;
    if (isOctal(e)) {
      let j = i + 1;
      let v = 0;
      while (j < n && j < i + 4 && isOctal(raw[j])) v = v * 8 + Number(raw[j++]);
      bytes ??= [];
      bytes.push(v & 0xff);
      i = j;
      continue;
    }
    if (e === "x" && isHex(raw[i + 2])) {
      let j = i + 2;
      let v = 0;
      while (j < n && j < i + 4 && isHex(raw[j])) v = v * 16 + Number.parseInt(raw[j++] as string, 16);
      bytes ??= [];
      bytes.push(v);
      i = j;
      continue;
    }
    flush();
    out += SIMPLE_ESCAPES[e] ?? e;
    i += 2;
  }
  flush();
  return out;
}

const NEEDS_ESCAPE = /[\\\n\r\t\b\f\v]/;

/** Escapes text for a COPY text field (the inverse of {@link unescapeCopyText}). */
export function escapeCopyText(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return text;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    switch (c) {
      case "\\":
        out += "\\\\";
        break;
      case "\n":
        out += "\\n";
        break;
      case "\r":
        out += "\\r";
        break;
      case "\t":
        out += "\\t";
        break;
      case "\b":
        out += "\\b";
        break;
      case "\f":
        out += "\\f";
        break;
      case "\v":
        out += "\\v";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/** Splits one COPY text line (without its newline) into unescaped fields. */
export function parseCopyLine(line: string): CopyField[] {
  const parts = line.split("\t");
  const out: CopyField[] = new Array(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    out[i] = p === "\\N" ? null : unescapeCopyText(p);
  }
  return out;
}

/** One COPY text line (with its newline) for `fields`. */
export function formatCopyLine(fields: readonly CopyField[]): string {
  let line = "";
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (i > 0) line += "\t";
    line += f === null || f === undefined ? "\\N" : escapeCopyText(f);
  }
  return `${line}\n`;
}

/**
 * Cuts a stream of COPY text bytes into lines. Multi-byte characters split across chunks
 * are kept whole; a newline only ever ends a row (newlines in data are escaped).
 */
export class CopyLineSplitter {
  readonly #decoder = new StringDecoder("utf8");
  #rest = "";

  /** The complete lines in `chunk` (and what was left over before it). */
  push(chunk: Buffer): string[] {
    const text = this.#rest + this.#decoder.write(chunk);
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = text.indexOf("\n", start);
      if (nl < 0) break;
      lines.push(text.slice(start, nl));
      start = nl + 1;
    }
    this.#rest = start === 0 ? text : text.slice(start);
    return lines;
  }

  /** The last line when the stream did not end with a newline. */
  end(): string[] {
    const text = this.#rest + this.#decoder.end();
    this.#rest = "";
    return text === "" ? [] : [text];
  }
}

/** A parsed array literal: nested arrays of element texts (`null` for NULL elements). */
export type ArrayText = (string | null | ArrayText)[];

/**
 * Parses a PostgreSQL array literal (`{1,2}`, `{{"a","b"},{NULL,"c d"}}`, with an optional
 * `[1:2]=` bounds decoration, which is dropped) into nested arrays of element texts.
 *
 * @throws SyntaxError for text that is not an array literal.
 */
export function parseArrayLiteral(text: string, delimiter = ","): ArrayText {
  let i = 0;
  const n = text.length;
  const fail = (why: string): never => {
    throw new SyntaxError(`malformed array literal ${JSON.stringify(text.slice(0, 80))}: ${why}`);
  };
  const skipSpace = (): void => {
    while (i < n && /\s/.test(text[i] as string)) i++;
  };
  skipSpace();
  if (text[i] === "[") {
    const eq = text.indexOf("=", i);
    if (eq < 0) fail("bounds without '='");
    i = eq + 1;
    skipSpace();
  }
  const parseArray = (): ArrayText => {
    if (text[i] !== "{") fail(`expected '{' at ${i}`);
    i++;
    const out: ArrayText = [];
    skipSpace();
    if (text[i] === "}") {
      i++;
      return out;
    }
    for (;;) {
      skipSpace();
      const c = text[i];
      if (c === "{") out.push(parseArray());
      else if (c === '"') {
        i++;
        let s = "";
        for (;;) {
          if (i >= n) fail("unterminated quoted element");
          const d = text[i] as string;
          if (d === "\\") {
            if (i + 1 >= n) fail("dangling backslash");
            s += text[i + 1];
            i += 2;
          } else if (d === '"') {
            i++;
            break;
          } else {
            s += d;
            i++;
          }
        }
        out.push(s);
      } else {
        let s = "";
        let escaped = false;
        while (i < n) {
          const d = text[i] as string;
          if (d === "\\") {
            if (i + 1 >= n) fail("dangling backslash");
            s += text[i + 1];
            escaped = true;
            i += 2;
            continue;
          }
          if (d === delimiter || d === "}") break;
          if (d === "{" || d === '"') fail(`unexpected ${d} in an unquoted element`);
          s += d;
          i++;
        }
        const trimmed = escaped ? s.replace(/^\s+/, "") : s.trim();
        out.push(!escaped && trimmed.toUpperCase() === "NULL" ? null : trimmed);
      }
      skipSpace();
      const sep = text[i];
      if (sep === delimiter) {
        i++;
        continue;
      }
      if (sep === "}") {
        i++;
        return out;
      }
      fail(`expected '${delimiter}' or '}' at ${i}`);
    }
  };
  const result = parseArray();
  skipSpace();
  if (i !== n) fail("text after the closing '}'");
  return result;
}

/**
 * Formats nested arrays of element texts as an array literal. Every non-NULL element is
 * quoted, so no element text is ever mistaken for NULL, a delimiter or a nested array.
 */
export function formatArrayLiteral(value: ArrayText): string {
  const parts = value.map((v) => {
    if (v === null) return "NULL";
    if (Array.isArray(v)) return formatArrayLiteral(v);
    return `"${v.replace(/[\\"]/g, "\\$&")}"`;
  });
  return `{${parts.join(",")}}`;
}
