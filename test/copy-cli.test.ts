/** End-to-end tests of `ferry copy`, `history` and `status` through the real CLI. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ferry, ferryOnTerminal, ROOT, requireBuild } from "./cli.js";
import { tempDir } from "./helpers.js";

const SHOP = join(ROOT, "examples", "quickstart", "shop.db");
const tmp = tempDir();
const COUNTS = (() => {
  const db = new Database(SHOP, { readonly: true });
  const n = (t: string) => db.prepare(`SELECT count(*) FROM ${t}`).pluck().get() as number;
  const c = { customers: n("customers"), products: n("products"), orders: n("orders"), order_items: n("order_items") };
  db.close();
  return c;
})();
const TOTAL = COUNTS.customers + COUNTS.products + COUNTS.orders + COUNTS.order_items;
const p = (name: string) => join(tmp.dir, name);

beforeAll(() => requireBuild());
afterAll(() => tmp.cleanup());

/** Every table's rows with SQLite's own storage class of each value, and the schema SQL. */
function dumpSqlite(path: string): { schema: string[]; rows: Record<string, unknown[]> } {
  const db = new Database(path, { readonly: true });
  db.defaultSafeIntegers(true);
  try {
    const schema = db
      .prepare(
        "SELECT sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '_ferry_%' AND sql IS NOT NULL ORDER BY name",
      )
      .pluck()
      .all() as string[];
    const tables = db
      .prepare(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_ferry_%' ORDER BY name",
      )
      .pluck()
      .all() as string[];
    const rows: Record<string, unknown[]> = {};
    for (const t of tables) {
      const cols = db.prepare(`SELECT name FROM pragma_table_info('${t}')`).pluck().all() as string[];
      const sel = cols.map((c) => `typeof("${c}"), quote("${c}")`).join(", ");
      rows[t] = db.prepare(`SELECT ${sel} FROM "${t}" ORDER BY 1, 2, 3, 4`).raw().all();
    }
    return { schema, rows };
  } finally {
    db.close();
  }
}

