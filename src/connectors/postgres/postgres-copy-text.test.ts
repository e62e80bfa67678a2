import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ArrayText,
  CopyLineSplitter,
  escapeCopyText,
  formatArrayLiteral,
  formatCopyLine,
  parseArrayLiteral,
  parseCopyLine,
  unescapeCopyText,
} from "./postgres-copy-text.js";

/** Strings rich in what COPY and array literals must escape. */
const tricky = fc.oneof(
  fc.string({ unit: "grapheme" }),
  fc.string({
    unit: fc.constantFrom(
      "\t",
      "\n",
      "\r",
      "\\",
      "\b",
      "\f",
      "\v",
      '"',
      ",",
      "{",
      "}",
      " ",
      "N",
      "U",
      "L",
      "x",
      "7",
      "ż",
      "🚢",
    ),
  }),
  fc.constantFrom("\\N", "NULL", "null", "", " ", "\\.", "\\x41", "\\101"),
);

describe("COPY text fields", () => {
  it("round-trips any string through escape and unescape", () => {
    fc.assert(
      fc.property(tricky, (s) => {
        const escaped = escapeCopyText(s);
        expect(escaped).not.toMatch(/[\t\n\r]/);
        expect(unescapeCopyText(escaped)).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });

  it("round-trips lines of fields and NULLs", () => {
    fc.assert(
      fc.property(fc.array(fc.option(tricky, { nil: null }), { minLength: 1, maxLength: 8 }), (fields) => {
        const line = formatCopyLine(fields);
        expect(line.endsWith("\n")).toBe(true);
        expect(line.slice(0, -1)).not.toContain("\n");
        expect(parseCopyLine(line.slice(0, -1))).toEqual(fields);
      }),
      { numRuns: 1000 },
    );
  });

  it("decodes PostgreSQL's escapes, octal and hex bytes (as UTF-8) and \\N", () => {
    expect(unescapeCopyText("a\\tb\\nc\\\\d\\be\\ff\\rg\\vh")).toBe("a\tb\nc\\d\be\ff\rg\vh");
    expect(unescapeCopyText("\\101\\x42\\7")).toBe("AB\u0007");
    expect(unescapeCopyText("\\305\\274\\xc3\\xb3")).toBe("żó");
    expect(unescapeCopyText("\\q\\.")).toBe("q.");
    expect(parseCopyLine("1\t\\N\t\t\\\\N")).toEqual(["1", null, "", "\\N"]);
  });

  it("splits a byte stream into lines whatever the chunk boundaries, multi-byte characters included", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.option(tricky, { nil: null }), { minLength: 1, maxLength: 4 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 10 }),
        (rows, cuts) => {
          const bytes = Buffer.from(rows.map(formatCopyLine).join(""), "utf8");
          const splitter = new CopyLineSplitter();
          const lines: string[] = [];
          let at = 0;
          let k = 0;
          while (at < bytes.length) {
            const n = cuts[k++ % cuts.length] as number;
            lines.push(...splitter.push(bytes.subarray(at, at + n)));
            at += n;
          }
          lines.push(...splitter.end());
          expect(lines.map(parseCopyLine)).toEqual(rows);
        },
      ),
      { numRuns: 500 },
    );
  });
});

const element = fc.option(tricky, { nil: null });
/** Rectangular nested arrays, as PostgreSQL arrays are. */
const arrayText: fc.Arbitrary<ArrayText> = fc.oneof(
  fc.array(element, { maxLength: 6 }),
  fc
    .tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }))
    .chain(([rows, cols]) =>
      fc.array(fc.array(element, { minLength: cols, maxLength: cols }), { minLength: rows, maxLength: rows }),
    ),
);

describe("array literals", () => {
  it("round-trips nested arrays of any element text, NULL elements and empty arrays", () => {
    fc.assert(
      fc.property(arrayText, (a) => {
        expect(parseArrayLiteral(formatArrayLiteral(a))).toEqual(a);
      }),
      { numRuns: 2000 },
    );
  });

  it("parses PostgreSQL's own output: unquoted elements, quotes, escapes, NULL, bounds", () => {
    expect(parseArrayLiteral("{1,2,NULL}")).toEqual(["1", "2", null]);
    expect(parseArrayLiteral('{"a,b","c\\"d",NULL,"NULL",""}')).toEqual(["a,b", 'c"d', null, "NULL", ""]);
    expect(parseArrayLiteral("{{1,2},{3,NULL}}")).toEqual([
      ["1", "2"],
      ["3", null],
    ]);
    expect(parseArrayLiteral("[0:1]={7,8}")).toEqual(["7", "8"]);
    expect(parseArrayLiteral("{}")).toEqual([]);
    expect(parseArrayLiteral('{"\\\\"}')).toEqual(["\\"]);
    expect(parseArrayLiteral("{ a , b c }")).toEqual(["a", "b c"]);
    expect(() => parseArrayLiteral("{1,2")).toThrow(SyntaxError);
    expect(() => parseArrayLiteral("1,2}")).toThrow(SyntaxError);
  });
});
