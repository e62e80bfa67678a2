/** Schema inference for files that carry no schema of their own. */
import type { CollectionSchema, FieldSchema, FieldType } from "../../core/schema.js";
import { keyString, type Row, type Value } from "../../core/values.js";

/** How many records {@link inferSchema} inspects by default. */
export const INFER_SAMPLE = 1000;

function typeOf(v: Value): FieldType | undefined {
  switch (typeof v) {
    case "number":
      return Number.isInteger(v) && !Object.is(v, -0) ? "integer" : "float";
    case "bigint":
      return "integer";
    case "boolean":
      return "boolean";
    case "string":
      return "text";
    case "object":
      if (v === null) return undefined;
      if (v instanceof Uint8Array) return "bytes";
      if (v instanceof Date) return "datetime";
      return "json";
    default:
      return "any";
  }
}

/**
 * Infers fields (in first-seen order) and logical types from sample records: integral
 * numbers and bigints are `integer`, other numbers `float` (integers mixed with floats
 * too), strings `text`, `Uint8Array` `bytes`, `Date` `datetime`, objects and arrays `json`,
 * a field only ever null or of mixed kinds `any`. The primary key is `["id"]` when every
 * sample record has a non-null, distinct `id`; otherwise there is none.
 *
 * @example inferSchema("users", [{ id: 1, email: "a@b" }]) // fields id:integer, email:text; key id
 */
export function inferSchema(name: string, sample: readonly Row[]): CollectionSchema {
  const kinds = new Map<string, Set<FieldType>>();
  const ids = new Set<string>();
  let idKey = sample.length > 0;
  for (const row of sample) {
    for (const f of Object.keys(row)) {
      let set = kinds.get(f);
      if (!set) {
        set = new Set();
        kinds.set(f, set);
      }
      const t = typeOf(row[f] as Value);
      if (t) set.add(t);
    }
    if (idKey) {
      const id = row.id;
      const k = id === undefined || id === null ? undefined : keyString([id]);
      if (k === undefined || ids.has(k)) idKey = false;
      else ids.add(k);
    }
  }
  const fields: FieldSchema[] = [];
  for (const [f, set] of kinds) {
    let type: FieldType = "any";
    if (set.size === 1) type = set.values().next().value as FieldType;
    else if (set.size === 2 && set.has("integer") && set.has("float")) type = "float";
    fields.push({ name: f, type });
  }
  return { name, fields, primaryKey: idKey ? ["id"] : [] };
}
