import { PassThrough } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CopyOutFrames } from "./postgres-copy-relay.js";

function message(code: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = code.charCodeAt(0);
  head.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** A stand-in for pg's connection: a socket whose 'data' listener is pg's parser. */
function fakeConnection() {
  const stream = new PassThrough();
  const toPg: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => toPg.push(chunk));
  const queries: string[] = [];
  return {
    connection: { stream, query: (t: string) => queries.push(t), sendCopyFail: () => {} },
    stream,
    toPg,
    queries,
  };
}

describe("COPY relay", () => {
  it("passes exactly the framed CopyData messages on, whatever the chunk boundaries, and gives the rest back to pg", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 23 }), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (rows, cuts, notice) => {
          const { connection, stream, toPg, queries } = fakeConnection();
          const relay = new CopyOutFrames("COPY t TO STDOUT");
          relay.submit(connection as never);
          expect(queries).toEqual(["COPY t TO STDOUT"]);
          const out: Buffer[] = [];
          relay.on("data", (c: Buffer) => out.push(c));
          const ended = new Promise((resolve) => relay.on("end", resolve));
          const data = rows.map((r) => message("d", Buffer.from(r)));
          const parts = [message("H", Buffer.from([0, 0, 0])), ...data];
          if (notice) parts.splice(1 + Math.floor(data.length / 2), 0, message("N", Buffer.from("notice\0")));
          const after = Buffer.concat([message("C", Buffer.from("COPY 1\0")), message("Z", Buffer.from("I"))]);
          const wire = Buffer.concat([...parts, message("c", Buffer.alloc(0)), after]);
          let at = 0;
          let k = 0;
          while (at < wire.length) {
            const n = cuts[k++ % cuts.length] as number;
            stream.write(wire.subarray(at, at + n));
            at += n;
            await new Promise((r) => setImmediate(r));
          }
          await ended;
          await new Promise((r) => setImmediate(r));
          expect(Buffer.concat(out)).toEqual(Buffer.concat(data));
          expect(Buffer.concat(toPg)).toEqual(after);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("hands an error to pg at once", async () => {
    const { connection, stream, toPg } = fakeConnection();
    const relay = new CopyOutFrames("COPY t TO STDOUT");
    relay.submit(connection as never);
    const out: Buffer[] = [];
    relay.on("data", (c: Buffer) => out.push(c));
    const row = message("d", Buffer.from("1\n"));
    const error = message("E", Buffer.from("SERROR\0Mboom\0\0"));
    stream.write(Buffer.concat([message("H", Buffer.alloc(3)), row, error, message("Z", Buffer.from("I"))]));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(out)).toEqual(row);
    expect(Buffer.concat(toPg)).toEqual(Buffer.concat([error, message("Z", Buffer.from("I"))]));
    const failed = new Promise((resolve) => relay.on("error", resolve));
    relay.handleError(new Error("boom"));
    expect(((await failed) as Error).message).toBe("boom");
    expect(relay.destroyed).toBe(true);
  });
});
