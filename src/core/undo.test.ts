import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { recordDigest } from "./undo.js";
import { PreciseDate } from "./values.js";

describe("recordDigest", () => {
  it("digests a value alike in the spellings engines read it back in", () => {
    const fields = ["n", "d", "t", "j", "b"];
    const written = {
      n: "12.50",
      d: "2024-01-02 03:04:05.123456",
      t: true,
      j: '{"b": [1, 2], "a": "x"}',
      b: 5n,
    };
    const readBack = {
      n: 12.5,
      d: new PreciseDate(Date.UTC(2024, 0, 2, 3, 4, 5, 123), 456),
      t: 1,
      j: { a: "x", b: [1, 2] },
      b: 5,
    };
    expect(recordDigest(readBack, fields)).toBe(recordDigest(written, fields));
  });

  it("tells apart records that differ in any field written (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.record({ a: fc.string(), n: fc.integer(), f: fc.boolean() }),
        fc.constantFrom("a", "n", "f"),
        (r, field) => {
          const changed = { ...r, [field]: field === "a" ? `${r.a}!` : field === "n" ? r.n + 1 : !r.f };
          expect(recordDigest(changed, ["a", "n", "f"])).not.toBe(recordDigest(r, ["a", "n", "f"]));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("counts a field the record lacks as null, and ignores fields not written", () => {
    expect(recordDigest({ a: "x" }, ["a", "b"])).toBe(recordDigest({ a: "x", b: null, c: "other" }, ["a", "b"]));
    expect(recordDigest({ a: "x", b: "y" }, ["a", "b"])).not.toBe(recordDigest({ a: "x" }, ["a", "b"]));
  });
});
