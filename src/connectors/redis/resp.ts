/**
 * A small RESP2 client for the Redis → Redis bulk path only: commands encoded straight into
 * one Buffer per batch, replies parsed from the socket's chunks without per-command objects or
 * promises. It exists because ioredis' per-command cost (command objects, argument encoding,
 * reply decoding, garbage) was the whole of a copy's time: 25,000 keys/s against 313,000 for
 * `redis-cli --pipe` (bench/README.md). Everything else in the connector goes through ioredis;
 * `resp.test.ts` checks this codec against ioredis on the same server.
 *
 * Only RESP2 (`+ - : $ *`) is spoken: connections say nothing (no HELLO), so servers default
 * to it.
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { RedisLocation } from "./redis-url.js";

/** A reply: bulk strings as Buffers (null for nil), integers as numbers, errors as {@link RespError}. */
export type Reply = Buffer | number | string | null | RespError | Reply[];

/** An error reply (`-ERR …`): a value, so one failing command does not hide the others' replies. */
export class RespError {
  constructor(readonly message: string) {}
}

const INCOMPLETE = Symbol("incomplete");
const STARTED = Symbol("array started");
const EMPTY = Buffer.alloc(0);

/**
 * Parses RESP2 replies from chunks as they arrive. Nested arrays and bulk strings split across
 * chunks resume where they stopped (no reparsing), so a large reply costs linear time.
 */
export class RespReader {
  #buf: Buffer = EMPTY;
  #pos = 0;
  /** Chunks held back until `#need` bytes are there (a bulk string longer than one chunk). */
  #held: Buffer[] = [];
  #heldBytes = 0;
  #need = 0;
  readonly #stack: { items: Reply[]; left: number }[] = [];

  constructor(private readonly onReply: (reply: Reply) => void) {}

  feed(chunk: Buffer): void {
    if (this.#need > 0) {
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      if (this.#buf.length - this.#pos + this.#heldBytes < this.#need) return;
      this.#buf = Buffer.concat([this.#buf.subarray(this.#pos), ...this.#held]);
      this.#held = [];
      this.#heldBytes = 0;
      this.#need = 0;
    } else if (this.#pos < this.#buf.length) {
      this.#buf = Buffer.concat([this.#buf.subarray(this.#pos), chunk]);
    } else {
      this.#buf = chunk;
    }
    this.#pos = 0;
    this.#parse();
  }

  #parse(): void {
    const buf = this.#buf;
    while (this.#pos < buf.length) {
      const start = this.#pos;
      const v = this.#one(buf);
      if (v === INCOMPLETE) {
        this.#pos = start;
        return;
      }
      if (v === STARTED) continue;
      let value: Reply = v;
      for (;;) {
        const top = this.#stack[this.#stack.length - 1];
        if (top === undefined) {
          this.onReply(value);
          break;
        }
        top.items.push(value);
        if (--top.left > 0) break;
        this.#stack.pop();
        value = top.items;
      }
    }
  }

  /** One element at `#pos`: a value, an array header (pushed on the stack), or incomplete. */
  #one(buf: Buffer): Reply | typeof INCOMPLETE | typeof STARTED {
    const type = buf[this.#pos];
    const end = buf.indexOf(13, this.#pos + 1);
    if (end < 0 || end + 1 >= buf.length) return INCOMPLETE;
    const lineStart = this.#pos + 1;
    this.#pos = end + 2;
    switch (type) {
      case 36: {
        // $len\r\n<bytes>\r\n
        const len = integerAt(buf, lineStart, end);
        if (len < 0) return null;
        const from = this.#pos;
        if (from + len + 2 > buf.length) {
          this.#need = from + len + 2 - (lineStart - 1);
          return INCOMPLETE;
        }
        this.#pos = from + len + 2;
        return buf.subarray(from, from + len);
      }
      case 42: {
        const n = integerAt(buf, lineStart, end);
        if (n < 0) return null;
        if (n === 0) return [];
        this.#stack.push({ items: [], left: n });
        return STARTED;
      }
      case 58:
        return integerAt(buf, lineStart, end);
      case 43:
        return buf.toString("latin1", lineStart, end);
      case 45:
        return new RespError(buf.toString("utf8", lineStart, end));
      default:
        throw new Error(`not a RESP reply (byte ${type} at offset ${lineStart - 1})`);
    }
  }
}

/** The decimal integer in `buf[from, to)`, sign allowed. */
function integerAt(buf: Buffer, from: number, to: number): number {
  let i = from;
  let sign = 1;
  if (buf[i] === 45) {
    sign = -1;
    i++;
  }
  let n = 0;
  for (; i < to; i++) n = n * 10 + ((buf[i] as number) - 48);
  return sign * n;
}

/**
 * Builds a batch of commands into one Buffer. Arguments are Buffers or strings (UTF-8).
 *
 * @example
 * const w = new RespWriter();
 * w.command(["RESTORE", key, "0", payload]);
 * socket.write(w.take());
 */
export class RespWriter {
  #buf = Buffer.allocUnsafe(1 << 16);
  #len = 0;
  /** Commands written since the last {@link take}. */
  count = 0;

  command(args: readonly (Buffer | string)[]): void {
    this.#room(16);
    this.#buf[this.#len++] = 42; // '*'
    this.#decimal(args.length);
    for (const a of args) this.arg(a);
    this.count++;
  }

  /**
   * Starts a command from its encoded head (see {@link commandHead}); its other arguments
   * follow with {@link arg}, as many as the head says.
   *
   * @example
   * const DUMP = commandHead(2, "DUMP");
   * w.head(DUMP);
   * w.arg(key);
   */
  head(head: Buffer): void {
    this.#room(head.length);
    this.#buf.set(head, this.#len);
    this.#len += head.length;
    this.count++;
  }

