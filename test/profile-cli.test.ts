/**
 * The profile from the command line: `ferry check` (every problem at once; each named
 * instance reached, with its version, against the real servers) and instance names wherever
 * a URL goes.
 */
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ferry, ROOT, requireBuild } from "./cli.js";
import { tempDir } from "./helpers.js";
import { startRedis, type TestRedis } from "./redis-server.js";

const tmp = tempDir();
let redis: TestRedis;
const SECRET = "TopSecret-42";

beforeAll(async () => {
  requireBuild();
  redis = await startRedis(16);
});

afterAll(async () => {
  await redis?.stop();
  tmp.cleanup();
});

function project(name: string, profile: string): string {
  const dir = join(tmp.dir, name);
  mkdirSync(dir);
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  writeFileSync(join(dir, "ferry.config.ts"), profile);
  return dir;
}

describe("ferry check", () => {
  it("reaches every named instance and gives its engine and version; an unreachable one fails the check; no password is printed", async () => {
    const shop = join(ROOT, "examples", "quickstart", "shop.db");
    const dir = project(
      "check",
      `import { defineConfig } from "ferry";
      export default defineConfig({
        app: { name: "shop", version: "2.0.0" },
        instances: {
          cache: "redis://127.0.0.1:${redis.port}/3",
          db: "postgres://postgres:\${PG_PASSWORD}@127.0.0.1:5432/postgres",
          legacy: "mysql://root@127.0.0.1:3306/mysql",
          local: "sqlite:${shop}",
          gone: "redis://127.0.0.1:1/0",
        },
        collections: { customers: { rename: "clients" } },
      });`,
    );
    const env = { PG_PASSWORD: SECRET };
    const r = ferry(["check"], { cwd: dir, env });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/profile .*ferry\.config\.ts \(shop 2\.0\.0\): valid; 5 instances, 1 collections/);
    expect(r.stdout).not.toMatch(/not applied/);
    expect(r.stdout).toMatch(/cache\s+ok\s+Redis \d+\.\d+/);
    expect(r.stdout).toMatch(/db\s+ok\s+PostgreSQL \d+/);
    expect(r.stdout).toMatch(/legacy\s+ok\s+(MariaDB|MySQL) \d+/);
    expect(r.stdout).toMatch(/local\s+ok\s+SQLite 3\./);
    expect(r.stdout).toMatch(/gone\s+UNREACHABLE\s+cannot reach Redis at 127\.0\.0\.1:1/);
    const j = ferry(["check", "--json"], { cwd: dir, env });
    expect(j.code).toBe(1);
    const out = JSON.parse(j.stdout) as { instances: { name: string; reachable: boolean; version?: string }[] };
    expect(out.instances.map((i) => [i.name, i.reachable])).toEqual([
      ["cache", true],
      ["db", true],
      ["legacy", true],
      ["local", true],
      ["gone", false],
    ]);
    for (const output of [r.stdout, r.stderr, j.stdout, j.stderr]) expect(output).not.toContain(SECRET);
  });

  it("lists the profile's problems as path: message and exits 2", () => {
    const dir = project(
      "bad",
      `export default { instances: { prod: "redis://\${MISSING_HOST}:6379/0" }, collections: { apikeys: { mach: "apikey:*" } } };`,
    );
    const r = ferry(["check"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/ferry\.config\.ts has 2 problems:/);
    expect(r.stderr).toMatch(/collections\.apikeys\.mach: unknown key \(did you mean match\?\)/);
    expect(r.stderr).toMatch(/instances\.prod: environment variable MISSING_HOST is not set/);
    const none = join(tmp.dir, "none");
    mkdirSync(none);
    const r2 = ferry(["check"], { cwd: none });
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/no profile here \(ferry\.config\.ts/);
  });
});

