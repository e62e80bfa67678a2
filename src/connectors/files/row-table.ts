/** An in-memory collection with key indexes: the write side of the `.json` layout. */
import type { WriteOp } from "../../core/connector.js";
import { keyOf, keyString, type Row, type Value } from "../../core/values.js";

/** Rows in order, plus lazily built indexes (key string → row positions) per set of fields. */
export class RowTable {
  private readonly indexes = new Map<string, { fields: string[]; map: Map<string, number[]> }>();

  constructor(readonly rows: Row[]) {}

  private index(fields: string[]): Map<string, number[]> {
    const sig = JSON.stringify(fields);
    let ix = this.indexes.get(sig);
    if (!ix) {
      const map = new Map<string, number[]>();
      this.rows.forEach((r, i) => {
        add(map, keyString(keyOf(r, fields)), i);
      });
      ix = { fields, map };
      this.indexes.set(sig, ix);
    }
    return ix.map;
  }

  /** The first row for each key tuple of `fields` that exists, by key string. */
  lookup(fields: string[], keys: Value[][]): Map<string, Row> {
    const ix = this.index(fields);
    const out = new Map<string, Row>();
    for (const k of keys) {
      const key = keyString(k);
      const at = ix.get(key)?.[0];
      if (at !== undefined) out.set(key, this.rows[at] as Row);
    }
    return out;
  }

  /** Applies one operation: insert appends; replace and update change every matching row. */
  apply(op: WriteOp): void {
    if (op.op === "insert") {
      const i = this.rows.push(op.record) - 1;
      for (const ix of this.indexes.values()) add(ix.map, keyString(keyOf(op.record, ix.fields)), i);
      return;
    }
    const fields = Object.keys(op.match);
    const at = this.index(fields).get(keyString(keyOf(op.match, fields))) ?? [];
    for (const i of [...at]) {
      const before = this.rows[i] as Row;
      const after = op.op === "replace" ? { ...op.record } : { ...before, ...op.record };
      this.rows[i] = after;
      for (const ix of this.indexes.values()) {
        const was = keyString(keyOf(before, ix.fields));
        const now = keyString(keyOf(after, ix.fields));
        if (was === now) continue;
        const list = ix.map.get(was);
        if (list) list.splice(list.indexOf(i), 1);
        add(ix.map, now, i);
      }
    }
  }
}

function add(map: Map<string, number[]>, key: string, i: number): void {
  const list = map.get(key);
  if (list) list.push(i);
  else map.set(key, [i]);
}
