/** A journal kept in memory, for instances that keep none (a package being written or read). */
import type { JournalStore, UndoRow } from "../core/connector.js";

/** Undo rows {@link MemoryJournal.undo} yields per page (each a copy). */
const UNDO_PAGE = 100;

export class MemoryJournal implements JournalStore {
  readonly #entries = new Map<string, unknown>();
  /** Undo rows per run, by `seq` (a row saved again under the same `seq` replaces it). */
  readonly #undo = new Map<string, Map<number, unknown>>();

  async save(runId: string, entry: unknown): Promise<void> {
    this.#entries.set(runId, structuredClone(entry));
  }

  async get(runId: string): Promise<unknown | undefined> {
    return structuredClone(this.#entries.get(runId));
  }

  async list(): Promise<unknown[]> {
    return [...this.#entries.values()].reverse().map((e) => structuredClone(e));
  }

  /**
   * Keeps a batch's undo row (see `Checkpoint.undo`): the connector holding this journal calls
   * it when the batch's ops and checkpoint are applied, with the entry saved in the same step.
   */
  saveUndo(row: UndoRow): void {
    let rows = this.#undo.get(row.runId);
    if (!rows) {
      rows = new Map();
      this.#undo.set(row.runId, rows);
    }
    rows.set(row.seq, structuredClone(row.entry));
  }

  /** The run's undo rows, highest `seq` first; rows saved or forgotten meanwhile are seen from the next page. */
  async *undo(runId: string): AsyncGenerator<UndoRow> {
    let below = Number.POSITIVE_INFINITY;
    for (;;) {
      const rows = this.#undo.get(runId);
      if (!rows) return;
      const page = [...rows.keys()]
        .filter((s) => s < below)
        .sort((a, b) => b - a)
        .slice(0, UNDO_PAGE);
      if (page.length === 0) return;
      for (const seq of page) {
        const now = this.#undo.get(runId);
        if (now?.has(seq)) yield { runId, seq, entry: structuredClone(now.get(seq)) };
      }
      below = page[page.length - 1] as number;
    }
  }

  async forget(runId: string): Promise<void> {
    const prefix = `${runId}/`;
    this.#entries.delete(runId);
    for (const id of [...this.#entries.keys()]) if (id.startsWith(prefix)) this.#entries.delete(id);
    this.#undo.delete(runId);
  }
}
