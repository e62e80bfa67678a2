/**
 * The run journal: what every run that writes records at its target. History, status,
 * resume (and later rollback) read it. Entries are stored through the target connector's
 * {@link JournalStore}; this module owns their shape.
 */
import { randomBytes } from "node:crypto";
import { userInfo } from "node:os";
import type { JournalStore } from "./connector.js";
import type { Bookmark } from "./messages.js";
import type { CollectionSchema } from "./schema.js";
import type { JsonValue } from "./values.js";

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
  /**
   * Dry runs: of the records whose key exists at the target (skipped, overwritten, merged or
   * refused in fail mode), how many are already identical there (every field the source has).
   */
  identical?: number;
}

/**
 * One key range of a collection within a run: what it covers, how far it got, its counts.
 * A collection that is not split has one range covering everything.
 */
export interface RangeProgress extends CollectionStats {
  /** Start of the range (exclusive); from the first record when absent. */
  after?: Bookmark;
  /** End of the range (inclusive); to the last record when absent. */
  upTo?: Bookmark;
  /** Position after the range's last durable batch. */
  bookmark?: Bookmark;
  done: boolean;
  /** Checkpoints saved so far: of two copies of a range's progress, the higher is newer. */
  seq: number;
  failures: { key: string; reason: string }[];
}

/** A collection's progress within a run (its counts are the sum of its ranges'). */
export interface CollectionProgress extends CollectionStats {
  total?: number;
  /** The collection's key ranges (one unless it was split for parallel copying). */
  ranges: RangeProgress[];
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
  options: {
    conflict: ConflictMode;
    key?: string[];
    collections: string[];
    /** The selection as given, for sources that resolve it (Redis globs, `!pattern` exclusions). */
    selection?: string[];
    /** Each collection's conflict mode (the profile's, else `conflict`). */
    conflicts?: Record<string, ConflictMode>;
    /** Each collection's match key (`--key`, the profile's natural key, or the primary key). */
    keys?: Record<string, string[]>;
    /** Each collection's name at the target (as the profile renamed it when the run began). */
    targets?: Record<string, string>;
    /** The source's revision when the run began (a package's digest): a resume needs the same. */
    revision?: string;
    /** The run keeps an undo log (`ferry rollback` can restore the target). */
    undo?: boolean;
    batchSize: number;
    /** Parallel jobs. Default 1 (entries written before `--jobs` existed). */
    jobs?: number;
    allowLossy?: boolean;
  };
  collections: Record<string, CollectionProgress>;
  error?: { code: string; message: string };
  /** Set once `ferry rollback` restored what this run changed: the rollback's run id and end. */
  rolledBack?: { by: string; at: string };
  /** A rollback run: the run it undoes. */
  undoes?: string;
  /** A rollback run's progress: records removed, restored, refused, of `total`; `through`: the lowest undo row applied. */
  rollback?: {
    removed: number;
    restored: number;
    failed: number;
    total: number;
    through?: number;
    /** Deletes a foreign key still refused at the end (encoded matches), tried first by `--resume`. */
    refused?: { collection: string; schema: CollectionSchema; match: Record<string, JsonValue> }[];
  };
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
    ...(a.identical !== undefined || b.identical !== undefined
      ? { identical: (a.identical ?? 0) + (b.identical ?? 0) }
      : {}),
  };
}

/** Records handled: every count added up. */
export function processed(s: CollectionStats): number {
  return s.copied + s.skipped + s.overwritten + s.merged + s.failed;
}

/** Just the counts of a progress entry. */
export function statsOf(p: CollectionStats): CollectionStats {
  return {
    copied: p.copied,
    skipped: p.skipped,
    overwritten: p.overwritten,
    merged: p.merged,
    failed: p.failed,
    ...(p.identical !== undefined ? { identical: p.identical } : {}),
  };
}

/**
 * True for a run that stopped before every collection was done: still `running` (killed),
 * `interrupted`, or `failed` midway. A run that completed with refused records is not.
 */
export function isUnfinished(e: RunEntry): boolean {
  // A run rolled back left nothing behind to finish.
  if (e.rolledBack) return false;
  if (e.status === "running" || e.status === "interrupted") return true;
  return e.status === "failed" && Object.values(e.collections).some((c) => !c.done);
}

function isRunEntry(x: unknown): x is RunEntry {
  return typeof x === "object" && x !== null && typeof (x as RunEntry).id === "string";
}

/**
 * A range's checkpoint, saved in its own journal row (`<runId>/<collection>/<range>`) so
 * parts of a run that commit concurrently never record each other's uncommitted progress.
 */
export interface RangeCheckpoint {
  partOf: string;
  collection: string;
  range: number;
  progress: RangeProgress;
}

/** The journal row id of a range's checkpoints. */
export function rangeRowId(runId: string, collection: string, range: number): string {
  return `${runId}/${collection}/${range}`;
}

function isRangeCheckpoint(x: unknown): x is RangeCheckpoint {
  return typeof x === "object" && x !== null && typeof (x as RangeCheckpoint).partOf === "string";
}

/** Recomputes a collection's counts and kept failures from its ranges. */
export function sumRanges(c: CollectionProgress): void {
  const total = c.ranges.reduce<CollectionStats>((a, r) => addStats(a, statsOf(r)), emptyStats());
  Object.assign(c, total);
  c.failures = c.ranges.flatMap((r) => r.failures).slice(0, MAX_FAILURES_KEPT);
}

/** An entry with its ranges' newer checkpoints applied. */
function merged(entry: RunEntry, parts: RangeCheckpoint[]): RunEntry {
  const mine = parts.filter((p) => p.partOf === entry.id);
  if (mine.length === 0) return entry;
  const out: RunEntry = structuredClone(entry);
  for (const p of mine) {
    const c = out.collections[p.collection];
    const r = c?.ranges?.[p.range];
    if (!c || !r || r.seq >= p.progress.seq) continue;
    c.ranges[p.range] = p.progress;
    sumRanges(c);
  }
  return out;
}

/** Typed access to a target's journal. */
export class Journal {
  constructor(private readonly store: JournalStore) {}

  /** Every run, newest first, with its ranges' latest checkpoints applied. */
  async list(): Promise<RunEntry[]> {
    const all = await this.store.list();
    const parts = all.filter(isRangeCheckpoint);
    return all
      .filter(isRunEntry)
      .map((e) => merged(e, parts))
      .sort((a, b) => (a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : 0));
  }

  async get(id: string): Promise<RunEntry | undefined> {
    return (await this.list()).find((e) => e.id === id);
  }

  save(entry: RunEntry): Promise<void> {
    return this.store.save(entry.id, entry);
  }

  /** Runs that started and never ended cleanly: they make the target dirty. */
  async unfinished(): Promise<RunEntry[]> {
    return (await this.list()).filter(isUnfinished);
  }
}
