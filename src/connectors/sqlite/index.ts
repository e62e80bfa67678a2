/** Registers the SQLite connector (`sqlite:PATH`) with the connector registry. */
import { registerConnector } from "../../core/registry.js";
import { sqliteFactory } from "./sqlite-connector.js";

registerConnector(sqliteFactory);

export { SqliteConnector, sqliteFactory } from "./sqlite-connector.js";
