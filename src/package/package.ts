/**
 * Packages through the data path: `exportPackage` copies an instance into a new `.ferry` file,
 * `importPackage` copies one into an instance (conflict modes, dependency order, profile
 * validation and resume as `copy` has them), `validatePackage` checks one (and previews an
 * import with `against`), `inspectPackage` reads its manifest. A package is checked whole
 * before anything is written anywhere.
 */
import { statSync } from "node:fs";
import semver from "semver";
import type { CollectionSpec, Connector } from "../core/connector.js";
import { type CopyOptions, type CopyResult, checkTarget, copyBetween, openTarget } from "../core/copy.js";
import { FerryError } from "../core/errors.js";
import { currentUser } from "../core/journal.js";
import { openConnector } from "../core/registry.js";
import type { DecryptWith, EncryptTo } from "./encryption.js";
import type { Compression, Manifest } from "./format.js";
import { PackageReader } from "./reader.js";
import { PackageWriter } from "./writer.js";

/** The application a profile describes (`app` of `ferry.config.ts`). */
export type AppInfo = { name: string; version?: string };

/** Options of {@link exportPackage}. */
export interface ExportOptions
  extends Pick<CopyOptions, "collections" | "collectionSpecs" | "dependsOn" | "batchSize" | "signal" | "onEvent"> {
  /** The instance to export (URL). */
  from: string;
  /** The package file to write (`app.ferry`); replaced only once the export is complete. */
  output: string;
  description?: string;
  /** Keep the profile's secret fields and `export: false` collections. Default `false`. */
  includeSecrets?: boolean;
  /** Default `zstd`. */
  compression?: Compression;
  encryption?: EncryptTo;
  /** The profile's app, recorded in the manifest. */
  app?: AppInfo;
}

/** What {@link exportPackage} wrote. */
export interface ExportResult {
  file: string;
  /** Bytes of the package file. */
  bytes: number;
  manifest: Manifest;
  run: CopyResult;
}

/**
 * Writes an instance's collections to a new package. Secret fields and never-exported
 * collections stay out unless `includeSecrets`; the manifest records what was left out.
 *
 * @throws FerryError as {@link copy} does; the package file is not written unless every
 * record was (a refused record fails the export with `E_WRITE`).
 */
export async function exportPackage(o: ExportOptions): Promise<ExportResult> {
  const specs = o.collectionSpecs ?? {};
  // What leaves the instance: export: false collections only when secrets are asked for. The
  // profile's rules for writing (schemas, transforms, matching) apply on import, not here.
  const exportSpecs: Record<string, CollectionSpec> = {};
  for (const [name, s] of Object.entries(specs)) {
    exportSpecs[name] = {
      ...(s.match ? { match: s.match } : {}),
      ...(s.exclude ? { exclude: s.exclude } : {}),
      ...(s.table ? { table: s.table } : {}),
      ...(s.key ? { key: s.key } : {}),
      ...(s.secret ? { secret: s.secret } : {}),
      ...(s.export === false && !o.includeSecrets ? { export: false } : {}),
    };
  }
  const omitFields: Record<string, string[]> = {};
  if (!o.includeSecrets) {
    for (const [name, s] of Object.entries(specs)) {
      if (!s.secret || s.secret.length === 0) continue;
      omitFields[name] = s.secret;
      if (s.table) omitFields[s.table] = s.secret;
    }
  }
  const omittedCollections = o.includeSecrets
    ? []
    : Object.entries(specs)
        .filter(([, s]) => s.export === false)
        .map(([n]) => n);

  const source = await openConnector(o.from, { write: false });
  let writer: PackageWriter | undefined;
  try {
    await source.check();
    const version = source.version ? await source.version().catch(() => undefined) : undefined;
    writer = new PackageWriter(o.output, {
      compression: o.compression ?? "zstd",
      ...(o.encryption ? { encryption: o.encryption } : {}),
      ...(o.description ? { description: o.description } : {}),
      app: o.app ?? null,
      source: { url: source.displayUrl, engine: source.engine, ...(version ? { version } : {}) },
      exportedBy: currentUser(),
      omitFields,
      omittedCollections,
    });
    await writer.check();
    const run = await copyBetween(source, writer, {
      from: o.from,
      to: o.output,
      command: "export",
      conflict: "fail",
      jobs: 1,
      ...(o.collections && o.collections.length > 0 ? { collections: o.collections } : {}),
      collectionSpecs: exportSpecs,
      ...(o.dependsOn ? { dependsOn: o.dependsOn } : {}),
      ...(o.batchSize ? { batchSize: o.batchSize } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onEvent ? { onEvent: o.onEvent } : {}),
    });
    if (run.status !== "done") {
      const shown = run.failures
        .slice(0, 5)
        .map((f) => `${f.collection} ${f.key}: ${f.reason}`)
        .join("; ");
      throw new FerryError(
        "E_WRITE",
        `${run.total.failed} record(s) could not be exported (${shown}): no package was written`,
        {
          details: { failures: run.failures },
        },
      );
    }
    const manifest = await writer.commit();
    return { file: o.output, bytes: statSync(o.output).size, manifest, run };
  } finally {
    await source.close().catch(() => {});
    await writer?.close().catch(() => {});
  }
}

