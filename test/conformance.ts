/**
 * The conformance suite every connector passes: discovery, a round trip of every value it
 * supports, each conflict mode, resume after an interruption, and a dry run that writes
 * nothing. A connector's test file calls {@link conformance} with a way to make empty
 * instances; the suite seeds and reads them only through the connector contract and `copy`.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { Checkpoint, Connector, UndoRow } from "../src/core/connector.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import type { FerryEvent } from "../src/core/events.js";
import { history } from "../src/core/history.js";
import { openConnector } from "../src/core/registry.js";
import type { CollectionSchema, FieldSchema } from "../src/core/schema.js";
import { encodeRow, type Row } from "../src/core/values.js";
import { type Fixture, readAll, seed } from "./helpers.js";

/** What a connector's test provides. */
export interface ConformanceTarget {
  /** Shown in test names. */
  name: string;
  /** A URL of a new, empty instance (not created yet, or empty). */
  fresh(): Promise<string> | string;
  /** Extra fields with values this engine supports beyond the common ones. */
  extraFields?: { field: FieldSchema; values: Row[string][] }[];
  /** Removes everything `fresh` made. */
  cleanup?(): Promise<void> | void;
}

const parents: CollectionSchema = {
  name: "teams",
  fields: [
    { name: "id", type: "integer", nativeType: "INTEGER", nullable: false },
    { name: "name", type: "text", nativeType: "TEXT", nullable: false },
  ],
  primaryKey: ["id"],
};

function children(extra: FieldSchema[]): CollectionSchema {
  return {
    name: "members",
    fields: [
      { name: "id", type: "integer", nativeType: "INTEGER", nullable: false },
      { name: "team_id", type: "integer", nativeType: "INTEGER" },
      { name: "email", type: "text", nativeType: "TEXT" },
      { name: "score", type: "float", nativeType: "REAL" },
      { name: "note", type: "text", nativeType: "TEXT" },
      ...extra,
    ],
    primaryKey: ["id"],
    foreignKeys: [{ fields: ["team_id"], references: { collection: "teams", fields: ["id"] } }],
  };
}

const NOTES = ["plain", "", "unicode: żółć 日本 🚢", "line\nbreak \u2028 sep", null, 'quote " and \\ slash'];

/** Fixture rows: varied values, including the connector's extra fields. */
export function fixtures(extra: ConformanceTarget["extraFields"] = [], n = 57): Fixture[] {
  const teams: Row[] = [1, 2, 3].map((id) => ({ id, name: `team ${id}` }));
  const rows: Row[] = [];
  for (let i = 1; i <= n; i++) {
    const r: Row = {
      id: i,
      team_id: (i % 3) + 1,
      email: `user${i}@example.com`,
      score: i % 7 === 0 ? null : i / 8,
      note: NOTES[i % NOTES.length] ?? null,
    };
    for (const e of extra) r[e.field.name] = e.values[i % e.values.length] ?? null;
    rows.push(r);
  }
  return [
    { schema: parents, rows: teams },
    { schema: children(extra.map((e) => e.field)), rows },
  ];
}

/** Canonical JSON of every collection's rows, for exact comparison. */
function canonical(data: Record<string, Row[]>): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [name, rows] of Object.entries(data)) {
    out[name] = rows.map((r) => encodeRow(r)).sort((a, b) => Number(a.id) - Number(b.id));
  }
  return out;
}

