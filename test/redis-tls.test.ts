/**
 * `rediss://`: a redis-server with TLS only (a CA and a certificate for localhost made with
 * openssl here), copied with the CLI over TLS on both paths: DUMP/RESTORE between two of its
 * databases (the bulk path's own connections) and the record path into files. A certificate
 * Node does not trust is refused with what to do.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, ferry, requireBuild } from "./cli.js";
import { tempDir } from "./helpers.js";
import { freePort, REDIS_BASE_ARGS } from "./redis-server.js";

const tmp = tempDir();
let server: ChildProcess;
let port = 0;
let ca = "";

function openssl(args: string[]): void {
  execFileSync("openssl", args, { cwd: tmp.dir, stdio: "ignore" });
}

function client(db: number): Redis {
  const c = new Redis({
    host: "localhost",
    port,
    db,
    tls: { ca: readFileSync(ca), servername: "localhost" },
    protocol: 2,
  });
  c.on("error", () => {});
  return c;
}

beforeAll(async () => {
  requireBuild();
  expect(BIN).toBeTruthy();
  // A CA, and a certificate for localhost it signed.
  openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=ferry test CA",
  ]);
  openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  ]);
  writeFileSync(join(tmp.dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  ca = join(tmp.dir, "ca.pem");
  port = await freePort();
  server = spawn(
    "redis-server",
    [
      "--port",
      "0",
      "--tls-port",
      String(port),
      ...REDIS_BASE_ARGS,
      "--tls-cert-file",
      join(tmp.dir, "server.pem"),
      "--tls-key-file",
      join(tmp.dir, "server.key"),
      "--tls-ca-cert-file",
      ca,
      "--tls-auth-clients",
      "no",
    ],
    { stdio: "ignore" },
  );
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = client(0);
    try {
      await c.ping();
      const p = c.pipeline();
      for (let i = 0; i < 3000; i++) p.hset(`apikey:${i}`, "id", String(i), "name", `key ${i}`);
      p.pexpire("apikey:7", 86_400_000);
      p.zadd("idx:name", 0, "a\x00b");
      await p.exec();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`redis-server with TLS on port ${port} did not start: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      c.disconnect();
    }
  }
});

afterAll(() => {
  server?.kill("SIGTERM");
  tmp.cleanup();
});

describe("rediss:// (TLS)", () => {
  it("copies between databases of a TLS server (bulk path) and into files (record path)", async () => {
    const env = { NODE_EXTRA_CA_CERTS: ca };
    const bulk = ferry(
      ["copy", "--from", `rediss://localhost:${port}/0`, "--to", `rediss://localhost:${port}/1`, "--yes", "--json"],
      { env },
    );
    expect(bulk.stderr).toBe("");
    expect(bulk.code).toBe(0);
    const files = ferry(
      ["copy", "--from", `rediss://localhost:${port}/0`, "--to", `${join(tmp.dir, "out")}/`, "--yes"],
      { env },
    );
    expect(files.code).toBe(0);
    const lines = readFileSync(join(tmp.dir, "out", "apikey.ndjson"), "utf8")
      .trim()
      .split("\n");
    expect(lines).toHaveLength(3000);
    const a = client(0);
    const b = client(1);
    try {
      expect(await b.dbsize()).toBe((await a.dbsize()) + 1); // and the journal
      expect(await b.hgetall("apikey:2999")).toEqual({ id: "2999", name: "key 2999" });
      expect(Math.abs(Number(await b.pexpiretime("apikey:7")) - Number(await a.pexpiretime("apikey:7")))).toBeLessThan(
        1000,
      );
      expect(await b.zrange("idx:name", "0", "-1")).toEqual(["a\x00b"]);
    } finally {
      a.disconnect();
      b.disconnect();
    }
  });

  it("refuses a certificate Node does not trust, and says how to trust it", () => {
    const r = ferry(["copy", "--from", `rediss://localhost:${port}/0`, "--to", `${join(tmp.dir, "no")}/`, "--yes"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/TLS certificate is not trusted/);
    expect(r.stderr).toMatch(/NODE_EXTRA_CA_CERTS/);
  });
});
