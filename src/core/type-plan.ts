/**
 * The type plan: for every field of every collection a copy writes, the source type, the
 * target type, and whether the mapping can lose anything. Built before any write; `ferry
 * plan` prints it, `ferry copy` refuses a lossy plan unless `--allow-lossy`, and the copy's
 * value checks come from it.
 *
 * Levels:
 * - `exact`: every value the source can hold arrives unchanged.
 * - `checked`: some values may not fit (too long, out of range, not an enum member, a zero
 *   date); each is refused by name, never altered. No flag needed: nothing is lost silently.
 * - `lossy`: values are changed on the way (rounded, time zone dropped, truncated): the copy
 *   refuses to start unless `allowLossy`.
 * - `missing`: the existing target collection has no such field.
 */
import type { CollectionSchema, FieldSchema, FieldType } from "./schema.js";
import type { Value } from "./values.js";

/** How one field maps. */
export type MappingLevel = "exact" | "checked" | "lossy" | "missing";

/** One field of the plan. */
export interface FieldMapping {
  field: string;
  /** Source type, e.g. `timestamp with time zone` (native) or `datetime` (logical). */
  from: string;
  /** Target type, or `—` when the target collection lacks the field. */
  to: string;
  level: MappingLevel;
  /** Why, when not exact (and notes on exact mappings that convert, e.g. arrays → JSON). */
  notes: string[];
}

/** One collection of the plan. */
export interface CollectionPlan {
  collection: string;
  /** True when the target collection exists (its types are compared), false when it will be created. */
  targetExists: boolean;
  fields: FieldMapping[];
}

/** The whole plan, and its worst level. */
export interface TypePlan {
  sourceEngine: string;
  targetEngine: string;
  collections: CollectionPlan[];
}

const ORDER: Record<MappingLevel, number> = { exact: 0, checked: 1, lossy: 2, missing: 3 };

function worse(a: MappingLevel, b: MappingLevel): MappingLevel {
  return ORDER[a] >= ORDER[b] ? a : b;
}

/** Fields of a plan at `level`, as `collection.field` names. */
export function fieldsAt(plan: TypePlan, level: MappingLevel): string[] {
  return plan.collections.flatMap((c) =>
    c.fields.filter((f) => f.level === level).map((f) => `${c.collection}.${f.field}`),
  );
}

/** A type's display name: the native spelling when known, else the logical type with its attributes. */
export function typeName(f: FieldSchema): string {
  if (f.nativeType) return f.nativeType;
  const attrs: string[] = [];
  if (f.type === "integer" || f.type === "float") attrs.push(`${f.size ?? 8} bytes`);
  if (f.unsigned) attrs.push("unsigned");
  if (f.precision !== undefined) attrs.push(`${f.precision},${f.scale ?? 0}`);
  if (f.maxLength !== undefined) attrs.push(`≤${f.maxLength}`);
  if (f.timezone) attrs.push("with time zone");
  return attrs.length > 0 ? `${f.type}(${attrs.join(", ")})` : f.type;
}

/** The integer range a field holds, or undefined when it is not an integer type. */
export function integerRange(f: FieldSchema): [bigint, bigint] | undefined {
  if (f.type === "boolean") return [0n, 1n];
  if (f.type !== "integer") return undefined;
  const bits = BigInt((f.size ?? 8) * 8);
  return f.unsigned ? [0n, 2n ** bits - 1n] : [-(2n ** (bits - 1n)), 2n ** (bits - 1n) - 1n];
}

function digits(n: bigint): number {
  return (n < 0n ? -n : n).toString().length;
}

/** Integer digits a decimal field holds (precision − scale), or undefined when unconstrained. */
function integerDigits(f: FieldSchema): number | undefined {
  return f.precision === undefined ? undefined : f.precision - (f.scale ?? 0);
}

/**
 * Compares a source field with the target field it will be written to (an existing
 * column, or the one the target would create, from `mapField`).
 */