/** Registers the conformance tests for one connector. */
export function conformance(t: ConformanceTarget): void {
  describe(`conformance: ${t.name}`, () => {
    afterAll(async () => {
      await t.cleanup?.();
    });

    const data = fixtures(t.extraFields);

    it("discovers collections with fields and primary keys", async () => {
      const url = await t.fresh();
      await seed(url, data);
      const c = await openConnector(url, { write: false });
      try {
        const found = await c.discover();
        expect(found.map((s) => s.name).sort()).toEqual(["members", "teams"]);
        const members = found.find((s) => s.name === "members") as CollectionSchema;
        expect(members.primaryKey).toEqual(["id"]);
        expect(members.fields.map((f) => f.name)).toEqual(data[1]?.schema.fields.map((f) => f.name));
        expect(await c.count(members)).toBe(data[1]?.rows.length);
      } finally {
        await c.close();
      }
    });

    it("round-trips every supported value through another instance of itself", async () => {
      const a = await t.fresh();
      const b = await t.fresh();
      await seed(a, data);
      const r = await copy({ from: a, to: b, batchSize: 10 });
      expect(r.status).toBe("done");
      expect(r.total.copied).toBe(data[0]!.rows.length + data[1]!.rows.length);
      expect(canonical(await readAll(b))).toEqual(canonical(await readAll(a)));
      expect(canonical(await readAll(b))).toEqual(canonical({ teams: data[0]!.rows, members: data[1]!.rows }));
    });

    it("copies parents before children", async () => {
      const a = await t.fresh();
      const b = await t.fresh();
      await seed(a, [...data].reverse());
      const order: string[] = [];
      await copy({
        from: a,
        to: b,
        onEvent: (e) => {
          if (e.type === "collection-end") order.push(e.collection);
        },
      });
      expect(order).toEqual(["teams", "members"]);
    });

    it("deletes by key in a batch with an insert; a key not there is no failure; the checkpoint lands", async () => {
      const url = await t.fresh();
      const c = await openConnector(url, { write: true });
      const entry = { id: "rollback-1", startedAt: "2026-01-01T00:00:00Z", status: "running" };
      let outcome: unknown;
      try {
        const { schema } = await c.prepare(parents);
        const seeded = await c.write(
          schema,
          [1, 2, 3].map((id) => ({ op: "insert" as const, record: { id, name: `team ${id}` } })),
        );
        expect(seeded.failures).toEqual([]);
        const r = await c.write(
          schema,
          [
            { op: "delete", match: { id: 2 } },
            { op: "delete", match: { id: 99 } },
            { op: "insert", record: { id: 4, name: "team 4" } },
          ],
          {
            runId: "rollback-1",
            id: "rollback-1",
            entry: (result) => {
              outcome = result;
              return { ...entry, failed: result.failures.length };
            },
          },
        );
        expect(r.failures).toEqual([]);
        // The entry was built from the batch's outcome, and saved with it.
        expect(outcome).toEqual({ failures: [] });
        expect(await c.journal().get("rollback-1")).toEqual({ ...entry, failed: 0 });
      } finally {
        await c.close();
      }
      const after = await readAll(url);
      expect(canonical({ teams: after.teams ?? [] })).toEqual(
        canonical({ teams: [1, 3, 4].map((id) => ({ id, name: `team ${id}` })) }),
      );
    });

    it("keeps an undo log with the checkpoints: read back highest seq first (read-only too); forget removes one run", async () => {
      const url = await t.fresh();
      const text = "unicode: żółć 🚢, quotes ' \" and \\ slash";
      const checkpoint = (runId: string, id: string, seq: number | undefined): Checkpoint => ({
        runId,
        id,
        entry: (result) => ({ id, startedAt: "2026-01-01T00:00:00Z", failed: result.failures.length }),
        undo: () => (seq === undefined ? undefined : { runId, seq, entry: { seq, added: [[seq]], text } }),
      });
      const undoOf = async (c: Connector, runId: string): Promise<UndoRow[]> => {
        const out: UndoRow[] = [];
        for await (const row of c.journal().undo(runId)) out.push(row);
        return out;
      };
      const ids = async (c: Connector): Promise<string[]> =>
        ((await c.journal().list()) as { id: string }[]).map((e) => e.id).sort();
      // A run id that is a prefix of another's, and ids with LIKE's wildcards.
      const batches: [runId: string, id: string, seq: number | undefined][] = [
        ["u_1", "u_1/teams/0", 0],
        ["u_1", "u_1/teams/1", 1],
        ["u_1", "u_1/teams/0", undefined],
        ["u_1", "u_1", 2],
        ["u_10", "u_10", 0],
        ["uX1", "uX1", 0],
        ["uX1", "uX1/teams/0", 1],
        ["u%", "u%", 0],
      ];
      const c = await openConnector(url, { write: true });
      try {
        const { schema } = await c.prepare(parents);
        let id = 0;
        for (const [runId, part, seq] of batches) {
          id++;
          const r = await c.write(
            schema,
            [{ op: "insert", record: { id, name: `team ${id}` } }],
            checkpoint(runId, part, seq),
          );
          expect(r.failures).toEqual([]);
        }
        // A batch whose undo row cannot be made fails whole: no record, no checkpoint, no undo row.
        const err = await c
          .write(schema, [{ op: "insert", record: { id: 100, name: "team 100" } }], {
            ...checkpoint("u_1", "u_1/teams/2", 3),
            undo: () => {
              throw new Error("no undo row");
            },
          })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(Error);
        expect((await undoOf(c, "u_1")).map((r) => r.seq)).toEqual([2, 1, 0]);
      } finally {
        await c.close();
      }
      expect((await readAll(url)).teams?.map((r) => Number(r.id)).sort((a, b) => a - b)).toEqual(
        batches.map((_, i) => i + 1),
      );

      const ro = await openConnector(url, { write: false });
      try {
        expect(await undoOf(ro, "u_1")).toEqual(
          [2, 1, 0].map((seq) => ({ runId: "u_1", seq, entry: { seq, added: [[seq]], text } })),
        );
        expect((await undoOf(ro, "uX1")).map((r) => r.seq)).toEqual([1, 0]);
        expect(await undoOf(ro, "u")).toEqual([]);
        // The journal lists entries only, never undo rows.
        expect(await ids(ro)).toEqual(["u%", "uX1", "uX1/teams/0", "u_1", "u_1/teams/0", "u_1/teams/1", "u_10"].sort());
      } finally {
        await ro.close();
      }

      const w = await openConnector(url, { write: true });
      try {
        await w.journal().forget("u_1");
        await w.journal().forget("u%");
        await w.journal().forget("never-there");
        expect(await ids(w)).toEqual(["uX1", "uX1/teams/0", "u_10"].sort());
        expect(await undoOf(w, "u_1")).toEqual([]);
        expect(await undoOf(w, "u%")).toEqual([]);
        expect((await undoOf(w, "u_10")).map((r) => r.seq)).toEqual([0]);
        expect((await undoOf(w, "uX1")).map((r) => r.seq)).toEqual([1, 0]);
      } finally {
        await w.close();
      }
    });

    describe("conflict modes", () => {
      // Target holds ids 1–10 with changed emails/notes and an extra id 1000 the source lacks.
      async function prepared(): Promise<{ src: string; dst: string }> {
        const src = await t.fresh();
        const dst = await t.fresh();
        await seed(src, data);
        const existing: Row[] = data[1]!.rows.slice(0, 10).map((r) => ({ ...r, note: "target's own" }));
        existing.push({ ...data[1]!.rows[0]!, id: 1000, email: "only@target", note: "kept" });
        await seed(dst, [data[0]!, { schema: data[1]!.schema, rows: existing }]);
        return { src, dst };
      }

      it("fail: refuses with E_CONFLICT and writes nothing", async () => {
        const { src, dst } = await prepared();
        const before = canonical(await readAll(dst));
        const err = await copy({ from: src, to: dst, conflict: "fail" }).catch((e: unknown) => e);
        expect(isFerryError(err, "E_CONFLICT")).toBe(true);
        expect(canonical(await readAll(dst))).toEqual(before);
      });

      it("skip: leaves existing records untouched; a second run copies 0", async () => {
        const { src, dst } = await prepared();
        const r1 = await copy({ from: src, to: dst, conflict: "skip", collections: ["members"] });
        expect(r1.total).toMatchObject({ copied: data[1]!.rows.length - 10, skipped: 10, failed: 0 });
        const after = await readAll(dst);
        expect(after.members!.find((r) => r.id === 1)?.note).toBe("target's own");
        expect(after.members!.find((r) => r.id === 1000)?.note).toBe("kept");
        const r2 = await copy({ from: src, to: dst, conflict: "skip", collections: ["members"] });
        expect(r2.total).toMatchObject({ copied: 0, skipped: data[1]!.rows.length });
        expect(canonical(await readAll(dst))).toEqual(canonical(after));
      });

      it("overwrite: replaces existing records whole and keeps target-only ones", async () => {
        const { src, dst } = await prepared();
        const r = await copy({ from: src, to: dst, conflict: "overwrite", collections: ["members"] });
        expect(r.total).toMatchObject({ copied: data[1]!.rows.length - 10, overwritten: 10 });
        const after = await readAll(dst);
        const srcRows = data[1]!.rows;
        expect(after.members!.find((r) => r.id === 1)?.note).toBe(srcRows[0]!.note);
        expect(after.members!.find((r) => r.id === 1000)?.note).toBe("kept");
        expect(after.members!.length).toBe(srcRows.length + 1);
      });

      it("merge by natural key: updates matched fields, keeps target identity and target-only records", async () => {
        const { src, dst } = await prepared();
        const r = await copy({ from: src, to: dst, conflict: "merge", key: ["email"], collections: ["members"] });
        // user1@example.com matches both id 1 and id 1000? No: id 1000 has its own email.
        expect(r.total).toMatchObject({ merged: 10, copied: data[1]!.rows.length - 10 });
        const after = await readAll(dst);
        const one = after.members!.find((r) => r.email === "user1@example.com");
        expect(one?.id).toBe(1);
        expect(one?.note).toBe(data[1]!.rows[0]!.note);
        expect(after.members!.find((r) => r.id === 1000)?.note).toBe("kept");
      });
    });

    it("dry run counts per mode and writes nothing anywhere", async () => {
      const src = await t.fresh();
      const dst = await t.fresh();
      await seed(src, data);
      const r = await copy({ from: src, to: dst, dryRun: true });
      expect(r.dryRun).toBe(true);
      expect(r.total.copied).toBe(data[0]!.rows.length + data[1]!.rows.length);
      // The target was never created, so opening it for reading finds nothing.
      const after = await readAll(dst).catch((e: unknown) => (isFerryError(e) ? "missing" : e));
      if (after !== "missing") expect(after).toEqual({});
      await seed(dst, [data[0]!]);
      const before = canonical(await readAll(dst));
      const runsBefore = await history({ at: dst });
      const r2 = await copy({ from: src, to: dst, dryRun: true, conflict: "skip" });
      expect(r2.collections.teams).toMatchObject({ skipped: 3, copied: 0 });
      expect(canonical(await readAll(dst))).toEqual(before);
      expect(await history({ at: dst })).toEqual(runsBefore);
    });

    it("resumes an interrupted copy with no missing and no duplicated records", async () => {
      const big = fixtures(t.extraFields, 500);
      const src = await t.fresh();
      const dst = await t.fresh();
      await seed(src, big);
      const controller = new AbortController();
      let batches = 0;
      const onEvent = (e: FerryEvent) => {
        if (e.type === "progress" && e.collection === "members" && ++batches === 3) controller.abort();
      };
      const err = await copy({
        from: src,
        to: dst,
        batchSize: 50,
        jobs: 1,
        signal: controller.signal,
        onEvent,
      }).catch((e: unknown) => e);
      expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
      const partial = await readAll(dst);
      expect(partial.members?.length).toBe(150);
      // A new run without --resume is refused: the target is dirty.
      const dirty = await copy({ from: src, to: dst }).catch((e: unknown) => e);
      expect(isFerryError(dirty, "E_DIRTY")).toBe(true);
      const r = await copy({ from: src, to: dst, resume: true, batchSize: 50 });
      expect(r.status).toBe("done");
      expect(r.collections.members).toMatchObject({ copied: 500, failed: 0 });
      expect(canonical(await readAll(dst))).toEqual(canonical(await readAll(src)));
      const runs = await history({ at: dst });
      expect(runs).toHaveLength(1);
      expect(runs[0]?.status).toBe("done");
      expect(runs[0]?.error).toBeUndefined();
    });

    it("copies key ranges in parallel and resumes each range where it stopped", async () => {
      const big = fixtures(t.extraFields, 800);
      const src = await t.fresh();
      const dst = await t.fresh();
      await seed(src, big);
      const controller = new AbortController();
      let batches = 0;
      const onEvent = (e: FerryEvent) => {
        if (e.type === "progress" && e.collection === "members" && ++batches === 5) controller.abort();
      };
      const opts = { from: src, to: dst, batchSize: 40, jobs: 3 };
      const err = await copy({ ...opts, signal: controller.signal, onEvent }).catch((e: unknown) => e);
      expect(isFerryError(err, "E_INTERRUPTED")).toBe(true);
      const partial = await readAll(dst);
      expect(partial.members?.length ?? 0).toBeLessThan(800);
      const r = await copy({ ...opts, resume: true });
      expect(r.status).toBe("done");
      expect(r.collections.members).toMatchObject({ copied: 800, failed: 0 });
      expect(canonical(await readAll(dst))).toEqual(canonical(await readAll(src)));
      const [run] = await history({ at: dst });
      expect(run?.collections.members?.copied).toBe(800);
    });
  });
}
