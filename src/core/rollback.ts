/**
 * `rollback`: puts a target back as it was before a run that kept an undo log (an import),
 * from that log: the records the run added are removed, those it replaced or merged get their
 * prior content back. First every record the run wrote is compared with what it wrote: if one
 * was changed (or removed) since, nothing is done and each is listed, unless `force`. The
 * rollback is a run of its own in the journal, resumable, and marks the run it undid.
 *
 * `forget` removes a run from the journal with its undo log.
 */
import type { Connector, WriteOp } from "./connector.js";
import { FerryError, isFerryError } from "./errors.js";
import type { EventSink } from "./events.js";
import { findRun } from "./history.js";
import { currentUser, isUnfinished, Journal, newRunId, type RunEntry } from "./journal.js";
import { openConnector } from "./registry.js";
import { bulkKeys, isUndoEntry, recordDigest, type UndoEntry } from "./undo.js";
import { decodeRow, decodeValue, encodeRow, keyOf, keyString, type Value } from "./values.js";

/** Options of {@link rollback}. */
export interface RollbackOptions {
  /** The instance the run wrote to. */
  at: string;
  /** The run to undo: its id or a unique prefix. */
  id: string;
  /** Restore even the records changed since the run (their later changes are lost). Default `false`. */
  force?: boolean;
  /** Check and count; change nothing. Default `false`. */
  dryRun?: boolean;
  /** Continue this run's interrupted rollback. Default `false`. */
  resume?: boolean;
  signal?: AbortSignal;
  onEvent?: EventSink;
  /** Called once the changes are checked, before anything is written; return false to cancel. */
  confirm?: (summary: { run: string; removes: number; restores: number }) => Promise<boolean>;
}

/** A record the run wrote that was changed after it. */
export interface ChangedRecord {
  collection: string;
  key: string;
  reason: string;
}

/** The outcome of {@link rollback}. */
export interface RollbackResult {
  /** The rollback's own run id (none for a dry run). */
  runId?: string;
  /** The run undone. */
  undoes: string;
  dryRun: boolean;
  /** Records removed (the run had added them) and restored (it had replaced or merged them). */
  removed: number;
  restored: number;
  /** Records the target refused to remove or restore, with the reason. */
  failures: ChangedRecord[];
  /** Records changed since the run (restored anyway only with `force`). */
  changed: ChangedRecord[];
  changedCount: number;
}

/** Most changed records listed (the count is exact). */
const MAX_LISTED = 1000;

/**
 * Undoes a run at an instance from its undo log.
 *
 * @throws FerryError `E_NOT_FOUND` (no such run), `E_UNSUPPORTED` (the run kept no undo log),
 * `E_USAGE` (already rolled back; a rollback), `E_DIRTY` (another run is unfinished there),
 * `E_CONFLICT` listing the records changed since the run (nothing written; pass `force`).
 */