export function compareField(src: FieldSchema, dst: FieldSchema): FieldMapping {
  const notes: string[] = [];
  let level: MappingLevel = "exact";
  const add = (l: MappingLevel, note: string): void => {
    level = worse(level, l);
    notes.push(note);
  };
  const s = src.type;
  const d = dst.type;

  if (s === d) {
    sameType(src, dst, add);
  } else if (d === "text") {
    if (s === "bytes") add("checked", "binary values are refused (text cannot hold arbitrary bytes)");
    else {
      notes.push(`stored as text (${textForm(s)})`);
      const widest = widestText(src);
      if (dst.maxLength !== undefined && (widest === undefined || widest > dst.maxLength)) {
        add("checked", `values longer than ${dst.maxLength} characters are refused`);
      }
    }
  } else if (d === "any") {
    // Untyped (SQLite): holds every value as it is.
  } else if (s === "integer" || s === "boolean") {
    integerInto(src, dst, add);
  } else if (s === "decimal" && d === "float") {
    add("lossy", "decimal values are rounded to binary floating point");
  } else if (s === "decimal" && d === "integer") {
    if (src.scale === undefined || src.scale > 0) add("lossy", "fractional digits are dropped");
    const [lo, hi] = integerRange(dst) as [bigint, bigint];
    const di = integerDigits(src);
    if (di === undefined || di >= Math.min(digits(lo), digits(hi))) {
      add("checked", `values outside ${lo}..${hi} are refused`);
    }
  } else if (s === "float" && d === "decimal") {
    add("checked", "NaN and ±Infinity are refused");
    if (dst.scale !== undefined) add("lossy", `digits beyond ${dst.scale} decimal places are rounded`);
  } else if (s === "float" && d === "integer") {
    add("lossy", "fractions are dropped");
  } else if (s === "date" && d === "datetime") {
    notes.push("dates become midnight UTC");
  } else if (s === "datetime" && d === "date") {
    add("lossy", "the time of day is dropped");
  } else if (s === "json" && src.arrayOf !== undefined && d !== "json") {
    add("checked", `arrays cannot be stored as ${d}: refused`);
  } else {
    add("checked", `values that are not a valid ${d} are refused`);
  }
  return { field: src.name, from: typeName(src), to: typeName(dst), level, notes };
}

type Add = (level: MappingLevel, note: string) => void;

