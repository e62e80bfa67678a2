/**
 * The `ferry` command line: one command table; each action calls the library function of
 * the same name. This is the only module that sets the process exit code.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import "../connectors/index.js";
import { listCollections } from "../core/collections.js";
import { copy, DEFAULT_BATCH_SIZE, DEFAULT_BULK_BATCH_SIZE, defaultJobs } from "../core/copy.js";
import { exitCodeFor, FerryError, isFerryError } from "../core/errors.js";
import type { FerryEvent } from "../core/events.js";
import { history, status } from "../core/history.js";
import { type ConflictMode, processed, type RunEntry } from "../core/journal.js";
import { plan } from "../core/plan.js";
import { knownInstances } from "../core/registry.js";
import { forget, rollback } from "../core/rollback.js";
import { redactUrl } from "../core/url.js";
import { type DecryptWith, isEncryptedFile } from "../package/encryption.js";
import { COMPRESSIONS, type Compression, type Manifest } from "../package/format.js";
import { type AppInfo, exportPackage, importPackage, inspectPackage, validatePackage } from "../package/package.js";
import { specsOf } from "../profile/define-config.js";
import { checkInstances, instanceUrl } from "../profile/instances.js";
import { loadProfile, PROFILE_FILES, type Profile, unsetProblem } from "../profile/load-profile.js";
import { askSecret, askToConfirm, askYesNo, canPrompt, requireConfirmable } from "./prompt.js";
import { collectionsTable, formatBytes, formatDuration, HumanRenderer, planTable } from "./render.js";

const INSTANCES_HELP = `
Instances are URLs:
  sqlite:./app.db            a SQLite database file (created when it is a target)
  ./backup/                  a directory: one NDJSON file per collection + ferry.schema.json
  ./users.ndjson             one collection, one JSON record per line
  ./accounts.json            top-level arrays are collections; other fields are kept
  postgres://user:pw@host:5432/db?schema=app   a PostgreSQL schema (default public; created when a target)
  mysql://user:pw@host:3306/db                 a MySQL/MariaDB database (mariadb:// too; created when a target)
  redis://[user:pw@]host:6379/0                a Redis database (rediss:// for TLS); add ?hashes=rows to read
                                               collections of hashes as tables (key, ttl, a column per field)
                                               and write such tables back as hashes

Redis collections are key prefixes (apikey, usage, …) or, in --collections, globs: 'apikey:*',
'apikeys=apikey:*' (named), '!apikey:idx:*' (excluded from every selected collection).`;

/**
 * Adds `?schema=NAME` to a PostgreSQL URL that has none (the `--schema` flag); other URLs
 * are returned unchanged.
 */
export function withSchema(url: string, schema: string | undefined): string {
  if (!schema || !/^postgres(ql)?:/i.test(url) || /[?&]schema=/.test(url)) return url;
  return `${url}${url.includes("?") ? "&" : "?"}schema=${encodeURIComponent(schema)}`;
}

function list(value: string): string[] {
  const parts = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) throw new InvalidArgumentError("give at least one name");
  return parts;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`"${value}" is not a whole number of at least 1`);
  return n;
}

/** The profile `--config` names, or the one in the working directory (loaded once). */
let loaded: Promise<Profile | undefined> | undefined;
function profileOf(cmd: Command): Promise<Profile | undefined> {
  const { config } = cmd.optsWithGlobals<{ config?: string }>();
  loaded ??= loadProfile(config === undefined ? {} : { config });
  return loaded;
}

/** The profile's collections for core, when it declares any. */
async function specsFor(cmd: Command): Promise<{ collectionSpecs?: ReturnType<typeof specsOf> }> {
  const profile = await profileOf(cmd);
  return profile?.config.collections ? { collectionSpecs: specsOf(profile.config) } : {};
}

/** The profile's collections and extra dependencies, for `copy`. */
async function profileFor(
  cmd: Command,
): Promise<{ collectionSpecs?: ReturnType<typeof specsOf>; dependsOn?: Record<string, string[]> }> {
  const dependsOn = (await profileOf(cmd))?.config.dependsOn;
  return { ...(await specsFor(cmd)), ...(dependsOn ? { dependsOn } : {}) };
}

/** `--from`/`--to`/`--at` as a URL: a profile instance's name becomes its URL. */
async function urlOf(value: string, cmd: Command, schema?: string): Promise<string> {
  return withSchema(instanceUrl(value, await profileOf(cmd)), schema);
}

