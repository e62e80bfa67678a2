/**
 * The schema files of the files connector: `ferry.schema.json` in a directory, and the
 * `<file>.schema.json` sidecar of a `.ndjson` or `.json` file. Schemas are stored verbatim
 * (including `native`), so a same-engine copy through files recreates collections exactly.
 */
import { FerryError } from "../../core/errors.js";
import type { CollectionSchema } from "../../core/schema.js";
import { readTextIfExists, writeFileAtomic } from "./atomic-file.js";

/** `format` of a directory's `ferry.schema.json`. */
export const DIR_FORMAT = "ferry-dir";
/** `format` of a file's `<file>.schema.json` sidecar. */
export const SIDECAR_FORMAT = "ferry-schema";
/** Version written; readers accept this one. */
export const SCHEMA_FILE_VERSION = 1;

/** The content of a schema file. */
export interface SchemaFileDoc {
  format: string;
  version: number;
  collections: CollectionSchema[];
}

function isSchema(x: unknown): x is CollectionSchema {
  const s = x as CollectionSchema;
  return (
    typeof s === "object" &&
    s !== null &&
    typeof s.name === "string" &&
    Array.isArray(s.fields) &&
    s.fields.every((f) => typeof f === "object" && f !== null && typeof f.name === "string") &&
    Array.isArray(s.primaryKey)
  );
}

/**
 * Reads a schema file's collections, or `undefined` when there is none.
 *
 * @throws FerryError `E_VALIDATION` when the file is not a schema file Ferry can read.
 */
export async function readSchemaFile(path: string): Promise<CollectionSchema[] | undefined> {
  const text = await readTextIfExists(path);
  if (text === undefined) return undefined;
  let doc: Partial<SchemaFileDoc>;
  try {
    doc = JSON.parse(text) as Partial<SchemaFileDoc>;
  } catch (err) {
    throw new FerryError("E_VALIDATION", `${path}: not valid JSON: ${(err as Error).message}; fix or remove it`, {
      cause: err,
    });
  }
  const bad = (why: string) =>
    new FerryError("E_VALIDATION", `${path}: ${why}; fix it, or remove it to have the schema inferred from the data`);
  if (typeof doc !== "object" || doc === null || !Array.isArray(doc.collections)) {
    throw bad(`no "collections" array`);
  }
  if (typeof doc.version === "number" && doc.version > SCHEMA_FILE_VERSION) {
    throw bad(`version ${doc.version} is newer than this Ferry reads (${SCHEMA_FILE_VERSION}): upgrade Ferry`);
  }
  doc.collections.forEach((c, i) => {
    if (!isSchema(c)) throw bad(`collections[${i}] is not a collection schema (name, fields, primaryKey)`);
  });
  return doc.collections;
}

/** Writes a schema file atomically. */
export async function writeSchemaFile(path: string, format: string, collections: CollectionSchema[]): Promise<void> {
  const doc: SchemaFileDoc = { format, version: SCHEMA_FILE_VERSION, collections };
  await writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`);
}

/**
 * The schema to store for `incoming` when the target already holds `existing` with data:
 * the existing schema, plus any incoming field it lacks (so every written field is described
 * and core writes all of them).
 */
export function mergeSchemas(existing: CollectionSchema, incoming: CollectionSchema): CollectionSchema {
  const have = new Set(existing.fields.map((f) => f.name));
  const added = incoming.fields.filter((f) => !have.has(f.name));
  return added.length === 0 ? existing : { ...existing, fields: [...existing.fields, ...added] };
}
