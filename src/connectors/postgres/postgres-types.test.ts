import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeValue, PreciseDate, parseTimestamp } from "../../core/values.js";
import {
  decoderFor,
  decodeTimestamp,
  encoderFor,
  formatTimestamp,
  numericTypmod,
  ValueRefused,
} from "./postgres-types.js";

/** Instants with microseconds across PostgreSQL's and JavaScript's common range, BC included. */
const instant = fc
  .tuple(fc.integer({ min: -62135596800000 * 2, max: 253402300799999 }), fc.integer({ min: 0, max: 999 }))
  .map(([ms, us]) => (us === 0 ? new Date(ms) : new PreciseDate(ms, us)));

describe("timestamps", () => {
  it("round-trip through PostgreSQL's text form with microseconds, BC years and zones", () => {
    fc.assert(
      fc.property(instant, (d) => {
        for (const kind of ["timestamp", "timestamptz"] as const) {
          const text = formatTimestamp(d, kind, "f");
          expect(encodeValue(decodeTimestamp(text))).toEqual(encodeValue(d));
          expect(encodeValue(decodeTimestamp(text))).toEqual(encodeValue(parseTimestamp(text)));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("reads the forms PostgreSQL prints as parseTimestamp does", () => {
    for (const s of [
      "2024-01-02",
      "2024-02-29 23:59:59",
      "2024-01-02 03:04:05.1+00",
      "2024-01-02 03:04:05.123456+00",
      "0099-12-31 00:00:00+00",
      "0044-03-15 BC",
      "10000-01-01",
      "1999-12-31 23:59:59.999999",
    ]) {
      expect(encodeValue(decodeTimestamp(s))).toEqual(encodeValue(parseTimestamp(s)));
    }
    expect(decodeTimestamp("infinity").getTime()).toBe(8.64e15);
    expect(decodeTimestamp("-infinity").getTime()).toBe(-8.64e15);
    expect(formatTimestamp(new Date(8.64e15), "date", "d")).toBe("infinity");
    expect(formatTimestamp(new Date(Date.UTC(-43, 2, 15)), "date", "d")).toBe("0044-03-15 BC");
    expect(() => formatTimestamp(new Date(Number.NaN), "date", "d")).toThrow(ValueRefused);
  });
});

describe("values", () => {
  it("decodes and encodes by kind", () => {
    const int8 = { kind: "int8" as const, typmod: -1 };
    expect(decoderFor(int8)("9007199254740993")).toBe(2n ** 53n + 1n);
    expect(decoderFor(int8)("-42")).toBe(-42);
    expect(encoderFor(int8, "n")(2n ** 63n - 1n)).toBe("9223372036854775807");
    expect(() => encoderFor(int8, "n")(2n ** 63n)).toThrow(/field n: .* is outside/);
    const arr = { kind: "array" as const, typmod: -1, element: { kind: "int8" as const, typmod: -1 } };
    expect(decoderFor(arr)("{9007199254740993,1,NULL}")).toEqual(["9007199254740993", 1, null]);
    const floats = { kind: "array" as const, typmod: -1, element: { kind: "float8" as const, typmod: -1 } };
    expect(decoderFor(floats)("{NaN,-0,1.5,Infinity}")).toEqual(["NaN", -0, 1.5, "Infinity"]);
    expect(encoderFor(floats, "a")(["NaN", -0, 1.5])).toBe('{"NaN","-0","1.5"}');
    const json = { kind: "jsonb" as const, typmod: -1 };
    expect(encoderFor(json, "j")("text")).toBe('"text"');
    expect(() => encoderFor(json, "j")(Number.NaN)).toThrow(ValueRefused);
    const uuid = { kind: "uuid" as const, typmod: -1 };
    expect(() => encoderFor(uuid, "u")("nope")).toThrow(/field u: "nope" is not a uuid/);
    expect(encoderFor({ kind: "bool", typmod: -1 }, "b")(1)).toBe("t");
    expect(encoderFor({ kind: "bytea", typmod: -1 }, "b")(new Uint8Array([1, 255]))).toBe("\\x01ff");
    expect(numericTypmod(((12 << 16) | 2) + 4)).toEqual({ precision: 12, scale: 2 });
    expect(numericTypmod(((5 << 16) | (-2 & 0x7ff)) + 4)).toEqual({ precision: 5, scale: -2 });
  });
});
