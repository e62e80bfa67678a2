import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeRow,
  decodeValue,
  encodeRow,
  encodeValue,
  keyString,
  microsecondsOf,
  PreciseDate,
  parseTimestamp,
  type Row,
  type Value,
} from "./values.js";

/** Any value of the canonical model (integers normalised: bigint only beyond 2^53). */
const jsonLeaf = fc.oneof(
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  // JSON text has no negative zero: inside a JSON document -0 is 0.
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
);
const jsonDoc = fc.oneof(
  fc.dictionary(fc.string(), jsonLeaf),
  fc.array(jsonLeaf),
  // Objects shaped like tags must come back as the same objects.
  fc.constantFrom({ $int: "1" }, { $bytes: "AAAA" }, { $json: { a: 1 } }, { $date: 5 }),
);
const value: fc.Arbitrary<Value> = fc.oneof(
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: "binary" }),
  fc.boolean(),
  fc.constant(null),
  fc.double(),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).filter((n) => n > 2n ** 53n - 1n || n < -(2n ** 53n - 1n)),
  fc.uint8Array({ maxLength: 64 }),
  fc.date({ noInvalidDate: true }),
  jsonDoc as fc.Arbitrary<Value>,
);

describe("value codec", () => {
  it("round-trips every canonical value through JSON text exactly", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), value), (row: Row) => {
        const back = decodeRow(JSON.parse(JSON.stringify(encodeRow(row))));
        expect(Object.keys(back)).toEqual(Object.keys(row));
        for (const k of Object.keys(row)) {
          const a = row[k] as Value;
          const b = back[k] as Value;
          if (typeof a === "number") expect(Object.is(a, b)).toBe(true);
          else expect(b).toEqual(a);
        }
      }),
    );
  });

  it("keeps ordinary values as plain JSON", () => {
    expect(encodeRow({ a: 1, b: "x", c: true, d: null, e: { nested: [1, 2] } })).toEqual({
      a: 1,
      b: "x",
      c: true,
      d: null,
      e: { nested: [1, 2] },
    });
  });

  it("tags what JSON cannot carry", () => {
    expect(encodeValue(2n ** 63n - 1n)).toEqual({ $int: "9223372036854775807" });
    expect(encodeValue(5n)).toBe(5);
    expect(encodeValue(Number.NaN)).toEqual({ $float: "NaN" });
    expect(encodeValue(-0)).toEqual({ $float: "-0" });
    expect(encodeValue(new Uint8Array([0, 255]))).toEqual({ $bytes: "AP8=" });
    expect(encodeValue(new Date(0))).toEqual({ $date: "1970-01-01T00:00:00.000Z" });
    expect(decodeValue({ $int: "12" })).toBe(12);
  });

  it("matches keys by value whatever the integer's JS form", () => {
    expect(keyString([5n, "a"])).toBe(keyString([5, "a"]));
    expect(keyString([1])).not.toBe(keyString(["1"]));
  });
});

describe("timestamps", () => {
  it("parses SQL and ISO timestamps, keeping microseconds and zones", () => {
    const d = parseTimestamp("2024-01-02 03:04:05.123456+01");
    expect(d).toBeInstanceOf(PreciseDate);
    expect(d.toISOString()).toBe("2024-01-02T02:04:05.123456Z");
    expect(parseTimestamp("2024-01-02T03:04:05Z").toISOString()).toBe("2024-01-02T03:04:05.000Z");
    expect(parseTimestamp("2024-01-02").toISOString()).toBe("2024-01-02T00:00:00.000Z");
    expect(parseTimestamp("2024-01-02 03:04:05.5-05:30").toISOString()).toBe("2024-01-02T08:34:05.500Z");
    expect(parseTimestamp("0001-01-01 00:00:00 BC").getUTCFullYear()).toBe(0);
    expect(Number.isNaN(parseTimestamp("0000-00-00 00:00:00").getTime())).toBe(true);
    expect(Number.isNaN(parseTimestamp("soon").getTime())).toBe(true);
  });

  it("round-trips any microsecond timestamp through the codec", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -62135596800000, max: 253402300799999 }),
        fc.integer({ min: 0, max: 999 }),
        (ms, micro) => {
          const d = new PreciseDate(ms, micro);
          const back = decodeValue(encodeValue(d)) as Date;
          expect(back.getTime()).toBe(ms);
          expect(microsecondsOf(back)).toBe(micro);
          expect(parseTimestamp(d.toISOString()).toISOString()).toBe(d.toISOString());
        },
      ),
    );
  });
});
