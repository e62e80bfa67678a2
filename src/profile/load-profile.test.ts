import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers.js";
import { isFerryError } from "../core/errors.js";
import { anchorPath, interpolate, loadProfile } from "./load-profile.js";

const tmp = tempDir();
let n = 0;
afterAll(() => tmp.cleanup());

/** A project directory holding `files` (with this repo's node_modules, so `zod` resolves). */
function project(files: Record<string, string>): string {
  const dir = join(tmp.dir, `p${n++}`);
  mkdirSync(dir);
  symlinkSync(join(import.meta.dirname, "..", "..", "node_modules"), join(dir, "node_modules"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

async function problem(dir: string, config?: string): Promise<string> {
  const err = await loadProfile({ cwd: dir, env: {}, ...(config ? { config } : {}) }).catch((e: unknown) => e);
  expect(isFerryError(err, "E_CONFIG")).toBe(true);
  return (err as Error).message;
}

describe("loadProfile", () => {
  it("finds no profile in a directory without one", async () => {
    expect(await loadProfile({ cwd: project({}) })).toBeUndefined();
  });

  it("loads ferry.config.ts without a build step: defineConfig from ferry, a zod schema, instances from the environment", async () => {
    const dir = project({
      "ferry.config.ts": `
        import { defineConfig } from "ferry";
        import { z } from "zod";
        const port: number = 6379;
        export default defineConfig({
          app: { name: "relay", version: "1.4.0" },
          instances: {
            prod: "redis://:\${SOURCE_REDIS_PASSWORD}@\${SOURCE_REDIS_HOST:-localhost}:" + port + "/0",
            qa: "redis://\${TARGET_REDIS_HOST:-localhost}:6379/1",
          },
          collections: {
            accounts: { table: "accounts", key: "id", naturalKey: "email", secret: ["access_token"],
                        schema: z.object({ id: z.string().uuid(), email: z.string().email() }) },
            sessions: { match: "session:*", export: false },
          },
        });`,
    });
    const p = await loadProfile({ cwd: dir, env: { SOURCE_REDIS_PASSWORD: "pw", TARGET_REDIS_HOST: "qa.internal" } });
    expect(p?.path).toBe(join(dir, "ferry.config.ts"));
    expect(p?.config.app).toEqual({ name: "relay", version: "1.4.0" });
    expect(p?.config.instances).toEqual({
      prod: "redis://:pw@localhost:6379/0",
      qa: "redis://qa.internal:6379/1",
    });
    const schema = p?.config.collections?.accounts?.schema;
    expect(schema?.["~standard"].vendor).toBe("zod");
    expect(p?.config.collections?.sessions).toEqual({ match: "session:*", export: false });
  });

  it("loads .json and .mjs profiles, and --config names a file anywhere", async () => {
    const dir = project({
      "ferry.config.json": JSON.stringify({ instances: { local: "sqlite:./app.db" } }),
      "other.mjs": `export default { instances: { x: "redis://localhost:6379/2" } };`,
    });
    expect((await loadProfile({ cwd: dir }))?.config.instances).toEqual({ local: `sqlite:${join(dir, "app.db")}` });
    expect((await loadProfile({ cwd: dir, config: "other.mjs" }))?.config.instances).toEqual({
      x: "redis://localhost:6379/2",
    });
    expect(await problem(dir, "missing.ts")).toMatch(/--config missing\.ts: no such file/);
  });

  it("lists every problem at once as path: message, naming the key meant by a typo", async () => {
    const dir = project({
      "ferry.config.mjs": `export default {
        app: { nam: "relay" },
        instances: { prod: "redis://:\${SOURCE_REDIS_PASSWORD}@localhost/0", qa: 42 },
        colections: {},
        collections: {
          apikeys: { match: "apikey:*", exlude: ["apikey:idx:*"], conflict: "replace" },
          accounts: { schema: { parse() {} }, transform: "upper", secret: "token" },
        },
      };`,
    });
    const message = await problem(dir);
    const lines = message
      .split("\n")
      .slice(1)
      .map((l) => l.trim())
      .sort();
    expect(message.split("\n")[0]).toBe("ferry.config.mjs has 10 problems:");
    expect(lines).toEqual(
      [
        "app.name: required",
        "app.nam: unknown key (did you mean name?)",
        "instances.qa: Invalid input: expected string, received number",
        "colections: unknown key (did you mean collections?)",
        "collections.apikeys.exlude: unknown key (did you mean exclude?)",
        'collections.apikeys.conflict: Invalid option: expected one of "fail"|"skip"|"overwrite"|"merge"',
        "collections.accounts.schema: must be a Standard Schema validator (a zod, valibot or arktype schema)",
        "collections.accounts.transform: must be a function (record, ctx) => record | null",
        "collections.accounts.secret: Invalid input: expected array, received string",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the profile's own ${VAR} syntax
        "instances.prod: environment variable SOURCE_REDIS_PASSWORD is not set (set it, or write ${SOURCE_REDIS_PASSWORD:-default})",
      ].sort(),
    );
  });

  it("points at the profile's line when it throws, and says what to install when an import is missing", async () => {
    const threw = project({ "ferry.config.ts": `const a = 1;\nthrow new Error("no profile today");\n` });
    expect(await problem(threw)).toMatch(
      /^ferry\.config\.ts could not be loaded: no profile today \(at .*ferry\.config\.ts:2:\d+\)/,
    );
    const missing = project({ "ferry.config.ts": `import { v } from "not-installed-lib";\nexport default { v };\n` });
    expect(await problem(missing)).toMatch(/Cannot find .*not-installed-lib.*npm install not-installed-lib/);
    const notObject = project({ "ferry.config.mjs": "export default 42;\n" });
    expect(await problem(notObject)).toMatch(/default export/);
    const two = project({ "ferry.config.ts": "export default {}", "ferry.config.json": "{}" });
    expect(await problem(two)).toMatch(/more than one profile here \(ferry\.config\.ts, ferry\.config\.json\)/);
  });
});

describe("interpolate", () => {
  it("fills $VAR placeholders, with or without a default, from the environment and names what is unset", () => {
    const name = fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,6}$/);
    fc.assert(
      fc.property(
        fc.dictionary(name, fc.string({ minLength: 1 })),
        name,
        fc.string(),
        fc.string(),
        (env, v, before, fallback) => {
          const plain = before.replace(/\$\{/g, "");
          const safeFallback = fallback.replace(/[}]/g, "");
          expect(interpolate(plain, env)).toEqual({ text: plain, missing: [] });
          const withDefault = interpolate(`${plain}\${${v}:-${safeFallback}}`, env);
          expect(withDefault.text).toBe(plain + (env[v] ?? safeFallback));
          const bare = interpolate(`\${${v}}`, env);
          expect(bare).toEqual(env[v] === undefined ? { text: "", missing: [v] } : { text: env[v], missing: [] });
        },
      ),
    );
  });
});

describe("anchorPath", () => {
  it("makes relative file paths relative to the profile's directory and leaves every other URL alone", () => {
    const dir = "/srv/app";
    expect(anchorPath("./export.json", dir)).toBe("/srv/app/export.json");
    expect(anchorPath("backup/", dir)).toBe("/srv/app/backup/");
    expect(anchorPath("../shared/data.ndjson", dir)).toBe("/srv/shared/data.ndjson");
    expect(anchorPath("sqlite:./app.db", dir)).toBe("sqlite:/srv/app/app.db");
    expect(anchorPath("sqlite:app.db", dir)).toBe("sqlite:/srv/app/app.db");
    expect(anchorPath("file:./x.json", dir)).toBe("file:/srv/app/x.json");
    for (const same of [
      "/abs/x.json",
      "sqlite:/abs/app.db",
      "sqlite::memory:",
      "sqlite:///abs/app.db",
      "file:///abs/x.json",
      "postgres://u:p@h:5432/db",
      "redis://h:6379/0",
      "mysql://root@127.0.0.1/shop",
    ]) {
      expect(anchorPath(same, dir)).toBe(same);
    }
  });
});
