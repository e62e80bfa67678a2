#!/usr/bin/env node
// Benchmark: Ferry SQLite → SQLite and SQLite → NDJSON directory, side by side with the
// sqlite3 CLI doing the same job (`.dump | sqlite3` and `-json` export), in one run.
// Prints seconds, rows/s, peak RSS and Ferry's time as a ratio of the native tool's.
//
// Usage: npm run build && node bench/sqlite-copy.mjs [--rows 1000000] [--runs 3]
//   --rows N   table size (default 1,000,000); try 10000000 to see that RSS stays flat
//   --runs K   repeat each method K times and report the median (default 1)
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { rows: { type: "string", default: "1000000" }, runs: { type: "string", default: "1" } },
});
const rows = Number(values.rows);
const runs = Number(values.runs);
const data = join(root, "bench", "data");
mkdirSync(data, { recursive: true });
const src = join(data, `bench-${rows}.db`);
const bin = join(root, "bin", "ferry.js");
if (!existsSync(join(root, "dist", "cli", "main.js"))) {
  console.error("run `npm run build` first");
  process.exit(2);
}
const hasSqlite3 = spawnSync("sqlite3", ["-version"]).status === 0;

if (!existsSync(src)) {
  console.error(`generating ${src} (${rows.toLocaleString()} rows)…`);
  // bigint key, uuid-like text, two texts, int, timestamp, ~100-byte JSON, float.
  execFileSync(process.execPath, [
    "-e",
    `const D=require(${JSON.stringify(join(root, "node_modules", "better-sqlite3"))});
     const db=new D(${JSON.stringify(src)});
     db.exec(\`CREATE TABLE bench (id INTEGER PRIMARY KEY, uid TEXT NOT NULL, name TEXT, email TEXT, qty INTEGER,
       created_at DATETIME, payload JSON, price REAL);
       WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < ${rows})
       INSERT INTO bench SELECT x, lower(hex(randomblob(16))), 'name ' || x, 'user' || x || '@example.com', x % 1000,
         datetime(1700000000 + x, 'unixepoch'),
         '{"tags":["a","b"],"active":true,"score":' || (x % 97) || ',"note":"' || hex(randomblob(24)) || '"}',
         (x % 10000) / 100.0 FROM c;\`);
     db.close();`,
  ]);
}
const mb = (statSync(src).size / 1e6).toFixed(0);

/** Runs a shell command under GNU time; returns seconds and peak RSS (largest process) in MB. */
function measure(command) {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", "sh", "-c", command], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${command} failed:\n${r.stderr}`);
  const [secs, kb] = r.stderr.trim().split("\n").at(-1).split(" ").map(Number);
  return { seconds: secs, rssMB: kb / 1024 };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function bench(name, prepare, command) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    prepare();
    results.push(measure(command));
  }
  return { name, seconds: median(results.map((r) => r.seconds)), rssMB: Math.max(...results.map((r) => r.rssMB)) };
}

const dstDb = join(data, "dst.db");
const dstDir = join(data, "dst-dir");
const dstJson = join(data, "dst.json");
const clean = () => {
  for (const p of [dstDb, `${dstDb}-wal`, `${dstDb}-shm`, dstDir, dstJson]) rmSync(p, { recursive: true, force: true });
};
const ferry = (to) =>
  `${JSON.stringify(process.execPath)} ${bin} copy --from sqlite:${src} --to ${to} --yes --json > /dev/null`;

const results = [];
if (hasSqlite3) results.push(bench("sqlite3 .dump → sqlite3", clean, `sqlite3 ${src} .dump | sqlite3 ${dstDb}`));
results.push(bench("ferry copy sqlite → sqlite", clean, ferry(`sqlite:${dstDb}`)));
if (hasSqlite3)
  results.push(bench("sqlite3 -json (array export)", clean, `sqlite3 -json ${src} 'SELECT * FROM bench' > ${dstJson}`));
results.push(bench("ferry copy sqlite → ndjson dir", clean, ferry(`${dstDir}/`)));
clean();

console.log(`\n${rows.toLocaleString()} rows, ${mb} MB SQLite source; median of ${runs} run(s)\n`);
console.log("| method | time | rows/s | peak RSS | × native |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const [i, r] of results.entries()) {
  const native = hasSqlite3 && i % 2 === 1 ? results[i - 1] : undefined;
  const ratio = native ? `${(r.seconds / native.seconds).toFixed(2)}×` : "";
  console.log(
    `| ${r.name} | ${r.seconds.toFixed(2)} s | ${Math.round(rows / r.seconds).toLocaleString()} | ${r.rssMB.toFixed(0)} MB | ${ratio} |`,
  );
}
if (!hasSqlite3) console.log("\n(sqlite3 CLI not found: `apt-get install sqlite3` for the native side)");