function sameType(src: FieldSchema, dst: FieldSchema, add: Add): void {
  switch (src.type) {
    case "integer":
      integerInto(src, dst, add);
      return;
    case "float":
      if ((dst.size ?? 8) < (src.size ?? 8))
        add("lossy", "double precision is rounded to single precision (~7 digits)");
      return;
    case "decimal": {
      const si = integerDigits(src);
      const di = integerDigits(dst);
      if (di !== undefined && (si === undefined || si > di)) {
        add("checked", `values with more than ${di} integer digits are refused`);
      }
      if (dst.scale !== undefined && (src.scale === undefined || src.scale > dst.scale)) {
        add("lossy", `digits beyond ${dst.scale} decimal places are rounded`);
      }
      return;
    }
    case "text": {
      const widest = widestText(src);
      if (dst.maxLength !== undefined && (widest === undefined || widest > dst.maxLength)) {
        add("checked", `values longer than ${dst.maxLength} characters are refused`);
      }
      if (dst.fixedLength && !src.fixedLength)
        add("lossy", `values are padded with spaces to ${dst.maxLength} characters`);
      if (dst.charset && dst.charset !== src.charset) add("checked", `characters outside ${dst.charset} are refused`);
      if (dst.enumValues && !(src.enumValues ?? []).every((v) => dst.enumValues?.includes(v))) {
        add(
          "checked",
          `values outside ${dst.enumValues.length <= 8 ? dst.enumValues.join("|") : "the enum's values"} are refused`,
        );
      } else if (dst.enumValues && !src.enumValues) {
        add("checked", "values outside the enum are refused");
      }
      if (src.enumValues && !dst.enumValues) add("exact", "enum values stored as text");
      if (dst.setValues && !src.setValues) add("checked", "values that are not members of the set are refused");
      return;
    }
    case "bytes":
      if (dst.maxLength !== undefined && (src.maxLength === undefined || src.maxLength > dst.maxLength)) {
        add("checked", `values longer than ${dst.maxLength} bytes are refused`);
      }
      if (dst.fixedLength && !src.fixedLength) add("lossy", `values are padded with zero bytes to ${dst.maxLength}`);
      return;
    case "boolean":
      // An integer-backed boolean (MySQL tinyint(1)) may hold other integers.
      if (src.size !== undefined && dst.size === undefined) add("checked", "values other than 0 and 1 are refused");
      return;
    case "date":
    case "datetime":
      if (src.type === "datetime") {
        if (src.timezone && !dst.timezone) {
          add("lossy", "time zone: instants are stored as UTC wall-clock time, without a zone");
        } else if (!src.timezone && dst.timezone) {
          add("exact", "wall-clock times are read as UTC");
        }
        const sf = src.fractionDigits ?? 6;
        const df = dst.fractionDigits ?? 6;
        if (df < sf) add("lossy", `fractional seconds beyond ${df} digit(s) are rounded`);
      }
      if (src.zeroDates && !dst.zeroDates) {
        add("checked", "zero dates (0000-00-00) are refused (stored as NULL with --allow-lossy)");
      }
      return;
    case "json":
      if (src.arrayOf !== undefined && dst.arrayOf === undefined) add("exact", "arrays are stored as JSON documents");
      if (dst.arrayOf !== undefined && src.arrayOf !== dst.arrayOf) {
        add("checked", `values that are not arrays of ${dst.arrayOf} are refused`);
      }
      return;
    default:
      return;
  }
}

function integerInto(src: FieldSchema, dst: FieldSchema, add: Add): void {
  const range = integerRange(src) as [bigint, bigint];
  const [lo, hi] = range;
  switch (dst.type) {
    case "integer":
    case "boolean": {
      const [dlo, dhi] = integerRange(dst) as [bigint, bigint];
      if (lo < dlo || hi > dhi) {
        add(
          "checked",
          dst.type === "boolean"
            ? "values other than 0 and 1 are refused"
            : `values outside ${dlo}..${dhi} are refused`,
        );
      }
      return;
    }
    case "decimal": {
      const di = integerDigits(dst);
      if (di !== undefined && di < Math.max(digits(lo), digits(hi))) {
        add("checked", `values with more than ${di} digits are refused`);
      }
      return;
    }
    case "float": {
      const exact = (dst.size ?? 8) === 4 ? 2n ** 24n : 2n ** 53n;
      if (hi > exact || lo < -exact) add("lossy", `integers beyond ±${exact} are rounded`);
      return;
    }
    default:
      add("checked", `values that are not a valid ${dst.type} are refused`);
  }
}

function widestText(f: FieldSchema): number | undefined {
  if (f.type === "text") {
    if (f.enumValues) return Math.max(0, ...f.enumValues.map((v) => [...v].length));
    return f.maxLength;
  }
  if (f.type === "uuid") return 36;
  if (f.type === "boolean") return 5;
  if (f.type === "integer") {
    const [lo, hi] = integerRange(f) as [bigint, bigint];
    return Math.max(lo.toString().length, hi.toString().length);
  }
  if (f.type === "date") return 10;
  if (f.type === "datetime") return 32;
  return undefined;
}

function textForm(t: FieldType): string {
  switch (t) {
    case "json":
      return "JSON text";
    case "date":
    case "datetime":
      return "ISO 8601";
    case "boolean":
      return "true/false";
    default:
      return "its text form";
  }
}

/**
 * The plan for one collection: each source field against the target's field of the same
 * name (`target` exists), or against what the target would create (`mapField`). Generated
 * fields are never written, so they are left out.
 */
