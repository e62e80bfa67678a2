import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { unescapeCopyText } from "../connectors/postgres/postgres-copy-text.js";
import { escapeDelimited } from "./delimited-text.js";

describe("escapeDelimited", () => {
  it("gives one field that PostgreSQL's COPY text reads back as the same text", () => {
    const unit = fc.oneof(
      fc.constantFrom("\\", "\t", "\n", "\r", "N", "\b", "x"),
      fc.string({ unit: "grapheme", maxLength: 1 }),
    );
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 40 }), (s) => {
        const field = escapeDelimited(s);
        expect(field).not.toMatch(/[\t\n\r]/);
        expect(unescapeCopyText(field)).toBe(s);
      }),
    );
  });

  it("spells NULL as \\N, distinct from the text \\N", () => {
    expect(escapeDelimited(null)).toBe("\\N");
    expect(escapeDelimited("\\N")).toBe("\\\\N");
  });
});