/** Options of {@link importPackage}. */
export interface ImportOptions extends Omit<CopyOptions, "from"> {
  /** The package file. */
  input: string;
  /** The passphrase or identities of an encrypted package. */
  keys?: DecryptWith;
  /** The profile's app: a package from another app, or another major version, is refused. */
  app?: AppInfo;
  /** Keep an undo log at the target so `ferry rollback` can restore it. Default `true`. */
  rollback?: boolean;
}

/**
 * Imports a package into an instance: the whole package is checked first (checksums, digest,
 * format version, app), then copied with `copy`'s conflict modes, order and validation.
 *
 * @throws FerryError `E_CHECKSUM` (damaged, truncated, edited, newer format), `E_DECRYPT`,
 * `E_VALIDATION` (another app, invalid records) before anything is written; then as {@link copy}.
 */
export async function importPackage(o: ImportOptions): Promise<CopyResult & { manifest: Manifest }> {
  const reader = await PackageReader.open(o.input, o.keys ?? {});
  refuseOtherApp(reader.manifest, o.app, o.input);
  const jobs = o.jobs ?? 1;
  const dryRun = o.dryRun ?? false;
  let target: Connector | undefined;
  try {
    target = await openTarget(o.to, dryRun, jobs);
    if (target && !(await checkTarget(target, dryRun))) {
      await target.close().catch(() => {});
      target = undefined;
    }
    const run = await copyBetween(reader, target, {
      ...o,
      from: o.input,
      command: "import",
      jobs,
      undo: o.rollback !== false && !dryRun,
    });
    return { ...run, manifest: reader.manifest };
  } finally {
    await target?.close().catch(() => {});
    await reader.close();
  }
}

/** Options of {@link validatePackage}. */
export interface ValidateOptions
  extends Pick<CopyOptions, "collections" | "collectionSpecs" | "dependsOn" | "conflict" | "key"> {
  input: string;
  keys?: DecryptWith;
  app?: AppInfo;
  /** An instance to preview the import into (nothing is written there). */
  against?: string;
  onEvent?: CopyOptions["onEvent"];
}

/**
 * Checks a package: every checksum, the digest, the format version, the app name and major
 * version against the profile's, and every record against the profile's schemas. With
 * `against`, also what an import there would do (a dry run).
 *
 * @throws FerryError `E_CHECKSUM` or `E_VALIDATION` listing every problem.
 */
export async function validatePackage(o: ValidateOptions): Promise<{ manifest: Manifest; preview: CopyResult }> {
  const reader = await PackageReader.open(o.input, o.keys ?? {});
  refuseOtherApp(reader.manifest, o.app, o.input);
  let target: Connector | undefined;
  try {
    if (o.against) {
      target = await openTarget(o.against, true, 1);
      if (target && !(await checkTarget(target, true))) {
        await target.close().catch(() => {});
        target = undefined;
      }
    }
    const preview = await copyBetween(reader, target, {
      ...o,
      from: o.input,
      to: o.against ?? o.input,
      command: "import",
      dryRun: true,
      jobs: 1,
    });
    return { manifest: reader.manifest, preview };
  } finally {
    await target?.close().catch(() => {});
    await reader.close();
  }
}

/** A package's manifest, after the checks {@link PackageReader.open} makes. */
export async function inspectPackage(
  input: string,
  keys: DecryptWith = {},
): Promise<{ manifest: Manifest; encrypted: boolean; bytes: number }> {
  const reader = await PackageReader.open(input, keys);
  return { manifest: reader.manifest, encrypted: reader.encrypted, bytes: reader.fileBytes };
}

/**
 * Refuses a package made by another app, or by a version of this app with another major
 * version than the profile's (semver), naming both.
 */
export function refuseOtherApp(manifest: Manifest, app: AppInfo | undefined, file: string): void {
  const from = manifest.app;
  if (!app || !from) return;
  if (from.name !== app.name) {
    throw new FerryError(
      "E_VALIDATION",
      `${file} was exported from app ${from.name}, and this profile is app ${app.name}: import it with that app's profile (or without a profile)`,
      { details: { problems: [`app ${from.name} ≠ ${app.name}`] } },
    );
  }
  if (!from.version || !app.version) return;
  const a = semver.coerce(from.version);
  const b = semver.coerce(app.version);
  if (!a || !b) return;
  if (a.major !== b.major) {
    throw new FerryError(
      "E_VALIDATION",
      `${file} was exported from ${from.name} ${from.version}, and this profile is ${app.name} ${app.version}: another major version; migrate the data with that version first`,
      { details: { problems: [`version ${from.version} vs ${app.version}`] } },
    );
  }
}