export function planCollection(
  source: CollectionSchema,
  target: CollectionSchema | undefined,
  mapField: ((f: FieldSchema, c: CollectionSchema) => FieldSchema) | undefined,
  schemaless = false,
): CollectionPlan {
  const fields: FieldMapping[] = [];
  for (const f of source.fields) {
    if (f.generated) continue;
    if (target) {
      const t = target.fields.find((x) => x.name === f.name);
      if (t?.generated) continue;
      if (!t) {
        if (!schemaless) {
          fields.push({
            field: f.name,
            from: typeName(f),
            to: "—",
            level: "missing",
            notes: [`target ${target.name} has no field ${f.name}`],
          });
        }
        continue;
      }
      fields.push(compareField(f, t));
    } else {
      fields.push(compareField(f, mapField ? mapField(f, source) : f));
    }
  }
  return { collection: source.name, targetExists: target !== undefined, fields };
}

/** A type mapping: how a target engine would create a field. */
export type FieldMapper = (f: FieldSchema, c: CollectionSchema) => FieldSchema;

/**
 * The plan of `collections` (source schemas) against the target's existing collections,
 * or what `mapField` would create for those it lacks. A schemaless target (files, a package) takes
 * any field, so fields it lacks are not `missing`.
 */
export function buildTypePlan(
  sourceEngine: string,
  targetEngine: string,
  collections: readonly CollectionSchema[],
  targetSchemas: ReadonlyMap<string, CollectionSchema>,
  mapField: FieldMapper | undefined,
): TypePlan {
  const schemaless = targetEngine === "files" || targetEngine === "package";
  return {
    sourceEngine,
    targetEngine,
    collections: collections.map((s) => planCollection(s, targetSchemas.get(s.name), mapField, schemaless)),
  };
}

/** The worst level of a plan. */
export function planLevel(plan: TypePlan): MappingLevel {
  let level: MappingLevel = "exact";
  for (const c of plan.collections) for (const f of c.fields) level = worse(level, f.level);
  return level;
}

/** What a value check decided. */
export type CheckedValue = { ok: true; value: Value } | { ok: false; reason: string };

/**
 * One rule a value check applies (so a bulk path can tell whether its target enforces it):
 * - `zero-date`: a zero date (0000-00-00) is refused, or stored as NULL when lossy copies are allowed;
 * - `integer-range`: an integer outside the target's range (or not an integer) is refused;
 * - `boolean`: only 0 and 1 become booleans, other values are refused;
 * - `length`: text longer than the target's length, in characters, is refused;
 * - `enum`: text that is not one of the target enum's values is refused;
 * - `latin1`: text with characters outside latin1 is refused;
 * - `binary-text`: bytes into a text field are refused;
 * - `json`: text into a JSON field must parse as JSON (and becomes the document).
 */
export type CheckRule =
  | "zero-date"
  | "integer-range"
  | "boolean"
  | "length"
  | "enum"
  | "latin1"
  | "binary-text"
  | "json";

/** A value check with the rules it applies. */
export type ValueCheck = ((v: Value) => CheckedValue) & { readonly rules: readonly CheckRule[] };

/** The rules a value check from `src` to `dst` applies (see {@link valueCheck}). */
export function checkRules(mapping: FieldMapping, src: FieldSchema, dst: FieldSchema): CheckRule[] {
  const json = src.type === "text" && dst.type === "json";
  if (mapping.level === "exact" || mapping.level === "missing") return json ? ["json"] : [];
  const rules: CheckRule[] = [];
  if ((src.type === "date" || src.type === "datetime" || src.type === "any") && !dst.zeroDates) rules.push("zero-date");
  if (dst.type === "integer" && integerRange(dst)) rules.push("integer-range");
  if (dst.type === "boolean") rules.push("boolean");
  if (dst.type === "text") {
    if (dst.maxLength !== undefined) rules.push("length");
    if (dst.enumValues) rules.push("enum");
    if (dst.charset === "latin1") rules.push("latin1");
    if (src.type === "bytes" || src.type === "uuid" || src.type === "any") rules.push("binary-text");
  }
  if (json) rules.push("json");
  return rules;
}

