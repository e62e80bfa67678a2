/**
 * Compression of a package's data entries, each entry on its own: zstd (zstd-napi, the
 * default: on this machine level 1 compresses NDJSON ~3× faster than gzip level 1 and smaller,
 * see bench/README.md) or gzip (node:zlib, for tools that have no zstd).
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { Compressor, decompress as zstdDecompress } from "zstd-napi";
import { FerryError } from "../core/errors.js";
import type { Compression } from "./format.js";

/** zstd level: 1 is both faster and smaller than 3 on typical exports here (bench/README.md). */
const ZSTD_LEVEL = 1;
const GZIP_LEVEL = 1;

let zstd: Compressor | undefined;

/** `data` compressed as a whole frame. */
export function compressChunk(data: Uint8Array, kind: Compression): Buffer {
  if (kind === "gzip") return gzipSync(data, { level: GZIP_LEVEL });
  if (!zstd) {
    zstd = new Compressor();
    zstd.setParameters({ compressionLevel: ZSTD_LEVEL });
  }
  return zstd.compress(data);
}

/**
 * The data of one compressed entry.
 *
 * @throws FerryError `E_CHECKSUM` naming the entry when it does not decompress (damaged).
 */
export function decompressChunk(data: Uint8Array, kind: Compression, entry: string): Buffer {
  try {
    return kind === "gzip" ? gunzipSync(data) : zstdDecompress(data);
  } catch (err) {
    throw new FerryError(
      "E_CHECKSUM",
      `${entry}: does not decompress as ${kind} (${(err as Error).message}): the package is damaged`,
      { cause: err, details: { entry } },
    );
  }
}
