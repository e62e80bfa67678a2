/** A file that is only ever appended to, fsynced, or cut back: NDJSON data and pending logs. */
import { type FileHandle, open, stat } from "node:fs/promises";
import { writeAll } from "./atomic-file.js";

/** Size of `path` in bytes, or `undefined` when it does not exist. */
export async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** An append-only file, opened lazily; {@link length} tracks its size. */
export class AppendFile {
  /** Current size in bytes (valid after {@link open}). */
  length = 0;
  private fh: FileHandle | undefined;
  private dirty = false;

  constructor(readonly path: string) {}

  /** Opens (creating when missing) and learns the current length. Returns true when it was created. */
  async open(): Promise<boolean> {
    if (this.fh) return false;
    const before = await sizeOf(this.path);
    this.fh = await open(this.path, "a");
    this.length = (await this.fh.stat()).size;
    return before === undefined;
  }

  /** Learns the current length without opening (0 when the file does not exist). */
  async learnLength(): Promise<number> {
    if (!this.fh) this.length = (await sizeOf(this.path)) ?? 0;
    return this.length;
  }

  get isOpen(): boolean {
    return this.fh !== undefined;
  }

  /** Appends bytes (not yet durable: call {@link sync}). */
  async append(data: Uint8Array): Promise<void> {
    if (data.byteLength === 0) return;
    if (!this.fh) await this.open();
    await writeAll(this.fh as FileHandle, data);
    this.length += data.byteLength;
    this.dirty = true;
  }

  /**
   * Makes appended bytes durable. `fdatasync` is enough: it flushes the data and the
   * metadata needed to read it back (the size), and skips timestamps.
   */
  async sync(): Promise<void> {
    if (this.fh && this.dirty) {
      await this.fh.datasync();
      this.dirty = false;
    }
  }

  /** Cuts the file back to `length` bytes, durably. */
  async truncate(length: number): Promise<void> {
    if (!this.fh) await this.open();
    const fh = this.fh as FileHandle;
    await fh.truncate(length);
    await fh.datasync();
    this.length = length;
    this.dirty = false;
  }

  /** The last byte, or `undefined` for an empty file. */
  async lastByte(): Promise<number | undefined> {
    if (this.length === 0) return undefined;
    const rh = await open(this.path, "r");
    try {
      const b = Buffer.alloc(1);
      await rh.read(b, 0, 1, this.length - 1);
      return b[0];
    } finally {
      await rh.close();
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}
