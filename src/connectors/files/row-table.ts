/** An in-memory collection with key indexes: the write side of the `.json` layout. */
import type { WriteOp } from "../../core/connector.js";
import { keyOf, keyString, type Row, type Value } from "../../core/values.js";

/**
 * Rows in order, plus lazily built indexes (key string → row positions) per set of fields.
 * A delete leaves a hole (so positions in the indexes stay right); {@link rows} closes them.
 */
export class RowTable {
  private readonly indexes = new Map<string, { fields: string[]; map: Map<string, number[]> }>();
  private slots: (Row | undefined)[];
  /** Holes in {@link slots}. */
  private holes = 0;

  constructor(rows: Row[]) {
    this.slots = rows;
  }

  /** The rows in order, deleted ones left out. */
  get rows(): Row[] {
    if (this.holes > 0) {
      this.slots = this.slots.filter((r) => r !== undefined);
      this.holes = 0;
      this.indexes.clear();
    }
    return this.slots as Row[];
  }

  private index(fields: string[]): Map<string, number[]> {
    const sig = JSON.stringify(fields);
    let ix = this.indexes.get(sig);
    if (!ix) {
      const map = new Map<string, number[]>();
      this.slots.forEach((r, i) => {
        if (r !== undefined) add(map, keyString(keyOf(r, fields)), i);
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
      if (at !== undefined) out.set(key, this.slots[at] as Row);
    }
    return out;
  }

  /**
   * Applies one operation: insert appends; replace and update change every matching row;
   * delete removes every matching row (none matching is fine).
   */
  apply(op: WriteOp): void {
    if (op.op === "insert") {
      const i = this.slots.push(op.record) - 1;
      for (const ix of this.indexes.values()) add(ix.map, keyString(keyOf(op.record, ix.fields)), i);
      return;
    }
    const fields = Object.keys(op.match);
    const at = this.index(fields).get(keyString(keyOf(op.match, fields))) ?? [];
    for (const i of [...at]) {
      const before = this.slots[i] as Row;
      if (op.op === "delete") {
        for (const ix of this.indexes.values()) remove(ix.map, keyString(keyOf(before, ix.fields)), i);
        this.slots[i] = undefined;
        this.holes++;
        continue;
      }
      const after = op.op === "replace" ? { ...op.record } : { ...before, ...op.record };
      this.slots[i] = after;
      for (const ix of this.indexes.values()) {
        const was = keyString(keyOf(before, ix.fields));
        const now = keyString(keyOf(after, ix.fields));
        if (was === now) continue;
        remove(ix.map, was, i);
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

function remove(map: Map<string, number[]>, key: string, i: number): void {
  const list = map.get(key);
  if (!list) return;
  const at = list.indexOf(i);
  if (at >= 0) list.splice(at, 1);
  if (list.length === 0) map.delete(key);
}
