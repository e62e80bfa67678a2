import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis, type TestRedis } from "../../../test/redis-server.js";
import { commandHead, type Reply, RespConnection, RespError, RespReader, RespWriter } from "./resp.js";

/** RESP2 bytes of a reply tree (the server's side of the protocol). */
function encode(r: Reply): Buffer {
  if (r === null) return Buffer.from("$-1\r\n");
  if (typeof r === "number") return Buffer.from(`:${r}\r\n`);
  if (typeof r === "string") return Buffer.from(`+${r}\r\n`);
  if (r instanceof RespError) return Buffer.from(`-${r.message}\r\n`);
  if (Buffer.isBuffer(r)) return Buffer.concat([Buffer.from(`$${r.length}\r\n`), r, Buffer.from("\r\n")]);
  return Buffer.concat([Buffer.from(`*${r.length}\r\n`), ...r.map(encode)]);
}

const replyArb: fc.Arbitrary<Reply> = fc.letrec<{ reply: Reply }>((tie) => ({
  reply: fc.oneof(
    { depthSize: "small" },
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    fc.constant(null),
    fc.stringMatching(/^[A-Za-z0-9 ]{0,20}$/),
    fc.stringMatching(/^[A-Za-z0-9 ]{1,30}$/).map((m) => new RespError(m)),
    fc.array(tie("reply"), { maxLength: 6 }),
  ),
})).reply;

