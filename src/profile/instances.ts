/**
 * The profile's named instances: a name stands wherever a URL does (`--from prod`), and
 * `checkInstances` reaches each one (what `ferry check` prints).
 */
import { existsSync } from "node:fs";
import { relative } from "node:path";
import { FerryError, isFerryError } from "../core/errors.js";
import { openConnector } from "../core/registry.js";
import { redactUrl } from "../core/url.js";
import { type Profile, unsetProblem } from "./load-profile.js";

const NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

/**
 * The URL `value` stands for: a profile instance's when `value` is one of its names, else
 * `value` itself (a URL or a path).
 *
 * @throws FerryError `E_CONFIG` for a bare name that is neither an instance nor an existing
 * file, naming the instances there are.
 */
export function instanceUrl(value: string, profile: Profile | undefined): string {
  const instances = profile?.config.instances ?? {};
  if (Object.hasOwn(instances, value)) {
    const missing = profile?.unresolved[value];
    if (missing && missing.length > 0) {
      throw new FerryError(
        "E_CONFIG",
        `${relative(process.cwd(), profile.path) || profile.path}: ${missing.map((v) => unsetProblem(value, v)).join("; ")}`,
      );
    }
    return instances[value] as string;
  }
  if (NAME.test(value) && !existsSync(value)) {
    const names = Object.keys(profile?.config.instances ?? {});
    const known = profile
      ? names.length > 0
        ? `the profile's instances are ${names.join(", ")}`
        : "the profile names no instances"
      : "there is no profile here (ferry.config.ts) to name instances";
    throw new FerryError(
      "E_CONFIG",
      `"${value}" is not a URL, a file, or a named instance: ${known} (URLs look like sqlite:./app.db, postgres://…, redis://…)`,
    );
  }
  return value;
}

/** What `checkInstances` found for one instance (never the password). */
export interface InstanceCheck {
  name: string;
  /** The URL with the password removed. */
  url: string;
  reachable: boolean;
  /** Engine and version when reachable (`PostgreSQL 15.8`). */
  version?: string;
  /** Why not, when unreachable. */
  error?: { code: string; message: string };
}

/** Connects to every named instance of the profile, one after another, and asks its version. */
export async function checkInstances(profile: Profile): Promise<InstanceCheck[]> {
  const out: InstanceCheck[] = [];
  for (const [name, url] of Object.entries(profile.config.instances ?? {})) {
    const shown = redactUrl(url);
    try {
      const c = await openConnector(url, {});
      try {
        await c.check();
        const version = c.version ? await c.version() : undefined;
        out.push({ name, url: shown, reachable: true, ...(version ? { version } : {}) });
      } finally {
        await c.close();
      }
    } catch (err) {
      const code = isFerryError(err) ? err.code : "E_CONNECTION";
      const message = err instanceof Error ? err.message : String(err);
      out.push({ name, url: shown, reachable: false, error: { code, message } });
    }
  }
  return out;
}
