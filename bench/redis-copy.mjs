#!/usr/bin/env node
// Benchmark: Ferry Redis → Redis beside loading the same keys with `redis-cli --pipe`, in one
// run. Two private redis-servers (no persistence) on free ports: the source is loaded with
// redis-cli --pipe (timed: the native rate), then Ferry copies it into the empty second one.
// Reports seconds, keys/s, peak RSS, and Ferry's rate as a fraction of redis-cli's.
//
// Usage: npm run build && node bench/redis-copy.mjs [--keys 1000000] [--runs 1] [--zset 10000000] [--expiring 0]
//   mix: 60% hashes of 6 fields, 30% strings of ~100 bytes, 10% sorted sets of 10 members.
//   --expiring F: that share of the keys (0..1) gets an expiry 1 to 365 days ahead (as guide
//   001's API keys and usage counters); Ferry then reads every key's expiry.
//   --zset N: also copy one sorted set of N members (0: skip) and report Ferry's peak RSS
//   (large keys move page by page, so it stays flat whatever N is).
// Needs: redis-server and redis-cli on PATH.
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    keys: { type: "string", default: "1000000" },
    runs: { type: "string", default: "1" },
    zset: { type: "string", default: "10000000" },
    expiring: { type: "string", default: "0" },
  },
});
const keys = Number(values.keys);
const runs = Number(values.runs);
const expiring = Number(values.expiring);
const bin = join(root, "bin", "ferry.js");
const dataDir = join(root, "bench", "data");
mkdirSync(dataDir, { recursive: true });

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function server() {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: "ignore",
    },
  );
  for (let i = 0; i < 200; i++) {
    if (spawnSync("redis-cli", ["-p", String(port), "ping"], { encoding: "utf8" }).stdout.trim() === "PONG") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, stop: () => child.kill("SIGTERM") };
}

/** The RESP commands of the key mix (written once, reused). */
function respFile() {
  const file = join(dataDir, expiring > 0 ? `redis-${keys}-expiring-${expiring}.resp` : `redis-${keys}.resp`);
  if (existsSync(file)) return file;
  const cmd = (...args) => {
    let s = `*${args.length}\r\n`;
    for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    return s;
  };
  const chunks = [];
  for (let i = 0; i < keys; i++) {
    const r = i % 10;
    if (r < 6) {
      chunks.push(
        cmd(
          "HSET",
          `apikey:${i}`,
          "id",
          String(i),
          "name",
          `key ${i}`,
          "apiKey",
          `sha-${i * 7919}`,
          "isActive",
          "true",
          "createdAt",
          String(1700000000000 + i),
          "tags",
          '["a","b"]',
        ),
      );
    } else if (r < 9) chunks.push(cmd("SET", `usage:cost:${i}`, `${"x".repeat(90)}${i}`.slice(0, 100)));
    else {
      const z = ["ZADD", `idx:${i}`];
      for (let m = 0; m < 10; m++) z.push(String(m * 1.5), `member-${m}-${i}`);
      chunks.push(cmd(...z));
    }
    // A spread share of the keys expires, 1 to 365 days ahead.
    if ((i * 7919) % 1000 < expiring * 1000) {
      const key = r < 6 ? `apikey:${i}` : r < 9 ? `usage:cost:${i}` : `idx:${i}`;
      chunks.push(cmd("PEXPIRE", key, String((1 + (i % 365)) * 86_400_000)));
    }
  }
  writeFileSync(file, chunks.join(""));
  return file;
}

function measure(command) {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", "sh", "-c", command], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${command} failed:\n${r.stderr.slice(-2000)}`);
  const [secs, kb] = r.stderr.trim().split("\n").at(-1).split(" ").map(Number);
  return { seconds: secs, rssMB: kb / 1024 };
}

const count = (port) =>
  Number(spawnSync("redis-cli", ["-p", String(port), "dbsize"], { encoding: "utf8" }).stdout.trim());