describe("ferry copy (CLI)", () => {
  it("the README quick start copies the shop, and a second run copies 0", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    expect(readme).toContain(
      "--from sqlite:examples/quickstart/shop.db --to sqlite:shop-copy.db --conflict skip --yes",
    );
    const dst = p("quick.db");
    const args = ["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`, "--conflict", "skip", "--yes"];
    const first = ferry(args);
    expect(first.stderr).toMatch(new RegExp(`total\\s+${TOTAL}\\s+0\\s+0\\s+0\\s+0`));
    expect(first.code).toBe(0);
    const second = ferry(args);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(new RegExp(`total\\s+0\\s+${TOTAL}\\s+0\\s+0\\s+0`));
  });

  it("SQLite → directory → SQLite reproduces the database exactly", () => {
    const dir = `${p("shop-dir")}/`;
    const back = p("shop-back.db");
    expect(ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", dir, "--yes"]).code).toBe(0);
    expect(existsSync(join(dir, "ferry.schema.json"))).toBe(true);
    const line = readFileSync(join(dir, "customers.ndjson"), "utf8")
      .split("\n")
      .find((l) => l.includes("9007199254740993"));
    expect(line).toContain('{"$int":"9007199254740993"}');
    expect(ferry(["copy", "--from", dir, "--to", `sqlite:${back}`, "--yes"]).code).toBe(0);
    expect(dumpSqlite(back)).toEqual(dumpSqlite(SHOP));
  });

  it("refuses to write without a terminal and without --yes, and writes nothing", () => {
    const dst = p("no-tty.db");
    const r = ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("pass --yes");
    expect(existsSync(dst)).toBe(false);
  });

  it("asks on a terminal: 'n' cancels with nothing written, 'y' copies", () => {
    const dst = p("tty.db");
    const no = ferryOnTerminal(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`], "n\n");
    expect(no.stdout).toContain("Proceed? [y/N]");
    expect(no.code).toBe(2);
    expect(no.stdout).toContain("cancelled: nothing was written");
    expect(existsSync(dst) ? dumpSqlite(dst).schema : []).toEqual([]);
    const yes = ferryOnTerminal(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`], "y\n");
    expect(yes.code).toBe(0);
    expect(dumpSqlite(dst)).toEqual(dumpSqlite(SHOP));
  });

  it("Ctrl-C at the prompt cancels cleanly with exit 130 and nothing written", () => {
    const dst = p("tty-int.db");
    const r = ferryOnTerminal(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`], "\x03", 1.5);
    expect(r.stdout).toContain("cancelled at the prompt: nothing was written");
    expect(r.stdout).not.toContain("internal error");
    expect(r.code).toBe(130);
    expect(existsSync(dst) ? dumpSqlite(dst).schema : []).toEqual([]);
  });

  it("a dry run of fail mode that finds existing keys exits 4, like the real run", () => {
    const dst = p("dry-fail.db");
    expect(
      ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`, "--collections", "products", "--yes"]).code,
    ).toBe(0);
    const r = ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`, "--dry-run"]);
    expect(r.stderr).toMatch(/products\s+0\s+0\s+0\s+0\s+20/);
    expect(r.code).toBe(4);
  });

  it("--dry-run shows what would happen and writes nothing, not even a journal", () => {
    const dst = p("dry.db");
    const r = ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`, "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("would copy");
    expect(r.stderr).toContain("dry run: nothing was written");
    expect(existsSync(dst)).toBe(false);
  });

  it("--json prints NDJSON events on stdout, ending with run-end", () => {
    const r = ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `${p("json-out")}/`, "--yes", "--json"]);
    expect(r.code).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    // The type plan comes first (known before anything is written), then the run.
    expect(events[0]).toMatchObject({ type: "plan", plan: { sourceEngine: "sqlite", targetEngine: "files" } });
    expect(events[1].type).toBe("run-start");
    expect(events.some((e) => e.type === "progress" && e.collection === "orders")).toBe(true);
    const end = events.at(-1);
    expect(end).toMatchObject({ type: "run-end", status: "done", total: { copied: TOTAL } });
    expect(r.stderr).toBe("");
  });

  it("fail mode: existing keys refuse the copy with exit 4 and nothing written", () => {
    const dst = p("fail.db");
    expect(
      ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`, "--collections", "products", "--yes"]).code,
    ).toBe(0);
    const before = dumpSqlite(dst);
    const r = ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`, "--yes"]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("products sku=");
    expect(r.stderr).toContain("nothing was written");
    expect(dumpSqlite(dst)).toEqual(before);
  });

  it("reports each refused record with collection, key and reason, goes on, exits 1", () => {
    const constrained = (path: string) => {
      const db = new Database(path);
      db.exec(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, loyalty_points INTEGER NOT NULL DEFAULT 0 CHECK (loyalty_points < 4000), joined_at DATETIME NOT NULL)",
      );
      db.close();
    };
    const dst = p("refuse.db");
    constrained(dst);
    constrained(p("refuse2.db"));
    const r = ferry([
      "copy",
      "--from",
      `sqlite:${SHOP}`,
      "--to",
      `sqlite:${dst}`,
      "--collections",
      "customers",
      "--yes",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/✗ customers id=\d+: CHECK constraint failed/);
    const refused = (r.stderr.match(/✗ customers/g) ?? []).length;
    const count = new Database(dst).prepare("SELECT count(*) FROM customers").pluck().get() as number;
    expect(refused).toBeGreaterThan(0);
    expect(count + refused).toBe(50);
    const stop = ferry([
      "copy",
      "--from",
      `sqlite:${SHOP}`,
      "--to",
      `sqlite:${p("refuse2.db")}`,
      "--collections",
      "customers",
      "--yes",
      "--stop-on-error",
      "--batch-size",
      "1",
    ]);
    expect(stop.code).toBe(1);
    expect((stop.stderr.match(/✗ customers/g) ?? []).length).toBe(1);
    const firstRefused = Number(/✗ customers id=(\d+)/.exec(stop.stderr)?.[1]);
    const copiedBefore = new Database(p("refuse2.db")).prepare("SELECT count(*) FROM customers").pluck().get();
    expect(copiedBefore).toBe(firstRefused - 1);
  });

  it("history lists the run and status shows its per-collection counts", () => {
    const dst = p("hist.db");
    const c = ferry(["copy", "--from", `sqlite:${SHOP}`, "--to", `sqlite:${dst}`, "--yes", "--json"]);
    const runId = JSON.parse(c.stdout.trim().split("\n")[1] as string).runId as string;
    const h = ferry(["history", "--at", `sqlite:${dst}`]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain(runId);
    expect(h.stdout).toContain("done");
    const s = ferry(["status", runId.slice(0, 17), "--at", `sqlite:${dst}`, "--json"]);
    expect(s.code).toBe(0);
    const entry = JSON.parse(s.stdout);
    expect(entry.collections.order_items).toMatchObject({ copied: COUNTS.order_items, done: true });
    expect(entry.source).toBe(`sqlite:${SHOP}`);
  });

  describe("bad input: one clear line, exit 2, nothing written", () => {
    const cases: [string, string[], RegExp][] = [
      [
        "unknown scheme",
        ["--from", "mongodb://u:hunter2@h/db", "--to", "sqlite:x.db"],
        /unknown instance scheme "mongodb:".*sqlite:PATH/,
      ],
      ["missing source", ["--from", "sqlite:/nonexistent/app.db", "--to", "sqlite:x.db"], /not found/],
      ["same source and target", ["--from", `sqlite:${SHOP}`, "--to", `sqlite:${SHOP}`], /same instance/],
      [
        "missing collection",
        ["--from", `sqlite:${SHOP}`, "--to", "sqlite:x.db", "--collections", "nope"],
        /no collection nope.*customers/,
      ],
      ["bad conflict mode", ["--from", `sqlite:${SHOP}`, "--to", "sqlite:x.db", "--conflict", "maybe"], /conflict/],
      ["bad batch size", ["--from", `sqlite:${SHOP}`, "--to", "sqlite:x.db", "--batch-size", "0"], /at least 1/],
    ];
    for (const [name, args, pattern] of cases) {
      it(name, () => {
        const r = ferry(["copy", ...args, "--yes"], { cwd: tmp.dir });
        expect(r.code).toBe(2);
        expect(r.stderr).toMatch(pattern);
        expect(r.stderr + r.stdout).not.toContain("hunter2");
        expect(existsSync(join(tmp.dir, "x.db"))).toBe(false);
      });
    }
  });
});
