/** `history` and `status`: read the runs recorded in a target's journal. */
import { FerryError } from "./errors.js";
import { Journal, type RunEntry } from "./journal.js";
import { openConnector } from "./registry.js";
import { redactUrl } from "./url.js";

/** Options of {@link history}. */
export interface HistoryOptions {
  /** The instance whose journal to read. */
  at: string;
  /** At most this many runs, newest first. Default: all. */
  limit?: number;
}

/** Runs recorded at an instance, newest first. */
export async function history(options: HistoryOptions): Promise<RunEntry[]> {
  const c = await openConnector(options.at, { write: false });
  try {
    const runs = await new Journal(c.journal()).list();
    return options.limit === undefined ? runs : runs.slice(0, options.limit);
  } finally {
    await c.close();
  }
}

/** Options of {@link status}. */
export interface StatusOptions {
  /** The instance whose journal holds the run. */
  at: string;
  /** Run id (a unique prefix is enough). Default: the newest run. */
  id?: string;
}

/** One run with its per-collection progress; readable while the run is going on. */
export async function status(options: StatusOptions): Promise<RunEntry> {
  const runs = await history({ at: options.at });
  if (runs.length === 0) throw new FerryError("E_NOT_FOUND", `no runs recorded at ${redactUrl(options.at)}`);
  if (options.id === undefined) return runs[0] as RunEntry;
  return findRun(runs, options.id, redactUrl(options.at));
}

/**
 * The run `id` names among `runs`: its id, or a prefix of exactly one.
 *
 * @throws FerryError `E_USAGE` for an ambiguous prefix, `E_NOT_FOUND` for none.
 */
export function findRun(runs: RunEntry[], id: string, where: string): RunEntry {
  const matches = runs.filter((r) => r.id === id || r.id.startsWith(id));
  const exact = matches.find((r) => r.id === id);
  if (exact) return exact;
  if (matches.length === 1) return matches[0] as RunEntry;
  if (matches.length > 1) {
    throw new FerryError("E_USAGE", `run id "${id}" is ambiguous: it starts ${matches.map((m) => m.id).join(", ")}`);
  }
  throw new FerryError("E_NOT_FOUND", `no run ${id} at ${where}: \`ferry history --at URL\` lists them`);
}
