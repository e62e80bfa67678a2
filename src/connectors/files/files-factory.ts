/** The factory the registry dispatches scheme-less paths and `file:` URLs to. */
import { statSync } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import type { ConnectorFactory } from "../../core/connector.js";
import { FerryError } from "../../core/errors.js";
import { FilesConnector, type FilesLayout } from "./files-connector.js";

/** The path of a `file:` URL or plain path, as the registry sees it. */
export function pathOfUrl(url: string): string {
  if (/^file:\/\/\//i.test(url)) {
    const p = decodeURIComponent(url.slice("file://".length));
    return /^\/[a-z]:/i.test(p) ? p.slice(1) : p;
  }
  return url.replace(/^file:(\/\/)?/i, "");
}

/** The layout of a path, or `undefined` when it is not one the files connector handles. */
export function layoutOf(path: string): FilesLayout | undefined {
  if (path.endsWith("/") || path.endsWith("\\")) return "dir";
  try {
    if (statSync(path).isDirectory()) return "dir";
  } catch {
    // Not there (yet): decided by the extension.
  }
  const ext = extname(path).toLowerCase();
  if (ext === ".ndjson" || ext === ".jsonl") return "ndjson";
  if (ext === ".json") return "json";
  return undefined;
}

/** Opens the files connector for a path or `file:` URL. */
export async function openFiles(url: string, options: { write?: boolean } = {}): Promise<FilesConnector> {
  const given = pathOfUrl(url);
  const layout = layoutOf(given);
  if (!layout) {
    throw new FerryError(
      "E_CONFIG",
      `cannot tell what kind of files instance "${given}" is: end a directory with "/", or name a .ndjson, .jsonl or .json file`,
    );
  }
  const path = resolve(given);
  const st = await stat(path).catch(() => undefined);
  if (!st && !options.write) {
    throw new FerryError(
      "E_CONNECTION",
      `${given}: no such ${layout === "dir" ? "directory" : "file"}: check the path (a target is created when written to)`,
      { details: { missing: true } },
    );
  }
  return new FilesConnector({ layout, given, path }, url, await identityOf(path), options.write === true);
}

/** The canonical absolute path, symlinks resolved as far as the path exists. */
async function identityOf(path: string): Promise<string> {
  let head = path;
  const tail: string[] = [];
  for (;;) {
    try {
      const real = await realpath(head);
      return join(real, ...[...tail].reverse());
    } catch {
      const up = dirname(head);
      if (up === head) return path;
      tail.push(basename(head));
      head = up;
    }
  }
}

/**
 * Claims paths ending in `/` (or an existing directory), `.ndjson`, `.jsonl` and `.json`.
 * Opening for reading needs the path to exist (`E_CONNECTION` with `details.missing`
 * otherwise); a target is created by `prepare`.
 *
 * @example openConnector("./backup/", { write: true })
 */
export const filesFactory: ConnectorFactory = {
  schemes: [],
  usage: "./dir/ | ./data.ndjson | ./data.json",
  engine: "files",
  claimsPath: (path) => layoutOf(path) !== undefined,
  open: (url, options) => openFiles(url, options),
};
