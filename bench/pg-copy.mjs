#!/usr/bin/env node
// Benchmark: Ferry PostgreSQL → PostgreSQL beside `pg_dump -t bench SRC | psql DST`, and
// Ferry MariaDB → PostgreSQL beside pgloader (Debian's package, default settings), in one
// run on the same generated table. Prints seconds, rows/s, peak RSS and Ferry's time as a
// ratio of the native tool's.
//
// Usage: npm run build && node bench/pg-copy.mjs [--rows 1000000] [--runs 3] [--only ferry]
//   --rows N     table size (default 1,000,000); 10000000 shows whether Ferry's RSS stays flat
//   --runs K     repeat each method K times and report the median (default 1)
//   --only ferry skip the native tools (for the 10M-row memory check)
//   --jobs N     Ferry's --jobs (default: its own default, the CPU count)
//   --prepare    only generate the source tables (kept between runs; drop the databases to redo)
// Needs: PostgreSQL on 127.0.0.1:5432 (user postgres, trust), MariaDB on 127.0.0.1:3306
// (root, no password), pg_dump/psql/mariadb clients, pgloader (`apt-get install pgloader`).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    runs: { type: "string", default: "1" },
    only: { type: "string" },
    jobs: { type: "string" },
    prepare: { type: "boolean", default: false },
  },
});
const rows = Number(values.rows);
const runs = Number(values.runs);
const nativeToo = values.only !== "ferry";
const bin = join(root, "bin", "ferry.js");
if (!existsSync(join(root, "dist", "cli", "main.js"))) {
  console.error("run `npm run build` first");
  process.exit(2);
}
const PG = "postgres://postgres@127.0.0.1:5432";
const SRC_DB = `ferry_bench_${rows}`;
const DST_DB = "ferry_bench_dst";
const MY_DB = `ferry_bench_${rows}`;

