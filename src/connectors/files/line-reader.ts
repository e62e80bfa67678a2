/**
 * Bounded-memory line reading for NDJSON files, with the byte offset after every line so a
 * reader can resume exactly there. Lines end at `\n` only (a `\r` before it is left for
 * JSON.parse to skip as whitespace); U+2028 and U+2029 are ordinary characters.
 */
import { open } from "node:fs/promises";

/** Lines of one read, each with the absolute byte offset just after its terminator. */
export interface LineChunk {
  lines: string[];
  /** `ends[i]` is where line `i + 1` starts (the file size for a last unterminated line). */
  ends: number[];
  /** Offset where `lines[0]` starts. */
  start: number;
}

/** Default read size: big enough to amortise syscalls, small enough to stay bounded. */
export const READ_CHUNK_BYTES = 1 << 20;

const NL = 0x0a;

/**
 * Yields the lines of `path` from byte `start` (which must be a line start) up to byte `end`
 * (default: the end of the file), a chunk at a time. A UTF-8 byte order mark at offset 0 is skipped. Memory is one read buffer plus the
 * longest line.
 */
export async function* readLineChunks(
  path: string,
  start = 0,
  end = Number.POSITIVE_INFINITY,
  chunkBytes = READ_CHUNK_BYTES,
): AsyncGenerator<LineChunk> {
  const fh = await open(path, "r");
  try {
    let buf = Buffer.allocUnsafe(chunkBytes);
    let carry = 0; // bytes of an unterminated line kept at buf[0, carry)
    let pos = start; // file offset of the next read
    let first = true;
    for (;;) {
      if (carry === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, carry);
        buf = bigger;
      }
      const want = Math.min(buf.length - carry, end - pos);
      const { bytesRead } = want > 0 ? await fh.read(buf, carry, want, pos) : { bytesRead: 0 };
      const base = pos - carry; // file offset of buf[0]
      if (bytesRead === 0) {
        if (carry > 0) yield { lines: [buf.toString("utf8", 0, carry)], ends: [pos], start: base };
        return;
      }
      pos += bytesRead;
      const view = buf.subarray(0, carry + bytesRead);
      let s = 0;
      if (first) {
        first = false;
        if (start === 0 && view.length >= 3 && view[0] === 0xef && view[1] === 0xbb && view[2] === 0xbf) s = 3;
      }
      const chunkStart = base + s;
      const lines: string[] = [];
      const ends: number[] = [];
      let nl = view.indexOf(NL, Math.max(carry, s));
      while (nl !== -1) {
        lines.push(view.toString("utf8", s, nl));
        ends.push(base + nl + 1);
        s = nl + 1;
        nl = view.indexOf(NL, s);
      }
      carry = view.length - s;
      if (carry > 0 && s > 0) buf.copy(buf, 0, s, view.length);
      if (lines.length > 0) yield { lines, ends, start: chunkStart };
    }
  } finally {
    await fh.close();
  }
}

function isBlankByte(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0d;
}

/**
 * Counts the non-blank lines of `path` up to byte `end` (a last line without `\n` counts too) by scanning
 * bytes: no decoding, no parsing. Lines of only spaces, tabs and `\r` are blank.
 */
export async function countLines(
  path: string,
  end = Number.POSITIVE_INFINITY,
  chunkBytes = READ_CHUNK_BYTES,
): Promise<number> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    let count = 0;
    let content = false; // the current line has a non-blank byte
    let pos = 0;
    for (;;) {
      const want = Math.min(buf.length, end - pos);
      if (want <= 0) break;
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) break;
      const view = buf.subarray(0, bytesRead);
      if (pos === 0 && bytesRead >= 3 && view[0] === 0xef && view[1] === 0xbb && view[2] === 0xbf) {
        view[0] = view[1] = view[2] = 0x20;
      }
      pos += bytesRead;
      let s = 0;
      for (;;) {
        const nl = view.indexOf(NL, s);
        const stop = nl === -1 ? view.length : nl;
        // Only scan until the first non-blank byte: lines of JSON start with `{`.
        for (let i = s; !content && i < stop; i++) if (!isBlankByte(view[i] as number)) content = true;
        if (nl === -1) break;
        if (content) count++;
        content = false;
        s = nl + 1;
      }
    }
    return content ? count + 1 : count;
  } finally {
    await fh.close();
  }
}