const file = respFile();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const native = [];
const ferry = [];
for (let run = 0; run < runs; run++) {
  const src = await server();
  const dst = await server();
  try {
    native.push(measure(`redis-cli -p ${src.port} --pipe < ${file} > /dev/null`));
    if (count(src.port) !== keys) throw new Error(`source holds ${count(src.port)} keys, expected ${keys}`);
    ferry.push(
      measure(
        `${JSON.stringify(process.execPath)} ${bin} copy --from redis://127.0.0.1:${src.port}/0 --to redis://127.0.0.1:${dst.port}/0 --yes 2> /dev/null`,
      ),
    );
    if (count(dst.port) !== keys + 1)
      throw new Error(`target holds ${count(dst.port)} keys, expected ${keys} and the journal`);
  } finally {
    src.stop();
    dst.stop();
  }
}
const n = { seconds: median(native.map((r) => r.seconds)), rssMB: Math.max(...native.map((r) => r.rssMB)) };
const f = { seconds: median(ferry.map((r) => r.seconds)), rssMB: Math.max(...ferry.map((r) => r.rssMB)) };
console.log(
  `\n${keys.toLocaleString()} keys (60% hashes of 6 fields, 30% strings ~100 B, 10% sorted sets of 10${expiring > 0 ? `; ${expiring * 100}% expiring` : ""}); median of ${runs}\n`,
);
console.log("| method | time | keys/s | peak RSS | rate vs native |");
console.log("| --- | ---: | ---: | ---: | ---: |");
console.log(
  `| redis-cli --pipe (load) | ${n.seconds.toFixed(2)} s | ${Math.round(keys / n.seconds).toLocaleString()} | ${n.rssMB.toFixed(0)} MB |  |`,
);
console.log(
  `| ferry copy redis → redis | ${f.seconds.toFixed(2)} s | ${Math.round(keys / f.seconds).toLocaleString()} | ${f.rssMB.toFixed(0)} MB | ${(n.seconds / f.seconds).toFixed(2)} |`,
);

// One sorted set of --zset members: Ferry's peak RSS while copying it.
const members = Number(values.zset);
if (members > 0) {
  const zfile = join(dataDir, `redis-zset-${members}.resp`);
  if (!existsSync(zfile)) {
    const out = createWriteStream(zfile);
    for (let i = 0; i < members; i += 10_000) {
      const n = Math.min(10_000, members - i);
      let cmd = `*${2 + 2 * n}\r\n$4\r\nZADD\r\n$8\r\nbig:zset\r\n`;
      for (let j = i; j < i + n; j++) {
        const score = String(j * 1.5);
        const member = `member-${j}`;
        cmd += `$${score.length}\r\n${score}\r\n$${member.length}\r\n${member}\r\n`;
      }
      if (!out.write(cmd)) await new Promise((r) => out.once("drain", r));
    }
    await new Promise((r) => out.end(r));
  }
  const src = await server();
  const dst = await server();
  try {
    const load = measure(`redis-cli -p ${src.port} --pipe < ${zfile} > /dev/null`);
    const f = measure(
      `${JSON.stringify(process.execPath)} ${bin} copy --from redis://127.0.0.1:${src.port}/0 --to redis://127.0.0.1:${dst.port}/0 --yes 2> /dev/null`,
    );
    const card = Number(
      spawnSync("redis-cli", ["-p", String(dst.port), "zcard", "big:zset"], { encoding: "utf8" }).stdout.trim(),
    );
    if (card !== members) throw new Error(`target sorted set holds ${card} members, expected ${members}`);
    console.log(`\none sorted set of ${members.toLocaleString()} members\n`);
    console.log("| method | time | members/s | peak RSS |");
    console.log("| --- | ---: | ---: | ---: |");
    console.log(
      `| redis-cli --pipe (load) | ${load.seconds.toFixed(2)} s | ${Math.round(members / load.seconds).toLocaleString()} | ${load.rssMB.toFixed(0)} MB |`,
    );
    console.log(
      `| ferry copy redis → redis | ${f.seconds.toFixed(2)} s | ${Math.round(members / f.seconds).toLocaleString()} | ${f.rssMB.toFixed(0)} MB |`,
    );
  } finally {
    src.stop();
    dst.stop();
  }
}
