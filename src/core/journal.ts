/**
 * The run journal: what every run that writes records at its target. History, status,
 * resume (and later rollback) read it. Entries are stored through the target connector's
 * {@link JournalStore}; this module owns their shape.
 */
import { randomBytes } from "node:crypto";
import { userInfo } from "node:os";
import type { JournalStore } from "./connector.js";
import type { Bookmark } from "./messages.js";

/** A run's state. `running` after a kill -9 means: interrupted without a chance to say so. */
export type RunStatus = "running" | "done" | "failed" | "interrupted" | "abandoned";

/** Conflict modes on every write. */
export type ConflictMode = "fail" | "skip" | "overwrite" | "merge";

/** Per-collection counts. */
export interface CollectionStats {
  copied: number;
  skipped: number;
  overwritten: number;
  merged: number;
  failed: number;
}

/** A collection's progress within a run. */
export interface CollectionProgress extends CollectionStats {
  total?: number;
  /** Position after the last durable batch. */
  bookmark?: Bookmark;
  done: boolean;
  /** The target collection was empty when the run began: no lookups needed. */
  targetWasEmpty: boolean;
  /** This run created the target collection, so it also builds its indexes from the source's definition. */
  targetCreated?: boolean;
  /** Seconds spent on this collection so far, across resumes. */
  seconds?: number;
  /** Up to {@link MAX_FAILURES_KEPT} refused records. */
  failures: { key: string; reason: string }[];
}

/** One run, as stored in the target's journal. */
export interface RunEntry {
  id: string;
  command: string;
  /** Source instance, password removed. */
  source: string;
  /** Target instance, password removed. */
  target: string;
  /** OS user that ran it. */
  by: string;
  startedAt: string;
  endedAt?: string;
  status: RunStatus;
  options: { conflict: ConflictMode; key?: string[]; collections: string[]; batchSize: number };
  collections: Record<string, CollectionProgress>;
  error?: { code: string; message: string };
}

/** How many refused records a journal entry keeps per collection. */
export const MAX_FAILURES_KEPT = 100;

/** A new, time-sortable run id such as `20261121T150102-3fa9c1`. */
export function newRunId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "");
  return `${stamp}-${randomBytes(3).toString("hex")}`;
}

/** The OS user name, or `unknown`. */
export function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

/** Zero counts. */
export function emptyStats(): CollectionStats {
  return { copied: 0, skipped: 0, overwritten: 0, merged: 0, failed: 0 };
}

/** Sums counts. */
export function addStats(a: CollectionStats, b: CollectionStats): CollectionStats {
  return {
    copied: a.copied + b.copied,
    skipped: a.skipped + b.skipped,
    overwritten: a.overwritten + b.overwritten,
    merged: a.merged + b.merged,
    failed: a.failed + b.failed,
  };
}

/** Records handled: every count added up. */
export function processed(s: CollectionStats): number {
  return s.copied + s.skipped + s.overwritten + s.merged + s.failed;
}

/** Just the counts of a progress entry. */
export function statsOf(p: CollectionStats): CollectionStats {
  return { copied: p.copied, skipped: p.skipped, overwritten: p.overwritten, merged: p.merged, failed: p.failed };
}

/**
 * True for a run that stopped before every collection was done: still `running` (killed),
 * `interrupted`, or `failed` midway. A run that completed with refused records is not.
 */
export function isUnfinished(e: RunEntry): boolean {
  if (e.status === "running" || e.status === "interrupted") return true;
  return e.status === "failed" && Object.values(e.collections).some((c) => !c.done);
}

function isRunEntry(x: unknown): x is RunEntry {
  return typeof x === "object" && x !== null && typeof (x as RunEntry).id === "string";
}

/** Typed access to a target's journal. */
export class Journal {
  constructor(private readonly store: JournalStore) {}

  async list(): Promise<RunEntry[]> {
    return (await this.store.list()).filter(isRunEntry);
  }

  async get(id: string): Promise<RunEntry | undefined> {
    const e = await this.store.get(id);
    return isRunEntry(e) ? e : undefined;
  }

  save(entry: RunEntry): Promise<void> {
    return this.store.save(entry.id, entry);
  }

  /** Runs that started and never ended cleanly: they make the target dirty. */
  async unfinished(): Promise<RunEntry[]> {
    return (await this.list()).filter(isUnfinished);
  }
}
