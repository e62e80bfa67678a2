/**
 * Progress is typed events from the core: the CLI renders them (bars on stderr, or NDJSON
 * with `--json`), the server will stream them as SSE, tests assert on them.
 */
import type { CollectionStats, RunStatus } from "./journal.js";
import type { TypePlan } from "./type-plan.js";

/** Emitted once a run knows what it will do. */
export interface RunStartEvent {
  type: "run-start";
  runId: string;
  command: string;
  source: string;
  target: string;
  dryRun: boolean;
  resumed: boolean;
  collections: { name: string; total: number | undefined }[];
}

/** Emitted after each batch is durable (or, in a dry run, decided). */
export interface ProgressEvent {
  type: "progress";
  runId: string;
  collection: string;
  /** Records processed so far (copied + skipped + overwritten + merged + failed). */
  done: number;
  total: number | undefined;
  /** Records per second since this collection started in this process. */
  rate: number;
  /** Seconds left at the current rate, when the total is known. */
  etaSeconds: number | undefined;
}

/** A record the target refused, or that conflicts in `fail` mode. */
export interface RecordErrorEvent {
  type: "record-error";
  runId: string;
  collection: string;
  /** The record's key values as `field=value` pairs. */
  key: string;
  code: "E_WRITE" | "E_CONFLICT";
  reason: string;
}

/** Emitted when a collection is complete. */
export interface CollectionEndEvent {
  type: "collection-end";
  runId: string;
  collection: string;
  stats: CollectionStats;
  seconds: number;
}

/** Emitted once at the end, whatever the outcome. */
export interface RunEndEvent {
  type: "run-end";
  runId: string;
  status: RunStatus;
  dryRun: boolean;
  collections: Record<string, CollectionStats>;
  /** Seconds spent per collection (across resumes). */
  timings: Record<string, number>;
  /** Collections not finished (stopped, interrupted or failed before their end). */
  unfinished: string[];
  total: CollectionStats;
  seconds: number;
  error?: { code: string; message: string };
}

/** The type plan, emitted before anything is written (and by a dry run). */
export interface PlanEvent {
  type: "plan";
  plan: TypePlan;
}

/** A note worth telling the user that is not an error (e.g. "nothing to resume"). */
export interface NoticeEvent {
  type: "notice";
  message: string;
}

/** Every event the core emits. */
export type FerryEvent =
  | RunStartEvent
  | ProgressEvent
  | RecordErrorEvent
  | CollectionEndEvent
  | RunEndEvent
  | PlanEvent
  | NoticeEvent;

/** A consumer of events; must not throw. */
export type EventSink = (event: FerryEvent) => void;
