/**
 * Durable file replacement: write a temp file beside the target, fsync it, rename it over
 * the target, fsync the directory. A crash leaves either the old or the new content, never
 * a mix; a leftover temp file is harmless and overwritten next time.
 */
import { createHash } from "node:crypto";
import { type FileHandle, open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

/** Suffix of temp files; discovery never lists them. */
export const TEMP_SUFFIX = ".ferry-tmp";

/** Writes all of `data` at the handle's position (loops over short writes). */
export async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    const { bytesWritten } = await fh.write(data, off, data.byteLength - off);
    off += bytesWritten;
  }
}

/**
 * Makes a rename or a file creation in `dir` durable. Platforms that cannot open a
 * directory for fsync (Windows) skip it: their rename is durable with the file's data.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EISDIR" && code !== "EPERM" && code !== "EINVAL" && code !== "EACCES") throw err;
  } finally {
    await fh?.close();
  }
}

/**
 * Replaces `path` with `data` atomically and durably (temp + fdatasync + rename + fsync dir).
 *
 * @example await writeFileAtomic("ferry.schema.json", JSON.stringify(doc));
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}${TEMP_SUFFIX}`;
  const fh = await open(tmp, "w");
  try {
    await writeAll(fh, typeof data === "string" ? Buffer.from(data) : data);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

/** Reads a file as UTF-8, or `undefined` when it does not exist. */
export async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Removes a file and makes the removal durable; a missing file is fine. */
export async function removeDurably(path: string): Promise<void> {
  await rm(path, { force: true });
  await fsyncDir(dirname(path));
}

/** The SHA-256 (hex) of a file's content, read in chunks; `undefined` when it does not exist. */
export async function sha256File(path: string): Promise<string | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const hash = createHash("sha256");
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
    return hash.digest("hex");
  } finally {
    await fh.close();
  }
}