describe("RespReader", () => {
  it("parses any sequence of replies however the bytes are split into chunks", () => {
    fc.assert(
      fc.property(
        fc.array(replyArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (replies, cuts) => {
          const bytes = Buffer.concat(replies.map(encode));
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
          const got: Reply[] = [];
          const reader = new RespReader((r) => got.push(r));
          let from = 0;
          for (const p of [...points, bytes.length]) {
            reader.feed(bytes.subarray(from, p));
            from = p;
          }
          expect(got).toEqual(replies);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("reads a bulk string larger than many chunks without losing bytes", () => {
    const big = Buffer.alloc(3_000_000, 7);
    big[1_234_567] = 9;
    const bytes = Buffer.concat([encode([big, 5]), encode("OK")]);
    const got: Reply[] = [];
    const reader = new RespReader((r) => got.push(r));
    for (let i = 0; i < bytes.length; i += 65_536) reader.feed(bytes.subarray(i, i + 65_536));
    expect(got).toHaveLength(2);
    expect(Buffer.compare((got[0] as Reply[])[0] as Buffer, big)).toBe(0);
    expect(got[1]).toBe("OK");
  });

  it("encodes any command, string or byte arguments of any length, as RESP arrays of bulk strings", () => {
    // Reference decoder of the request format, written plainly.
    const decode = (b: Buffer): Buffer[][] => {
      const out: Buffer[][] = [];
      let at = 0;
      const line = (): string => {
        const end = b.indexOf("\r\n", at);
        const s = b.toString("latin1", at, end);
        at = end + 2;
        return s;
      };
      while (at < b.length) {
        const head = line();
        expect(head[0]).toBe("*");
        const args: Buffer[] = [];
        for (let n = Number(head.slice(1)); n > 0; n--) {
          const len = line();
          expect(len[0]).toBe("$");
          args.push(b.subarray(at, at + Number(len.slice(1))));
          at += Number(len.slice(1));
          expect(b.toString("latin1", at, at + 2)).toBe("\r\n");
          at += 2;
        }
        out.push(args);
      }
      return out;
    };
    const arg = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.string({ unit: "grapheme", maxLength: 80 }),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    );
    fc.assert(
      fc.property(fc.array(fc.array(arg, { minLength: 1, maxLength: 12 }), { maxLength: 20 }), (commands) => {
        const w = new RespWriter();
        for (const c of commands) w.command(c);
        expect(w.count).toBe(commands.length);
        const bytes = w.take();
        expect(decode(bytes)).toEqual(commands.map((c) => c.map((a) => (typeof a === "string" ? Buffer.from(a) : a))));
        expect(w.take().length).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it("writes a command from an encoded head and arguments as the same bytes as from an array", () => {
    const arg = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: "grapheme", maxLength: 12 }), { minLength: 1, maxLength: 3 }),
        fc.array(arg, { maxLength: 6 }),
        (first, rest) => {
          const a = new RespWriter();
          a.command([...first, ...rest.map((r) => (typeof r === "number" ? String(r) : r))]);
          const b = new RespWriter();
          b.head(commandHead(first.length + rest.length, ...first));
          for (const r of rest) b.arg(r);
          expect(b.count).toBe(1);
          expect(b.take().equals(a.take())).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("refuses bytes that are not RESP", () => {
    const reader = new RespReader(() => {});
    expect(() => reader.feed(Buffer.from("hello\r\n"))).toThrow(/not a RESP reply/);
  });
});

describe("RespConnection against a real server, checked with ioredis", () => {
  let server: TestRedis;
  let locked: TestRedis;
  beforeAll(async () => {
    server = await startRedis(16);
    locked = await startRedis(16, { args: ["--requirepass", "s3cr:et@"], password: "s3cr:et@" });
  });
  afterAll(async () => {
    await server?.stop();
    await locked?.stop();
  });

  it("writes what ioredis reads back, and reads what ioredis wrote, for any bytes", async () => {
    const url = new URL(await server.fresh());
    const db = Number(url.pathname.slice(1));
    const io = new Redis({ port: server.port, host: "127.0.0.1", db, protocol: 2 });
    const conn = await RespConnection.open({ host: "127.0.0.1", port: server.port, db, tls: false });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(fc.uint8Array({ minLength: 1, maxLength: 40 }), {
            minLength: 1,
            maxLength: 20,
            selector: (a) => Buffer.from(a).toString("hex"),
          }),
          fc.array(fc.uint8Array({ maxLength: 2000 }), { minLength: 20, maxLength: 20 }),
          async (keys, values) => {
            await io.flushdb();
            const w = new RespWriter();
            for (const [i, k] of keys.entries()) {
              w.command(["SET", Buffer.from(k), Buffer.from(values[i] as Uint8Array)]);
            }
            const replies = await conn.send(w);
            expect(replies).toEqual(keys.map(() => "OK"));
            for (const [i, k] of keys.entries()) {
              expect(
                Buffer.compare((await io.getBuffer(Buffer.from(k))) as Buffer, Buffer.from(values[i] as Uint8Array)),
              ).toBe(0);
            }
            for (const k of keys) await io.rpush(Buffer.from(k).toString("hex"), "a", Buffer.from(k));
            keys.forEach((k) => {
              w.command(["GET", Buffer.from(k)]);
              w.command(["LRANGE", Buffer.from(k).toString("hex"), "0", "-1"]);
              w.command(["PTTL", Buffer.from(k)]);
            });
            const back = await conn.send(w);
            keys.forEach((k, i) => {
              expect(Buffer.compare(back[3 * i] as Buffer, Buffer.from(values[i] as Uint8Array))).toBe(0);
              expect(back[3 * i + 1]).toEqual([Buffer.from("a"), Buffer.from(k)]);
              expect(back[3 * i + 2]).toBe(-1);
            });
          },
        ),
        { numRuns: 25 },
      );
      // An error reply is a value in its place; the others still arrive.
      const w = new RespWriter();
      w.command(["SET", "s", "1"]);
      w.command(["LPUSH", "s", "x"]);
      w.command(["GET", "s"]);
      const [ok, wrong, got] = await conn.send(w);
      expect(ok).toBe("OK");
      expect(wrong).toBeInstanceOf(RespError);
      expect((wrong as RespError).message).toMatch(/^WRONGTYPE/);
      expect(String(got)).toBe("1");
    } finally {
      conn.close();
      await io.quit();
    }
  });

  it("authenticates with the password (and refuses a wrong one with the server's words)", async () => {
    const conn = await RespConnection.open({
      host: "127.0.0.1",
      port: locked.port,
      db: 3,
      password: "s3cr:et@",
      tls: false,
    });
    const w = new RespWriter();
    w.command(["PING"]);
    expect(await conn.send(w)).toEqual(["PONG"]);
    conn.close();
    await expect(
      RespConnection.open({ host: "127.0.0.1", port: locked.port, db: 0, password: "nope", tls: false }),
    ).rejects.toThrow(/WRONGPASS|invalid/);
    const w2 = new RespWriter();
    w2.command(["PING"]);
    await expect(conn.send(w2)).rejects.toThrow(/closed/);
  });
});
