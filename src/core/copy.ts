/**
 * `copy`: the data path. Reads collections from a source in key order, decides per record
 * by conflict mode, writes batches to a target with a checkpoint made durable together with
 * each batch, and records the run in the target's journal. Library, CLI, API and console
 * all call this one function.
 */
import { type Checkpoint, type Connector, hasBulkTransfer, type WriteOp, type WriteResult } from "./connector.js";
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
  type RunEntry,
  type RunStatus,
  statsOf,
} from "./journal.js";
import { openConnector } from "./registry.js";
import { type CollectionSchema, dependencyOrder } from "./schema.js";
import { redactUrl } from "./url.js";
import { encodeValue, keyOf, keyString, type Row, setField, type Value } from "./values.js";

/** Options of {@link copy}. */
export interface CopyOptions {
  /** Source instance URL. */
  from: string;
  /** Target instance URL. */
  to: string;
  /** Collections to copy, by name. Default: every collection of the source. */
  collections?: string[];
  /** What to do when a record's key exists at the target. Default `fail`. */
  conflict?: ConflictMode;
  /** Natural key used to match records, for collections that have these fields. Default: the primary key. */
  key?: string[];
  /** Decide and count, write nothing anywhere (not even the journal). Default `false`. */
  dryRun?: boolean;
  /** Records per batch (and per checkpoint). Default 5000. */
  batchSize?: number;
  /** Continue the target's unfinished run from its last checkpoint. Default `false`. */
  resume?: boolean;
  /** Start even though the target has an unfinished run (it is marked abandoned). Default `false`. */
  force?: boolean;
  /** Stop at the first refused record instead of going on. Default `false`. */
  stopOnError?: boolean;
  /** Aborting stops the run after the batch in flight; it is then resumable. */
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
  collections: { name: string; total: number | undefined; key: string[]; targetExists: boolean }[];
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
}

/** Default records per batch. */
export const DEFAULT_BATCH_SIZE = 5000;
const CONFLICT_MODES: readonly ConflictMode[] = ["fail", "skip", "overwrite", "merge"];
const MAX_CONFLICTS_REPORTED = 20;

interface Job {
  source: CollectionSchema;
  target: CollectionSchema;
  key: string[];
  progress: CollectionProgress;
}

/**
 * Copies collections from one instance to another.
 *
 * @throws FerryError `E_USAGE`/`E_CONFIG`/`E_CONNECTION`/`E_NOT_FOUND` before anything is written,
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
  const dryRun = options.dryRun ?? false;
  const emit: EventSink = options.onEvent ?? (() => {});

  const source = await openConnector(options.from, { write: false });
  let target: Connector | undefined;
  try {
    target = await openTarget(options.to, dryRun);
    if (target && source.identity === target.identity) {
      throw new FerryError(
        "E_USAGE",
        `source and target are the same instance (${source.displayUrl}): copy to another database, file or directory`,
      );
    }
    await source.check();
    if (target) await target.check();
    return await run(source, target, { ...options, conflict, batchSize, dryRun, emit });
  } finally {
    await source.close().catch(() => {});
    await target?.close().catch(() => {});
  }
}

/**
 * Opens the target. A dry run writes nothing, so it opens read-only, and a target that does
 * not exist yet counts as empty (`undefined`).
 */
async function openTarget(url: string, dryRun: boolean): Promise<Connector | undefined> {
  if (!dryRun) return openConnector(url, { write: true });
  try {
    return await openConnector(url, { write: false });
  } catch (err) {
    if (isFerryError(err, "E_CONNECTION") && err.details.missing === true) return undefined;
    throw err;
  }
}

type RunOptions = CopyOptions & { conflict: ConflictMode; batchSize: number; dryRun: boolean; emit: EventSink };