/**
 * A check for values written to `dst` from `src`, or undefined when the mapping is exact
 * and values go through as they are (the common, fast case). It refuses values the target
 * field cannot hold (range, length, enum, zero dates, non-boolean integers) with a reason
 * naming the field, and converts what must be converted (text → JSON document, zero date →
 * NULL when `allowLossy`). Engines still enforce their own rules on top. A mapping that is
 * neither exact nor missing always gets a check, even one with no rules.
 */
export function valueCheck(
  mapping: FieldMapping,
  src: FieldSchema,
  dst: FieldSchema,
  allowLossy: boolean,
): ValueCheck | undefined {
  const rules = checkRules(mapping, src, dst);
  if (rules.length === 0 && (mapping.level === "exact" || mapping.level === "missing")) return undefined;
  const has = new Set(rules);
  const name = dst.name;
  const range = integerRange(dst);
  const fail = (reason: string): CheckedValue => ({ ok: false, reason: `field ${name}: ${reason}` });
  const toJson = textToJson(name);
  const check = (v: Value): CheckedValue => {
    if (v === null) return { ok: true, value: v };
    if (has.has("zero-date") && v instanceof Date && Number.isNaN(v.getTime())) {
      if (allowLossy && dst.nullable !== false) return { ok: true, value: null };
      return fail(`zero date 0000-00-00 has no ${typeName(dst)} equivalent (pass --allow-lossy to store NULL)`);
    }
    if (has.has("integer-range") && range) {
      const n = typeof v === "boolean" ? (v ? 1n : 0n) : asBigInt(v);
      if (n === undefined) return fail(`${show(v)} is not an integer`);
      if (n < range[0] || n > range[1])
        return fail(`${show(v)} is outside ${range[0]}..${range[1]} (${typeName(dst)})`);
      return { ok: true, value: v };
    }
    if (has.has("boolean")) {
      if (typeof v === "boolean") return { ok: true, value: v };
      const n = asBigInt(v);
      if (n === 0n) return { ok: true, value: false };
      if (n === 1n) return { ok: true, value: true };
      return fail(`${show(v)} is not a boolean (only 0 and 1 convert)`);
    }
    if (typeof v === "string") {
      if (has.has("length") && dst.maxLength !== undefined) {
        const len = [...v].length;
        if (len > dst.maxLength) return fail(`${len} characters, more than ${dst.maxLength} (${typeName(dst)})`);
      }
      if (has.has("enum") && dst.enumValues && !dst.enumValues.includes(v)) {
        return fail(`${show(v)} is not one of the enum's values`);
      }
      if (has.has("latin1") && [...v].some((ch) => (ch.codePointAt(0) ?? 0) > 0xff)) {
        return fail(`${show(v)} has characters outside latin1`);
      }
      if (has.has("json")) return toJson(v);
      return { ok: true, value: v };
    }
    if (has.has("binary-text") && v instanceof Uint8Array) return fail("binary value cannot be stored as text");
    return { ok: true, value: v };
  };
  return Object.assign(check, { rules });
}

function textToJson(name: string): (v: Value) => CheckedValue {
  return (v) => {
    if (typeof v !== "string") return { ok: true, value: v };
    try {
      return { ok: true, value: JSON.parse(v) as Value };
    } catch {
      return { ok: false, reason: `field ${name}: ${show(v)} is not valid JSON` };
    }
  };
}

function asBigInt(v: Value): bigint | undefined {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isInteger(v) ? BigInt(v) : undefined;
  if (typeof v === "string" && /^[+-]?\d+$/.test(v.trim())) return BigInt(v.trim());
  return undefined;
}

function show(v: Value): string {
  const s = typeof v === "bigint" ? v.toString() : JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}…` : s;
}
