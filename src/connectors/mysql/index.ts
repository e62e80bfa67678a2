/** Registers the MySQL/MariaDB connector (`mysql://…`, `mariadb://…`) with the connector registry. */
import { registerConnector } from "../../core/registry.js";
import { mysqlFactory } from "./mysql-connector.js";

registerConnector(mysqlFactory);

export { MysqlConnector, mysqlFactory } from "./mysql-connector.js";