describe("instance names in place of URLs", () => {
  it("copies between named instances, and names the instances when a name is unknown", () => {
    const shop = join(ROOT, "examples", "quickstart", "shop.db");
    const dir = project(
      "names",
      `export default { instances: { shop: "sqlite:${shop}", backup: "${join(tmp.dir, "backup")}/" } };`,
    );
    const r = ferry(["copy", "--from", "shop", "--to", "backup", "--yes"], { cwd: dir });
    expect(r.stderr).toMatch(/done/);
    expect(r.code).toBe(0);
    expect(existsSync(join(tmp.dir, "backup", "customers.ndjson"))).toBe(true);
    const h = ferry(["history", "--at", "backup"], { cwd: dir });
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/copy\s+done/);
    // An instance whose variable is unset stops only the commands that use it.
    writeFileSync(
      join(dir, "ferry.config.ts"),
      `export default { instances: { shop: "sqlite:${shop}", backup: "${join(tmp.dir, "backup2")}/", prod: "redis://:\${PROD_PW}@x:6379/0" } };`,
    );
    const ok = ferry(["copy", "--from", "shop", "--to", "backup", "--yes"], { cwd: dir });
    expect(ok.code).toBe(0);
    const unset = ferry(["copy", "--from", "prod", "--to", "backup", "--yes"], { cwd: dir });
    expect(unset.code).toBe(2);
    expect(unset.stderr).toMatch(/instances\.prod: environment variable PROD_PW is not set/);
    const check = ferry(["check"], { cwd: dir });
    expect(check.code).toBe(2);
    expect(check.stderr).toMatch(/instances\.prod: environment variable PROD_PW is not set/);
    const bad = ferry(["copy", "--from", "shopp", "--to", "backup", "--yes"], { cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /"shopp" is not a URL, a file, or a named instance: the profile's instances are shop, backup/,
    );
  });
});

describe("paths and dependencies in a profile", () => {
  it("reads an instance's relative path from the profile's directory, whatever the working directory", () => {
    const dir = project(
      "relative",
      `export default { instances: { people: "./people.ndjson", out: "sqlite:./out/people.db", dump: "./dump/" } };`,
    );
    writeFileSync(join(dir, "people.ndjson"), '{"id":1,"name":"Ada"}\n{"id":2,"name":"Brian"}\n');
    mkdirSync(join(dir, "out"));
    const elsewhere = join(tmp.dir, "elsewhere");
    mkdirSync(elsewhere);
    const config = join(dir, "ferry.config.ts");
    const r = ferry(["--config", config, "copy", "--from", "people", "--to", "out", "--yes"], { cwd: elsewhere });
    expect(r.stderr).toMatch(/done/);
    expect(r.code).toBe(0);
    expect(existsSync(join(dir, "out", "people.db"))).toBe(true);
    const d = ferry(["--config", config, "copy", "--from", "out", "--to", "dump", "--yes"], { cwd: elsewhere });
    expect(d.code).toBe(0);
    expect(existsSync(join(dir, "dump", "people.ndjson"))).toBe(true);
    expect(existsSync(join(elsewhere, "dump"))).toBe(false);
  });

  it("names a cycle in dependsOn as a profile problem", () => {
    const dir = project(
      "cycle",
      `export default { dependsOn: { orders: ["customers"], customers: ["accounts"], accounts: ["orders"] } };`,
    );
    const r = ferry(["check"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/dependsOn\.orders: orders → customers → accounts → orders is a cycle/);
  });
});

describe("secret fields", () => {
  it("never appear in the output, human or --json, even where a validator quotes the value it refused", () => {
    const shop = join(ROOT, "examples", "quickstart", "shop.db");
    const dir = project(
      "secrets",
      `import { defineConfig } from "ferry";
      import * as v from "valibot";
      export default defineConfig({
        instances: { shop: "sqlite:${shop}" },
        collections: {
          customers: {
            secret: ["api_token"],
            transform: (r) => ({ ...r, api_token: "s3cr3t-token-" + r.id }),
            // valibot's message quotes the value: Invalid format: Expected /^tok_/ but received "s3cr3t-token-1"
            schema: v.object({ api_token: v.pipe(v.string(), v.regex(/^tok_/)) }),
          },
        },
      });`,
    );
    const outputs: string[] = [];
    for (const extra of [[], ["--json"], ["--skip-invalid"], ["--skip-invalid", "--json"], ["--dry-run"]]) {
      const r = ferry(
        [
          "copy",
          "--from",
          "shop",
          "--to",
          `${join(dir, `out-${outputs.length}`)}/`,
          "--collections",
          "customers",
          "--yes",
          ...extra,
        ],
        {
          cwd: dir,
        },
      );
      expect(r.code, extra.join(" ")).toBe(extra.includes("--skip-invalid") ? 1 : 3);
      outputs.push(r.stdout, r.stderr);
    }
    const all = outputs.join("\n");
    expect(all).toMatch(/api_token: .*\*\*\*/); // the refusals are there, their values masked
    expect(all).not.toMatch(/s3cr3t/);
  });
});