export async function rollback(o: RollbackOptions): Promise<RollbackResult> {
  const dryRun = o.dryRun ?? false;
  const emit: EventSink = o.onEvent ?? (() => {});
  const target = await openConnector(o.at, { write: !dryRun });
  try {
    await target.check();
    const journal = new Journal(target.journal());
    const runs = await journal.list();
    const run = findRun(runs, o.id, target.displayUrl);
    if (run.command === "rollback") {
      throw new FerryError(
        "E_USAGE",
        `run ${run.id} is a rollback itself: roll back the run it undid again by importing it`,
      );
    }
    if (!run.options.undo) {
      throw new FerryError(
        "E_UNSUPPORTED",
        `run ${run.id} (${run.command}) kept no undo log, so it cannot be rolled back: imports keep one unless --no-rollback`,
      );
    }
    if (run.status === "running" && !o.force) {
      throw new FerryError(
        "E_DIRTY",
        `run ${run.id} is still running (or was killed): wait for it, or resume it and let it end, or pass --force if no process is writing`,
        { details: { runId: run.id } },
      );
    }
    if (run.rolledBack) {
      throw new FerryError(
        "E_USAGE",
        `run ${run.id} was already rolled back (by ${run.rolledBack.by} at ${run.rolledBack.at})`,
      );
    }
    const earlier = runs.find(
      (r) => r.command === "rollback" && r.undoes === run.id && r.status !== "done" && r.status !== "abandoned",
    );
    if (earlier && !o.resume && !o.force) {
      throw new FerryError(
        "E_DIRTY",
        `run ${run.id} has an unfinished rollback ${earlier.id}: pass --resume to finish it (or --force to start it over)`,
        { details: { runId: earlier.id } },
      );
    }
    const resumed = o.resume ? earlier : undefined;
    const blocking = runs.filter(
      (r) => r !== run && r !== earlier && (r.status === "running" || r.status === "interrupted") && !r.rolledBack,
    );
    if (blocking.length > 0 && !o.force) {
      const b = blocking[0] as RunEntry;
      throw new FerryError(
        "E_DIRTY",
        `${target.displayUrl} has an unfinished run ${b.id} (${b.command}, ${b.status}): finish it (--resume) or pass --force`,
        { details: { runId: b.id } },
      );
    }
    // Rows a resumed rollback already applied (it goes from the highest seq down).
    const through = resumed?.rollback?.through ?? Number.POSITIVE_INFINITY;

    // 1. Check every record the run wrote against what it wrote.
    const checked = await checkRows(target, run.id, through, o.signal);
    if (checked.changedCount > 0 && !o.force) {
      const shown = checked.changed
        .slice(0, 10)
        .map((c) => `  ${c.collection} ${c.key}: ${c.reason}`)
        .join("\n");
      throw new FerryError(
        "E_CONFLICT",
        `${checked.changedCount} record(s) written by run ${run.id} changed since, nothing was rolled back:\n${shown}${checked.changedCount > 10 ? `\n  … and ${checked.changedCount - 10} more` : ""}\n(pass --force to restore them anyway: their later changes are lost)`,
        { details: { changed: checked.changed, count: checked.changedCount } },
      );
    }
    const result: RollbackResult = {
      undoes: run.id,
      dryRun,
      removed: 0,
      restored: 0,
      failures: [],
      changed: checked.changed,
      changedCount: checked.changedCount,
    };
    if (dryRun) return { ...result, removed: checked.removes, restored: checked.restores };
    if (o.confirm && !(await o.confirm({ run: run.id, removes: checked.removes, restores: checked.restores }))) {
      throw new FerryError("E_USAGE", "cancelled: nothing was rolled back");
    }

    // 2. Apply the log from the newest row down, as a run of its own.
    const now = new Date().toISOString();
    const rb: RunEntry = resumed
      ? { ...resumed, status: "running" }
      : {
          id: newRunId(),
          command: "rollback",
          source: `run ${run.id}`,
          target: target.displayUrl,
          by: currentUser(),
          startedAt: now,
          status: "running",
          undoes: run.id,
          options: { conflict: "overwrite", collections: [], batchSize: 0 },
          collections: {},
          rollback: { removed: 0, restored: 0, failed: 0, total: checked.removes + checked.restores },
        };
    if (earlier && !resumed) await journal.save({ ...earlier, status: "abandoned", endedAt: now });
    await journal.save(rb);
    result.runId = rb.id;
    let progress = rb.rollback as NonNullable<RunEntry["rollback"]>;
    emit({
      type: "run-start",
      runId: rb.id,
      command: "rollback",
      source: rb.source,
      target: rb.target,
      dryRun: false,
      resumed: resumed !== undefined,
      collections: [],
    });
    // Deletes a foreign key refused (a child the run added in an older batch still there) are
    // tried again once everything else is undone.
    // A resumed rollback tries those an earlier pass left first.
    const retry: Refused[] = (resumed?.rollback?.refused ?? []).map((r) => ({
      ...r,
      op: { op: "delete", match: decodeRow(r.match) } as WriteOp,
    }));
    const touched = new Map<string, UndoEntry["schema"]>(retry.map((r) => [r.collection, r.schema]));
    /** Writes ops with a checkpoint; the counts move on only once the batch is durable. */
    const apply = async (
      schema: UndoEntry["schema"],
      collection: string,
      ops: WriteOp[],
      kinds: OpKind[],
      at: { through?: number; retried?: boolean } = {},
    ) => {
      touched.set(collection, schema);
      let next = progress;
      const res = await target.write(schema, ops, {
        runId: rb.id,
        id: rb.id,
        entry: (r) => {
          const failed = new Set(r.failures.map((f) => f.index));
          next = { ...progress };
          kinds.forEach((kind, i) => {
            if (failed.has(i)) return;
            if (kind === "removed") next.removed++;
            else if (kind === "restored") next.restored++;
          });
          // A retried op was counted as refused already: its outcome replaces that.
          next.failed += r.failures.length - (at.retried ? ops.length : 0);
          if (at.through !== undefined) next.through = at.through;
          return { ...rb, rollback: next };
        },
      });
      progress = next;
      rb.rollback = progress;
      return res;
    };
    try {
      for await (const row of target.journal().undo(run.id)) {
        if (row.seq >= through) {
          // Applied before the interruption: its collection is finished at the end all the same.
          const done = row.entry as UndoEntry;
          touched.set(done.collection, done.schema);
          continue;
        }
        if (o.signal?.aborted) {
          throw new FerryError("E_INTERRUPTED", `interrupted: run ferry rollback ${run.id} --resume to finish`);
        }
        const e = row.entry as UndoEntry;
        const { ops, kinds } = await undoOps(target, e, o.force === true);
        const res = await apply(e.schema, e.collection, ops, kinds, { through: row.seq });
        for (const f of res.failures) {
          const op = ops[f.index] as WriteOp;
          // A delete of a record the run added may wait for its children; the rest is refused for good.
          if (kinds[f.index] === "removed" && op.op === "delete") {
            retry.push({ schema: e.schema, collection: e.collection, match: encodeRow(op.match), op });
          } else if (result.failures.length < MAX_LISTED) {
            result.failures.push({
              collection: e.collection,
              key: describe("match" in op ? op.match : {}),
              reason: f.reason,
            });
          }
        }
        emit({
          type: "progress",
          runId: rb.id,
          collection: e.collection,
          done: progress.removed + progress.restored + progress.failed,
          total: progress.total,
          rate: 0,
          etaSeconds: undefined,
        });
      }
      // Refused deletes again (the children the run added are gone now), while a pass makes progress.
      let pending = retry;
      progress.refused = [];
      while (pending.length > 0) {
        const still: typeof pending = [];
        for (const r of pending) {
          const res = await apply(r.schema, r.collection, [r.op], ["removed"], { retried: true });
          if (res.failures.length > 0) still.push(r);
        }
        if (still.length === pending.length) {
          // Kept for a resumed rollback, once the user removed what references them.
          progress.refused = still.map(({ op: _op, ...r }) => r);
          for (const r of still) {
            if (result.failures.length < MAX_LISTED) {
              result.failures.push({
                collection: r.collection,
                key: describe("match" in r.op ? r.op.match : {}),
                reason:
                  "still referenced by a foreign key from records the run did not write: remove those first, then roll back again with --resume",
              });
            }
          }
          break;
        }
        pending = still;
      }
      if (progress.refused?.length === 0) delete progress.refused;
      rb.rollback = progress;
      // Files apply their pending operations here; engines build what they build after data.
      for (const schema of touched.values()) await target.finish(schema);
      rb.status = progress.failed > 0 ? "failed" : "done";
    } catch (err) {
      rb.status = isFerryError(err, "E_INTERRUPTED") ? "interrupted" : "failed";
      rb.error = { code: isFerryError(err) ? err.code : "E_INTERNAL", message: (err as Error).message };
      rb.endedAt = new Date().toISOString();
      await journal.save(rb).catch(() => {});
      throw err;
    }
    rb.endedAt = new Date().toISOString();
    await journal.save(rb);
    if (rb.status === "done") await journal.save({ ...run, rolledBack: { by: rb.id, at: rb.endedAt } });
    return { ...result, removed: progress.removed, restored: progress.restored };
  } finally {
    await target.close().catch(() => {});
  }
}