async function run(source: Connector, target: Connector | undefined, o: RunOptions): Promise<CopyResult> {
  const started = Date.now();
  const all = await source.discover();
  const selected = selectCollections(all, o.collections, source.displayUrl);
  const journal = target && !o.dryRun ? new Journal(target.journal()) : undefined;

  // A target with an unfinished run is dirty: resume it, or force past it.
  let entry: RunEntry | undefined;
  if (journal) {
    const unfinished = await journal.unfinished();
    if (o.resume) {
      entry = unfinished.find((e) => e.command === "copy" && e.source === source.displayUrl);
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
  if (entry) {
    // Resume exactly the collections and options of the interrupted run.
    o = { ...o, conflict: entry.options.conflict, key: entry.options.key, batchSize: entry.options.batchSize };
  }
  const names = entry ? Object.keys(entry.collections) : selected.map((s) => s.name);
  const ordered = dependencyOrder(all.filter((s) => names.includes(s.name)));
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

  // Plan: counts, keys, whether each target collection exists and is empty.
  const targetSchemas = target ? new Map((await target.discover()).map((s) => [s.name, s])) : new Map();
  const jobs: Job[] = [];
  for (const s of ordered) {
    const existing = targetSchemas.get(s.name);
    const key = keyOption?.every((k) => s.fields.some((f) => f.name === k)) ? keyOption : s.primaryKey;
    const total = await source.count(s);
    const progress: CollectionProgress = entry?.collections[s.name] ?? {
      ...emptyStats(),
      total,
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
    jobs.push({ source: s, target: existing ?? s, key, progress });
  }

  const plan: CopyPlan = {
    source: source.displayUrl,
    target: target?.displayUrl ?? redactUrl(o.to),
    conflict: o.conflict,
    collections: jobs.map((j) => ({
      name: j.source.name,
      total: j.progress.total,
      key: j.key,
      targetExists: targetSchemas.has(j.source.name),
    })),
    ...(entry ? { resume: entry.id } : {}),
  };

  // fail mode: prove no incoming key exists before writing anything.
  if (o.conflict === "fail" && target && !o.dryRun) {
    const conflicts: { collection: string; key: string }[] = [];
    for (const j of jobs) {
      if (j.progress.targetWasEmpty || j.progress.done) continue;
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

  if (o.confirm && !o.dryRun && !(await o.confirm(plan))) {
    throw new FerryError("E_USAGE", "cancelled: nothing was written");
  }

  const runId = entry?.id ?? newRunId();
  const now = new Date().toISOString();
  const current: RunEntry = entry
    ? { ...withoutEnd(entry), status: "running" }
    : {
        id: runId,
        command: "copy",
        source: source.displayUrl,
        target: target?.displayUrl ?? redactUrl(o.to),
        by: currentUser(),
        startedAt: now,
        status: "running",
        options: {
          conflict: o.conflict,
          ...(keyOption ? { key: keyOption } : {}),
          collections: names,
          batchSize: o.batchSize,
        },
        collections: {},
      };
  for (const j of jobs) current.collections[j.source.name] = j.progress;
  if (journal) await journal.save(current);

  o.emit({
    type: "run-start",
    runId,
    command: "copy",
    source: current.source,
    target: current.target,
    dryRun: o.dryRun,
    resumed: entry !== undefined,
    collections: jobs.map((j) => ({ name: j.source.name, total: j.progress.total })),
  });

  let error: FerryError | undefined;
  try {
    for (const j of jobs) {
      if (j.progress.done) continue;
      const failedBefore = j.progress.failed;
      await copyCollection(source, target, j, current, o);
      if (o.stopOnError && j.progress.failed > failedBefore) break;
    }
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
  if (journal) await journal.save(current).catch(() => {});

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
  };
}

function withoutEnd(e: RunEntry): RunEntry {
  const { endedAt: _ended, error: _error, ...rest } = e;
  return rest;
}

function selectCollections(all: CollectionSchema[], names: string[] | undefined, where: string): CollectionSchema[] {
  if (!names || names.length === 0) return all;
  const missing = names.filter((n) => !all.some((s) => s.name === n));
  if (missing.length > 0) {
    const known = all.map((s) => s.name).join(", ") || "none";
    throw new FerryError(
      "E_NOT_FOUND",
      `no collection ${missing.join(", ")} at ${where}: collections there are ${known}`,
      { details: { missing } },
    );
  }
  return all.filter((s) => names.includes(s.name));
}

async function findConflicts(
  source: Connector,
  target: Connector,
  j: Job,
  o: RunOptions,
  out: { collection: string; key: string }[],
): Promise<void> {
  for await (const batch of source.read(j.source, { batchSize: o.batchSize, fields: j.key, ...bookmarkOf(j) })) {
    throwIfAborted(o.signal);
    const keys = batch.records.map((r) => keyOf(r, j.key));
    const found = await target.lookup(j.target, j.key, keys);
    for (const k of keys) {
      if (found.has(keyString(k))) {
        out.push({ collection: j.source.name, key: describeKey(j.key, k) });
        if (out.length >= MAX_CONFLICTS_REPORTED) return;
      }
    }
  }
}

function bookmarkOf(j: Job): { after?: CollectionProgress["bookmark"] } {
  return j.progress.bookmark ? { after: j.progress.bookmark } : {};
}

async function copyCollection(
  source: Connector,
  target: Connector | undefined,
  j: Job,
  entry: RunEntry,
  o: RunOptions,
): Promise<void> {
  const name = j.source.name;
  const startedAt = Date.now();
  const doneAtStart = processed(j.progress);
  if (target && !o.dryRun) {
    const prepared = await target.prepare(j.source);
    j.target = prepared.schema;
    if (prepared.created) j.progress.targetCreated = true;
  }
  // Generated fields are computed by the target, never written. Every other field is passed
  // on, even one the target does not know: the target refuses it loudly (never dropped silently).
  const generated = new Set(j.target.fields.filter((f) => f.generated).map((f) => f.name));

  if (target && !o.dryRun && j.progress.targetWasEmpty && sameKeyAsPrimary(j)) {
    await bulkCopy(source, target, j, entry, o, () =>
      emitProgress(o.emit, entry.id, name, j.progress, startedAt, doneAtStart),
    );
  }
  // The record path: everything, or what the bulk path left (it stops at a refused record).
  for await (const batch of source.read(j.source, { batchSize: o.batchSize, ...bookmarkOf(j) })) {
    throwIfAborted(o.signal);
    const decided = await decide(target, j, batch.records, o.conflict, generated);
    const delta = emptyStats();
    delta.skipped = decided.skipped;
    const failures: { key: string; reason: string }[] = [];
    // Counts, bookmark and refused records of this batch, from the outcome of its writes.
    const settle = (result: WriteResult): void => {
      for (const op of decided.ops) countOp(delta, op.op);
      for (const f of result.failures) {
        const d = decided.ops[f.index];
        if (!d) continue;
        uncountOp(delta, d.op);
        delta.failed++;
        failures.push({ key: describeKey(j.key, keyOf(d.record, j.key)), reason: f.reason });
      }
      for (const r of decided.refused) {
        delta.failed++;
        failures.push(r);
      }
      Object.assign(j.progress, addStats(statsOf(j.progress), delta));
      j.progress.bookmark = batch.bookmark;
      for (const f of failures) if (j.progress.failures.length < MAX_FAILURES_KEPT) j.progress.failures.push(f);
    };
    if (o.dryRun || !target) {
      settle({ failures: [] });
    } else {
      // The connector builds the checkpoint after applying the ops, in the same transaction,
      // so the journal counts exactly what was written and keeps what was refused.
      const snapshot = { ...j.progress, failures: [...j.progress.failures] };
      let settled = false;
      const settleOnce = (result: WriteResult): void => {
        if (!settled) settle(result);
        settled = true;
      };
      const checkpoint: Checkpoint = {
        runId: entry.id,
        id: entry.id,
        entry: (result) => {
          settleOnce(result);
          return entry;
        },
      };
      try {
        settleOnce(await target.write(j.target, decided.ops, checkpoint));
      } catch (err) {
        // Nothing of the batch is durable: neither may the in-memory progress say so.
        Object.assign(j.progress, snapshot);
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
    emitProgress(o.emit, entry.id, name, j.progress, startedAt, doneAtStart);
    if (o.stopOnError && failures.length > 0) return;
  }
  // A collection this run created gets the source's indexes; an existing one is left as it was.
  if (target && !o.dryRun) await target.finish(j.progress.targetCreated ? j.source : j.target);
  j.progress.done = true;
  j.progress.seconds = (j.progress.seconds ?? 0) + (Date.now() - startedAt) / 1000;
  if (target && !o.dryRun) await new Journal(target.journal()).save(entry);
  o.emit({
    type: "collection-end",
    runId: entry.id,
    collection: name,
    stats: statsOf(j.progress),
    seconds: j.progress.seconds,
  });
}

/**
 * The same-engine fast path, batch by batch with a checkpoint each. Returns when the
 * collection is exhausted, or early when the engine refused a record in a batch (nothing of
 * that batch was written): the record path then continues from the last checkpoint and
 * names each refused record.
 */
async function bulkCopy(
  source: Connector,
  target: Connector,
  j: Job,
  entry: RunEntry,
  o: RunOptions,
  progress: () => void,
): Promise<void> {
  if (!hasBulkTransfer(target) || !target.canBulkCopyFrom(source, j.source)) return;
  for (;;) {
    throwIfAborted(o.signal);
    const before = { copied: j.progress.copied, bookmark: j.progress.bookmark };
    try {
      const r = await target.bulkCopyFrom(
        source,
        j.source,
        { ...bookmarkOf(j), limit: o.batchSize },
        (count, bookmark) => {
          j.progress.copied = before.copied + count;
          j.progress.bookmark = bookmark;
          return { runId: entry.id, id: entry.id, entry: () => entry };
        },
      );
      if (r.count === 0) return;
      j.progress.copied = before.copied + r.count;
      j.progress.bookmark = r.bookmark;
    } catch (err) {
      j.progress.copied = before.copied;
      j.progress.bookmark = before.bookmark;
      if (isFerryError(err, "E_WRITE")) return;
      throw err;
    }
    progress();
  }
}

type OpKind = WriteOp["op"];

interface Decided {
  ops: WriteOp[];
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
): Promise<Decided> {
  const out: Decided = { ops: [], skipped: 0, refused: [] };
  const clean = (r: Row): Row => {
    if (generated.size === 0) return r;
    const o: Row = {};
    for (const k of Object.keys(r)) if (!generated.has(k)) setField(o, k, r[k] as Value);
    return o;
  };
  if (j.key.length === 0 || (j.progress.targetWasEmpty && sameKeyAsPrimary(j))) {
    // Nothing at the target can match (it was empty, and this run's own keys are unique).
    for (const r of records) out.ops.push({ op: "insert", record: clean(r) });
    return out;
  }
  const keys = records.map((r) => keyOf(r, j.key));
  const existing = target ? await target.lookup(j.target, j.key, keys) : new Map<string, Row>();
  const seen = new Set<string>();
  for (let i = 0; i < records.length; i++) {
    const record = clean(records[i] as Row);
    const k = keys[i] as Value[];
    const ks = keyString(k);
    if (!existing.has(ks) && !seen.has(ks)) {
      seen.add(ks);
      out.ops.push({ op: "insert", record });
      continue;
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
        break;
      case "merge": {
        // Identity stays the target's: primary-key fields are never changed by a merge.
        const fields: Row = {};
        for (const f of Object.keys(record)) {
          if (!j.target.primaryKey.includes(f) || j.key.includes(f)) setField(fields, f, record[f] as Value);
        }
        out.ops.push({ op: "update", match, record: fields });
        break;
      }
    }
  }
  await refusePrimaryKeyCollisions(target, j, out);
  return out;
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
  out.ops = out.ops.filter((d) => {
    if (d.op !== "insert") return true;
    const k = keyOf(d.record, pk);
    if (!taken.has(keyString(k))) return true;
    out.refused.push({
      key: describeKey(j.key, keyOf(d.record, j.key)),
      reason: `its primary key ${describeKey(pk, k)} already exists at the target under another ${j.key.join(",")}`,
    });
    return false;
  });
}

function sameKeyAsPrimary(j: Job): boolean {
  return j.key.length === j.source.primaryKey.length && j.key.every((k, i) => j.source.primaryKey[i] === k);
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

function emitProgress(
  emit: (e: FerryEvent) => void,
  runId: string,
  collection: string,
  p: CollectionProgress,
  startedAt: number,
  doneAtStart: number,
): void {
  const done = processed(p);
  const elapsed = Math.max((Date.now() - startedAt) / 1000, 1e-3);
  const rate = (done - doneAtStart) / elapsed;
  const etaSeconds = p.total !== undefined && rate > 0 ? Math.max(p.total - done, 0) / rate : undefined;
  emit({ type: "progress", runId, collection, done, total: p.total, rate, etaSeconds });
}

/** `field=value` pairs naming a record by its key. */
export function describeKey(fields: readonly string[], values: readonly Value[]): string {
  if (fields.length === 0) return "(no key)";
  return fields.map((f, i) => `${f}=${JSON.stringify(encodeValue(values[i] ?? null))}`).join(",");
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new FerryError("E_INTERRUPTED", "interrupted: run the same command with --resume to continue");
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
