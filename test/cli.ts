/** Runs the built `ferry` CLI as a child process, as a user would. */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "..");
export const BIN = join(ROOT, "bin", "ferry.js");

/** Throws unless `npm run build` has produced the CLI (npm test does it first). */
export function requireBuild(): void {
  if (!existsSync(join(ROOT, "dist", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` (npm test builds first)");
  }
}

/** The outcome of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `ferry ARGS` without a terminal and waits for it. */
export function ferry(
  args: string[],
  options: { input?: string; cwd?: string; env?: Record<string, string> } = {},
): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
    input: options.input ?? "",
    encoding: "utf8",
    timeout: 120_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `ferry ARGS` in the background (for kill -9 tests). */
export function ferryAsync(args: string[]) {
  return spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
}

/**
 * Runs `ferry ARGS` on a pseudo-terminal (util-linux `script`), typing `input`, after
 * `delaySeconds` when given (to answer a prompt once it is shown, as a person would).
 */
export function ferryOnTerminal(args: string[], input: string, delaySeconds = 0): CliResult {
  const q = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
  const cmd = [process.execPath, BIN, ...args].map(q).join(" ");
  const bytes = [...input].map((c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`).join("");
  const r =
    delaySeconds > 0
      ? spawnSync(
          "sh",
          ["-c", `(sleep ${delaySeconds}; printf '${bytes}'; sleep 1) | script -qec ${q(cmd)} /dev/null`],
          {
            cwd: ROOT,
            encoding: "utf8",
            timeout: 120_000,
          },
        )
      : spawnSync("script", ["-qec", cmd, "/dev/null"], { cwd: ROOT, input, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
