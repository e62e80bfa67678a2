/** Registers every built-in connector. Importing `ferry` does this. */
import "./sqlite/index.js";
import "./files/index.js";
import "./postgres/index.js";
import "./mysql/index.js";
import "./redis/index.js";