function psql(db, sql) {
  return execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qtAc", sql], {
    encoding: "utf8",
  }).trim();
}
function mariadb(sql, db) {
  return execFileSync("mariadb", ["-h", "127.0.0.1", "-u", "root", ...(db ? [db] : []), "-Nse", sql], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

// The table: bigint key, uuid, text, int, timestamptz, jsonb ~100 bytes, numeric.
if (psql("postgres", `SELECT count(*) FROM pg_database WHERE datname = '${SRC_DB}'`) === "0") {
  console.error(`generating PostgreSQL ${SRC_DB}.bench (${rows.toLocaleString()} rows)…`);
  psql("postgres", `DROP DATABASE IF EXISTS ${SRC_DB}_tmp`);
  psql("postgres", `CREATE DATABASE ${SRC_DB}_tmp`);
  psql(
    `${SRC_DB}_tmp`,
    `CREATE TABLE bench (id bigint PRIMARY KEY, uid uuid NOT NULL, name text, qty integer,
       created_at timestamptz, payload jsonb, price numeric(12,2));
     INSERT INTO bench SELECT x, md5(x::text)::uuid, 'name ' || x, x % 1000,
       timestamptz '2024-01-01 00:00:00+00' + x * interval '1.5 second',
       jsonb_build_object('tags', jsonb_build_array('a', 'b'), 'active', x % 2 = 0, 'score', x % 97,
         'note', md5((x * 7)::text)),
       (x % 100000) / 100.0
     FROM generate_series(1, ${rows}) x;`,
  );
  psql(`${SRC_DB}_tmp`, "VACUUM ANALYZE bench");
  // Renamed only once complete, so an interrupted generation is redone, not used.
  psql("postgres", `ALTER DATABASE ${SRC_DB}_tmp RENAME TO ${SRC_DB}`);
}
const myRows = (() => {
  try {
    return Number(mariadb("SELECT count(*) FROM bench", MY_DB));
  } catch {
    return 0;
  }
})();
if (myRows !== rows) {
  console.error(`generating MariaDB ${MY_DB}.bench (${rows.toLocaleString()} rows)…`);
  mariadb(`DROP DATABASE IF EXISTS ${MY_DB}; CREATE DATABASE ${MY_DB}`);
  mariadb(
    `CREATE TABLE bench (id bigint PRIMARY KEY, uid char(36) NOT NULL, name text, qty int,
       created_at datetime(6), payload json, price decimal(12,2)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
     INSERT INTO bench SELECT seq, uuid(), concat('name ', seq), seq % 1000,
       timestamp('2024-01-01 00:00:00') + interval seq * 1.5 second,
       json_object('tags', json_array('a', 'b'), 'active', seq % 2 = 0, 'score', seq % 97, 'note', md5(seq * 7)),
       (seq % 100000) / 100.0
     FROM seq_1_to_${rows};`,
    MY_DB,
  );
}
if (values.prepare) process.exit(0);
const sizeMB = Number(psql(SRC_DB, "SELECT pg_total_relation_size('bench')")) / 1e6;

/** Runs a shell command under GNU time; returns seconds and peak RSS (largest process) in MB. */
function measure(command) {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", "sh", "-c", command], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${command} failed:\n${r.stderr.slice(-2000)}`);
  const [secs, kb] = r.stderr.trim().split("\n").at(-1).split(" ").map(Number);
  return { seconds: secs, rssMB: kb / 1024 };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function bench(name, prepare, command, check) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    prepare();
    results.push(measure(command));
    check();
  }
  return { name, seconds: median(results.map((r) => r.seconds)), rssMB: Math.max(...results.map((r) => r.rssMB)) };
}

const freshDst = () => {
  psql("postgres", `DROP DATABASE IF EXISTS ${DST_DB} WITH (FORCE)`);
  psql("postgres", `CREATE DATABASE ${DST_DB}`);
};
/** Every run must have copied every row: a fast wrong copy is not a result. */
const expectRows = (table) => () => {
  const n = Number(psql(DST_DB, `SELECT count(*) FROM ${table}`));
  if (n !== rows) throw new Error(`${table} has ${n} rows after the copy, expected ${rows}`);
};
const jobs = values.jobs ? ` --jobs ${values.jobs}` : "";
const ferry = (from, to) =>
  `${JSON.stringify(process.execPath)} ${bin} copy --from '${from}' --to '${to}' --yes --allow-lossy${jobs} 2> /dev/null`;

const results = [];
if (nativeToo) {
  results.push(
    bench(
      "pg_dump -t bench | psql",
      freshDst,
      `pg_dump -h 127.0.0.1 -U postgres -t bench ${SRC_DB} | psql -q -h 127.0.0.1 -U postgres ${DST_DB} > /dev/null`,
      expectRows("bench"),
    ),
  );
}
results.push(
  bench("ferry copy postgres → postgres", freshDst, ferry(`${PG}/${SRC_DB}`, `${PG}/${DST_DB}`), expectRows("bench")),
);
if (nativeToo) {
  results.push(
    bench(
      "pgloader mysql → postgres (defaults)",
      freshDst,
      `timeout 600 pgloader mysql://root@127.0.0.1/${MY_DB} postgresql://postgres@127.0.0.1/${DST_DB} > /dev/null 2>&1`,
      expectRows(`${MY_DB}.bench`),
    ),
  );
}
results.push(
  bench(
    "ferry copy mariadb → postgres",
    freshDst,
    ferry(`mysql://root@127.0.0.1:3306/${MY_DB}`, `${PG}/${DST_DB}`),
    expectRows("bench"),
  ),
);
psql("postgres", `DROP DATABASE IF EXISTS ${DST_DB} WITH (FORCE)`);

console.log(
  `\n${rows.toLocaleString()} rows, ${sizeMB.toFixed(0)} MB PostgreSQL table (with index); median of ${runs} run(s)\n`,
);
console.log("| method | time | rows/s | peak RSS | × native |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const [i, r] of results.entries()) {
  const native = nativeToo && i % 2 === 1 ? results[i - 1] : undefined;
  const ratio = native ? `${(r.seconds / native.seconds).toFixed(2)}×` : "";
  console.log(
    `| ${r.name} | ${r.seconds.toFixed(2)} s | ${Math.round(rows / r.seconds).toLocaleString()} | ${r.rssMB.toFixed(0)} MB | ${ratio} |`,
  );
}