/** Every undo row's records compared with the target now (rows at `through` and above skipped). */
async function checkRows(
  target: Connector,
  runId: string,
  through: number,
  signal: AbortSignal | undefined,
): Promise<{ changed: ChangedRecord[]; changedCount: number; removes: number; restores: number }> {
  const changed: ChangedRecord[] = [];
  let changedCount = 0;
  let removes = 0;
  let restores = 0;
  // Keys a newer row of the run already covers: an older row's state of them was overwritten by the run itself.
  const covered = new Set<string>();
  for await (const row of target.journal().undo(runId)) {
    if (row.seq >= through) continue;
    if (signal?.aborted) throw new FerryError("E_INTERRUPTED", "interrupted: nothing was rolled back");
    if (!isUndoEntry(row.entry)) {
      throw new FerryError(
        "E_CHECKSUM",
        `run ${runId}'s undo log row ${row.seq} is not one Ferry wrote: it cannot be rolled back`,
      );
    }
    const e = row.entry;
    if (e.bulk) {
      removes += e.bulk.keys.length;
      await checkVersions(target, e, e.bulk.version, (c) => {
        changedCount++;
        if (changed.length < MAX_LISTED) changed.push(c);
      });
    }
    const items = [
      ...e.added.map((a) => ({
        key: a.key.map((v) => decodeValue(v)),
        digest: a.digest,
        fields: a.fields ?? e.fields,
      })),
      ...e.prior.map((p) => ({
        key: p.key ? p.key.map((v) => decodeValue(v)) : keyOf(decodeRow(p.record), e.key),
        digest: p.digest,
        fields: p.fields ?? e.fields,
      })),
    ];
    removes += e.added.length;
    restores += e.prior.length;
    const now = await target.lookup(
      e.schema,
      e.key,
      items.map((i) => i.key),
    );
    for (const item of items) {
      const ks = `${e.collection}\u0000${keyString(item.key)}`;
      if (covered.has(ks)) continue;
      covered.add(ks);
      const current = now.get(keyString(item.key));
      // No digest: a merge whose result the target could not tell; only its removal is seen.
      const reason =
        current === undefined
          ? "removed since the run wrote it"
          : item.digest !== "" && recordDigest(current, item.fields) !== item.digest
            ? "changed since the run wrote it"
            : undefined;
      if (reason === undefined) continue;
      changedCount++;
      if (changed.length < MAX_LISTED)
        changed.push({
          collection: e.collection,
          key: describe(Object.fromEntries(e.key.map((f, n) => [f, item.key[n] as Value]))),
          reason,
        });
    }
  }
  return { changed, changedCount, removes, restores };
}

