/**
 * Finds, loads and checks the application profile (`ferry.config.ts`, `.mts`, `.js`, `.mjs`,
 * `.json`): TypeScript is loaded without a build step (jiti), and `import { defineConfig }
 * from "ferry"` resolves to the running Ferry. Every problem is reported at once, each as
 * `path: message`; instance URLs read the environment (`${VAR}`, `${VAR:-default}`).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { z } from "zod";
import { FerryError } from "../core/errors.js";
import type { FerryConfig } from "./define-config.js";

/** File names a profile may have, in the order they are looked for. */
export const PROFILE_FILES = [
  "ferry.config.ts",
  "ferry.config.mts",
  "ferry.config.js",
  "ferry.config.mjs",
  "ferry.config.json",
];

/** A loaded, checked profile. */
export interface Profile {
  /** The file it came from (absolute). */
  path: string;
  /** The profile, instance URLs with their `${VAR}`s filled in. */
  config: FerryConfig;
  /** Instances whose URL reads environment variables that are not set: name → the variables. */
  unresolved: Record<string, string[]>;
}

/** Where to look, and what environment `${VAR}` reads (default `process.env`). */
export interface LoadProfileOptions {
  /** A profile file given by the user (`--config`): it must exist. */
  config?: string;
  /** Directory searched when `config` is not given. Default: the working directory. */
  cwd?: string;
  env?: Record<string, string | undefined>;
}

/**
 * The profile in `options.config`, or the first of {@link PROFILE_FILES} in `options.cwd`;
 * undefined when there is none (Ferry then works on whole databases).
 *
 * @throws FerryError `E_CONFIG` listing every problem as `path: message` (a typo'd key, a
 * wrong type, an unset environment variable, a module that does not load), with the file.
 */
export async function loadProfile(options: LoadProfileOptions = {}): Promise<Profile | undefined> {
  const cwd = options.cwd ?? process.cwd();
  let path: string;
  if (options.config !== undefined) {
    path = isAbsolute(options.config) ? options.config : resolve(cwd, options.config);
    if (!existsSync(path)) throw new FerryError("E_CONFIG", `--config ${options.config}: no such file`);
  } else {
    const found = PROFILE_FILES.map((f) => resolve(cwd, f)).filter((p) => existsSync(p));
    if (found.length === 0) return undefined;
    if (found.length > 1) {
      const names = found.map((p) => relative(cwd, p)).join(", ");
      throw new FerryError("E_CONFIG", `more than one profile here (${names}): keep one, or pick one with --config`);
    }
    path = found[0] as string;
  }
  const shown = relative(cwd, path) || path;
  const raw = await importProfile(path, shown);
  // zod is loaded with a profile, not on every command.
  const shapes = await import("./profile-shape.js");
  const checked = shapes.profileShape.safeParse(raw);
  const problems = checked.success ? [] : checked.error.issues.flatMap((i) => describeIssue(i, shapes));
  const config = (checked.success ? checked.data : raw) as FerryConfig;
  if (checked.success) problems.push(...dependencyCycles(config.dependsOn ?? {}));
  const instances: Record<string, string> = {};
  const unresolved: Record<string, string[]> = {};
  const envProblems: string[] = [];
  for (const [name, url] of Object.entries(config.instances ?? {})) {
    if (typeof url !== "string") continue;
    const filled = interpolate(url, options.env ?? process.env);
    if (filled.missing.length > 0) unresolved[name] = filled.missing;
    envProblems.push(...filled.missing.map((v) => unsetProblem(name, v)));
    instances[name] = anchorPath(filled.text, dirname(path));
  }
  // A broken profile is refused with every problem; an unset variable alone only stops the
  // commands that use its instance (see `instanceUrl`) and `ferry check`.
  if (problems.length > 0) {
    problems.push(...envProblems);
    throw new FerryError(
      "E_CONFIG",
      `${shown} has ${problems.length === 1 ? "a problem" : `${problems.length} problems`}:\n${problems.map((p) => `  ${p}`).join("\n")}`,
      {
        details: { profile: shown, problems },
      },
    );
  }
  return { path, config: { ...config, ...(config.instances ? { instances } : {}) }, unresolved };
}

/**
 * An instance URL whose file path is relative, made relative to `dir` (the profile's
 * directory), so a profile means the same files from any working directory: bare paths
 * (`./export.json`, `./backup/`), `sqlite:PATH` and `file:PATH`. Other URLs are returned as they are.
 */
