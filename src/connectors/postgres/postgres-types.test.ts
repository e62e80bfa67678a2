import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeValue, PreciseDate, parseTimestamp } from "../../core/values.js";
import {
  decoderFor,
  decodeTimestamp,
  encoderFor,
  fieldOf,
  formatTimestamp,
  numericTypmod,
  type PgType,
  pgTypeOfField,
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

describe("pgTypeOfField: decoding from the logical field alone (a package's text)", () => {
  const samples: [PgType, string[]][] = [
    [{ kind: "int2", typmod: -1 }, ["-32768", "0", "7"]],
    [{ kind: "int4", typmod: -1 }, ["-2147483648", "2147483647"]],
    [{ kind: "int8", typmod: -1 }, ["9007199254740993", "-9223372036854775808", "12"]],
    [{ kind: "float4", typmod: -1 }, ["1.5", "NaN", "-Infinity"]],
    [{ kind: "float8", typmod: -1 }, ["0.1", "1e+308", "Infinity"]],
    [{ kind: "numeric", typmod: (12 << 16) + 2 + 4 }, ["-9999999999.99", "0.00", "NaN"]],
    [{ kind: "bool", typmod: -1 }, ["t", "f"]],
    [{ kind: "text", typmod: -1 }, ["", "a\\b"]],
    [{ kind: "varchar", typmod: 44 }, ["żółć"]],
    [{ kind: "bpchar", typmod: 7 }, ["abc"]],
    [{ kind: "bytea", typmod: -1 }, ["\\x", "\\x00ff10"]],
    [{ kind: "uuid", typmod: -1 }, ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]],
    [{ kind: "json", typmod: -1 }, ['{"a": [1, 2]}', '"s"']],
    [{ kind: "jsonb", typmod: -1 }, ["[]", "null"]],
    [{ kind: "date", typmod: -1 }, ["2024-02-29", "infinity"]],
    [{ kind: "timestamp", typmod: -1 }, ["1999-12-31 23:59:59.999999", "-infinity"]],
    [{ kind: "timestamptz", typmod: 3 }, ["2024-01-02 03:04:05.123+00", "1970-01-01 00:00:00+00"]],
    [{ kind: "enum", enumLabels: ["sad", "ok"], typmod: -1 }, ["ok"]],
    [{ kind: "other", typmod: -1 }, ["1 day 02:00:00", "[1,5)"]],
    // integer[][] is int4's array type too: PostgreSQL has no array of arrays.
    [{ kind: "array", element: { kind: "int4", typmod: -1 }, typmod: -1 }, ["{1,2,NULL}", "{}", "{{1,2},{3,4}}"]],
    [{ kind: "array", element: { kind: "int8", typmod: -1 }, typmod: -1 }, ["{9007199254740993,-1}"]],
    [{ kind: "array", element: { kind: "text", typmod: -1 }, typmod: -1 }, ['{"a","b,c",NULL}']],
    [{ kind: "array", element: { kind: "float8", typmod: -1 }, typmod: -1 }, ["{NaN,1.5}"]],
    [{ kind: "array", element: { kind: "bool", typmod: -1 }, typmod: -1 }, ["{t,f}"]],
    [{ kind: "array", element: { kind: "jsonb", typmod: -1 }, typmod: -1 }, ['{"{\\"a\\": 1}"}']],
  ];
  it.each(samples.map(([t, texts]) => [t.kind + (t.element ? `[${t.element.kind}]` : ""), t, texts] as const))(
    "%s decodes as the column's own decoder does",
    (_name, t, texts) => {
      const viaField = decoderFor(pgTypeOfField(fieldOf("f", "native", t)));
      const own = decoderFor(t);
      for (const text of texts) expect(encodeValue(viaField(text))).toEqual(encodeValue(own(text)));
    },
  );
});
