/** Registers the PostgreSQL connector. (Being built.) */
export {};
