import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PreciseDate } from "../../core/values.js";
import { sqlString, tsvField } from "./mysql-sql.js";
import { encoderFor, formatDateTime, parseMysqlDateTime, RefusedValue, shortestFloat32 } from "./mysql-values.js";

describe("parseMysqlDateTime", () => {
  it("reads what the server prints as UTC, keeping microseconds", () => {
    const d = parseMysqlDateTime("2024-01-02 03:04:05.123456");
    expect(d).toBeInstanceOf(PreciseDate);
    expect(d.toISOString()).toBe("2024-01-02T03:04:05.123456Z");
    expect(parseMysqlDateTime("2024-01-02 03:04:05").toISOString()).toBe("2024-01-02T03:04:05.000Z");
    expect(parseMysqlDateTime("2024-01-02 03:04:05.5").toISOString()).toBe("2024-01-02T03:04:05.500Z");
    expect(parseMysqlDateTime("2024-02-29").toISOString()).toBe("2024-02-29T00:00:00.000Z");
    expect(parseMysqlDateTime("0045-06-07 08:09:10").toISOString()).toBe("0045-06-07T08:09:10.000Z");
  });

  it("reads zero dates (and dates with zero parts) as invalid Dates", () => {
    for (const s of ["0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00.000000", "2020-00-15", "2020-05-00"]) {
      expect(Number.isNaN(parseMysqlDateTime(s).getTime())).toBe(true);
    }
  });

  it("round-trips every DATETIME(6) value through formatDateTime", () => {
    const min = Date.UTC(1, 0, 1);
    const max = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    fc.assert(
      fc.property(fc.integer({ min, max }), fc.integer({ min: 0, max: 999 }), (ms, micro) => {
        const d = new PreciseDate(ms, micro);
        const text = formatDateTime(d) as string;
        expect(text).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
        const back = parseMysqlDateTime(text);
        expect(back.getTime()).toBe(ms);
        expect(back instanceof PreciseDate ? back.microseconds : 0).toBe(micro);
      }),
    );
  });
});

describe("shortestFloat32", () => {
  it("gives the shortest decimal of the same single-precision value", () => {
    expect(shortestFloat32(Math.fround(0.1))).toBe(0.1);
    expect(shortestFloat32(Math.fround(1.2345678))).toBe(1.2345678);
    expect(shortestFloat32(16777216)).toBe(16777216);
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (f) => {
        expect(Math.fround(shortestFloat32(f))).toBe(Math.fround(f));
      }),
    );
  });
});

describe("encoders", () => {
  it("quotes strings with MySQL's escapes", () => {
    expect(sqlString("plain")).toBe("'plain'");
    expect(sqlString('it\'s \\ "q"\n\0\x1a')).toBe("'it\\'s \\\\ \\\"q\\\"\\n\\0\\Z'");
    expect(tsvField("a\tb\nc\\d\re\0")).toBe("a\\tb\\nc\\\\d\\re\\0");
  });

  it("spells values by the target column's type", () => {
    expect(encoderFor("bigint", "n").sql(2n ** 64n - 1n)).toBe("18446744073709551615");
    expect(encoderFor("bool", "b").sql(true)).toBe("1");
    expect(encoderFor("decimal", "d").sql("-12.50")).toBe("-12.50");
    expect(encoderFor("decimal", "d").sql("12,5")).toBe("'12,5'");
    expect(encoderFor("bytes", "b").sql(new Uint8Array([0, 255]))).toBe("X'00ff'");
    expect(encoderFor("json", "j").sql("a string")).toBe(`'\\"a string\\"'`);
    expect(encoderFor("json", "j").sql({ a: [1, null] })).toBe(`'{\\"a\\":[1,null]}'`);
    expect(encoderFor("text", "t").sql([1, 2])).toBe("'[1,2]'");
    expect(encoderFor("text", "t").sql(12)).toBe("'12'");
    expect(encoderFor("date", "d").sql(new Date(Date.UTC(2024, 1, 3, 10)))).toBe("'2024-02-03'");
    expect(encoderFor("datetime", "d").sql(new PreciseDate(Date.UTC(2024, 1, 3, 10, 0, 0, 5), 7))).toBe(
      "'2024-02-03 10:00:00.005007'",
    );
    expect(encoderFor("datetime", "d").sql(new Date(Number.NaN))).toBe("'0000-00-00 00:00:00'");
    expect(encoderFor("date", "d").sql(new Date(Number.NaN))).toBe("'0000-00-00'");
    expect(encoderFor("bits", "b").text(5)).toBe("05");
    expect(encoderFor("bytes", "b").text(new Uint8Array([1, 2]))).toBe("0102");
  });

  it("refuses what the column cannot hold, naming the field", () => {
    const ts = encoderFor("timestamp", "seen_at");
    expect(ts.sql(new Date(Date.UTC(2038, 0, 19, 3, 14, 7)))).toBe("'2038-01-19 03:14:07.000000'");
    expect(ts.sql(new Date(Number.NaN))).toBe("'0000-00-00 00:00:00'");
    expect(() => ts.sql(new Date(Date.UTC(2040, 0, 1)))).toThrow(
      /field seen_at: 2040-01-01T00:00:00.000Z is outside TIMESTAMP/,
    );
    expect(() => ts.sql(new Date(Date.UTC(1969, 0, 1)))).toThrow(RefusedValue);
    expect(() => encoderFor("double", "x").sql(Number.NaN)).toThrow(/field x: NaN/);
    expect(() => encoderFor("text", "t").sql(new Uint8Array([1]))).toThrow(/field t: a binary value/);
    const far = new Date(0);
    far.setUTCFullYear(10000);
    expect(() => encoderFor("datetime", "d").sql(far)).toThrow(/field d: .* outside MySQL's years/);
  });
});
