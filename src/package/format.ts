/**
 * The `.ferry` package format, version 1.
 *
 * A package is a POSIX tar file (so `tar tvf` lists it), optionally encrypted whole in the
 * age format (so `age -d` opens it). Its entries, in order:
 * - `data/<collection>/<n>.ndjson.zst` (or `.gz`): the collection's records, one JSON object
 *   per line in Ferry's tagged-value codec (bigints, dates, bytes keep their types), about
 *   {@link CHUNK_BYTES} of text per entry, each entry compressed on its own;
 * - or, since version 2, `data/<collection>/<n>.tsv.zst` (or `.gz`): its rows as the source
 *   engine spelled them in its delimited text (PostgreSQL's COPY text: see `TextExport`), one
 *   row per line, fields as {@link ManifestCollection.text} lists them. Such a collection
 *   moves into the same engine without being turned into records, and is decoded into records
 *   by that engine's connector (`ConnectorFactory.textDecoder`) everywhere else;
 * - `manifest.json`, last: what the package holds and every checksum (see {@link Manifest}).
 *
 * Checksums: each chunk's SHA-256 is of its uncompressed text, and (since version 2) its
 * `stored` one of its bytes as stored (compressed), so a package's every byte is checked
 * without decompressing it; a collection's is of all its chunks' text in order; the package digest is the SHA-256 of the manifest's canonical JSON
 * without its `digest` field, so a changed record, chunk checksum or manifest field all fail
 * the digest. (The digest detects damage and edits, not a forger who recomputes it: an
 * encrypted package is authenticated by age.)
 */
import { createHash } from "node:crypto";
import type { CollectionSchema } from "../core/schema.js";

/** `format` of a package manifest. */
export const PACKAGE_FORMAT = "ferry-package";
/** The format version this Ferry writes; it reads this one and older (1: NDJSON chunks only). */
export const PACKAGE_VERSION = 2;
/** Uncompressed bytes of records after which a data entry is closed (it ends with the line that reaches it). */
export const CHUNK_BYTES = 4 << 20;
/** Largest record (its line of JSON) a package takes; the reader accepts entries up to {@link MAX_ENTRY_BYTES}. */
export const MAX_RECORD_BYTES = 128 << 20;
/** Largest entry a reader accepts: a chunk's text plus one record at most, compressed or not. */
export const MAX_ENTRY_BYTES = CHUNK_BYTES + MAX_RECORD_BYTES + (1 << 20);
/** The manifest's entry name. */
export const MANIFEST_ENTRY = "manifest.json";

/** Compression of the data entries. */
export type Compression = "zstd" | "gzip";
export const COMPRESSIONS: readonly Compression[] = ["zstd", "gzip"];

/** One data entry. */
export interface ChunkInfo {
  /** Its tar entry name. */
  entry: string;
  records: number;
  /** Uncompressed bytes. */
  bytes: number;
  sha256: string;
  /** SHA-256 of the entry's bytes as stored, compressed (version 2). */
  stored?: string;
}

/** One collection in a package. */
export interface ManifestCollection {
  name: string;
  schema: CollectionSchema;
  records: number;
  /** Uncompressed bytes of its records. */
  bytes: number;
  sha256: string;
  chunks: ChunkInfo[];
  /**
   * Present when the chunks hold the source engine's delimited text (`.tsv` entries), not
   * records: the fields of each line, in order. The engine is the schema's `engine`.
   */
  text?: { fields: string[] };
}

/** What a package holds: written last, read first. */
export interface Manifest {
  format: typeof PACKAGE_FORMAT;
  version: number;
  app: { name: string; version?: string } | null;
  /** The instance exported, without password, and its engine and server version. */
  source: { url: string; engine: string; version?: string };
  exportedBy: string;
  createdAt: string;
  description?: string;
  compression: Compression;
  collections: ManifestCollection[];
  /** What was left out (secret fields, never-exported collections), unless asked for. */
  omitted: { fields: Record<string, string[]>; collections: string[] };
  /** SHA-256 of the manifest's canonical JSON without this field. */
  digest: string;
}

/** The entry name of a collection's `n`th chunk (names sort in write order). */
export function chunkEntry(collection: string, n: number, compression: Compression, text = false): string {
  return `data/${encodeURIComponent(collection)}/${String(n).padStart(6, "0")}.${text ? "tsv" : "ndjson"}.${compression === "zstd" ? "zst" : "gz"}`;
}

/** JSON with object keys sorted, so a manifest's digest does not depend on key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, o[k]]),
    );
  });
}

/** The package digest of a manifest (its `digest` field left out). */
export function manifestDigest(m: Omit<Manifest, "digest"> & { digest?: string }): string {
  const { digest: _digest, ...rest } = m;
  return createHash("sha256").update(canonicalJson(rest)).digest("hex");
}
