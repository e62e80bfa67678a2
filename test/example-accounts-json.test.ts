/**
 * examples/accounts-json: guide 000's job with the commands of its README, in a copy of the
 * example directory: a merge by email of valid accounts, and a file with invalid accounts
 * refused whole, the installation's file left byte for byte as it was.
 */
import { cpSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ferry, ROOT, requireBuild } from "./cli.js";
import { tempDir } from "./helpers.js";

const tmp = tempDir();
const DIR = join(tmp.dir, "accounts-json");

beforeAll(() => {
  requireBuild();
  cpSync(join(ROOT, "examples", "accounts-json"), DIR, { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(DIR, "node_modules"));
  cpSync(join(DIR, "accounts.orig.json"), join(DIR, "accounts.json"));
});

afterAll(() => tmp.cleanup());

type Account = Record<string, unknown> & { email: string };
const file = (name: string): { schema_version: string; accounts: Account[] } =>
  JSON.parse(readFileSync(join(DIR, name), "utf8"));

describe("examples/accounts-json", () => {
  it("merges an exported file by email, and refuses a file with any invalid account without touching the installation", () => {
    const check = ferry(["check"], { cwd: DIR });
    expect(check.code).toBe(0);

    const before = readFileSync(join(DIR, "accounts.json"));
    const dry = ferry(["copy", "--from", "exported", "--to", "installed", "--dry-run"], { cwd: DIR });
    expect(dry.code).toBe(0);
    expect(dry.stderr).toMatch(/accounts\s+1\s+0\s+0\s+1\s+0/);
    expect(readFileSync(join(DIR, "accounts.json")).equals(before)).toBe(true);

    const r = ferry(["copy", "--from", "exported", "--to", "installed", "--yes"], { cwd: DIR });
    expect(r.code).toBe(0);
    const merged = file("accounts.json");
    const exported = file("export.json");
    const installed = file("accounts.orig.json");
    expect(merged.schema_version).toBe("1.0.0");
    expect(merged.accounts.map((a) => a.email)).toEqual(["alice@example.com", "bob@example.com", "carol@example.com"]);
    expect(merged.accounts[0]).toEqual(installed.accounts[0]); // alice: kept
    // bob: the imported one, matched although its domain is spelled Example.COM (stored lowercased).
    expect(exported.accounts[0]?.email).toBe("bob@Example.COM");
    expect(merged.accounts[1]).toEqual({ ...exported.accounts[0], email: "bob@example.com" });
    expect(merged.accounts[2]).toEqual(exported.accounts[1]); // carol: added

    const after = readFileSync(join(DIR, "accounts.json"));
    const bad = ferry(["copy", "--from", "./export-invalid.json", "--to", "installed", "--yes"], { cwd: DIR });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/2 records are invalid, nothing was written/);
    expect(bad.stderr).toMatch(
      /accounts email="dave\(at\)example\.com": id: must be a lowercase UUID v4; email: must be an email address; access_token: must be three non-empty parts separated by dots/,
    );
    // carol@example.com and carol@EXAMPLE.com are one address.
    expect(bad.stderr).toMatch(/email="carol@example\.com" appears more than once in the incoming data/);
    expect(readFileSync(join(DIR, "accounts.json")).equals(after)).toBe(true);

    // --json: the same refusal as an error event with every invalid record.
    const json = ferry(["copy", "--from", "./export-invalid.json", "--to", "installed", "--yes", "--json"], {
      cwd: DIR,
    });
    expect(json.code).toBe(3);
    const error = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; code?: string; details?: { count: number } })
      .find((e) => e.type === "error");
    expect(error).toMatchObject({ code: "E_VALIDATION", details: { count: 2 } });

    // --skip-invalid: the valid ones are written, the invalid one listed (exit 1).
    const skip = ferry(["copy", "--from", "./export-invalid.json", "--to", "installed", "--yes", "--skip-invalid"], {
      cwd: DIR,
    });
    expect(skip.code).toBe(1);
    expect(skip.stderr).toMatch(/dave\(at\)example\.com/);
    expect(file("accounts.json").accounts.map((a) => a.email)).not.toContain("dave(at)example.com");
  });
});
