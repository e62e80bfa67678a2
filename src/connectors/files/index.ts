/**
 * The files connector: directories of NDJSON files (`./backup/`), single `.ndjson`/`.jsonl`
 * files and `.json` documents. Importing this module registers it.
 */
import { registerConnector } from "../../core/registry.js";
import { filesFactory } from "./files-factory.js";

registerConnector(filesFactory);

export { FilesConnector, type FilesLayout } from "./files-connector.js";
export { filesFactory, layoutOf, openFiles } from "./files-factory.js";
