/** A journal kept in memory, for instances that keep none (a package being written or read). */
import type { JournalStore } from "../core/connector.js";

export class MemoryJournal implements JournalStore {
  readonly #entries = new Map<string, unknown>();

  async save(runId: string, entry: unknown): Promise<void> {
    this.#entries.set(runId, structuredClone(entry));
  }

  async get(runId: string): Promise<unknown | undefined> {
    return structuredClone(this.#entries.get(runId));
  }

  async list(): Promise<unknown[]> {
    return [...this.#entries.values()].reverse().map((e) => structuredClone(e));
  }
}