/** Keys of a bulk undo row looked up per query. */
const VERSION_PAGE = 10_000;

/**
 * Calls `onChanged` for each record a bulk batch added that was changed (another row
 * version) or removed since.
 * (Its keys are the run's own, written once: no newer row of the run covers them.)
 */
async function checkVersions(
  target: Connector,
  e: UndoEntry,
  version: string,
  onChanged: (c: ChangedRecord) => void,
): Promise<void> {
  if (!target.rowVersions) {
    throw new FerryError(
      "E_UNSUPPORTED",
      `${target.displayUrl} cannot tell row versions, which run's bulk undo log needs: a bug in Ferry`,
    );
  }
  const all = bulkKeys(e);
  for (let i = 0; i < all.length; i += VERSION_PAGE) {
    const keys = all.slice(i, i + VERSION_PAGE);
    const now = await target.rowVersions(e.schema, e.key, keys);
    for (const key of keys) {
      const current = now.get(keyString(key));
      if (current === version) continue;
      onChanged({
        collection: e.collection,
        key: describe(Object.fromEntries(e.key.map((f, n) => [f, key[n] as Value]))),
        reason: current === undefined ? "removed since the run wrote it" : "changed since the run wrote it",
      });
    }
  }
}

/** What an undo op counts as: a record removed, a record restored, or the first half of a move back. */
type OpKind = "removed" | "restored" | "moved";

