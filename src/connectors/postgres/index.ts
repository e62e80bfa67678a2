/** Registers the PostgreSQL connector (`postgres://…`, `postgresql://…`) with the connector registry. */
import { registerConnector } from "../../core/registry.js";
import { postgresFactory } from "./postgres-connector.js";

registerConnector(postgresFactory);

export { PostgresConnector, postgresFactory } from "./postgres-connector.js";
