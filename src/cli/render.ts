/**
 * Renders core events for people (stderr: live progress lines, a summary table) or for
 * machines (`--json`: one event per line on stdout).
 */
import type { CollectionsList } from "../core/collections.js";
import type { FerryEvent, ProgressEvent, RunEndEvent } from "../core/events.js";
import { type CollectionStats, processed } from "../core/journal.js";
import { type MappingLevel, planLevel, type TypePlan } from "../core/type-plan.js";

/** Where rendered text goes; a terminal gets in-place updates. */
export interface Output {
  write(text: string): void;
  isTTY: boolean;
}

const num = new Intl.NumberFormat("en-US");
const PLAIN_PROGRESS_EVERY_MS = 5000;

/** Formats seconds as `1:05` / `1:02:03`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

/** One progress line: name, count / total, percent, rate, ETA. */
export function progressLine(e: ProgressEvent, width = 16): string {
  const total = e.total === undefined ? "?" : num.format(e.total);
  const pct = e.total ? ` ${((100 * e.done) / e.total).toFixed(1).padStart(5)}%` : "";
  const eta = e.etaSeconds === undefined ? "" : `  ETA ${formatDuration(e.etaSeconds)}`;
  return `  ${e.collection.padEnd(width)} ${num.format(e.done)} / ${total}${pct}  ${num.format(Math.round(e.rate))} rows/s${eta}`;
}

/** Renders events as human text. Keeps the live line state between calls. */
export class HumanRenderer {
  private live = false;
  private lastPlain = new Map<string, number>();
  private width = 16;
  /** The run's kind, from its start: an export is not resumable (it is run again). */
  private command = "copy";

  constructor(private readonly out: Output) {}

  handle(e: FerryEvent): void {
    switch (e.type) {
      case "run-start": {
        this.width = Math.max(16, ...e.collections.map((c) => c.name.length));
        this.command = e.command;
        const verb = e.dryRun ? "dry run:" : e.resumed ? `resuming ${e.runId}:` : `run ${e.runId}:`;
        this.line(`${verb} ${e.command} ${e.source} → ${e.target}`);
        break;
      }
      case "progress":
        if (this.out.isTTY) {
          this.out.write(`\r\x1b[K${progressLine(e, this.width)}`);
          this.live = true;
        } else {
          const now = Date.now();
          const last = this.lastPlain.get(e.collection) ?? now;
          if (!this.lastPlain.has(e.collection)) this.lastPlain.set(e.collection, now);
          if (now - last >= PLAIN_PROGRESS_EVERY_MS) {
            this.line(progressLine(e, this.width));
            this.lastPlain.set(e.collection, now);
          }
        }
        break;
      case "collection-end": {
        const n = processed(e.stats);
        const rate = e.seconds > 0 ? Math.round(n / e.seconds) : n;
        this.line(
          `  ${e.collection.padEnd(this.width)} ${num.format(n)} done in ${e.seconds.toFixed(1)}s (${num.format(rate)} rows/s)`,
        );
        break;
      }
      case "record-error":
        this.line(`  ✗ ${e.collection} ${e.key}: ${e.reason}`);
        break;
      case "notice":
        this.line(`note: ${e.message}`);
        break;
      case "plan":
        // Same-engine plans are exact and say nothing; others show what is not exact.
        if (planLevel(e.plan) !== "exact") this.line(planTable(e.plan, false));
        break;
      case "run-end":
        this.line(summaryTable(e, this.command !== "export"));
        break;
    }
  }

  /** Ends a live line so the next text starts clean. */
  private line(text: string): void {
    if (this.live) {
      this.out.write("\r\x1b[K");
      this.live = false;
    }
    this.out.write(`${text}\n`);
  }
}

const COLUMNS: Exclude<keyof CollectionStats, "identical">[] = ["copied", "skipped", "overwritten", "merged", "failed"];