export function anchorPath(url: string, dir: string): string {
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(url)?.[1]?.toLowerCase();
  const anchor = (prefix: string, path: string): string => {
    if (path === "" || isAbsolute(path) || path.startsWith("//") || path === ":memory:") return url;
    const trailing = /[/\\]$/.test(path) ? "/" : "";
    return `${prefix}${resolve(dir, path)}${trailing}`;
  };
  if (scheme === undefined) return anchor("", url);
  if (scheme === "sqlite" || scheme === "file")
    return anchor(url.slice(0, scheme.length + 1), url.slice(scheme.length + 1));
  return url;
}

/** `dependsOn.x: x → y → x is a cycle` for each cycle of the profile's dependencies. */
function dependencyCycles(dependsOn: Record<string, string[]>): string[] {
  const out: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (n: string): void => {
    if (state.get(n) === "done") return;
    if (state.get(n) === "visiting") {
      const cycle = [...stack.slice(stack.indexOf(n)), n];
      out.push(`dependsOn.${n}: ${cycle.join(" → ")} is a cycle (a collection cannot be copied after itself)`);
      return;
    }
    state.set(n, "visiting");
    stack.push(n);
    for (const d of dependsOn[n] ?? []) visit(d);
    stack.pop();
    state.set(n, "done");
  };
  for (const n of Object.keys(dependsOn)) visit(n);
  return out;
}

/** The `path: message` of an instance's unset environment variable. */
export function unsetProblem(instance: string, variable: string): string {
  return `instances.${instance}: environment variable ${variable} is not set (set it, or write \${${variable}:-default})`;
}

/** The module's default export (or the JSON), with load errors pointing into the file. */
async function importProfile(path: string, shown: string): Promise<unknown> {
  if (path.endsWith(".json")) {
    try {
      return JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      throw new FerryError("E_CONFIG", `${shown}: not valid JSON: ${(err as Error).message}`);
    }
  }
  // `import … from "ferry"` in the profile is this Ferry (no install in the app needed).
  const self = fileURLToPath(new URL("../index", import.meta.url));
  // Loaded when a TypeScript/JavaScript profile is, not on every command.
  const { createJiti } = await import("jiti");
  const jiti = createJiti(import.meta.url, { alias: { ferry: self }, moduleCache: false, fsCache: false });
  let mod: unknown;
  try {
    mod = await jiti.import(path, { default: true });
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const message = (e.message.split("\n")[0] as string).trim();
    // The line in the profile where it failed, when the stack says.
    const frame = (e.stack ?? "")
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l.startsWith("at ") && l.includes(path));
    const where = frame ? ` (${frame.replace(path, shown)})` : "";
    const missing = /Cannot find (?:module|package) '([^']+)'/.exec(message)?.[1];
    const hint = missing ? `: install ${missing} in the project the profile belongs to (npm install ${missing})` : "";
    throw new FerryError("E_CONFIG", `${shown} could not be loaded: ${message}${where}${hint}`, { cause: err });
  }
  if (mod === undefined || mod === null || typeof mod !== "object") {
    throw new FerryError(
      "E_CONFIG",
      `${shown}: export the profile as the default export (export default defineConfig({ … }))`,
    );
  }
  return mod;
}

/** `path: message` for one issue; unknown keys name the key meant when one is close. */
function describeIssue(issue: z.core.$ZodIssue, shapes: Shapes): string[] {
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(issue.path, shapes);
    return issue.keys.map((k) => {
      const near = closest(k, known);
      const path = at === "" ? k : `${at}.${k}`;
      return `${path}: unknown key${near ? ` (did you mean ${near}?)` : `; known keys: ${known.join(", ")}`}`;
    });
  }
  const what = issue.code === "invalid_type" && /received undefined/.test(issue.message) ? "required" : issue.message;
  return [`${at === "" ? "(profile)" : at}: ${what}`];
}

type Shapes = typeof import("./profile-shape.js");

function knownKeys(path: PropertyKey[], shapes: Shapes): string[] {
  if (path.length === 0) return Object.keys(shapes.profileShape.shape);
  if (path[0] === "app") return ["name", "version"];
  if (path[0] === "collections") return Object.keys(shapes.collectionShape.shape);
  return [];
}

/** The known key within edit distance 2 of `key`, if any. */
function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const here = row[j] as number;
      row[j] = Math.min(here + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = here;
    }
  }
  return row[b.length] as number;
}

/** `${VAR}` and `${VAR:-default}` filled from `env`; the variables unset and without a default. */
export function interpolate(
  text: string,
  env: Record<string, string | undefined>,
): { text: string; missing: string[] } {
  const missing: string[] = [];
  const out = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, fallback?: string) => {
    // As in the shell: `${V}` is V's value, empty included; `${V:-d}` is d when V is unset or empty.
    const v = env[name];
    if (fallback !== undefined) return v === undefined || v === "" ? fallback : v;
    if (v !== undefined) return v;
    missing.push(name);
    return "";
  });
  return { text: out, missing };
}