  /** One argument of the command being written: bytes, text (UTF-8) or an integer. */
  arg(a: Buffer | string | number): void {
    if (typeof a === "string") this.#string(a);
    else if (typeof a === "number") this.#string(String(a));
    else this.#bytes(a);
  }

  /** The commands written so far, as one Buffer (the writer starts over). */
  take(): Buffer {
    const out = Buffer.from(this.#buf.subarray(0, this.#len));
    this.#len = 0;
    this.count = 0;
    return out;
  }

  // Small pieces are written byte by byte: Buffer#write and #copy cost a call into C++ each,
  // which was most of a batch's encoding time for short keys and command names.

  #string(s: string): void {
    const n = s.length;
    if (n <= 64) {
      let ascii = true;
      for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 127) ascii = false;
      if (ascii) {
        this.#room(n + 16);
        const buf = this.#buf;
        buf[this.#len++] = 36; // '$'
        this.#decimal(n);
        let at = this.#len;
        for (let i = 0; i < n; i++) buf[at++] = s.charCodeAt(i);
        buf[at++] = 13;
        buf[at++] = 10;
        this.#len = at;
        return;
      }
    }
    const bytes = Buffer.byteLength(s);
    this.#room(bytes + 16);
    this.#buf[this.#len++] = 36;
    this.#decimal(bytes);
    this.#len += this.#buf.write(s, this.#len, "utf8");
    this.#buf[this.#len++] = 13;
    this.#buf[this.#len++] = 10;
  }

  #bytes(a: Uint8Array): void {
    const n = a.length;
    this.#room(n + 16);
    const buf = this.#buf;
    buf[this.#len++] = 36;
    this.#decimal(n);
    let at = this.#len;
    if (n <= 64) for (let i = 0; i < n; i++) buf[at++] = a[i] as number;
    else {
      buf.set(a, at);
      at += n;
    }
    buf[at++] = 13;
    buf[at++] = 10;
    this.#len = at;
  }

  /** `n` (≥ 0) in decimal, then CRLF; room for it was made by the caller. */
  #decimal(n: number): void {
    const buf = this.#buf;
    let at = this.#len;
    if (n < 10) buf[at++] = 48 + n;
    else {
      const digits = String(n);
      for (let i = 0; i < digits.length; i++) buf[at++] = digits.charCodeAt(i);
    }
    buf[at++] = 13;
    buf[at++] = 10;
    this.#len = at;
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(grown, 0, 0, this.#len);
    this.#buf = grown;
  }
}

/** The encoded start of a command of `argc` arguments: its name and any fixed arguments after it. */
export function commandHead(argc: number, ...first: string[]): Buffer {
  const w = new RespWriter();
  w.command([...first, ...Array<string>(argc - first.length).fill("")]);
  const all = w.take();
  // Drop the placeholder arguments ($0\r\n\r\n each).
  return all.subarray(0, all.length - 6 * (argc - first.length));
}

/**
 * One connection that sends batches of commands and resolves each batch with its replies in
 * order. Batches may overlap (the server answers in order). A dropped connection rejects every
 * waiting batch.
 */
export class RespConnection {
  readonly #socket: Socket;
  readonly #waiting: { n: number; replies: Reply[]; resolve: (r: Reply[]) => void; reject: (e: Error) => void }[] = [];
  #failed: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    const reader = new RespReader((reply) => {
      const w = this.#waiting[0];
      if (w === undefined) return;
      w.replies.push(reply);
      if (w.replies.length === w.n) {
        this.#waiting.shift();
        w.resolve(w.replies);
      }
    });
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.feed(chunk);
      } catch (err) {
        this.#fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    socket.on("error", (err) => this.#fail(err));
    socket.on("close", () => this.#fail(new Error("Connection is closed")));
  }

  /**
   * Connects, authenticates and selects the database.
   *
   * @throws Error with the server's or the socket's message (the caller words it).
   */
  static async open(to: RedisLocation, timeoutMs = 10_000): Promise<RespConnection> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s: Socket = to.tls
        ? tlsConnect({ host: to.host, port: to.port, servername: to.host }, () => ready())
        : netConnect({ host: to.host, port: to.port }, () => ready());
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect ETIMEDOUT ${to.host}:${to.port}`));
      }, timeoutMs);
      const ready = (): void => {
        clearTimeout(timer);
        s.off("error", failed);
        resolve(s);
      };
      const failed = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      s.once("error", failed);
    });
    socket.setNoDelay(true);
    const c = new RespConnection(socket);
    const w = new RespWriter();
    if (to.password !== undefined) {
      w.command(to.username === undefined ? ["AUTH", to.password] : ["AUTH", to.username, to.password]);
    }
    if (to.db !== 0) w.command(["SELECT", String(to.db)]);
    if (w.count > 0) {
      for (const r of await c.send(w)) {
        if (r instanceof RespError) {
          c.close();
          throw new Error(r.message);
        }
      }
    }
    return c;
  }

  /** Sends the writer's commands; resolves with their replies, in order. */
  send(w: RespWriter): Promise<Reply[]> {
    const n = w.count;
    const bytes = w.take();
    if (this.#failed) return Promise.reject(this.#failed);
    if (n === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.#waiting.push({ n, replies: [], resolve, reject });
      this.#socket.write(bytes);
    });
  }

  close(): void {
    this.#failed ??= new Error("Connection is closed");
    this.#socket.destroy();
  }

  #fail(err: Error): void {
    this.#failed ??= err;
    for (const w of this.#waiting.splice(0)) w.reject(this.#failed);
  }
}
