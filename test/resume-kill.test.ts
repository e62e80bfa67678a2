/**
 * `kill -9` in the middle of a large table, then `--resume`: the copy must end exactly as an
 * uninterrupted one would, with no missing and no duplicated records.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ferry, ferryAsync, requireBuild } from "./cli.js";
import { tempDir } from "./helpers.js";

const ROWS = 600_000;
const tmp = tempDir();
const SRC = join(tmp.dir, "big.db");

beforeAll(() => {
  requireBuild();
  const db = new Database(SRC);
  db.exec(`
    CREATE TABLE events (id INTEGER PRIMARY KEY, uid TEXT NOT NULL, kind TEXT, n INTEGER, at TEXT, body TEXT);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${ROWS})
    INSERT INTO events SELECT x, lower(hex(randomblob(16))), 'kind ' || (x % 13), x * 7, datetime(1700000000 + x, 'unixepoch'),
      '{"payload":"' || hex(randomblob(24)) || '"}' FROM c;
  `);
  db.close();
});
afterAll(() => tmp.cleanup());

/** Starts a copy, kills it with SIGKILL once `progressed()` says it is midway. */
async function killMidway(args: string[], progressed: () => number): Promise<number> {
  const child = ferryAsync(args);
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += String(d);
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  let seen = 0;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    seen = progressed();
    if (seen >= ROWS / 10) break;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill("SIGKILL");
  const code = await exited;
  expect(code, `the copy finished before it could be killed: ${stderr}`).toBeNull();
  return seen;
}

function countRows(path: string): number {
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      return db.prepare("SELECT count(*) FROM events").pluck().get() as number;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

function fingerprint(path: string): { n: number; sum: number; max: number; hash: string } {
  const db = new Database(path, { readonly: true });
  try {
    const r = db
      .prepare("SELECT count(*) AS n, sum(id) AS sum, max(id) AS max, count(DISTINCT id) AS d FROM events")
      .get() as {
      n: number;
      sum: number;
      max: number;
      d: number;
    };
    const hash = db
      .prepare(
        "SELECT group_concat(uid || kind || n || at || body, '') FROM (SELECT * FROM events WHERE id % 997 = 0 ORDER BY id)",
      )
      .pluck()
      .get() as string;
    expect(r.d).toBe(r.n);
    return { n: r.n, sum: r.sum, max: r.max, hash };
  } finally {
    db.close();
  }
}

describe("resume after Ctrl-C", () => {
  it("SIGINT stops after the batch in flight with exit 130; --resume completes exactly", async () => {
    const dir = `${join(tmp.dir, "int")}/`;
    const file = join(dir, "events.ndjson");
    const args = ["copy", "--from", `sqlite:${SRC}`, "--to", dir, "--yes", "--batch-size", "2000"];
    const child = ferryAsync(args);
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += String(d);
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && child.exitCode === null) {
      let n = 0;
      try {
        n = readFileSync(file, "utf8").length;
      } catch {}
      if (n > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toContain("--resume");
    const resumed = ferry([...args, "--resume"]);
    expect(resumed.code).toBe(0);
    const ids = readFileSync(file, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l).id as number);
    expect(ids.length).toBe(ROWS);
    expect(new Set(ids).size).toBe(ROWS);
  });
});

describe("resume after kill -9", () => {
  it("SQLite → SQLite", async () => {
    const dst = join(tmp.dir, "dst.db");
    const args = ["copy", "--from", `sqlite:${SRC}`, "--to", `sqlite:${dst}`, "--yes", "--batch-size", "2000"];
    await killMidway(args, () => countRows(dst));
    const partial = countRows(dst);
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(ROWS);

    // The journal shows the killed run as still running, with its progress at the last checkpoint.
    const during = JSON.parse(ferry(["status", "--at", `sqlite:${dst}`, "--json"]).stdout);
    expect(during.status).toBe("running");
    expect(during.collections.events.done).toBe(false);
    expect(during.collections.events.copied).toBe(partial);
    expect(ferry(["status", "--at", `sqlite:${dst}`]).stdout).toMatch(/events: [\d,]+\/600000 \([\d.]+%\) in progress/);

    const refused = ferry(args);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--resume");

    const resumed = ferry([...args, "--resume"]);
    expect(resumed.stderr).toContain("resuming");
    expect(resumed.code).toBe(0);
    expect(fingerprint(dst)).toEqual(fingerprint(SRC));
    const status = JSON.parse(ferry(["status", "--at", `sqlite:${dst}`, "--json"]).stdout);
    expect(status.status).toBe("done");
    expect(status.collections.events.copied).toBe(ROWS);
  });

  it("SQLite → directory → SQLite", async () => {
    const dir = `${join(tmp.dir, "out")}/`;
    const file = join(dir, "events.ndjson");
    const lines = () => {
      try {
        return readFileSync(file, "utf8").split("\n").length - 1;
      } catch {
        return 0;
      }
    };
    const args = ["copy", "--from", `sqlite:${SRC}`, "--to", dir, "--yes", "--batch-size", "2000"];
    await killMidway(args, lines);
    expect(lines()).toBeLessThan(ROWS);
    const resumed = ferry([...args, "--resume"]);
    expect(resumed.code).toBe(0);
    const text = readFileSync(file, "utf8");
    const ids = text
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l).id as number);
    expect(ids.length).toBe(ROWS);
    expect(new Set(ids).size).toBe(ROWS);
    const back = join(tmp.dir, "back.db");
    expect(ferry(["copy", "--from", dir, "--to", `sqlite:${back}`, "--yes"]).code).toBe(0);
    expect(fingerprint(back)).toEqual(fingerprint(SRC));
  });
});
