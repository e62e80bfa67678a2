import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { CollectionSchema, FieldSchema } from "./schema.js";
import { compareField, integerRange, planCollection, planLevel, valueCheck } from "./type-plan.js";

const f = (x: Partial<FieldSchema> & Pick<FieldSchema, "type">): FieldSchema => ({ name: "v", ...x });

describe("compareField", () => {
  it("calls widening exact, narrowing checked and value-changing lossy", () => {
    expect(compareField(f({ type: "integer", size: 4 }), f({ type: "integer", size: 8 })).level).toBe("exact");
    expect(compareField(f({ type: "integer", size: 8 }), f({ type: "integer", size: 4 })).level).toBe("checked");
    expect(
      compareField(f({ type: "integer", size: 8, unsigned: true }), f({ type: "decimal", precision: 20, scale: 0 }))
        .level,
    ).toBe("exact");
    expect(compareField(f({ type: "integer", size: 8, unsigned: true }), f({ type: "integer", size: 8 })).level).toBe(
      "checked",
    );
    expect(compareField(f({ type: "integer", size: 8 }), f({ type: "float", size: 8 })).level).toBe("lossy");
    expect(compareField(f({ type: "integer", size: 4 }), f({ type: "float", size: 8 })).level).toBe("exact");
    expect(compareField(f({ type: "float", size: 8 }), f({ type: "float", size: 4 })).level).toBe("lossy");
    expect(compareField(f({ type: "decimal" }), f({ type: "decimal", precision: 65, scale: 30 })).level).toBe("lossy");
    expect(
      compareField(f({ type: "decimal", precision: 12, scale: 2 }), f({ type: "decimal", precision: 65, scale: 30 }))
        .level,
    ).toBe("exact");
    expect(
      compareField(f({ type: "decimal", precision: 12, scale: 2 }), f({ type: "decimal", precision: 10, scale: 2 }))
        .level,
    ).toBe("checked");
  });

  it("names time zones, fractions, zero dates, booleans and lengths", () => {
    const tz = compareField(f({ type: "datetime", timezone: true }), f({ type: "datetime", fractionDigits: 6 }));
    expect(tz.level).toBe("lossy");
    expect(tz.notes.join()).toMatch(/time zone/);
    expect(compareField(f({ type: "datetime" }), f({ type: "datetime", fractionDigits: 3 })).level).toBe("lossy");
    expect(compareField(f({ type: "datetime", zeroDates: true }), f({ type: "datetime", timezone: true })).level).toBe(
      "checked",
    );
    expect(compareField(f({ type: "boolean" }), f({ type: "boolean" })).level).toBe("exact");
    expect(compareField(f({ type: "integer", size: 1 }), f({ type: "boolean" })).notes.join()).toMatch(/0 and 1/);
    expect(compareField(f({ type: "text" }), f({ type: "text", maxLength: 768 })).level).toBe("checked");
    expect(compareField(f({ type: "text", maxLength: 40 }), f({ type: "text", maxLength: 768 })).level).toBe("exact");
    expect(compareField(f({ type: "uuid" }), f({ type: "text", maxLength: 36 })).level).toBe("exact");
    expect(compareField(f({ type: "json", arrayOf: "integer" }), f({ type: "json" })).level).toBe("exact");
    expect(
      compareField(f({ type: "text", enumValues: ["a", "b"] }), f({ type: "text", enumValues: ["a"] })).level,
    ).toBe("checked");
  });
});

describe("planCollection", () => {
  const src: CollectionSchema = {
    name: "t",
    fields: [f({ type: "integer" }), { name: "g", type: "integer", generated: true }, { name: "w", type: "text" }],
    primaryKey: ["v"],
  };
  it("marks fields an existing target lacks as missing, except on a schemaless target", () => {
    const dst: CollectionSchema = { name: "t", fields: [f({ type: "integer" })], primaryKey: ["v"] };
    const p = planCollection(src, dst, undefined);
    expect(p.fields.map((x) => [x.field, x.level])).toEqual([
      ["v", "exact"],
      ["w", "missing"],
    ]);
    expect(planCollection(src, dst, undefined, true).fields.map((x) => x.field)).toEqual(["v"]);
    const plan = { sourceEngine: "a", targetEngine: "b", collections: [p] };
    expect(planLevel(plan)).toBe("missing");
  });
});

