/**
 * The application profile's types: what `ferry.config.ts` declares. `defineConfig` only
 * types the object (the profile is checked when Ferry loads it, see `load-profile.ts`).
 */
import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { CollectionSpec } from "../core/connector.js";
import type { ConflictMode } from "../core/journal.js";
import type { Row } from "../core/values.js";

/** What a transform is given besides the record. */
export interface TransformContext {
  /** The collection's name in the profile. */
  collection: string;
}

/**
 * One collection of the application: where its records live at each kind of instance, how
 * they are identified, checked and protected.
 */
export interface CollectionConfig {
  /** Redis key patterns (globs) whose keys the collection holds. */
  match?: string | string[];
  /** Redis key patterns left out of `match`. */
  exclude?: string[];
  /** The table (SQL) or array (JSON file) holding it, when its name there is not the collection's. */
  table?: string;
  /**
   * The collection's identity where the instance declares none (a file, a table without a
   * primary key): matched on, made the created table's primary key, checked unique.
   */
  key?: string | string[];
  /** Field(s) that identify a record across instances (merge and skip match on them). */
  naturalKey?: string | string[];
  /** A Standard Schema validator (zod, valibot, arktype…) every written record must pass. */
  schema?: StandardSchemaV1;
  /** Fields never shown in logs, errors, `--json` events or previews. */
  secret?: string[];
  /** This collection's conflict mode, over `--conflict`. */
  conflict?: ConflictMode;
  /** `false`: the collection never leaves its instance (copies and exports skip it). Default true. */
  export?: boolean;
  /** The collection's name at the target, when it differs (foreign keys follow it). */
  rename?: string;
  /**
   * Changes a record on its way (return it, a new one, or null to drop it); runs before
   * validation. Must be deterministic: on a validated collection it runs in the checking pass
   * and again when writing.
   */
  transform?: (record: Row, ctx: TransformContext) => Row | null | Promise<Row | null>;
}

/** A whole profile. */
export interface FerryConfig {
  app?: { name: string; version?: string };
  /**
   * Named instances: a name is usable wherever a URL is (`--from prod`). Values may read the
   * environment: `${VAR}`, or `${VAR:-default}` when it may be unset.
   */
  instances?: Record<string, string>;
  collections?: Record<string, CollectionConfig>;
  /** Dependencies the instances do not declare: collection → collections copied before it (no cycles). */
  dependsOn?: Record<string, string[]>;
}

/**
 * Types a profile in `ferry.config.ts`.
 *
 * @example
 * import { defineConfig } from "ferry";
 * export default defineConfig({ instances: { prod: "redis://${REDIS_HOST:-localhost}:6379/0" } });
 */
export function defineConfig(config: FerryConfig): FerryConfig {
  return config;
}

/** The profile's collections as core takes them (`CopyOptions.collectionSpecs`). */
export function specsOf(config: FerryConfig): Record<string, CollectionSpec> {
  const out: Record<string, CollectionSpec> = {};
  for (const [name, c] of Object.entries(config.collections ?? {})) {
    out[name] = {
      ...(c.match === undefined ? {} : { match: [c.match].flat() }),
      ...(c.exclude === undefined ? {} : { exclude: c.exclude }),
      ...(c.table === undefined ? {} : { table: c.table }),
      ...(c.key === undefined ? {} : { key: [c.key].flat() }),
      ...(c.rename === undefined ? {} : { rename: c.rename }),
      ...(c.conflict === undefined ? {} : { conflict: c.conflict }),
      ...(c.export === undefined ? {} : { export: c.export }),
      ...(c.schema === undefined ? {} : { schema: c.schema }),
      ...(c.secret === undefined ? {} : { secret: c.secret }),
      ...(c.naturalKey === undefined ? {} : { naturalKey: [c.naturalKey].flat() }),
      ...(c.transform === undefined ? {} : { transform: c.transform }),
    };
  }
  return out;
}
