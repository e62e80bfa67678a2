/**
 * A record's secret fields, wherever the record keeps them: its own fields, and the fields of
 * a Redis hash's value (a key-space record `{ key, type: "hash", value }` holds the app's
 * fields inside `value`, as an object, or as `[field, value]` pairs when a field name is not
 * UTF-8). Used to redact messages and to leave secrets out of packages.
 */
import { type Row, setField, type Value } from "./values.js";

type Pairs = [unknown, unknown][];

function hashValue(r: Row): Record<string, unknown> | Pairs | undefined {
  if (r.type !== "hash") return undefined;
  const v = r.value as unknown;
  if (Array.isArray(v)) return v as Pairs;
  if (typeof v === "object" && v !== null && !(v instanceof Uint8Array) && !(v instanceof Date)) {
    return v as Record<string, unknown>;
  }
  return undefined;
}

/** The values `r` holds under the fields `secret`. */
export function secretValues(r: Row, secret: readonly string[]): unknown[] {
  const out: unknown[] = [];
  const h = hashValue(r);
  for (const f of secret) {
    if (Object.hasOwn(r, f)) out.push(r[f]);
    if (Array.isArray(h)) {
      for (const p of h) if (Array.isArray(p) && p[0] === f) out.push(p[1]);
    } else if (h && Object.hasOwn(h, f)) out.push(h[f]);
  }
  return out.filter((v) => v !== null && v !== undefined);
}

/** `r` without the fields `secret` (a new record; `r` is not changed). */
export function withoutSecrets(r: Row, secret: ReadonlySet<string>): Row {
  const out: Row = {};
  for (const k of Object.keys(r)) if (!secret.has(k)) setField(out, k, r[k] as Value);
  const h = hashValue(r);
  if (Array.isArray(h)) {
    setField(
      out,
      "value",
      h.filter((p) => !(Array.isArray(p) && typeof p[0] === "string" && secret.has(p[0]))) as Value,
    );
  } else if (h) {
    const kept: Record<string, unknown> = {};
    for (const k of Object.keys(h)) if (!secret.has(k)) kept[k] = h[k];
    setField(out, "value", kept as Value);
  }
  return out;
}
