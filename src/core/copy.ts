/**
 * `copy`: the data path. Reads collections from a source in key order, decides per record
 * by conflict mode, writes batches to a target with a checkpoint made durable together with
 * each batch, and records the run in the target's journal. Library, CLI, API and console
 * all call this one function.
 *
 * Parallelism: with `jobs` > 1 and a target that takes concurrent writes, collections whose
 * parents are done copy at the same time, and a large collection is split into key ranges
 * copied in parallel. Each range checkpoints into its own journal row, so resuming picks up
 * every range where it stopped.
 */
import { availableParallelism } from "node:os";
import {
  type Checkpoint,
  type CollectionSpec,
  type Connector,
  hasBulkTransfer,
  type WriteOp,
  type WriteResult,
} from "./connector.js";
import { FerryError, isFerryError } from "./errors.js";
import type { EventSink, FerryEvent } from "./events.js";
import {
  addStats,
  type CollectionProgress,
  type CollectionStats,
  type ConflictMode,
  currentUser,
  emptyStats,
  Journal,
  MAX_FAILURES_KEPT,
  newRunId,
  processed,
  type RangeCheckpoint,
  type RangeProgress,
  type RunEntry,
  type RunStatus,
  rangeRowId,
  statsOf,
  sumRanges,
} from "./journal.js";
import type { Bookmark } from "./messages.js";
import { factoryFor, openConnector } from "./registry.js";
import { type CollectionSchema, dependencyOrder, parentsOf } from "./schema.js";
import { secretValues } from "./secrets.js";
import { buildTypePlan, type FieldMapper, fieldsAt, type TypePlan, type ValueCheck, valueCheck } from "./type-plan.js";
import { recordDigest, type UndoEntry } from "./undo.js";
import { redactUrl } from "./url.js";
import { encodeRow, encodeValue, keyOf, keyString, type Row, setField, type Value } from "./values.js";

/** Options of {@link copy}. */
export interface CopyOptions {
  /** Source instance URL. */
  from: string;
  /** Target instance URL. */
  to: string;
  /** Collections to copy, by name. Default: every collection of the source. */
  collections?: string[];
  /**
   * The profile's collections by name (see `specsOf` in `src/profile`): names in
   * `collections` are looked up here first; `export: false` ones are never copied; a
   * collection's own `conflict` wins over `conflict`.
   */
  collectionSpecs?: Record<string, CollectionSpec>;
  /**
   * Dependencies the instances do not declare (the profile's `dependsOn`): a collection → the
   * collections copied before it, by the profile's or the instance's names.
   */
  dependsOn?: Record<string, string[]>;
  /** What to do when a record's key exists at the target. Default `fail`. */
  conflict?: ConflictMode;
  /** Natural key used to match records, for collections that have these fields. Default: the primary key. */
  key?: string[];
  /** Decide and count, write nothing anywhere (not even the journal). Default `false`. */
  dryRun?: boolean;
  /**
   * Records per batch (and per checkpoint). Default 5000 on the record path, and
   * {@link DEFAULT_BULK_BATCH_SIZE} on a same-engine bulk path (which streams, so a larger
   * batch costs no memory); given explicitly, both paths use it.
   */
  batchSize?: number;
  /**
   * Collections and key ranges copied at once, when the target takes concurrent writes
   * (PostgreSQL, MySQL). Default: the number of CPU cores.
   */
  jobs?: number;
  /** Start even though the type plan says some values would be changed (rounded, zone dropped). Default `false`. */
  allowLossy?: boolean;
  /** Continue the target's unfinished run from its last checkpoint. Default `false`. */
  resume?: boolean;
  /** Start even though the target has an unfinished run (it is marked abandoned). Default `false`. */
  force?: boolean;
  /** Stop at the first refused record instead of going on. Default `false`. */
  stopOnError?: boolean;
  /**
   * Keep an undo log at the target (what each batch added, and the prior content of what it
   * replaced or merged) so `rollback` can restore the target exactly. Default `false`
   * (`importPackage` turns it on). Collections are then written on the record path.
   */
  undo?: boolean;
  /**
   * Write the records that pass their collection's `schema` and refuse (list) the others.
   * Default `false`: when any record is invalid, nothing is written (`E_VALIDATION`).
   */
  skipInvalid?: boolean;
  /** Aborting stops the run after the batches in flight; it is then resumable. */
  signal?: AbortSignal;
  /** Receives progress events. */
  onEvent?: EventSink;
  /** Called once the plan is known and before anything is written; return false to cancel. */
  confirm?: (plan: CopyPlan) => Promise<boolean>;
}

/** What a copy is about to do, shown before confirmation. */
export interface CopyPlan {
  source: string;
  target: string;
  conflict: ConflictMode;
  collections: {
    name: string;
    /** Its name at the target, when the profile renames it. */
    target?: string;
    total: number | undefined;
    key: string[];
    targetExists: boolean;
  }[];
  /** Each field's source and target type, and what the mapping can lose. */
  types: TypePlan;
  resume?: string;
}

/** The outcome of {@link copy}. */
export interface CopyResult {
  runId: string;
  status: RunStatus;
  dryRun: boolean;
  collections: Record<string, CollectionStats>;
  /** Seconds spent per collection (across resumes). */
  timings: Record<string, number>;
  total: CollectionStats;
  seconds: number;
  /** Refused records (up to 100 per collection). */
  failures: { collection: string; key: string; reason: string }[];
  /** The type plan the run followed. */
  types: TypePlan;
}

/** Default records per batch. */
export const DEFAULT_BATCH_SIZE = 5000;
/** Default records per checkpoint on a bulk path (rows stream from engine to engine). */
export const DEFAULT_BULK_BATCH_SIZE = 100_000;
const CONFLICT_MODES: readonly ConflictMode[] = ["fail", "skip", "overwrite", "merge"];
const MAX_CONFLICTS_REPORTED = 20;
/** Batches per range below which a collection is not worth splitting. */
const MIN_BATCHES_PER_RANGE = 4;

/** Default parallel jobs: the machine's cores. */
export function defaultJobs(): number {
  return Math.max(1, availableParallelism());
}

/** A field's value check, from the type plan. */
type FieldCheck = [field: string, check: ValueCheck];

interface Job {
  source: CollectionSchema;
  /** The profile's declaration of this collection, if any. */
  spec?: CollectionSpec;
  /** This collection's conflict mode (the profile's, else the run's). */
  conflict: ConflictMode;
  /** The collection as the target creates it: the source's, renamed and keyed as the profile says. */
  shape: CollectionSchema;
  /** The target's collection (its own when it exists, else `shape`). */
  target: CollectionSchema;
  key: string[];
  progress: CollectionProgress;
  /** Each range's progress as last made durable (what the run's own journal row may claim). */
  durable: RangeProgress[];
  checks: FieldCheck[];
  /**
   * With `skipInvalid` (no validation pass): the unique field values written so far in this
   * process, so a later record repeating them is refused as invalid, not matched as a conflict.
   */
  unique?: Map<string, string>;
  startedAt?: number;
  doneAtStart?: number;
  /** Ranges not finished yet in this process. */
  pending?: number;
}

/**
 * Copies collections from one instance to another.
 *
 * @throws FerryError `E_USAGE`/`E_CONFIG`/`E_CONNECTION`/`E_NOT_FOUND` before anything is written,
 * `E_LOSSY` when the type plan would change values and `allowLossy` is not set,
 * `E_CONFLICT` in `fail` mode (nothing written), `E_DIRTY` on an unfinished target,
 * `E_INTERRUPTED` when `signal` aborts (resumable with `resume: true`).
 * Records the target refuses are not thrown: they are counted in the result (status `failed`).
 *
 * @example
 * const r = await copy({ from: "sqlite:./app.db", to: "./backup/", conflict: "skip" });
 */