/** A delete a foreign key refused, to try again. */
type Refused = NonNullable<NonNullable<RunEntry["rollback"]>["refused"]>[number] & { op: WriteOp };

/** The ops that undo one row: delete what it added, put back what it replaced or merged. */
async function undoOps(target: Connector, e: UndoEntry, force: boolean): Promise<{ ops: WriteOp[]; kinds: OpKind[] }> {
  const ops: WriteOp[] = [];
  const kinds: OpKind[] = [];
  for (const key of [...e.added.map((a) => a.key.map((v) => decodeValue(v))), ...bulkKeys(e)]) {
    ops.push({ op: "delete", match: Object.fromEntries(e.key.map((f, n) => [f, key[n] as Value])) });
    kinds.push("removed");
  }
  const priors = e.prior.map((p) => {
    const record = decodeRow(p.record);
    const own = keyOf(record, e.key);
    return { record, own, at: p.key ? p.key.map((v) => decodeValue(v)) : own };
  });
  // Forced: a record removed since is put back (inserted), not replaced.
  const present = force
    ? await target.lookup(
        e.schema,
        e.key,
        priors.map((p) => p.at),
      )
    : undefined;
  const matchOf = (key: Value[]) => Object.fromEntries(e.key.map((f, n) => [f, key[n] as Value]));
  for (const { record, own, at } of priors) {
    if (keyString(at) !== keyString(own)) {
      // The run moved it to another key (a replace matched on a natural key): remove that, put it back.
      ops.push({ op: "delete", match: matchOf(at) }, { op: "insert", record });
      kinds.push("moved", "restored");
    } else {
      ops.push(
        present && !present.has(keyString(at))
          ? { op: "insert", record }
          : { op: "replace", match: matchOf(at), record },
      );
      kinds.push("restored");
    }
  }
  return { ops, kinds };
}

function describe(match: Record<string, Value>): string {
  return Object.entries(match)
    .map(
      ([f, v]) =>
        `${f}=${JSON.stringify(typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? "(bytes)" : v)}`,
    )
    .join(",");
}

/** Options of {@link forget}. */
export interface ForgetOptions {
  at: string;
  /** The run: its id or a unique prefix. */
  id: string;
  /** Forget a run that is still unfinished (its rollback data goes too). Default `false`. */
  force?: boolean;
}

/**
 * Removes a run from an instance's journal with its undo log (its data stays as it is; it
 * can no longer be rolled back).
 *
 * @throws FerryError `E_NOT_FOUND`, `E_DIRTY` for an unfinished run without `force`.
 */
export async function forget(o: ForgetOptions): Promise<RunEntry> {
  const target = await openConnector(o.at, { write: true });
  try {
    await target.check();
    const journal = new Journal(target.journal());
    const runs = await journal.list();
    const run = findRun(runs, o.id, target.displayUrl);
    if (isUnfinished(run) && !o.force) {
      throw new FerryError(
        "E_DIRTY",
        `run ${run.id} is ${run.status} and unfinished: finish it (--resume) or roll it back first, or pass --force to forget it anyway`,
        { details: { runId: run.id } },
      );
    }
    const rolling = runs.find(
      (r) => r.command === "rollback" && r.undoes === run.id && r.status !== "done" && r.status !== "abandoned",
    );
    if (rolling && !o.force) {
      throw new FerryError(
        "E_DIRTY",
        `run ${run.id} has an unfinished rollback ${rolling.id} that needs its undo log: finish it (ferry rollback ${run.id} --resume), or pass --force`,
        { details: { runId: rolling.id } },
      );
    }
    await target.journal().forget(run.id);
    return run;
  } finally {
    await target.close().catch(() => {});
  }
}