/** Writes machine output: one JSON document per line on stdout. */
function json(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

interface CopyFlags {
  from: string;
  to: string;
  collections?: string[];
  types?: string[];
  conflict: ConflictMode;
  key?: string[];
  dryRun?: boolean;
  yes?: boolean;
  batchSize?: number;
  json?: boolean;
  resume?: boolean;
  force?: boolean;
  stopOnError?: boolean;
  skipInvalid?: boolean;
  jobs: number;
  allowLossy?: boolean;
  schema?: string;
}

async function copyCommand(flags: CopyFlags, cmd: Command): Promise<number> {
  requireConfirmable(Boolean(flags.yes), Boolean(flags.dryRun));
  const from = await urlOf(flags.from, cmd, flags.schema);
  const to = await urlOf(flags.to, cmd, flags.schema);
  const collections = [...(flags.collections ?? []), ...(flags.types ?? [])];
  const onEvent = eventsTo(Boolean(flags.json));
  return interruptible(async (signal) => {
    const result = await copy({
      from,
      to,
      jobs: flags.jobs,
      allowLossy: Boolean(flags.allowLossy),
      ...(collections.length > 0 ? { collections } : {}),
      ...(await profileFor(cmd)),
      conflict: flags.conflict,
      ...(flags.key ? { key: flags.key } : {}),
      dryRun: Boolean(flags.dryRun),
      ...(flags.batchSize ? { batchSize: flags.batchSize } : {}),
      resume: Boolean(flags.resume),
      force: Boolean(flags.force),
      stopOnError: Boolean(flags.stopOnError),
      skipInvalid: Boolean(flags.skipInvalid),
      signal,
      onEvent,
      ...(flags.yes ? {} : { confirm: askToConfirm }),
    });
    // A dry run of `fail` mode that finds existing keys answers as the real run would: 4.
    if (result.dryRun && flags.conflict === "fail" && !flags.skipInvalid && result.total.failed > 0) return 4;
    return result.status === "done" ? 0 : 1;
  });
}

/** Events as NDJSON on stdout (`--json`), or as progress on stderr. */
function eventsTo(asJson: boolean): (e: FerryEvent) => void {
  const human = new HumanRenderer({ write: (t) => process.stderr.write(t), isTTY: Boolean(process.stderr.isTTY) });
  return (e) => (asJson ? json(e) : human.handle(e));
}

/**
 * Runs `fn` with a signal that the first Ctrl-C (or SIGTERM) aborts: the run stops after the
 * batch in flight and can be resumed. A second Ctrl-C quits at once.
 */
async function interruptible<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals === 1) {
      process.stderr.write("\nstopping after the batch in flight (Ctrl-C again to quit at once)…\n");
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await fn(controller.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** The passphrase: FERRY_PASSPHRASE, else asked on the terminal (twice when encrypting). */
async function passphrase(purpose: "encrypt" | "decrypt", file: string): Promise<string> {
  const fromEnv = process.env.FERRY_PASSPHRASE;
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  if (!canPrompt()) {
    throw new FerryError(
      "E_USAGE",
      purpose === "encrypt"
        ? "--encrypt needs a passphrase: set FERRY_PASSPHRASE (there is no terminal to ask on), or encrypt for --recipient age1…"
        : `${file} is encrypted: set FERRY_PASSPHRASE, or give --identity FILE (or FERRY_IDENTITY) with its age key`,
    );
  }
  const first = await askSecret(`passphrase for ${file}: `);
  if (purpose === "decrypt") return first;
  if (first.length === 0) throw new FerryError("E_USAGE", "an empty passphrase protects nothing: type one");
  if ((await askSecret("again: ")) !== first)
    throw new FerryError("E_USAGE", "the passphrases differ: nothing was written");
  return first;
}

/** What opens the package `file`: --identity files (FERRY_IDENTITY), else the passphrase if it is encrypted. */
async function keysFor(file: string, identities: string[] | undefined): Promise<DecryptWith> {
  const ids = identities ?? (process.env.FERRY_IDENTITY ? [process.env.FERRY_IDENTITY] : []);
  if (ids.length > 0) return { identityFiles: ids };
  return isEncryptedFile(file) ? { passphrase: await passphrase("decrypt", file) } : {};
}

/** The profile's app, for a package's manifest and checks. */
async function appOf(cmd: Command): Promise<{ app?: AppInfo }> {
  const app = (await profileOf(cmd))?.config.app;
  return app ? { app } : {};
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** The age recipients of a recipients file (`age1…` lines; `#` comments). */
function recipientsIn(file: string | undefined): string[] {
  if (file === undefined) return [];
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new FerryError("E_CONFIG", `--recipient-file ${file}: ${(err as Error).message}`);
  }
  const out = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (out.length === 0) throw new FerryError("E_CONFIG", `--recipient-file ${file} names no recipient (age1… lines)`);
  return out;
}

/** A manifest in a few lines. */
function manifestText(m: Manifest, file: string, bytes: number, encrypted: boolean): string {
  const records = m.collections.reduce((n, c) => n + c.records, 0);
  const lines = [
    `${file}: Ferry package v${m.version}, ${formatBytes(bytes)}${encrypted ? ", encrypted (age)" : ""}, ${m.compression}; checksums and digest verified`,
    `  app        ${m.app ? `${m.app.name}${m.app.version ? ` ${m.app.version}` : ""}` : "(none: exported without a profile)"}`,
    `  source     ${m.source.url} (${m.source.engine}${m.source.version ? `, ${m.source.version}` : ""})`,
    `  exported   ${m.createdAt} by ${m.exportedBy}`,
  ];
  if (m.description) lines.push(`  about      ${m.description}`);
  lines.push(`  digest     sha256:${m.digest}`);
  lines.push(`  ${m.collections.length} collection(s), ${records} record(s):`);
  const width = Math.max(10, ...m.collections.map((c) => c.name.length));
  for (const c of m.collections) {
    lines.push(
      `    ${c.name.padEnd(width)} ${String(c.records).padStart(10)} rec  ${formatBytes(c.bytes).padStart(9)}  key ${c.schema.primaryKey.join(",") || "(none)"}  sha256:${c.sha256.slice(0, 16)}…`,
    );
  }
  const omittedFields = Object.entries(m.omitted.fields);
  if (omittedFields.length > 0 || m.omitted.collections.length > 0) {
    const parts = [
      ...omittedFields.map(([c, f]) => `${c}.{${f.join(",")}}`),
      ...m.omitted.collections.map((c) => `collection ${c}`),
    ];
    lines.push(`  left out   ${parts.join("; ")} (secret or never exported; --include-secrets keeps them)`);
  }
  return lines.join("\n");
}

function runLine(r: RunEntry): string {
  const counts = r.rollback
    ? r.rollback.removed + r.rollback.restored + r.rollback.failed
    : Object.values(r.collections).reduce((n, c) => n + processed(c), 0);
  const took = r.endedAt ? formatDuration((Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000) : "…";
  const status = r.rolledBack ? "rolled back" : r.status;
  return `${r.id}  ${r.command.padEnd(8)} ${status.padEnd(11)} ${r.startedAt}  ${took.padStart(7)}  ${String(counts).padStart(9)} rec  from ${r.source}`;
}

function statusText(r: RunEntry): string {
  const lines = [
    `run ${r.id}: ${r.command} ${r.source} → ${r.target}`,
    `status ${r.status}, by ${r.by}, started ${r.startedAt}${r.endedAt ? `, ended ${r.endedAt}` : ""}`,
  ];
  if (r.command !== "rollback") {
    lines.push(
      `conflict ${r.options.conflict}${r.options.key ? `, key ${r.options.key.join(",")}` : ""}, batch ${r.options.batchSize}${r.options.undo ? ", undo log kept (ferry rollback)" : ""}`,
    );
  }
  if (r.error) lines.push(`error ${r.error.code}: ${r.error.message}`);
  if (r.rollback) {
    const b = r.rollback;
    const done = b.removed + b.restored + b.failed;
    lines.push(
      `  undoes run ${r.undoes}: ${done}/${b.total}${b.total ? ` (${((100 * done) / b.total).toFixed(1)}%)` : ""} — removed ${b.removed}, restored ${b.restored}, refused ${b.failed}`,
    );
  }
  if (r.rolledBack) lines.push(`rolled back by ${r.rolledBack.by} at ${r.rolledBack.at}`);
  for (const [name, c] of Object.entries(r.collections)) {
    const done = processed(c);
    const pct = c.total ? ` (${((100 * done) / c.total).toFixed(1)}%)` : "";
    lines.push(
      `  ${name}: ${done}/${c.total ?? "?"}${pct} ${c.done ? "done" : "in progress"} — copied ${c.copied}, skipped ${c.skipped}, overwritten ${c.overwritten}, merged ${c.merged}, failed ${c.failed}`,
    );
    for (const f of c.failures.slice(0, 10)) lines.push(`    ✗ ${f.key}: ${f.reason}`);
  }
  return lines.join("\n");
}

/** Builds the command table. Exported for tests. */
export function program(): Command {
  const p = new Command("ferry")
    .description("Move an application's data between instances, engines and versions, and prove nothing was lost.")
    .version("0.1.0")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) })
    .option(
      "--config <file>",
      `the application profile (default: ${PROFILE_FILES.join(", ")} in this directory, if any)`,
    );

  p.command("copy")
    .description("copy collections from one instance to another, resumably, with a conflict mode")
    .requiredOption("--from <url>", "source instance")
    .requiredOption("--to <url>", "target instance")
    .option(
      "--collections <names>",
      "only these collections, comma-separated: the profile's names, the instance's own, Redis globs (default: all but the profile's export: false ones)",
      list,
    )
    .option("--types <names>", "the same as --collections (the name guide 001's script uses)", list)
    .addOption(
      new Option("--conflict <mode>", "when a record's key exists at the target")
        .choices(["fail", "skip", "overwrite", "merge"])
        .default("fail"),
    )
    .option("--key <fields>", "natural key to match records on, comma-separated (default: the primary key)", list)
    .option("--dry-run", "count what would be copied, skipped, overwritten, merged or refused; write nothing")
    .option("-y, --yes", "do not ask for confirmation (required without a terminal)")
    .option(
      "--batch-size <n>",
      `records per batch and checkpoint (default ${DEFAULT_BATCH_SIZE}; same-engine bulk copies ${DEFAULT_BULK_BATCH_SIZE})`,
      positiveInt,
    )
    .option("--json", "NDJSON events on stdout instead of progress on stderr")
    .option("--resume", "continue the target's interrupted run from its last checkpoint")
    .option("--force", "start although the target has an unfinished run (it is marked abandoned)")
    .option("--stop-on-error", "stop at the first record the target refuses")
    .option(
      "--skip-invalid",
      "write the records that pass the profile's schemas and list the others (default: any invalid record stops the copy before it writes)",
    )
    .option(
      "--jobs <n>",
      "collections and key ranges copied at once (PostgreSQL, MySQL and Redis targets; default: CPU cores)",
      positiveInt,
      defaultJobs(),
    )
    .option("--allow-lossy", "copy even where the type plan says values change (rounded, time zone dropped)")
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .addHelpText(
      "after",
      `
Conflict modes:
  fail       (default) if any incoming key exists at the target, write nothing (exit 4)
  skip       leave existing records untouched; running the same copy twice copies 0 the second time
  overwrite  replace existing records whole
  merge      update matched records field by field (key: primary key or --key), add new ones,
             keep target records the source does not have
${INSTANCES_HELP}

Types: copying between engines first builds a type plan (\`ferry plan\` prints it). Each field
is exact, checked (values that do not fit are refused one by one, by key) or lossy (values
would change: the copy refuses to start unless --allow-lossy).

Exit codes: 0 done · 1 failed (records refused, listed) · 2 usage/config/lossy plan (also "no" at the prompt)
            · 3 validation failed · 4 conflict in fail mode (also its dry run) · 130 interrupted
            (run again with --resume)

Examples:
  ferry copy --from sqlite:./app.db --to ./backup/ --yes
  ferry copy --from ./backup/ --to sqlite:./restored.db --conflict skip --yes
  ferry copy --from sqlite:a.db --to sqlite:b.db --conflict merge --key email --dry-run
  ferry copy --from postgres://postgres@127.0.0.1/app --to postgres://postgres@10.0.0.2/app --jobs 4 --yes
  ferry copy --from mysql://root@127.0.0.1/shop --to postgres://postgres@127.0.0.1/shop --allow-lossy --yes
  ferry copy --from redis://:pw@prod:6379/0 --to redis://qa:6379/1 --collections 'apikey:*,!apikey:idx:*' --conflict skip --yes
  ferry copy --from 'redis://prod:6379/0?hashes=rows' --to postgres://postgres@127.0.0.1/relay --collections 'apikeys=apikey:*,!apikey:idx:*' --yes`,
    )
    .action(async (flags: CopyFlags, cmd: Command) => {
      process.exitCode = await copyCommand(flags, cmd);
    });

  p.command("plan")
    .description("show how each field's type maps from source to target, and what could be lost")
    .requiredOption("--from <url>", "source instance")
    .requiredOption("--to <url>", "target instance (need not exist yet)")
    .option("--collections <names>", "only these collections, comma-separated (default: all)", list)
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .option("--json", "the plan as JSON on stdout")
    .addHelpText(
      "after",
      `
Each field is one of:
  exact    every value arrives unchanged
  checked  some values may not fit the target type (too long, out of range, zero dates…):
           each is refused by key and reported; nothing is changed silently
  LOSSY    values change on the way (rounded, time zone dropped): \`ferry copy\` refuses to
           start unless --allow-lossy
  MISSING  the existing target collection lacks the field: \`ferry copy\` refuses to start

Example:
  ferry plan --from mysql://root@127.0.0.1/shop --to postgres://postgres@127.0.0.1/shop`,
    )
    .action(
      async (
        flags: { from: string; to: string; collections?: string[]; schema?: string; json?: boolean },
        cmd: Command,
      ) => {
        const p = await plan({
          from: await urlOf(flags.from, cmd, flags.schema),
          to: await urlOf(flags.to, cmd, flags.schema),
          ...(flags.collections ? { collections: flags.collections } : {}),
          ...(await specsFor(cmd)),
        });
        if (flags.json) json(p);
        else process.stdout.write(`${planTable(p, true)}\n`);
      },
    );

  p.command("collections")
    .description("list an instance's collections with record counts and sizes, as the profile declares them")
    .requiredOption("--from <url>", "the instance (a URL or a profile instance's name)")
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .option("--json", "the list as one JSON document on stdout")
    .addHelpText(
      "after",
      `
The profile's collections come first, in its order (those marked export: false too, with
their counts), then the instance's other collections: those a copy of everything takes
beside the profile's (for Redis, the keys no profile collection holds).

  records  records (Redis: keys); "-" when the collection is not at the instance
  size     bytes at the instance: a table with its indexes (PostgreSQL, MySQL/MariaDB: InnoDB's
           estimate, SQLite: its pages), a file (NDJSON; a .json document: its array's text),
           Redis: memory (MEMORY USAGE summed); "?" when the engine cannot tell cheaply
  where    the table or file, or the Redis globs (!glob: excluded)
  marks    secret: the profile's secret fields · never exported (export: false) ·
           not at this instance · not in the profile

Examples:
  ferry collections --from sqlite:./app.db
  ferry collections --from prod            # a profile instance: its collections, secrets and never-exported ones
  ferry collections --from redis://127.0.0.1:6379/0 --json`,
    )
    .action(async (flags: { from: string; schema?: string; json?: boolean }, cmd: Command) => {
      const list = await listCollections({
        from: await urlOf(flags.from, cmd, flags.schema),
        ...(await specsFor(cmd)),
      });
      if (flags.json) {
        json({
          type: "collections",
          instance: list.instance,
          engine: list.engine,
          collections: list.collections.map((c) => ({ ...c, records: c.records ?? null, bytes: c.bytes ?? null })),
        });
      } else process.stdout.write(`${collectionsTable(list)}\n`);
    });

  p.command("export")
    .description("write an instance's collections to one .ferry package: checksummed, compressed, optionally encrypted")
    .requiredOption("--from <url>", "the instance (a URL or a profile instance's name)")
    .requiredOption("--output <file>", "the package to write, e.g. app.ferry (replaced only once complete)")
    .option(
      "--collections <names>",
      "only these collections, comma-separated (default: all but export: false ones)",
      list,
    )
    .option("--description <text>", "a note kept in the manifest")
    .option("--include-secrets", "keep the profile's secret fields and export: false collections (left out by default)")
    .addOption(new Option("--compression <kind>", "compression of the data").choices([...COMPRESSIONS]).default("zstd"))
    .option("--encrypt", "encrypt with a passphrase (FERRY_PASSPHRASE, else asked on the terminal)")
    .option("--recipient <age1…>", "encrypt for this age public key (repeatable)", collect)
    .option("--recipient-file <file>", "encrypt for the age public keys in this file (one per line)")
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .option("--json", "NDJSON events on stdout, then the manifest")
    .addHelpText(
      "after",
      `
A package is one tar file (tar tvf lists it): each collection's records as compressed NDJSON
with their types, and a manifest last: format version, app and version (from the profile),
source (no password), who, when, each collection's schema, count, bytes and SHA-256, and a
digest of the whole. Encrypted packages are standard age files: age -d opens them.

Left out unless --include-secrets: the profile's secret fields and export: false collections
(the manifest says what was left out).

Examples:
  ferry export --from sqlite:./app.db --output app.ferry
  ferry export --from prod --output prod-2026-11-21.ferry --description "before the 2.0 upgrade"
  FERRY_PASSPHRASE=… ferry export --from prod --output prod.ferry --encrypt
  ferry export --from prod --output prod.ferry --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p`,
    )
    .action(
      async (
        flags: {
          from: string;
          output: string;
          collections?: string[];
          description?: string;
          includeSecrets?: boolean;
          compression: Compression;
          encrypt?: boolean;
          recipient?: string[];
          recipientFile?: string;
          schema?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const recipients = [...(flags.recipient ?? []), ...recipientsIn(flags.recipientFile)];
        if (flags.encrypt && recipients.length > 0) {
          throw new FerryError("E_USAGE", "--encrypt (a passphrase) and --recipient: choose one way to encrypt");
        }
        const encryption = flags.encrypt
          ? { passphrase: await passphrase("encrypt", flags.output) }
          : recipients.length > 0
            ? { recipients }
            : undefined;
        const from = await urlOf(flags.from, cmd, flags.schema);
        const profile = await profileFor(cmd);
        const app = await appOf(cmd);
        const r = await interruptible((signal) =>
          exportPackage({
            from,
            output: flags.output,
            ...(flags.collections ? { collections: flags.collections } : {}),
            ...profile,
            ...app,
            ...(flags.description ? { description: flags.description } : {}),
            includeSecrets: Boolean(flags.includeSecrets),
            compression: flags.compression,
            ...(encryption ? { encryption } : {}),
            signal,
            onEvent: eventsTo(Boolean(flags.json)),
          }),
        );
        if (flags.json) json({ type: "package", file: r.file, bytes: r.bytes, manifest: r.manifest });
        else process.stderr.write(`${manifestText(r.manifest, r.file, r.bytes, encryption !== undefined)}\n`);
      },
    );

  p.command("inspect")
    .description("check a .ferry package and print its manifest")
    .argument("<file>", "the package")
    .option("--identity <file>", "an age identity file that opens an encrypted package (or FERRY_IDENTITY)", collect)
    .option("--json", "the manifest as JSON on stdout")
    .addHelpText(
      "after",
      `
Every chunk's and collection's SHA-256, the record counts and the package digest are checked
on the way (exit 3 naming each check that failed). An encrypted package is opened with
FERRY_PASSPHRASE (or the prompt), or --identity.

Example:
  ferry inspect app.ferry`,
    )
    .action(async (file: string, flags: { identity?: string[]; json?: boolean }) => {
      const r = await inspectPackage(file, await keysFor(file, flags.identity));
      if (flags.json) json({ type: "package", file, bytes: r.bytes, encrypted: r.encrypted, manifest: r.manifest });
      else process.stdout.write(`${manifestText(r.manifest, file, r.bytes, r.encrypted)}\n`);
    });

  p.command("validate")
    .description("check a package whole, and preview what importing it into an instance would do")
    .requiredOption("--input <file>", "the package")
    .option("--against <url>", "an instance to preview the import into (nothing is written there)")
    .option("--collections <names>", "only these collections, comma-separated", list)
    .addOption(
      new Option("--conflict <mode>", "the conflict mode the preview assumes")
        .choices(["fail", "skip", "overwrite", "merge"])
        .default("fail"),
    )
    .option("--key <fields>", "natural key to match records on, comma-separated", list)
    .option("--identity <file>", "an age identity file that opens an encrypted package (or FERRY_IDENTITY)", collect)
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .option("--json", "NDJSON events on stdout")
    .addHelpText(
      "after",
      `
Checks, all before anything is written anywhere: every chunk's and collection's SHA-256 and
count, the package digest, the format version, the app name and major version against the
profile's, and every record against the profile's schemas (and natural-key uniqueness).
With --against: the type plan into that instance and, per collection, how many records an
import would add, skip, overwrite, merge or refuse.

Exit codes: 0 valid · 3 invalid (every problem listed) · 4 conflicts in fail mode (--against)

Examples:
  ferry validate --input app.ferry
  ferry validate --input app.ferry --against qa --conflict skip`,
    )
    .action(
      async (
        flags: {
          input: string;
          against?: string;
          collections?: string[];
          conflict: ConflictMode;
          key?: string[];
          identity?: string[];
          schema?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const r = await validatePackage({
          input: flags.input,
          keys: await keysFor(flags.input, flags.identity),
          ...(flags.against ? { against: await urlOf(flags.against, cmd, flags.schema) } : {}),
          ...(flags.collections ? { collections: flags.collections } : {}),
          ...(await profileFor(cmd)),
          ...(await appOf(cmd)),
          conflict: flags.conflict,
          ...(flags.key ? { key: flags.key } : {}),
          onEvent: eventsTo(Boolean(flags.json)),
        });
        const records = r.manifest.collections.reduce((n, c) => n + c.records, 0);
        if (!flags.json) {
          process.stderr.write(
            `${flags.input}: valid: ${r.manifest.collections.length} collection(s), ${records} record(s); checksums, digest${r.manifest.app ? ", app" : ""} and records checked\n`,
          );
        }
        if (flags.against && flags.conflict === "fail" && r.preview.total.failed > 0) process.exitCode = 4;
      },
    );

  p.command("import")
    .description("import a .ferry package into an instance, checked whole before anything is written")
    .requiredOption("--to <url>", "the instance (a URL or a profile instance's name)")
    .requiredOption("--input <file>", "the package")
    .option("--collections <names>", "only these collections, comma-separated", list)
    .addOption(
      new Option("--conflict <mode>", "when a record's key exists at the target")
        .choices(["fail", "skip", "overwrite", "merge"])
        .default("fail"),
    )
    .option("--key <fields>", "natural key to match records on, comma-separated (default: the primary key)", list)
    .option("--dry-run", "count what would be added, skipped, overwritten, merged or refused; write nothing")
    .option("-y, --yes", "do not ask for confirmation (required without a terminal)")
    .option("--resume", "continue the target's interrupted import from its last checkpoint")
    .option("--force", "start although the target has an unfinished run (it is marked abandoned)")
    .option("--skip-invalid", "write the records that pass the profile's schemas and list the others")
    .option("--stop-on-error", "stop at the first record the target refuses")
    .option("--no-rollback", "keep no undo log at the target (faster; ferry rollback cannot undo the import)")
    .option("--identity <file>", "an age identity file that opens an encrypted package (or FERRY_IDENTITY)", collect)
    .option("--batch-size <n>", `records per batch and checkpoint (default ${DEFAULT_BATCH_SIZE})`, positiveInt)
    .option(
      "--jobs <n>",
      "collections and parts of a collection imported at once (PostgreSQL, MySQL and Redis targets; default: CPU cores)",
      positiveInt,
      defaultJobs(),
    )
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .option("--json", "NDJSON events on stdout instead of progress on stderr")
    .addHelpText(
      "after",
      `
The whole package is checked first (checksums, digest, format version, app and major
version, every record against the profile's schemas): a damaged, truncated, edited or
foreign package is refused before anything is written. Collections are written parents
first (foreign keys, and the profile's dependsOn); values keep their types.

Conflict modes are copy's: fail (default; exit 4, nothing written), skip, overwrite, merge.

Rollback: the import keeps an undo log at the target (the keys it added, the prior content
of what it overwrote or merged; not a dump), saved with each batch. ferry rollback ID --at
puts the target back exactly, refusing (and listing) records changed since unless --force.
--no-rollback skips the log.

Examples:
  ferry import --to sqlite:./restored.db --input app.ferry --yes
  ferry import --to qa --input prod.ferry --conflict skip --dry-run
  FERRY_IDENTITY=~/.age/key.txt ferry import --to qa --input prod.ferry --conflict merge --yes`,
    )
    .action(
      async (
        flags: {
          to: string;
          input: string;
          collections?: string[];
          conflict: ConflictMode;
          key?: string[];
          dryRun?: boolean;
          yes?: boolean;
          resume?: boolean;
          force?: boolean;
          skipInvalid?: boolean;
          stopOnError?: boolean;
          rollback: boolean;
          identity?: string[];
          batchSize?: number;
          jobs: number;
          schema?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        requireConfirmable(Boolean(flags.yes), Boolean(flags.dryRun));
        const to = await urlOf(flags.to, cmd, flags.schema);
        const keys = await keysFor(flags.input, flags.identity);
        const profile = await profileFor(cmd);
        const app = await appOf(cmd);
        process.exitCode = await interruptible(async (signal) => {
          const r = await importPackage({
            input: flags.input,
            to,
            keys,
            ...profile,
            ...app,
            ...(flags.collections ? { collections: flags.collections } : {}),
            conflict: flags.conflict,
            ...(flags.key ? { key: flags.key } : {}),
            dryRun: Boolean(flags.dryRun),
            resume: Boolean(flags.resume),
            force: Boolean(flags.force),
            skipInvalid: Boolean(flags.skipInvalid),
            stopOnError: Boolean(flags.stopOnError),
            rollback: flags.rollback,
            ...(flags.batchSize ? { batchSize: flags.batchSize } : {}),
            jobs: flags.jobs,
            signal,
            onEvent: eventsTo(Boolean(flags.json)),
            ...(flags.yes ? {} : { confirm: askToConfirm }),
          });
          if (!flags.json && !r.dryRun && flags.rollback) {
            // The instance as typed when it is a profile name; a URL without its password.
            process.stderr.write(`undo with: ferry rollback ${r.runId} --at ${redactUrl(flags.to)}\n`);
          }
          if (r.dryRun && flags.conflict === "fail" && !flags.skipInvalid && r.total.failed > 0) return 4;
          return r.status === "done" ? 0 : 1;
        });
      },
    );

  p.command("rollback")
    .description(
      "undo an import at an instance from its undo log: what it added is removed, what it overwrote or merged restored",
    )
    .argument("<id>", "the run (ferry history lists them; a unique prefix is enough)")
    .requiredOption("--at <url>", "the instance the run wrote to")
    .option(
      "--force",
      "restore even records changed since the run (their later changes are lost); also start although another run is unfinished, or start an unfinished rollback over",
    )
    .option("--dry-run", "check every record and count what would be removed and restored; change nothing")
    .option("--resume", "finish this run's interrupted rollback")
    .option("-y, --yes", "do not ask for confirmation (required without a terminal)")
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .option("--json", "the result as JSON on stdout")
    .addHelpText(
      "after",
      `
First every record the run wrote is compared with what it wrote. If any was changed or
removed since, nothing is done and each is listed (exit 4), unless --force. Then the log is
applied newest batch first, as a run of its own (ferry history shows it; --resume finishes an
interrupted one); the run undone is marked rolled back.

Examples:
  ferry rollback 20261121T233110-0504bc --at qa --dry-run
  ferry rollback 20261121T2331 --at sqlite:./app.db --yes`,
    )
    .action(
      async (
        id: string,
        flags: {
          at: string;
          force?: boolean;
          dryRun?: boolean;
          resume?: boolean;
          yes?: boolean;
          schema?: string;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        requireConfirmable(Boolean(flags.yes), Boolean(flags.dryRun));
        const at = await urlOf(flags.at, cmd, flags.schema);
        const r = await interruptible((signal) =>
          rollback({
            at,
            id,
            force: Boolean(flags.force),
            dryRun: Boolean(flags.dryRun),
            resume: Boolean(flags.resume),
            signal,
            onEvent: eventsTo(Boolean(flags.json)),
            ...(flags.yes
              ? {}
              : {
                  confirm: (s) =>
                    askYesNo(
                      `Roll back run ${s.run}: remove ${s.removes} record(s), restore ${s.restores}. Proceed? [y/N] `,
                    ),
                }),
          }),
        );
        if (flags.json) json({ type: "rollback", ...r });
        else {
          const verb = r.dryRun ? "would remove" : "removed";
          const lines = [
            `${r.dryRun ? "dry run: " : ""}run ${r.undoes}: ${verb} ${r.removed} record(s), ${r.dryRun ? "would restore" : "restored"} ${r.restored}${r.failures.length > 0 ? `, ${r.failures.length} refused` : ""}`,
            ...r.failures.slice(0, 10).map((f) => `  ✗ ${f.collection} ${f.key}: ${f.reason}`),
            ...(r.changedCount > 0
              ? [`${r.changedCount} record(s) had changed since the run (restored: --force)`]
              : []),
          ];
          process.stderr.write(`${lines.join("\n")}\n`);
        }
        process.exitCode = r.failures.length > 0 ? 1 : 0;
      },
    );

  p.command("forget")
    .description(
      "remove a run and its undo log from an instance's journal (its data stays; it can no longer be rolled back)",
    )
    .argument("<id>", "the run (a unique prefix is enough)")
    .requiredOption("--at <url>", "the instance whose journal holds the run")
    .option("--force", "forget a run that is still unfinished")
    .option("--schema <name>", "PostgreSQL schema for URLs without ?schema= (default public)")
    .option("--json", "the run forgotten as JSON on stdout")
    .action(
      async (id: string, flags: { at: string; force?: boolean; schema?: string; json?: boolean }, cmd: Command) => {
        const run = await forget({ at: await urlOf(flags.at, cmd, flags.schema), id, force: Boolean(flags.force) });
        if (flags.json) json({ type: "forgotten", run });
        else process.stderr.write(`forgot run ${run.id} (${run.command} from ${run.source}) and its undo log\n`);
      },
    );

  p.command("history")
    .description("list the runs recorded in an instance's journal, newest first")
    .requiredOption("--at <url>", "the instance (a copy's target)")
    .option("--limit <n>", "at most this many runs", positiveInt)
    .option("--json", "one run per line as JSON on stdout")
    .action(async (flags: { at: string; limit?: number; json?: boolean }, cmd: Command) => {
      const runs = await history({ at: await urlOf(flags.at, cmd), ...(flags.limit ? { limit: flags.limit } : {}) });
      if (flags.json) for (const r of runs) json(r);
      else if (runs.length === 0) process.stderr.write(`no runs recorded at ${redactUrl(flags.at)}\n`);
      else process.stdout.write(`${runs.map(runLine).join("\n")}\n`);
    });

  p.command("status")
    .description("show one run with per-collection progress (readable while it runs)")
    .argument("[id]", "run id or a unique prefix (default: the newest run)")
    .requiredOption("--at <url>", "the instance whose journal holds the run")
    .option("--json", "the run as JSON on stdout")
    .action(async (id: string | undefined, flags: { at: string; json?: boolean }, cmd: Command) => {
      const r = await status({ at: await urlOf(flags.at, cmd), ...(id ? { id } : {}) });
      if (flags.json) json(r);
      else process.stdout.write(`${statusText(r)}\n`);
    });

  p.command("check")
    .description("check the application profile (every problem at once) and reach every instance it names")
    .option("--json", "the result as JSON on stdout")
    .addHelpText(
      "after",
      `
The profile is ferry.config.ts (or .mts, .js, .mjs, .json) in this directory, or --config FILE.
Problems are listed as path: message, all at once (exit 2). Then each named instance is
connected to: its engine and version, or why it cannot be reached (exit 1 if any cannot).

Example:
  ferry check
  ferry --config ./ops/ferry.config.ts check --json`,
    )
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const profile = await profileOf(cmd);
      if (!profile) {
        throw new FerryError(
          "E_CONFIG",
          `no profile here (${PROFILE_FILES.join(", ")}): write one (export default defineConfig({ … })), or give --config FILE`,
        );
      }
      const unset = Object.entries(profile.unresolved).flatMap(([name, vars]) =>
        vars.map((v) => unsetProblem(name, v)),
      );
      if (unset.length > 0) {
        throw new FerryError(
          "E_CONFIG",
          `${profile.path} has ${unset.length === 1 ? "a problem" : `${unset.length} problems`}:\n${unset.map((p) => `  ${p}`).join("\n")}`,
          { details: { profile: profile.path, problems: unset } },
        );
      }
      const checks = await checkInstances(profile);
      const c = profile.config;
      if (flags.json) {
        json({
          type: "check",
          profile: profile.path,
          app: c.app ?? null,
          instances: checks,
        });
      }
      if (!flags.json) {
        const app = c.app ? ` (${c.app.name}${c.app.version ? ` ${c.app.version}` : ""})` : "";
        const counts = `${checks.length} instance${checks.length === 1 ? "" : "s"}, ${Object.keys(c.collections ?? {}).length} collections`;
        const lines = [`profile ${profile.path}${app}: valid; ${counts}`];
        const width = Math.max(0, ...checks.map((i) => i.name.length));
        for (const i of checks) {
          const state = i.reachable ? `ok  ${i.version ?? ""}` : `UNREACHABLE  ${i.error?.message ?? ""}`;
          lines.push(`  ${i.name.padEnd(width)}  ${state}  (${i.url})`);
        }
        process.stdout.write(`${lines.join("\n")}\n`);
      }
      process.exitCode = checks.every((i) => i.reachable) ? 0 : 1;
    });

  p.addHelpText("after", `${INSTANCES_HELP}\n\nKnown instance kinds: ${knownInstances().join(" · ")}`);
  return p;
}

/** Runs the CLI with `argv` and returns the exit code (never exits itself). */
export async function main(argv: string[]): Promise<number> {
  const wantsJson = argv.includes("--json");
  try {
    process.exitCode = 0;
    await program().parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    const code = exitCodeFor(err);
    const fe = isFerryError(err) ? err : undefined;
    if (wantsJson) {
      json({
        type: "error",
        code: fe?.code ?? "E_INTERNAL",
        message: fe?.message ?? String(err),
        ...(fe ? { details: fe.details } : {}),
      });
    }
    if (fe && fe.code !== "E_INTERNAL") {
      process.stderr.write(`ferry: ${fe.message}\n`);
    } else {
      // Not the user's fault: say so, with the stack, so it can be reported.
      process.stderr.write(
        `ferry: internal error (please report): ${err instanceof Error ? err.stack : String(err)}\n`,
      );
      if (fe?.cause instanceof Error) process.stderr.write(`caused by: ${fe.cause.stack}\n`);
    }
    return code;
  }
}

export { FerryError };
