/** The confirmation prompt before a run writes. */
import { createInterface } from "node:readline/promises";
import type { CopyPlan } from "../core/copy.js";
import { FerryError } from "../core/errors.js";

/** Whether a person can answer a prompt (stdin and stderr are terminals). */
export function canPrompt(): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY);
}

/** Refuses up front when a write needs confirmation and nobody can give it. */
export function requireConfirmable(yes: boolean, dryRun: boolean): void {
  if (!yes && !dryRun && !canPrompt()) {
    throw new FerryError(
      "E_USAGE",
      "refusing to write without confirmation: there is no terminal to ask on; pass --yes to confirm (or --dry-run to preview)",
    );
  }
}

/** Describes the plan and asks y/N on the terminal. */
export async function askToConfirm(plan: CopyPlan): Promise<boolean> {
  const lines = plan.collections.map(
    (c) =>
      `  ${c.name}: ${c.total ?? "?"} record(s), key ${c.key.join(",") || "(none)"}${c.targetExists ? " (exists at target)" : ""}`,
  );
  const head = plan.resume
    ? `Resume run ${plan.resume}: copy ${plan.source} → ${plan.target} (conflict ${plan.conflict})`
    : `Copy ${plan.source} → ${plan.target} (conflict ${plan.conflict}):`;
  return askYesNo(`${head}\n${lines.join("\n")}\nProceed? [y/N] `);
}

/** Asks a yes/no question on the terminal; true for y or yes. */
export async function askYesNo(question: string): Promise<boolean> {
  return /^y(es)?$/i.test((await ask(question, false)).trim());
}

/** Asks for a secret on the terminal without echoing it (a passphrase). */
export async function askSecret(question: string): Promise<string> {
  const answer = await ask(question, true);
  process.stderr.write("\n");
  return answer;
}

/** One line from the terminal; `secret`: what is typed is not echoed. Ctrl-C cancels. */
async function ask(question: string, secret: boolean): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, ...(secret ? { terminal: true } : {}) });
  if (secret) {
    // Echo the question, not what is typed.
    const muted = rl as unknown as { _writeToOutput: (s: string) => void };
    let asked = false;
    muted._writeToOutput = (s: string) => {
      if (!asked) process.stderr.write(s);
      asked = true;
    };
  }
  try {
    return await rl.question(question);
  } catch (err) {
    if ((err as { name?: string }).name === "AbortError") {
      throw new FerryError("E_INTERRUPTED", "cancelled at the prompt: nothing was written");
    }
    throw err;
  } finally {
    rl.close();
  }
}