/** The per-collection and total summary printed at the end of a run. */
export function summaryTable(e: RunEndEvent, resumable = true): string {
  const heads = e.dryRun
    ? ["collection", "would copy", "skip", "overwrite", "merge", "refused", "identical"]
    : ["collection", "copied", "skipped", "overwritten", "merged", "failed", "time", "rows/s"];
  const rows: string[][] = [];
  for (const [name, s] of Object.entries(e.collections)) {
    const secs = e.timings[name] ?? 0;
    const n = processed(s);
    rows.push([
      name,
      ...COLUMNS.map((c) => num.format(s[c])),
      ...(e.dryRun
        ? [num.format(s.identical ?? 0)]
        : [`${secs.toFixed(1)}s`, num.format(secs > 0 ? Math.round(n / secs) : n)]),
    ]);
  }
  const n = processed(e.total);
  rows.push([
    "total",
    ...COLUMNS.map((c) => num.format(e.total[c])),
    ...(e.dryRun
      ? [num.format(e.total.identical ?? 0)]
      : [`${e.seconds.toFixed(1)}s`, num.format(e.seconds > 0 ? Math.round(n / e.seconds) : n)]),
  ]);
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
  const status = e.dryRun
    ? "dry run: nothing was written"
    : e.status === "done"
      ? "done"
      : e.status === "interrupted"
        ? resumable
          ? `interrupted: run the same command with --resume to continue run ${e.runId}`
          : "interrupted: no package was written; run the same command again"
        : `${e.status}${e.error ? `: ${e.error.message}` : e.total.failed > 0 ? `: ${num.format(e.total.failed)} record(s) refused by the target (listed above)` : ""}`;
  const stopped =
    !e.dryRun && e.status !== "interrupted" && e.unfinished.length > 0
      ? [
          resumable
            ? `not finished: ${e.unfinished.join(", ")} (run the same command with --resume to finish)`
            : `not finished: ${e.unfinished.join(", ")}; no package was written`,
        ]
      : [];
  return ["", fmt(heads), ...rows.map(fmt), "", status, ...stopped].join("\n");
}

const MARK: Record<MappingLevel, string> = { exact: "exact", checked: "checked", lossy: "LOSSY", missing: "MISSING" };

/**
 * The type plan as a table: collection.field, source type → target type, level and notes.
 * With `all` false, only the fields that are not exact (and a count of those that are).
 */
export function planTable(plan: TypePlan, all: boolean): string {
  const rows: string[][] = [];
  let exact = 0;
  for (const c of plan.collections) {
    for (const f of c.fields) {
      if (f.level === "exact") exact++;
      if (!all && f.level === "exact") continue;
      rows.push([`${c.collection}.${f.field}`, f.from, f.to, MARK[f.level], f.notes.join("; ")]);
    }
  }
  const heads = ["field", plan.sourceEngine, plan.targetEngine, "", ""];
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const counts = (["checked", "lossy", "missing"] as const)
    .map((l) => [l, plan.collections.reduce((n, c) => n + c.fields.filter((f) => f.level === l).length, 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([l, n]) => `${n} ${l}`);
  const head = `type plan ${plan.sourceEngine} → ${plan.targetEngine}: ${[`${exact} exact`, ...counts].join(", ")}`;
  const legend =
    "checked: values that do not fit are refused by name · LOSSY: values change (needs --allow-lossy) · MISSING: the target lacks the field";
  return rows.length === 0 ? head : [head, fmt(heads), ...rows.map(fmt), legend].join("\n");
}

/** Bytes in binary units: `512 B`, `8.0 KB`, `1.5 MB`, `2.3 GB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB", "PB"];
  let v = bytes / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/**
 * The collections of an instance as an aligned table: name, records, size, where, and marks
 * (secret fields, never exported, not at the instance, not in the profile).
 */
export function collectionsTable(list: CollectionsList): string {
  const profiled = list.collections.some((c) => c.declared);
  const rows = list.collections.map((c) => {
    const marks: string[] = [];
    if (c.secret.length > 0) marks.push(`secret: ${c.secret.join(", ")}`);
    if (!c.exported) marks.push("never exported");
    if (c.note !== undefined) marks.push(c.note);
    if (profiled && !c.declared) marks.push("not in the profile");
    const absent = c.note !== undefined && c.records === undefined;
    return [
      c.name,
      c.records === undefined ? (absent ? "-" : "?") : num.format(c.records),
      c.bytes === undefined ? (absent ? "-" : "?") : formatBytes(c.bytes),
      c.where,
      marks.join("; "),
    ];
  });
  const heads = ["collection", "records", "size", "where", ""];
  const widths = heads.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const right = new Set([1, 2]);
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const records = list.collections.reduce((n, c) => n + (c.records ?? 0), 0);
  const bytes = list.collections.reduce((n, c) => n + (c.bytes ?? 0), 0);
  const n = list.collections.length;
  const head = `${n} collection${n === 1 ? "" : "s"} at ${list.instance} (${list.engine}): ${num.format(records)} records, ${formatBytes(bytes)}`;
  return n === 0 ? head : [head, fmt(heads), ...rows.map(fmt)].join("\n");
}