export async function copy(options: CopyOptions): Promise<CopyResult> {
  const conflict = options.conflict ?? "fail";
  if (!CONFLICT_MODES.includes(conflict)) {
    throw new FerryError("E_USAGE", `unknown conflict mode "${conflict}": use one of ${CONFLICT_MODES.join(", ")}`);
  }
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new FerryError("E_USAGE", `batch size ${batchSize}: use a whole number of at least 1`);
  }
  const jobs = options.jobs ?? defaultJobs();
  if (!Number.isInteger(jobs) || jobs < 1) {
    throw new FerryError("E_USAGE", `jobs ${jobs}: use a whole number of at least 1`);
  }
  const dryRun = options.dryRun ?? false;

  const source = await openConnector(options.from, { write: false, readers: dryRun ? 1 : jobs });
  let target: Connector | undefined;
  try {
    target = await openTarget(options.to, dryRun, jobs);
    if (target && source.identity === target.identity) {
      throw new FerryError(
        "E_USAGE",
        `source and target are the same instance (${source.displayUrl}): copy to another database, file or directory`,
      );
    }
    await source.check();
    if (target && !(await checkTarget(target, dryRun))) {
      await target.close().catch(() => {});
      target = undefined;
    }
    return await copyBetween(source, target, options);
  } finally {
    await source.close().catch(() => {});
    await target?.close().catch(() => {});
  }
}

/**
 * The data path between connectors the caller opened, checked and will close: how `export`
 * (into a package) and `import` (from one) run the same pipeline as `copy`. `to` names the
 * target for messages and type mapping; `command` is the run's kind in events and the journal.
 */
export async function copyBetween(
  source: Connector,
  target: Connector | undefined,
  options: CopyOptions & { command?: string },
): Promise<CopyResult> {
  const conflict = options.conflict ?? "fail";
  if (!CONFLICT_MODES.includes(conflict)) {
    throw new FerryError("E_USAGE", `unknown conflict mode "${conflict}": use one of ${CONFLICT_MODES.join(", ")}`);
  }
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const jobs = options.jobs ?? defaultJobs();
  const dryRun = options.dryRun ?? false;
  const emit: EventSink = options.onEvent ?? (() => {});
  const bulkBatchSize = options.batchSize ?? DEFAULT_BULK_BATCH_SIZE;
  return run(source, target, {
    ...options,
    command: options.command ?? "copy",
    conflict,
    batchSize,
    bulkBatchSize,
    dryRun,
    emit,
    jobs,
  });
}

/**
 * Opens the target. A dry run writes nothing, so it opens read-only, and a target that does
 * not exist yet counts as empty (`undefined`).
 */
