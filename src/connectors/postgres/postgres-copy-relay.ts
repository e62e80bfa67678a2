/**
 * Moving COPY data from one server to another without touching the rows: a COPY TO's
 * CopyData messages are forwarded byte for byte (headers included) into a COPY FROM, since
 * the protocol frames CopyData the same way in both directions. Per row, only a 5-byte
 * message header is read; the bytes themselves are passed on as slices of the socket's
 * chunks. Modelled on pg-copy-streams' `to` and `from`, which re-frame every row.
 */
import { Readable, Writable } from "node:stream";
import type pg from "pg";

const ErrorResponse = 0x45;
const CopyOutResponse = 0x48;
const CopyDone = 0x63;
const CopyData = 0x64;
const NoticeResponse = 0x4e;
const ParameterStatus = 0x53;
const NotificationResponse = 0x41;

/** The parts of pg's connection the relay uses (not in pg's public types). */
interface PgConnection {
  stream: NodeJS.ReadWriteStream;
  query(text: string): void;
  sendCopyFail(msg: string): void;
}

function rowCountOf(msg: { text?: string } | undefined): number | undefined {
  const m = /COPY (\d+)/.exec(msg?.text ?? "");
  return m ? Number(m[1]) : undefined;
}

/**
 * `COPY … TO STDOUT` as a stream of framed CopyData messages (`d`, length, data), ready to
 * be written to another server by {@link CopyInFrames}. Submit it with `client.query(…)`.
 */
export class CopyOutFrames extends Readable {
  readonly text: string;
  rowCount = 0;
  #connection: PgConnection | undefined;
  #pgHandler: ((chunk: Buffer) => void) | undefined;
  /** Bytes of the current message still to come (body only). */
  #remaining = 0;
  /** Whether the current message is passed on. */
  #passing = false;
  /** A message header split across chunks. */
  #header: Buffer | undefined;
  #reading = false;
  #wanted = false;
  #detached = false;
  readonly #onReadable = () => this.#forward();

  constructor(text: string) {
    super({ highWaterMark: 256 * 1024 });
    this.text = text;
  }

  /** Called by pg: takes the socket over from pg's parser, then sends the query. */
  submit(connection: PgConnection): void {
    this.#connection = connection;
    const stream = connection.stream;
    const handlers = stream.listeners("data") as ((chunk: Buffer) => void)[];
    if (handlers.length !== 1)
      throw new Error(`expected one data listener on the connection, found ${handlers.length}`);
    this.#pgHandler = handlers[0];
    stream.removeListener("data", this.#pgHandler as (chunk: Buffer) => void);
    stream.pause();
    stream.on("readable", this.#onReadable);
    connection.query(this.text);
  }

  override _read(): void {
    this.#wanted = true;
    this.#forward();
  }

  #forward(): void {
    if (this.#reading || !this.#wanted || this.#detached || !this.#connection) return;
    this.#reading = true;
    const stream = this.#connection.stream;
    while (this.#wanted && !this.#detached) {
      const chunk = stream.read() as Buffer | null;
      if (chunk === null) break;
      this.#wanted = this.#parse(chunk);
    }
    this.#reading = false;
  }

  /** Passes the CopyData bytes of `chunk` on; false when the consumer wants no more for now. */
  #parse(input: Buffer): boolean {
    let chunk = input;
    if (this.#header) {
      chunk = Buffer.concat([this.#header, input]);
      this.#header = undefined;
    }
    const out: Buffer[] = [];
    let start = -1; // start of the run of passed bytes in `chunk`
    let pos = 0;
    const n = chunk.length;
    const flushRun = (end: number) => {
      if (start >= 0 && end > start) out.push(chunk.subarray(start, end));
      start = -1;
    };
    while (pos < n) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, n - pos);
        if (this.#passing && start < 0) start = pos;
        pos += take;
        this.#remaining -= take;
        continue;
      }
      if (n - pos < 5) {
        flushRun(pos);
        this.#header = Buffer.from(chunk.subarray(pos));
        pos = n;
        break;
      }
      const code = chunk[pos] as number;
      const length = chunk.readUInt32BE(pos + 1) - 4;
      if (code === CopyData) {
        if (start < 0) start = pos;
        this.#passing = true;
      } else {
        flushRun(pos);
        this.#passing = false;
        if (code === ErrorResponse) {
          this.#push(out);
          this.#detach(chunk.subarray(pos));
          return false;
        }
        if (code === CopyDone) {
          this.#push(out);
          this.#detach(chunk.subarray(pos + 5 + length));
          this.push(null);
          return false;
        }
        if (
          code !== CopyOutResponse &&
          code !== NoticeResponse &&
          code !== ParameterStatus &&
          code !== NotificationResponse
        ) {
          // Anything else ends copy-out mode: pg handles it.
          this.#push(out);
          this.#detach(chunk.subarray(pos));
          this.push(null);
          return false;
        }
      }
      pos += 5;
      this.#remaining = length;
    }
    flushRun(pos);
    return this.#push(out);
  }

  #push(out: Buffer[]): boolean {
    if (out.length === 0) return true;
    return this.push(out.length === 1 ? out[0] : Buffer.concat(out));
  }

