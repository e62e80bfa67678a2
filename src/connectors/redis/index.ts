/** Registers the Redis connector (`redis://…`, `rediss://…`) with the connector registry. */
import { registerConnector } from "../../core/registry.js";
import { redisFactory } from "./redis-connector.js";

registerConnector(redisFactory);

export { RedisConnector, redisFactory } from "./redis-connector.js";