export async function openTarget(url: string, dryRun: boolean, jobs: number): Promise<Connector | undefined> {
  if (!dryRun) return openConnector(url, { write: true, writers: jobs });
  try {
    return await openConnector(url, { write: false });
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/** Checks the target; false when a dry run's target does not exist yet. */
export async function checkTarget(target: Connector, dryRun: boolean): Promise<boolean> {
  try {
    await target.check();
    return true;
  } catch (err) {
    if (dryRun && isMissing(err)) return false;
    throw err;
  }
}

function isMissing(err: unknown): boolean {
  return isFerryError(err, "E_CONNECTION") && err.details.missing === true;
}

type RunOptions = CopyOptions & {
  command: string;
  conflict: ConflictMode;
  batchSize: number;
  bulkBatchSize: number;
  dryRun: boolean;
  emit: EventSink;
  jobs: number;
};

async function run(source: Connector, target: Connector | undefined, o: RunOptions): Promise<CopyResult> {
  const started = Date.now();
  const all = await source.discover();
  const selected = await selectCollections(source, all, o.collections, o.collectionSpecs);
  const journal = target && !o.dryRun ? new Journal(target.journal()) : undefined;

  // A target with an unfinished run is dirty: resume it, or force past it.
  let entry: RunEntry | undefined;
  if (journal) {
    const unfinished = await journal.unfinished();
    if (o.resume) {
      entry = unfinished.find((e) => e.command === o.command && e.source === source.displayUrl);
      if (entry && !entry.collections[Object.keys(entry.collections)[0] ?? ""]?.ranges) entry = undefined;
      if (!entry) o.emit({ type: "notice", message: "nothing to resume at the target: starting a new copy" });
    }
    const blocking = unfinished.filter((e) => e !== entry);
    if (blocking.length > 0 && !entry) {
      if (!o.force) {
        const b = blocking[0] as RunEntry;
        throw new FerryError(
          "E_DIRTY",
          `target ${target?.displayUrl} has an unfinished run ${b.id} (${b.command} from ${b.source}, ${b.status} since ${b.startedAt}): pass --resume to continue it, or --force to start over`,
          { details: { runId: b.id } },
        );
      }
      for (const b of blocking) await journal.save({ ...b, status: "abandoned", endedAt: new Date().toISOString() });
    }
  }
  if (entry && entry.options.revision !== source.revision) {
    throw new FerryError(
      "E_DIRTY",
      `cannot resume run ${entry.id}: ${source.displayUrl} is not the data it started on (${entry.options.revision ? `revision ${entry.options.revision.slice(0, 12)}…, now ${source.revision?.slice(0, 12) ?? "none"}…` : "it had no revision"}): resume with the same file, or run without --resume and with --force to start over`,
      { details: { runId: entry.id } },
    );
  }
  if (entry) {
    // Resume exactly the collections and options of the interrupted run.
    o = {
      ...o,
      conflict: entry.options.conflict,
      key: entry.options.key,
      batchSize: entry.options.batchSize,
      allowLossy: entry.options.allowLossy ?? o.allowLossy,
      undo: entry.options.undo === true,
    };
  }
  const names = entry ? Object.keys(entry.collections) : selected.map((s) => s.name);
  // A resumed run selects as the interrupted one did (its globs and exclusions, if any).
  const pool = entry ? await selectCollections(source, all, entry.options.selection, o.collectionSpecs) : selected;
  const ordered = dependencyOrder(
    pool.filter((s) => names.includes(s.name)),
    profileDependencies(o.dependsOn, o.collectionSpecs),
  );
  if (entry) {
    const missing = names.filter((n) => !ordered.some((s) => s.name === n));
    if (missing.length > 0) {
      throw new FerryError("E_NOT_FOUND", `cannot resume run ${entry.id}: source no longer has ${missing.join(", ")}`);
    }
  }
  const keyOption = o.key && o.key.length > 0 ? o.key : undefined;
  if (keyOption && !ordered.some((s) => keyOption.every((k) => s.fields.some((f) => f.name === k)))) {
    throw new FerryError(
      "E_USAGE",
      `--key ${keyOption.join(",")}: no selected collection has ${keyOption.length > 1 ? "these fields" : "this field"}; fields are named as at the source`,
    );
  }

  // Plan: counts, keys, types, whether each target collection exists and is empty.
  const shapes = targetShapes(ordered, o.collectionSpecs, entry?.options.targets);
  const shapeOf = (s: CollectionSchema): CollectionSchema => shapes.get(s.name) ?? s;
  const found = target ? new Map((await target.discover()).map((s) => [s.name, s])) : new Map();
  // The target's collections by the source's names.
  const targetSchemas = new Map<string, CollectionSchema>();
  for (const s of ordered) {
    const t = found.get(shapeOf(s).name);
    if (t) targetSchemas.set(s.name, t);
  }
  if (target?.resolve) {
    // A selection the source resolved (a Redis glob, a profile collection) is looked up the same
    // way at the target, so its keys there count (and skip, fail or merge) as they should.
    const selection = entry?.options.selection ?? o.collections ?? [];
    const exclusions = selection.filter((n) => n.startsWith("!"));
    for (const s of ordered) {
      if (targetSchemas.has(s.name)) continue;
      const renamed = shapeOf(s).name;
      const named =
        renamed !== s.name ? renamed : (selection.find((n) => n === s.name || n.startsWith(`${s.name}=`)) ?? s.name);
      try {
        const [t] = await target.resolve([named, ...exclusions], o.collectionSpecs);
        if (t) targetSchemas.set(s.name, t);
      } catch (err) {
        if (!isFerryError(err)) throw err; // not there (or not that shape): an empty target collection
      }
    }
  }
  const types = typePlan(source, target, ordered, targetSchemas, o.to);
  o.emit({ type: "plan", plan: types });
  refuseBadPlan(types, o.allowLossy ?? false, target?.displayUrl ?? redactUrl(o.to));

  const jobs: Job[] = [];
  for (const s of ordered) {
    const existing = targetSchemas.get(s.name);
    const spec = specOf(s.name, o.collectionSpecs);
    // Records match on --key, else the profile's natural key, else the primary key.
    const natural = spec?.naturalKey;
    const has = (fields: string[] | undefined): fields is string[] =>
      fields?.every((k) => s.fields.some((f) => f.name === k)) === true;
    if (natural !== undefined && !has(natural)) {
      throw new FerryError(
        "E_CONFIG",
        `the profile's naturalKey of ${s.name} (${(natural as string[]).join(", ")}) is not among its fields: ${s.fields.map((f) => f.name).join(", ")}`,
      );
    }
    const shape = shapeOf(s);
    const saved = entry?.options.keys?.[s.name];
    const key = saved ?? (has(keyOption) ? keyOption : has(natural) ? natural : shape.primaryKey);
    const total = await source.count(s);
    const progress: CollectionProgress = entry?.collections[s.name] ?? {
      ...emptyStats(),
      total,
      ranges: [newRange()],
      done: false,
      targetWasEmpty: !existing || !target || (await target.count(existing)) === 0,
      failures: [],
    };
    progress.total = total;
    if (key.length === 0 && !progress.targetWasEmpty) {
      // Without a key nothing can be matched: every mode would silently add duplicates.
      throw new FerryError(
        "E_CONFIG",
        `collection ${s.name} has no primary key and the target already holds records: pass --key FIELD to match them`,
        { details: { collection: s.name } },
      );
    }
    const job: Job = {
      source: s,
      ...(spec ? { spec } : {}),
      conflict: entry?.options.conflicts?.[s.name] ?? spec?.conflict ?? o.conflict,
      shape,
      target: existing ?? shape,
      key,
      progress,
      durable: progress.ranges.map((r) => structuredClone(r)),
      checks: [],
    };
    job.checks = checksFor(job, types, o.allowLossy ?? false, existing ? undefined : mapperOf(target, o.to));
    if (o.undo && !o.dryRun && undoKeyOf(job).length === 0) {
      throw new FerryError(
        "E_CONFIG",
        `collection ${s.name} has no key at the target: what an import adds to it could not be found again to roll back; give it a key (the profile's key or --key), or import with --no-rollback`,
        { details: { collection: s.name } },
      );
    }
    jobs.push(job);
  }

  const plan: CopyPlan = {
    source: source.displayUrl,
    target: target?.displayUrl ?? redactUrl(o.to),
    conflict: o.conflict,
    collections: jobs.map((j) => ({
      name: j.source.name,
      ...(j.shape.name !== j.source.name ? { target: j.shape.name } : {}),
      total: j.progress.total,
      key: j.key,
      targetExists: targetSchemas.has(j.source.name),
    })),
    types,
    ...(entry ? { resume: entry.id } : {}),
  };

  // fail mode: prove no incoming key exists before writing anything.
  if (jobs.some((j) => j.conflict === "fail") && target && !o.dryRun) {
    const conflicts: { collection: string; key: string }[] = [];
    for (const j of jobs) {
      if (j.conflict !== "fail" || j.progress.targetWasEmpty || j.progress.done) continue;
      await findConflicts(source, target, j, o, conflicts);
      if (conflicts.length >= MAX_CONFLICTS_REPORTED) break;
    }
    if (conflicts.length > 0) {
      const shown = conflicts
        .slice(0, 5)
        .map((c) => `${c.collection} ${c.key}`)
        .join("; ");
      throw new FerryError(
        "E_CONFLICT",
        `${conflicts.length >= MAX_CONFLICTS_REPORTED ? `${MAX_CONFLICTS_REPORTED}+` : conflicts.length} record(s) already exist at the target (${shown}), nothing was written: pass --conflict skip, overwrite or merge`,
        { details: { conflicts } },
      );
    }
  }

  // Validation: on a new run, every record of a collection with a schema (or natural key) is
  // read and checked before anything is written (unless invalid ones are to be skipped).
  if (!entry && !o.skipInvalid && jobs.some((j) => j.spec?.schema || uniqueSets(j).length > 0 || j.spec?.transform)) {
    await validateAll(source, jobs, o);
  }

  if (o.confirm && !o.dryRun && !(await o.confirm(plan))) {
    throw new FerryError("E_USAGE", "cancelled: nothing was written");
  }

  const runId = entry?.id ?? newRunId();
  const now = new Date().toISOString();
  const current: RunEntry = entry
    ? { ...withoutEnd(entry), status: "running" }
    : {
        id: runId,
        command: o.command,
        source: source.displayUrl,
        target: target?.displayUrl ?? redactUrl(o.to),
        by: currentUser(),
        startedAt: now,
        status: "running",
        options: {
          conflict: o.conflict,
          ...(keyOption ? { key: keyOption } : {}),
          collections: names,
          ...(o.collections && o.collections.length > 0 && source.resolve ? { selection: o.collections } : {}),
          // Each collection's mode and match key, so a resume does not depend on the profile then.
          conflicts: Object.fromEntries(jobs.map((j) => [j.source.name, j.conflict])),
          keys: Object.fromEntries(jobs.map((j) => [j.source.name, j.key])),
          // Always saved: a resume writes where the run began, whatever the profile says by then.
          targets: Object.fromEntries(jobs.map((j) => [j.source.name, j.shape.name])),
          ...(source.revision ? { revision: source.revision } : {}),
          ...(o.undo ? { undo: true } : {}),
          batchSize: o.batchSize,
          jobs: o.jobs,
          ...(o.allowLossy ? { allowLossy: true } : {}),
        },
        collections: {},
      };
  for (const j of jobs) current.collections[j.source.name] = j.progress;
  // A resumed run's undo log goes on after its last row.
  let undoSeq = 0;
  if (o.undo && entry && target) {
    // Rows come highest seq first: the first is the last one saved.
    for await (const row of target.journal().undo(entry.id)) {
      undoSeq = row.seq + 1;
      break;
    }
  }
  const ctx: RunContext = { source, target, entry: current, jobs, o, undoSeq };
  if (journal) await journal.save(durableEntry(ctx));

  o.emit({
    type: "run-start",
    runId,
    command: o.command,
    source: current.source,
    target: current.target,
    dryRun: o.dryRun,
    resumed: entry !== undefined,
    collections: jobs.map((j) => ({ name: j.source.name, total: j.progress.total })),
  });

  let error: FerryError | undefined;
  try {
    await schedule(ctx);
  } catch (err) {
    error = isFerryError(err) ? err : new FerryError("E_INTERNAL", `copy failed: ${errorMessage(err)}`, { cause: err });
  }

  const failed = jobs.some((j) => j.progress.failed > 0);
  const allDone = jobs.every((j) => j.progress.done);
  current.status = error
    ? error.code === "E_INTERRUPTED"
      ? "interrupted"
      : "failed"
    : failed || !allDone
      ? "failed"
      : "done";
  current.endedAt = new Date().toISOString();
  if (error) current.error = { code: error.code, message: error.message };
  if (journal) await journal.save(durableEntry(ctx)).catch(() => {});

  const collections = Object.fromEntries(jobs.map((j) => [j.source.name, statsOf(j.progress)]));
  const timings = Object.fromEntries(jobs.map((j) => [j.source.name, j.progress.seconds ?? 0]));
  const total = Object.values(collections).reduce(addStats, emptyStats());
  const seconds = (Date.now() - started) / 1000;
  o.emit({
    type: "run-end",
    runId,
    status: current.status,
    dryRun: o.dryRun,
    collections,
    timings,
    unfinished: jobs.filter((j) => !j.progress.done).map((j) => j.source.name),
    total,
    seconds,
    ...(current.error ? { error: current.error } : {}),
  });
  if (error) {
    error.details.runId = runId;
    throw error;
  }
  return {
    runId,
    status: current.status,
    dryRun: o.dryRun,
    collections,
    timings,
    total,
    seconds,
    failures: jobs.flatMap((j) => j.progress.failures.map((f) => ({ collection: j.source.name, ...f }))),
    types,
  };
}

function newRange(after?: Bookmark, upTo?: Bookmark): RangeProgress {
  return {
    ...emptyStats(),
    ...(after ? { after } : {}),
    ...(upTo ? { upTo } : {}),
    done: false,
    seq: 0,
    failures: [],
  };
}

/** The type plan of the selected collections against the target's existing or would-be fields. */
export function typePlan(
  source: Connector,
  target: Connector | undefined,
  ordered: CollectionSchema[],
  targetSchemas: Map<string, CollectionSchema>,
  targetUrl: string,
): TypePlan {
  const mapField = mapperOf(target, targetUrl);
  // No target (validating a package alone): the plan is the source's own types.
  const engine = target?.engine ?? registered(targetUrl)?.engine ?? "unknown";
  return buildTypePlan(source.engine, engine, ordered, targetSchemas, mapField);
}

/** Refuses a plan with fields the target lacks, or that changes values without `allowLossy`. */
function refuseBadPlan(plan: TypePlan, allowLossy: boolean, where: string): void {
  const missing = fieldsAt(plan, "missing");
  if (missing.length > 0) {
    throw new FerryError(
      "E_CONFIG",
      `the target ${where} lacks field(s) ${listed(missing)}: add them to the target's collections, or copy into a new database`,
      { details: { missing } },
    );
  }
  const lossy = fieldsAt(plan, "lossy");
  if (lossy.length > 0 && !allowLossy) {
    const why = plan.collections.flatMap((c) =>
      c.fields
        .filter((f) => f.level === "lossy")
        .map((f) => `${c.collection}.${f.field} (${f.from} → ${f.to}: ${f.notes.join("; ")})`),
    );
    throw new FerryError(
      "E_LOSSY",
      `the copy would change values of ${listed(why)}; nothing was written: pass --allow-lossy to accept, or create the target's tables with wider types first (\`ferry plan\` shows every field)`,
      { details: { lossy } },
    );
  }
}

function listed(items: string[]): string {
  return items.length <= 6 ? items.join(", ") : `${items.slice(0, 6).join(", ")} and ${items.length - 6} more`;
}

function mapperOf(target: Connector | undefined, url: string): FieldMapper | undefined {
  if (target?.mapField) return target.mapField.bind(target);
  // A target opened without the registry (a package being written) has no factory.
  const factory = registered(url);
  return factory?.mapField?.bind(factory);
}

function registered(url: string): ReturnType<typeof factoryFor> | undefined {
  try {
    return factoryFor(url);
  } catch {
    return undefined;
  }
}

/** Value checks for the fields whose mapping is not exact. */
function checksFor(j: Job, plan: TypePlan, allowLossy: boolean, mapField: FieldMapper | undefined): FieldCheck[] {
  const cp = plan.collections.find((c) => c.collection === j.source.name);
  if (!cp) return [];
  const out: FieldCheck[] = [];
  for (const m of cp.fields) {
    const src = j.source.fields.find((f) => f.name === m.field);
    if (!src) continue;
    const dst = mapField ? mapField(src, j.source) : (j.target.fields.find((f) => f.name === m.field) ?? src);
    const check = valueCheck(m, src, dst, allowLossy);
    if (check) out.push([m.field, check]);
  }
  return out;
}

interface RunContext {
  source: Connector;
  target: Connector | undefined;
  entry: RunEntry;
  jobs: Job[];
  o: RunOptions;
  /** The next undo row's `seq` (with `o.undo`). */
  undoSeq: number;
  /**
   * Set when one worker failed (`error`) or a record was refused under `stopOnError`
   * (`stop-on-error`): the others finish the batch in flight and stop.
   */
  halt?: "error" | "stop-on-error";
}

/** The entry as the journal may record it: every range as last made durable. */
function durableEntry(ctx: RunContext): RunEntry {
  const out: RunEntry = { ...ctx.entry, collections: {} };
  for (const j of ctx.jobs) {
    const c: CollectionProgress = { ...j.progress, ranges: j.durable.map((r) => structuredClone(r)) };
    sumRanges(c);
    out.collections[j.source.name] = c;
  }
  return out;
}

/**
 * Runs every collection's ranges on up to `jobs` workers. A collection starts once the
 * collections before it that it references are done (parents first, so a target that
 * enforces foreign keys never sees an orphan; cycles keep the source's order); its ranges
 * are split when it starts.
 */
async function schedule(ctx: RunContext): Promise<void> {
  const { o, target } = ctx;
  const parallel = target && !o.dryRun && target.concurrentWrites === true ? o.jobs : 1;
  const position = new Map(ctx.jobs.map((j, i) => [j.source.name, i]));
  const dependsOn = profileDependencies(o.dependsOn, o.collectionSpecs);
  const parentJobs = (j: Job): Job[] => {
    const mine = position.get(j.source.name) ?? 0;
    return parentsOf(j.source, dependsOn)
      .map((name) => position.get(name))
      .filter((i): i is number => i !== undefined && i < mine)
      .map((i) => ctx.jobs[i] as Job);
  };
  const started = new Set<Job>();
  const queue: { job: Job; range: number }[] = [];
  let inFlight = 0;
  let firstError: unknown;
  let waiters: (() => void)[] = [];
  const notifyAll = (): void => {
    const w = waiters;
    waiters = [];
    for (const resolve of w) resolve();
  };

  // Starts every collection whose parents are done: prepare, split, enqueue its ranges.
  const startReady = async (): Promise<void> => {
    for (const j of ctx.jobs) {
      if (started.has(j) || ctx.halt) continue;
      if (!parentJobs(j).every((p) => p.progress.done)) continue;
      started.add(j);
      if (j.progress.done) continue;
      await startCollection(ctx, j, parallel);
      j.progress.ranges.forEach((r, range) => {
        if (!r.done) queue.push({ job: j, range });
      });
      if (j.pending === 0) await endCollection(ctx, j);
    }
  };

  const fail = (err: unknown): void => {
    firstError ??= err;
    ctx.halt ??= "error";
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (ctx.halt) return;
      const task = queue.shift();
      if (!task) {
        // Nothing queued and nothing running that could queue more: the run is over.
        if (inFlight === 0) return;
        await new Promise<void>((resolve) => waiters.push(resolve));
        continue;
      }
      inFlight++;
      try {
        const range = task.job.progress.ranges[task.range] as RangeProgress;
        await copyRange(ctx, task.job, task.range);
        if (range.done) {
          task.job.pending = (task.job.pending ?? 1) - 1;
          if (task.job.pending === 0) {
            await endCollection(ctx, task.job);
            await startReady();
          }
        }
      } catch (err) {
        fail(err);
      } finally {
        inFlight--;
        notifyAll();
      }
    }
  };

  inFlight++;
  try {
    await startReady();
  } catch (err) {
    fail(err);
  } finally {
    inFlight--;
  }
  await Promise.all(Array.from({ length: parallel }, () => worker()));
  if (firstError !== undefined) throw firstError;
  throwIfAborted(o.signal);
}

/** Prepares the target collection and, on a new run, splits the collection into key ranges. */
async function startCollection(ctx: RunContext, j: Job, parallel: number): Promise<void> {
  const { source, target, o } = ctx;
  j.startedAt = Date.now();
  j.doneAtStart = processed(j.progress);
  if (target && !o.dryRun) {
    const prepared = await target.prepare(j.shape);
    j.target = prepared.schema;
    if (prepared.created) j.progress.targetCreated = true;
  }
  const fresh = j.progress.ranges.length === 1 && j.progress.ranges[0]?.seq === 0 && !j.progress.ranges[0].bookmark;
  const total = j.progress.total ?? 0;
  const parts = Math.min(parallel, Math.floor(total / (o.batchSize * MIN_BATCHES_PER_RANGE)));
  if (fresh && parts > 1 && source.split && j.key.length > 0) {
    const bounds = await source.split(j.source, parts);
    if (bounds.length > 0) {
      j.progress.ranges = [...bounds, undefined].map((upTo, i) => newRange(bounds[i - 1], upTo));
      j.durable = j.progress.ranges.map((r) => structuredClone(r));
      if (target && !o.dryRun) await new Journal(target.journal()).save(durableEntry(ctx));
    }
  }
  j.pending = j.progress.ranges.filter((r) => !r.done).length;
}

/** Builds what is built after the data, and records the collection as done. */
async function endCollection(ctx: RunContext, j: Job): Promise<void> {
  const { target, o, entry } = ctx;
  // A collection this run created gets the source's indexes; an existing one is left as it was.
  if (target && !o.dryRun) await target.finish(j.progress.targetCreated ? j.shape : j.target);
  sumRanges(j.progress);
  j.progress.done = true;
  j.progress.seconds = (j.progress.seconds ?? 0) + (Date.now() - (j.startedAt ?? Date.now())) / 1000;
  if (target && !o.dryRun) await new Journal(target.journal()).save(durableEntry(ctx));
  o.emit({
    type: "collection-end",
    runId: entry.id,
    collection: j.source.name,
    stats: statsOf(j.progress),
    seconds: j.progress.seconds,
  });
}

/**
 * The collections `names` selects (all when none), by the source's own rules when it has them.
 * With the profile's `specs`, a name is looked up there first (Redis globs for a source that
 * resolves, else its table), and collections marked `export: false` are never selected.
 *
 * @throws FerryError `E_CONFIG` when a never-exported collection is named, `E_NOT_FOUND` for a
 * name the source does not have.
 */
export async function selectCollections(
  source: Connector,
  all: CollectionSchema[],
  names: string[] | undefined,
  specs?: Record<string, CollectionSpec>,
): Promise<CollectionSchema[]> {
  const kept = Object.entries(specs ?? {}).filter(([, s]) => s.export === false);
  for (const n of names ?? []) {
    if (specs?.[n]?.export === false) {
      throw new FerryError(
        "E_CONFIG",
        `collection ${n} is marked export: false in the profile: it never leaves its instance (remove it from --collections)`,
      );
    }
  }
  if (source.resolve) {
    if (names && names.length > 0) return source.resolve(names, specs);
    // Everything: the profile's collections, and the source's own for the keys none of them
    // holds (named `x:*` where the profile has an `x` too); never-exported keys stay out.
    const declared = Object.entries(specs ?? {}).filter(([, s]) => s.match !== undefined);
    if (declared.length === 0) return all;
    const ours = declared.filter(([, s]) => s.export !== false).map(([n]) => n);
    // A prefix named like a profile collection with globs is renamed `x:*` beside it.
    const rest = all.map((s) => (specs?.[s.name]?.match !== undefined ? `${s.name}:*` : s.name));
    const resolved = await source.resolve([...ours, ...rest], specs, { rest });
    const out: CollectionSchema[] = [];
    for (const c of resolved) if (!rest.includes(c.name) || (await source.count(c)) !== 0) out.push(c);
    return out;
  }
  const hidden = new Set(kept.map(([n, s]) => s.table ?? n));
  if (!names || names.length === 0) return all.filter((s) => !hidden.has(s.name));
  const tables = names.map((n) => specs?.[n]?.table ?? n);
  const never = tables.find((t) => hidden.has(t));
  if (never !== undefined) {
    throw new FerryError(
      "E_CONFIG",
      `collection ${never} is marked export: false in the profile: it never leaves its instance (remove it from --collections)`,
    );
  }
  const where = source.displayUrl;
  const missing = tables.filter((n) => !all.some((s) => s.name === n));
  if (missing.length > 0) {
    const known = all.map((s) => s.name).join(", ") || "none";
    throw new FerryError(
      "E_NOT_FOUND",
      `no collection ${missing.join(", ")} at ${where}: collections there are ${known}`,
      { details: { missing } },
    );
  }
  return all.filter((s) => tables.includes(s.name));
}

/**
 * The profile's `dependsOn` as {@link dependencyOrder} takes it: for a selected collection, the
 * names (as selected: a profile collection's, or the table its spec names) of those it comes after.
 */
export function profileDependencies(
  dependsOn: Record<string, string[]> | undefined,
  specs: Record<string, CollectionSpec> | undefined,
): (s: CollectionSchema) => string[] {
  if (!dependsOn || Object.keys(dependsOn).length === 0) return () => [];
  const profileName = (name: string): string =>
    specs?.[name] ? name : (Object.entries(specs ?? {}).find(([, sp]) => sp.table === name)?.[0] ?? name);
  const byProfileName = new Map<string, string[]>();
  for (const [k, v] of Object.entries(dependsOn)) byProfileName.set(profileName(k), v);
  return (s) =>
    (byProfileName.get(profileName(s.name)) ?? []).flatMap((d) => {
      const table = specs?.[d]?.table;
      return table !== undefined && table !== d ? [d, table] : [d];
    });
}

/**
 * Each selected collection as the target is to create it, by the source's name: renamed as
 * the profile's `rename` says (or `saved`, a resumed run's names), with the profile's `key`
 * as its primary key where the source declares none.
 *
 * @throws FerryError `E_CONFIG` when a profile key is not among the collection's fields or
 * contradicts the source's primary key, or two collections would get one target name.
 */
export function targetShapes(
  selected: readonly CollectionSchema[],
  specs: Record<string, CollectionSpec> | undefined,
  saved?: Record<string, string>,
): Map<string, CollectionSchema> {
  // Any collection's target name, selected or not (a foreign key may name an unselected parent).
  const nameOf = (n: string): string => saved?.[n] ?? specOf(n, specs)?.rename ?? n;
  const out = new Map<string, CollectionSchema>();
  const taken = new Map<string, string>();
  for (const s of selected) {
    const spec = specOf(s.name, specs);
    const name = nameOf(s.name);
    const other = taken.get(name);
    if (other !== undefined) {
      throw new FerryError(
        "E_CONFIG",
        `${other} and ${s.name} would both be written to ${name} at the target: change the profile's rename`,
      );
    }
    taken.set(name, s.name);
    let primaryKey = s.primaryKey;
    const key = spec?.key;
    if (key) {
      const lacking = key.filter((k) => !s.fields.some((f) => f.name === k));
      if (lacking.length > 0) {
        throw new FerryError(
          "E_CONFIG",
          `the profile's key of ${s.name} (${key.join(", ")}) is not among its fields: ${s.fields.map((f) => f.name).join(", ")}`,
        );
      }
      if (s.primaryKey.length === 0) primaryKey = key;
      else if (s.primaryKey.join("\0") !== key.join("\0")) {
        throw new FerryError(
          "E_CONFIG",
          `the profile's key of ${s.name} is ${key.join(", ")} but its primary key at the source is ${s.primaryKey.join(", ")}: fix the profile (naturalKey matches records on other fields)`,
        );
      }
    }
    const foreignKeys = s.foreignKeys?.map((fk) => {
      const parent = nameOf(fk.references.collection);
      return parent === fk.references.collection ? fk : { ...fk, references: { ...fk.references, collection: parent } };
    });
    const changed =
      name !== s.name ||
      primaryKey !== s.primaryKey ||
      foreignKeys?.some((fk, i) => fk !== s.foreignKeys?.[i]) === true;
    if (!changed) continue;
    // The source's own DDL names the old table and keys: the target builds from the fields.
    const { native: _native, ...rest } = s;
    out.set(s.name, { ...rest, name, primaryKey, ...(foreignKeys ? { foreignKeys } : {}) });
  }
  return out;
}

/** The profile's spec of a selected collection: by its name, or by the table it names. */
export function specOf(name: string, specs: Record<string, CollectionSpec> | undefined): CollectionSpec | undefined {
  if (!specs) return undefined;
  return specs[name] ?? Object.values(specs).find((s) => s.table === name);
}

function withoutEnd(e: RunEntry): RunEntry {
  const { endedAt: _ended, error: _error, ...rest } = e;
  return rest;
}

async function findConflicts(
  source: Connector,
  target: Connector,
  j: Job,
  o: RunOptions,
  out: { collection: string; key: string }[],
): Promise<void> {
  for (const r of j.progress.ranges) {
    if (r.done) continue;
    // A transform may change or drop records: their keys are the transformed ones.
    const fields = j.spec?.transform ? {} : { fields: j.key };
    for await (const batch of source.read(j.source, { batchSize: o.batchSize, ...fields, ...boundsOf(r) })) {
      throwIfAborted(o.signal);
      const records = j.spec?.transform ? (await prepareRecords(j, batch.records)).records : batch.records;
      const keys = records.map((rec) => keyOf(rec, j.key));
      const found = await target.lookup(j.target, j.key, keys);
      for (const k of keys) {
        if (found.has(keyString(k))) {
          out.push({ collection: j.source.name, key: describeKey(j.key, k) });
          if (out.length >= MAX_CONFLICTS_REPORTED) return;
        }
      }
    }
  }
}

/** Where a range's next read starts and ends. */
function boundsOf(r: RangeProgress): { after?: Bookmark; upTo?: Bookmark } {
  const after = r.bookmark ?? r.after;
  return { ...(after ? { after } : {}), ...(r.upTo ? { upTo: r.upTo } : {}) };
}

/**
 * Copies one key range: on the bulk path where it applies, and on the record path where the
 * bulk path refused a batch (the record path redoes that many records, naming each refused
 * one, then the bulk path goes on) or does not apply.
 */
async function copyRange(ctx: RunContext, j: Job, index: number): Promise<void> {
  const { target, entry, o } = ctx;
  const name = j.source.name;
  const range = j.progress.ranges[index] as RangeProgress;
  const part: RangePart = {
    range,
    id: rangeRowId(entry.id, name, index),
    progress: () => emitProgress(o.emit, entry.id, name, j),
    // Counts, bookmark and failures of the range as the journal row will hold them.
    checkpointEntry: () => ({ partOf: entry.id, collection: name, range: index, progress: range }),
    commit: () => {
      j.durable[index] = structuredClone(range);
    },
  };
  if (
    target &&
    !o.dryRun &&
    j.progress.targetWasEmpty &&
    sameKeyAsPrimary(j) &&
    bulkAllowed(target, j, o.undo === true)
  ) {
    for (;;) {
      const bulk = await bulkCopy(ctx, j, part);
      if (bulk === "stopped") return;
      if (bulk !== "refused") break;
      // The refused batch, on the record path; then the bulk path again.
      const redone = await recordCopy(ctx, j, part, o.bulkBatchSize);
      if (redone === "stopped") return;
      if (redone === "done") break;
    }
  }
  if ((await recordCopy(ctx, j, part)) !== "done") return;
  range.done = true;
  part.commit();
}

/** Most invalid records listed by a refused validation (the count is exact). */
const MAX_INVALID_LISTED = 1000;

/**
 * A batch as the profile wants it written: each record through the collection's `transform`
 * (null drops it), then its `schema`. Invalid records (and ones the transform threw on) are
 * returned apart, with the field path and the rule's message.
 */
async function prepareRecords(
  j: Job,
  records: Row[],
): Promise<{ records: Row[]; dropped: number; invalid: { key: string; reason: string }[] }> {
  const spec = j.spec;
  if (!spec?.schema && !spec?.transform) return { records, dropped: 0, invalid: [] };
  const out: Row[] = [];
  const invalid: { key: string; reason: string }[] = [];
  let dropped = 0;
  for (const r of records) {
    const key = redact(describeKey(j.key, keyOf(r, j.key)), j, r);
    let rec: Row | null = r;
    if (spec.transform) {
      try {
        rec = await spec.transform(r, { collection: j.source.name });
      } catch (err) {
        invalid.push({
          key,
          reason: redact(`the profile's transform threw: ${err instanceof Error ? err.message : String(err)}`, j, r),
        });
        continue;
      }
      if (rec === null) {
        dropped++;
        continue;
      }
    }
    const problems = spec.schema ? await schemaProblems(spec.schema, rec) : [];
    if (problems.length > 0) invalid.push({ key, reason: redact(problems.join("; "), j, r, rec) });
    else out.push(rec);
  }
  return { records: out, dropped, invalid };
}

/**
 * `text` with the values of the collection's secret fields (in any of `records`) replaced by
 * `***`: what a validator, a transform or the target says about a record may quote them.
 */
function redact(text: string, j: Job, ...records: (Row | null | undefined)[]): string {
  const secret = j.spec?.secret;
  if (!secret || secret.length === 0) return text;
  let out = text;
  for (const r of records) {
    if (!r) continue;
    for (const v of secretValues(r, secret)) {
      const shown = typeof v === "string" ? v : v instanceof Uint8Array ? "" : JSON.stringify(encodeValue(v as Value));
      if (shown.length >= 3) out = out.split(shown).join("***");
    }
  }
  return out;
}

/** `path: message` for each issue a Standard Schema validator finds in `record`. */
async function schemaProblems(schema: NonNullable<CollectionSpec["schema"]>, record: Row): Promise<string[]> {
  const result = await schema["~standard"].validate(record);
  if (!result.issues) return [];
  return result.issues.map((i) => {
    const path = (i.path ?? [])
      .map((p) => (typeof p === "object" && p !== null && "key" in p ? p.key : p))
      .map((p) => (typeof p === "number" ? `[${p}]` : String(p)))
      .join(".")
      .replace(/\.\[/g, "[");
    return `${path === "" ? "(record)" : path}: ${i.message}`;
  });
}

/**
 * Reads every record of the collections the profile validates, through their transforms, and
 * checks each against its schema and the natural key's uniqueness.
 *
 * @throws FerryError `E_VALIDATION` naming each invalid record (collection, key, field path,
 * message) when any is: nothing has been written.
 */
async function validateAll(source: Connector, jobs: Job[], o: RunOptions): Promise<void> {
  const found: { collection: string; key: string; reason: string }[] = [];
  let count = 0;
  for (const j of jobs) {
    if (!j.spec?.schema && uniqueSets(j).length === 0 && !j.spec?.transform) continue;
    const seen = new Map<string, string>();
    for await (const batch of source.read(j.source, { batchSize: o.batchSize })) {
      throwIfAborted(o.signal);
      const prepared = await prepareRecords(j, batch.records);
      const problems = prepared.invalid.map((p) => ({ collection: j.source.name, ...p }));
      for (const r of prepared.records) {
        const reason = duplicateOf(j, r, seen);
        if (reason) problems.push({ collection: j.source.name, key: describeKey(j.key, keyOf(r, j.key)), reason });
      }
      count += problems.length;
      for (const p of problems) if (found.length < MAX_INVALID_LISTED) found.push(p);
    }
  }
  if (count === 0) return;
  const shown = found
    .slice(0, 10)
    .map((p) => `  ${p.collection} ${p.key}: ${p.reason}`)
    .join("\n");
  throw new FerryError(
    "E_VALIDATION",
    `${count} record${count === 1 ? " is" : "s are"} invalid, nothing was written:\n${shown}${count > 10 ? `\n  … and ${count - 10} more` : ""}\n(fix them at the source, or pass --skip-invalid to write the valid ones)`,
    { details: { invalid: found, count } },
  );
}

/**
 * The field sets whose values must be unique in the incoming data: the profile's natural key,
 * and its `key` where the source does not enforce one (no primary key there).
 */
function uniqueSets(j: Job): string[][] {
  const out: string[][] = [];
  if (j.spec?.naturalKey) out.push(j.spec.naturalKey);
  if (j.spec?.key && j.source.primaryKey.length === 0) out.push(j.spec.key);
  return out;
}

/**
 * Why `r` is a duplicate of a record already in `seen` (for one of the job's unique field
 * sets), or undefined (then `r` is recorded there as the first with its values).
 */
function duplicateOf(j: Job, r: Row, seen: Map<string, string>): string | undefined {
  const key = describeKey(j.key, keyOf(r, j.key));
  const sets = uniqueSets(j).map((fields) => {
    const values = fields.map((f) => r[f] ?? null);
    return { fields, values, id: JSON.stringify([fields, values.map((v) => encodeValue(v))]) };
  });
  // Checked against every set first: a refused record's values are not remembered.
  if (sets.every((x) => !seen.has(x.id))) {
    for (const x of sets) seen.set(x.id, key);
    return undefined;
  }
  for (const { fields, values, id } of sets) {
    const first = seen.get(id);
    if (first === undefined) continue;
    const what = fields === j.spec?.naturalKey ? "a natural key" : "the profile's key";
    return redact(
      first === key
        ? `${describeKey(fields, values)} appears more than once in the incoming data (${what} is unique)`
        : `${describeKey(fields, values)} is also the ${what === "a natural key" ? "natural key" : "key"} of ${first} (${what} is unique)`,
      j,
      r,
    );
  }
  return undefined;
}

/** One range of a job, with how its progress is reported and made durable. */
interface RangePart {
  range: RangeProgress;
  /** Its journal row. */
  id: string;
  progress(): void;
  checkpointEntry(): RangeCheckpoint;
  /** Records the range's progress as durable (after a commit at the target). */
  commit(): void;
}

/**
 * The bulk path applies with the type plan's value checks when the target enforces every
 * rule they apply (it refuses the batch; the record path then names the record).
 */
function bulkAllowed(target: Connector, j: Job, undo: boolean): boolean {
  // Records a profile transforms or validates go one by one; so do renamed or re-keyed
  // collections (a bulk path writes the source's collection as it is).
  // An undo log is built from the records, unless the target reports what a bulk batch added.
  if (j.spec?.schema || j.spec?.transform || j.shape !== j.source) return false;
  // The bulk path reports the source's key of each row: the undo log's key is the target's.
  const sameKey = j.target.primaryKey.length > 0 && sameFields(j.target.primaryKey, j.source.primaryKey);
  if (undo && !(hasBulkTransfer(target) && target.versionedUndo === true && target.rowVersions && sameKey))
    return false;
  if (j.checks.length === 0) return true;
  const enforced = hasBulkTransfer(target) ? target.enforces : undefined;
  return enforced !== undefined && j.checks.every(([, c]) => c.rules.every((r) => enforced.has(r)));
}

/**
 * The record path: reads the range from its bookmark, decides each record's op by the
 * conflict mode, writes batch by batch with a checkpoint each. With `limit`, stops after the
 * batch that reaches that many records (`more`: the range goes on). `stopped`: the run is
 * halting (stop-on-error).
 */
async function recordCopy(
  ctx: RunContext,
  j: Job,
  part: RangePart,
  limit?: number,
): Promise<"done" | "more" | "stopped"> {
  const { source, target, entry, o } = ctx;
  const { range } = part;
  const name = j.source.name;
  const partId = part.id;
  let seen = 0;
  // Generated fields are computed by the target, never written. Every other field is passed
  // on, even one the target does not know: the target refuses it loudly (never dropped silently).
  const generated = new Set(j.target.fields.filter((f) => f.generated).map((f) => f.name));
  for await (const batch of source.read(j.source, { batchSize: o.batchSize, ...boundsOf(range) })) {
    if (throwIfStopped(ctx)) return "stopped";
    const prepared = await prepareRecords(j, batch.records);
    if (o.skipInvalid && uniqueSets(j).length > 0) {
      j.unique ??= new Map();
      const unique = j.unique;
      prepared.records = prepared.records.filter((r) => {
        const reason = duplicateOf(j, r, unique);
        if (reason) prepared.invalid.push({ key: redact(describeKey(j.key, keyOf(r, j.key)), j, r), reason });
        return reason === undefined;
      });
    }
    const decided = await decide(target, j, prepared.records, j.conflict, generated, o.dryRun);
    decided.refused.push(...prepared.invalid);
    const delta = emptyStats();
    delta.skipped = decided.skipped + prepared.dropped;
    if (o.dryRun) delta.identical = decided.identical;
    const failures: { key: string; reason: string }[] = [];
    // Counts, bookmark and refused records of this batch, from the outcome of its writes.
    const settle = (result: WriteResult): void => {
      for (const op of decided.ops) countOp(delta, op.op);
      for (const f of result.failures) {
        const d = decided.ops[f.index];
        if (!d) continue;
        uncountOp(delta, d.op);
        delta.failed++;
        failures.push({
          key: redact(describeKey(j.key, keyOf(d.record, j.key)), j, d.record),
          reason: redact(f.reason, j, d.record),
        });
      }
      for (const r of decided.refused) {
        delta.failed++;
        failures.push(r);
      }
      Object.assign(range, addStats(statsOf(range), delta));
      range.bookmark = batch.bookmark;
      range.seq++;
      for (const f of failures) if (range.failures.length < MAX_FAILURES_KEPT) range.failures.push(f);
      sumRanges(j.progress);
    };
    if (o.dryRun || !target) {
      settle({ failures: [] });
    } else {
      // The connector builds the checkpoint after applying the ops, in the same transaction,
      // so the journal counts exactly what was written and keeps what was refused.
      const snapshot = structuredClone(range);
      let settled = false;
      const settleOnce = (result: WriteResult): void => {
        if (!settled) settle(result);
        settled = true;
      };
      const checkpoint: Checkpoint = {
        runId: entry.id,
        id: partId,
        entry: (result) => {
          settleOnce(result);
          return part.checkpointEntry();
        },
        ...(o.undo
          ? {
              undo: (result: WriteResult) => {
                const e = undoEntry(target, j, decided, result);
                return e ? { runId: entry.id, seq: ctx.undoSeq++, entry: e } : undefined;
              },
            }
          : {}),
      };
      try {
        settleOnce(await target.write(j.target, decided.ops, checkpoint));
        part.commit();
      } catch (err) {
        // Nothing of the batch is durable: neither may the in-memory progress say so.
        Object.assign(range, snapshot);
        sumRanges(j.progress);
        throw err;
      }
    }
    for (const f of failures) {
      o.emit({
        type: "record-error",
        runId: entry.id,
        collection: name,
        key: f.key,
        code: "E_WRITE",
        reason: f.reason,
      });
    }
    part.progress();
    if (o.stopOnError && failures.length > 0) {
      ctx.halt ??= "stop-on-error";
      return "stopped";
    }
    seen += batch.records.length;
    if (limit !== undefined && seen >= limit) return "more";
  }
  return "done";
}

/**
 * The bulk path, batch by batch with a checkpoint each: `done` when the range is exhausted,
 * `refused` when the engine refused a record of a batch (nothing of that batch was written:
 * the record path redoes it from the last checkpoint and names each refused record),
 * `unavailable` when the target has no bulk path from this source, `stopped` when the run halts.
 */
async function bulkCopy(
  ctx: RunContext,
  j: Job,
  part: RangePart,
): Promise<"done" | "refused" | "unavailable" | "stopped"> {
  const { source, target, entry, o } = ctx;
  const { range } = part;
  if (!target || !hasBulkTransfer(target) || !target.canBulkCopyFrom(source, j.source, { undo: o.undo === true }))
    return "unavailable";
  for (;;) {
    if (throwIfStopped(ctx)) return "stopped";
    const before = structuredClone(range);
    try {
      const r = await target.bulkCopyFrom(
        source,
        j.source,
        { ...boundsOf(range), limit: o.bulkBatchSize, ...(o.undo ? { undo: true } : {}) },
        (count, bookmark, added) => {
          range.copied = before.copied + count;
          range.bookmark = bookmark;
          range.seq = before.seq + 1;
          const checkpoint: Checkpoint = { runId: entry.id, id: part.id, entry: part.checkpointEntry };
          if (!o.undo) return checkpoint;
          if (!added)
            throw new FerryError("E_INTERNAL", `${target.displayUrl} did not report what its bulk batch added`);
          const undo: UndoEntry = {
            collection: j.target.name,
            schema: j.target,
            key: j.target.primaryKey,
            fields: [],
            added: [],
            prior: [],
            bulk: { version: added.version, keys: added.keys },
          };
          return { ...checkpoint, undo: () => ({ runId: entry.id, seq: ctx.undoSeq++, entry: undo }) };
        },
      );
      if (r.count === 0) return "done";
      range.copied = before.copied + r.count;
      range.bookmark = r.bookmark;
      range.seq = before.seq + 1;
      part.commit();
      sumRanges(j.progress);
    } catch (err) {
      Object.assign(range, before);
      if (isFerryError(err, "E_WRITE")) return "refused";
      throw err;
    }
    part.progress();
  }
}

/** The ops a copy decides (it never deletes: rollback does). */
type RecordOp = Exclude<WriteOp, { op: "delete" }>;
type OpKind = RecordOp["op"];

interface Decided {
  ops: RecordOp[];
  /** For each op, the record it replaces or merges into as it was at the target (undefined for an insert). */
  priors: (Row | undefined)[];
  /** Records whose key exists at the target that are identical there (counted in dry runs). */
  identical: number;
  skipped: number;
  refused: { key: string; reason: string }[];
}

/** The conflict policy: turns incoming records into explicit write operations. */
async function decide(
  target: Connector | undefined,
  j: Job,
  records: Row[],
  mode: ConflictMode,
  generated: Set<string>,
  countIdentical = false,
): Promise<Decided> {
  const out: Decided = { ops: [], priors: [], skipped: 0, refused: [], identical: 0 };
  // Fields the target cannot hold as they are get checked (and converted) per the type plan.
  const accepted: Row[] = [];
  if (j.checks.length === 0 && generated.size === 0) accepted.push(...records);
  else {
    for (const r of records) {
      const c = clean(r, generated, j.checks);
      if ("reason" in c) out.refused.push({ key: describeKey(j.key, keyOf(r, j.key)), reason: c.reason });
      else accepted.push(c.row);
    }
  }
  if (j.key.length === 0 || (j.progress.targetWasEmpty && sameKeyAsPrimary(j))) {
    // Nothing at the target can match (it was empty, and this run's own keys are unique).
    for (const r of accepted) {
      out.ops.push({ op: "insert", record: r });
      out.priors.push(undefined);
    }
    return out;
  }
  const keys = accepted.map((r) => keyOf(r, j.key));
  const existing = target ? await target.lookup(j.target, j.key, keys) : new Map<string, Row>();
  const seen = new Set<string>();
  for (let i = 0; i < accepted.length; i++) {
    const record = accepted[i] as Row;
    const k = keys[i] as Value[];
    const ks = keyString(k);
    if (!existing.has(ks) && !seen.has(ks)) {
      seen.add(ks);
      out.ops.push({ op: "insert", record });
      out.priors.push(undefined);
      continue;
    }
    const prior = existing.get(ks);
    if (countIdentical && prior) {
      const fields = Object.keys(record);
      if (recordDigest(prior, fields) === recordDigest(record, fields)) out.identical++;
    }
    const match = Object.fromEntries(j.key.map((f, n) => [f, k[n] as Value]));
    switch (mode) {
      case "fail":
        out.refused.push({ key: describeKey(j.key, k), reason: "already exists at the target (conflict mode fail)" });
        break;
      case "skip":
        out.skipped++;
        break;
      case "overwrite":
        out.ops.push({ op: "replace", match, record });
        out.priors.push(prior);
        break;
      case "merge": {
        // Identity stays the target's: primary-key fields are never changed by a merge.
        const fields: Row = {};
        for (const f of Object.keys(record)) {
          if (!j.target.primaryKey.includes(f) || j.key.includes(f)) setField(fields, f, record[f] as Value);
        }
        out.ops.push({ op: "update", match, record: fields });
        out.priors.push(prior);
        break;
      }
    }
  }
  await refusePrimaryKeyCollisions(target, j, out);
  return out;
}

/**
 * What a batch changed, for the undo log: the keys of the records it added, and the prior
 * content of those it replaced or merged, each with the digest of what was written (ops the
 * target refused are left out). Undefined when the batch changed nothing.
 */
function undoEntry(target: Connector, j: Job, d: Decided, result: WriteResult): UndoEntry | undefined {
  const failed = new Set(result.failures.map((f) => f.index));
  // The target's primary key when the records carry it (a transform may drop a generated id),
  // else the run's match key.
  const pk = j.target.primaryKey;
  const carried =
    pk.length > 0 && d.ops.every((op) => pk.every((f) => op.record[f] !== undefined && op.record[f] !== null));
  const key = carried ? pk : undoKeyOf(j);
  // The state each key was left in by this batch (an insert then a replace of one key: the replace's).
  const written = new Map<string, Row>();
  const added: { ks: string; key: Value[] }[] = [];
  const prior: { ks: string; key: Value[]; record: Row }[] = [];
  const seen = new Set<string>();
  d.ops.forEach((op, i) => {
    if (failed.has(i)) return;
    const before = d.priors[i];
    const after =
      op.op !== "update"
        ? op.record
        : target.merged
          ? (target.merged(before ?? {}, op.record) ?? UNKNOWN)
          : { ...(before ?? {}), ...op.record };
    // Where the run left the record: a replace matched on a natural key may give it another primary key.
    const k = keyOf(after === UNKNOWN ? op.record : after, key);
    if (k.some((v) => v === null || v === undefined)) {
      throw new FerryError(
        "E_CONFIG",
        `${j.source.name} ${describeKey(j.key, keyOf(op.record, j.key))}: the record has no ${key.join(", ")} (the target's key, generated there?), so a rollback could not find it again: import with --no-rollback, or key the collection on fields the records carry`,
        { details: { collection: j.source.name } },
      );
    }
    const ks = keyString(k);
    written.set(ks, after);
    // A key this batch already touched keeps its first undo (what was there before the batch).
    if (seen.has(ks)) return;
    seen.add(ks);
    if (op.op === "insert") added.push({ ks, key: k });
    else if (before) prior.push({ ks, key: k, record: before });
  });
  if (added.length === 0 && prior.length === 0) return undefined;
  // Digests over each record's own fields (a field it lacks keeps the target's default there).
  const common = [...new Set([...key, ...d.ops.flatMap((op, i) => (failed.has(i) ? [] : Object.keys(op.record)))])];
  const same = (fields: string[]): boolean =>
    fields.length === common.length && fields.every((f, n) => f === common[n]);
  const digest = (ks: string): { digest: string; fields?: string[] } => {
    const w = written.get(ks);
    // A merge whose result the target cannot tell gets no digest: only its removal is seen.
    if (w === UNKNOWN || w === undefined) return { digest: "" };
    const fields = [...new Set([...key, ...Object.keys(w)])];
    return { digest: recordDigest(w, fields), ...(same(fields) ? {} : { fields }) };
  };
  return {
    collection: j.target.name,
    schema: j.target,
    key,
    fields: common,
    added: added.map((a) => ({ key: a.key.map((v) => encodeValue(v)), ...digest(a.ks) })),
    prior: prior.map((p) => ({ key: p.key.map((v) => encodeValue(v)), record: encodeRow(p.record), ...digest(p.ks) })),
  };
}

/** A written state the target could not tell. */
const UNKNOWN: Row = Object.freeze({}) as Row;

/**
 * The fields an undo log identifies a job's records by: the target's primary key when the
 * records carry it, else the run's match key.
 */
function undoKeyOf(j: Job): string[] {
  const pk = j.target.primaryKey;
  return pk.length > 0 && pk.every((f) => j.source.fields.some((x) => x.name === f)) ? pk : j.key;
}

/** A record without generated fields and with checked fields converted, or why it is refused. */
function clean(r: Row, generated: Set<string>, checks: FieldCheck[]): { row: Row } | { reason: string } {
  const o: Row = {};
  for (const k of Object.keys(r)) if (!generated.has(k)) setField(o, k, r[k] as Value);
  for (const [field, check] of checks) {
    const v = o[field];
    if (v === undefined) continue;
    const c = check(v);
    if (!c.ok) return { reason: c.reason };
    setField(o, field, c.value);
  }
  return { row: o };
}

/**
 * Matching by a natural key, a record whose natural key is new is inserted; if its primary
 * key already exists at the target (under another natural key) that insert would duplicate
 * the key where nothing enforces it (files) or fail obscurely: refuse it by name instead.
 */
async function refusePrimaryKeyCollisions(target: Connector | undefined, j: Job, out: Decided): Promise<void> {
  const pk = j.target.primaryKey;
  if (!target || pk.length === 0 || sameKeyAsPrimary(j)) return;
  const inserts = out.ops.filter((d) => d.op === "insert");
  if (inserts.length === 0) return;
  const taken = await target.lookup(
    j.target,
    pk,
    inserts.map((d) => keyOf(d.record, pk)),
  );
  if (taken.size === 0) return;
  const keep = out.ops.map((d) => {
    if (d.op !== "insert") return true;
    const k = keyOf(d.record, pk);
    if (!taken.has(keyString(k))) return true;
    out.refused.push({
      key: describeKey(j.key, keyOf(d.record, j.key)),
      reason: `its primary key ${describeKey(pk, k)} already exists at the target under another ${j.key.join(",")}`,
    });
    return false;
  });
  out.ops = out.ops.filter((_, i) => keep[i]);
  out.priors = out.priors.filter((_, i) => keep[i]);
}

function sameKeyAsPrimary(j: Job): boolean {
  return sameFields(j.key, j.source.primaryKey);
}

/** The same field names in the same order. */
function sameFields(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((k, i) => b[i] === k);
}

function countOp(s: CollectionStats, op: OpKind): void {
  if (op === "insert") s.copied++;
  else if (op === "replace") s.overwritten++;
  else s.merged++;
}

function uncountOp(s: CollectionStats, op: OpKind): void {
  if (op === "insert") s.copied--;
  else if (op === "replace") s.overwritten--;
  else s.merged--;
}

function emitProgress(emit: (e: FerryEvent) => void, runId: string, collection: string, j: Job): void {
  const p = j.progress;
  const done = processed(p);
  const elapsed = Math.max((Date.now() - (j.startedAt ?? Date.now())) / 1000, 1e-3);
  const rate = (done - (j.doneAtStart ?? 0)) / elapsed;
  const etaSeconds = p.total !== undefined && rate > 0 ? Math.max(p.total - done, 0) / rate : undefined;
  emit({ type: "progress", runId, collection, done, total: p.total, rate, etaSeconds });
}

/** `field=value` pairs naming a record by its key. */
export function describeKey(fields: readonly string[], values: readonly Value[]): string {
  if (fields.length === 0) return "(no key)";
  return fields.map((f, i) => `${f}=${JSON.stringify(encodeValue(values[i] ?? null))}`).join(",");
}

/** Throws when the run was interrupted or another part failed; true when it stops on a refused record. */
function throwIfStopped(ctx: RunContext): boolean {
  throwIfAborted(ctx.o.signal);
  if (ctx.halt === "error") throw new FerryError("E_INTERRUPTED", "stopped: another part of the run failed");
  return ctx.halt === "stop-on-error";
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new FerryError("E_INTERRUPTED", "interrupted: run the same command with --resume to continue");
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
