import { describe, expect, it } from "vitest";
import type { UndoRow } from "../core/connector.js";
import { MemoryJournal } from "./memory-journal.js";

async function rows(j: MemoryJournal, runId: string): Promise<UndoRow[]> {
  const out: UndoRow[] = [];
  for await (const r of j.undo(runId)) out.push(r);
  return out;
}

describe("memory journal", () => {
  it("yields a run's undo rows highest seq first across pages, copies, never listed", async () => {
    const j = new MemoryJournal();
    await j.save("imp-1", { id: "imp-1" });
    // 250 rows (pages of 100) saved out of order, one saved twice (the later one counts).
    for (let i = 0; i < 250; i++) j.saveUndo({ runId: "imp-1", seq: (i * 7) % 250, entry: { n: (i * 7) % 250 } });
    j.saveUndo({ runId: "imp-1", seq: 3, entry: { n: 3, again: true } });
    j.saveUndo({ runId: "imp-2", seq: 0, entry: { other: true } });
    const got = await rows(j, "imp-1");
    expect(got.map((r) => r.seq)).toEqual(Array.from({ length: 250 }, (_, i) => 249 - i));
    expect(got.find((r) => r.seq === 3)?.entry).toEqual({ n: 3, again: true });
    (got[0]?.entry as { n: number }).n = -1;
    expect((await rows(j, "imp-1"))[0]?.entry).toEqual({ n: 249 });
    expect(await j.list()).toEqual([{ id: "imp-1" }]);
    expect(await rows(j, "nope")).toEqual([]);
  });

  it("forget removes the run's entry, its range rows and undo rows, not another run's", async () => {
    const j = new MemoryJournal();
    for (const id of ["imp-1", "imp-1/items/0", "imp-10", "imp-10/items/0"]) await j.save(id, { id });
    j.saveUndo({ runId: "imp-1", seq: 0, entry: {} });
    j.saveUndo({ runId: "imp-10", seq: 0, entry: {} });
    await j.forget("imp-1");
    await j.forget("never");
    expect(await j.list()).toEqual([{ id: "imp-10/items/0" }, { id: "imp-10" }]);
    expect(await rows(j, "imp-1")).toEqual([]);
    expect(await rows(j, "imp-10")).toEqual([{ runId: "imp-10", seq: 0, entry: {} }]);
  });
});