  /** Gives the socket back to pg, with the bytes pg has to parse (CommandComplete, ReadyForQuery, an error). */
  #detach(rest: Buffer): void {
    if (this.#detached || !this.#connection) return;
    this.#detached = true;
    const stream = this.#connection.stream;
    stream.removeListener("readable", this.#onReadable);
    const handler = this.#pgHandler as (chunk: Buffer) => void;
    stream.on("data", handler);
    if (rest.length > 0) handler(rest);
    process.nextTick(() => stream.resume());
  }

  /** pg: the server refused the COPY. */
  handleError(err: Error): void {
    this.destroy(err);
  }

  /** pg: the COPY completed. */
  handleCommandComplete(msg: { text?: string }): void {
    this.rowCount = rowCountOf(msg) ?? this.rowCount;
  }

  /** pg: the connection is ready for the next query. */
  handleReadyForQuery(): void {}
}

/**
 * `COPY … FROM STDIN` fed with framed CopyData messages (from {@link CopyOutFrames}), which
 * go to the socket as they are. Submit it with `client.query(…)`; `finish` comes once the
 * server has confirmed the COPY (`rowCount` is then set).
 */
export class CopyInFrames extends Writable {
  readonly text: string;
  rowCount = 0;
  #connection: PgConnection | undefined;
  #ready = false;
  #pending: { chunk: Buffer; callback: (err?: Error | null) => void } | undefined;
  #onReadyForQuery: (() => void) | undefined;
  #onDestroyed: ((err?: Error | null) => void) | undefined;
  /** The server ended the COPY with an error: nothing more to send. */
  #failed = false;

  constructor(text: string) {
    super({ highWaterMark: 256 * 1024 });
    this.text = text;
  }

  /** Called by pg: sends the query; data flows once the server answers CopyInResponse. */
  submit(connection: PgConnection): void {
    this.#connection = connection;
    connection.query(this.text);
  }

  /** pg sets this to its timeout mechanism when query_timeout is configured. */
  callback(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (!this.#ready) {
      this.#pending = { chunk, callback };
      return;
    }
    this.#send(chunk, callback);
  }

  #send(chunk: Buffer, callback: (err?: Error | null) => void): void {
    const stream = (this.#connection as PgConnection).stream;
    if (stream.write(chunk)) callback();
    else stream.once("drain", () => callback());
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#onReadyForQuery = () => callback();
    const done = () => (this.#connection as PgConnection).stream.write(Buffer.from([CopyDone, 0, 0, 0, 4]));
    if (this.#ready) done();
    else this.#pending = { chunk: Buffer.alloc(0), callback: done };
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Abandoned: CopyFail makes the server end the COPY (with an error pg then reports here).
    if (this.#failed || this.#onReadyForQuery || !this.#connection) {
      callback(err);
      return;
    }
    this.#onDestroyed = callback;
    const fail = () => (this.#connection as PgConnection).sendCopyFail(err ? err.message : "COPY abandoned");
    if (this.#ready) fail();
    else this.#pending = { chunk: Buffer.alloc(0), callback: fail };
  }

  /** pg: the server is ready for data. */
  handleCopyInResponse(): void {
    this.#ready = true;
    const p = this.#pending;
    this.#pending = undefined;
    if (p) {
      if (p.chunk.length > 0) this.#send(p.chunk, p.callback);
      else p.callback();
    }
  }

  /** pg: the server refused the COPY (or confirmed our CopyFail). */
  handleError(err: Error): void {
    this.callback();
    this.#failed = true;
    const destroyed = this.#onDestroyed;
    this.#onDestroyed = undefined;
    if (destroyed) destroyed(err);
    else this.destroy(err);
    this.#connection = undefined;
  }

  handleCommandComplete(msg: { text?: string }): void {
    this.rowCount = rowCountOf(msg) ?? this.rowCount;
  }

  /** pg: done; `finish` follows, so the rows are visible to the next query. */
  handleReadyForQuery(): void {
    this.callback();
    const ready = this.#onReadyForQuery;
    this.#onReadyForQuery = undefined;
    this.#connection = undefined;
    ready?.();
  }
}

/** Submits a relay stream on `client` (typed for pg's `query(Submittable)`). */
export function submit<T extends CopyOutFrames | CopyInFrames>(client: pg.Client, stream: T): T {
  return client.query(stream as unknown as pg.Submittable) as unknown as T;
}