describe("valueCheck", () => {
  it("refuses exactly the integers outside the target's range", () => {
    const dst = f({ type: "integer", size: 2 });
    const src = f({ type: "integer", size: 8 });
    const check = valueCheck(compareField(src, dst), src, dst, false);
    if (!check) throw new Error("expected a check");
    const [lo, hi] = integerRange(dst) as [bigint, bigint];
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (n) => {
        const v = n >= -(2n ** 53n) && n <= 2n ** 53n ? Number(n) : n;
        expect(check(v).ok).toBe(n >= lo && n <= hi);
      }),
    );
  });

  it("refuses zero dates unless lossy copies are allowed, then stores NULL", () => {
    const src = f({ type: "datetime", zeroDates: true });
    const dst = f({ type: "datetime", timezone: true });
    const m = compareField(src, dst);
    const zero = new Date(Number.NaN);
    const strict = valueCheck(m, src, dst, false);
    const lax = valueCheck(m, src, dst, true);
    expect(strict?.(zero)).toMatchObject({ ok: false, reason: expect.stringMatching(/field v: zero date/) });
    expect(lax?.(zero)).toEqual({ ok: true, value: null });
    expect(strict?.(new Date(0))).toMatchObject({ ok: true });
  });

  it("converts 0/1 to booleans and refuses other integers", () => {
    const src = f({ type: "integer", size: 1 });
    const dst = f({ type: "boolean" });
    const check = valueCheck(compareField(src, dst), src, dst, false);
    expect(check?.(1)).toEqual({ ok: true, value: true });
    expect(check?.(0)).toEqual({ ok: true, value: false });
    expect(check?.(5)).toMatchObject({ ok: false });
  });

  it("counts text length in characters, not UTF-16 units", () => {
    const src = f({ type: "text" });
    const dst = f({ type: "text", maxLength: 3 });
    const check = valueCheck(compareField(src, dst), src, dst, false);
    expect(check?.("🚢🚢🚢")).toMatchObject({ ok: true });
    expect(check?.("abcd")).toMatchObject({ ok: false, reason: expect.stringMatching(/4 characters, more than 3/) });
  });
});

describe("checkRules", () => {
  it("names the rules each check applies, so a bulk path knows what its target must enforce", () => {
    const rulesOf = (src: FieldSchema, dst: FieldSchema) => valueCheck(compareField(src, dst), src, dst, false)?.rules;
    expect(rulesOf(f({ type: "integer", size: 1 }), f({ type: "boolean" }))).toEqual(["boolean"]);
    expect(rulesOf(f({ type: "datetime", zeroDates: true }), f({ type: "datetime", timezone: true }))).toEqual([
      "zero-date",
    ]);
    expect(rulesOf(f({ type: "integer", size: 8 }), f({ type: "integer", size: 2 }))).toEqual(["integer-range"]);
    expect(rulesOf(f({ type: "text" }), f({ type: "text", maxLength: 3 }))).toEqual(["length"]);
    expect(rulesOf(f({ type: "text" }), f({ type: "json" }))).toEqual(["json"]);
    expect(rulesOf(f({ type: "integer", size: 4 }), f({ type: "integer", size: 4 }))).toBeUndefined();
  });

  it("a check refuses only by the rules it names", () => {
    // text → varchar(3) checks length only: an enum-looking or non-latin1 value passes.
    const src = f({ type: "text" });
    const dst = f({ type: "text", maxLength: 3 });
    const check = valueCheck(compareField(src, dst), src, dst, false);
    fc.assert(
      fc.property(fc.string({ maxLength: 6, unit: "grapheme" }), (s) => {
        expect(check?.(s).ok).toBe([...s].length <= 3);
      }),
    );
  });
});
