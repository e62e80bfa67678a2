import { randomBytes } from "node:crypto";
import pg from "pg";
import { PreciseDate } from "../src/core/values.js";
import { conformance } from "./conformance.js";

// The PostgreSQL on this machine (trust auth). Tests fail, never skip, when it is down.
const SERVER = { host: "127.0.0.1", port: 5432, user: "postgres" };
const DATABASE = "ferry_test";
const schemas: string[] = [];

conformance({
  name: "postgres",
  fresh: () => {
    const schema = `t_${randomBytes(6).toString("hex")}`;
    schemas.push(schema);
    return `postgres://${SERVER.user}@${SERVER.host}:${SERVER.port}/${DATABASE}?schema=${schema}`;
  },
  extraFields: [
    {
      field: { name: "big", type: "integer", size: 8, nativeType: "bigint" },
      values: [2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n, 0, 42, null],
    },
    {
      field: { name: "blob", type: "bytes", nativeType: "bytea" },
      values: [new Uint8Array([0, 1, 255, 92, 9, 10]), new Uint8Array(0), null],
    },
    {
      field: { name: "amount", type: "decimal", precision: 20, scale: 5, nativeType: "numeric(20,5)" },
      values: ["123.45000", "-0.00001", "999999999999999.99999", "0.00000", null],
    },
    {
      field: { name: "at", type: "datetime", timezone: true, nativeType: "timestamp with time zone" },
      values: [
        new PreciseDate(Date.UTC(2024, 0, 2, 3, 4, 5, 123), 456),
        new Date(Date.UTC(1999, 11, 31, 23, 59, 59)),
        new PreciseDate(Date.UTC(-43, 2, 15, 12, 0, 0, 0), 1),
        null,
      ],
    },
    {
      field: { name: "doc", type: "json", nativeType: "jsonb" },
      values: [{ a: 1, bb: [1, "x", null] }, [1, 2, 3], "just a string", 42, true, { nested: { k: "v\t\\" } }, null],
    },
    {
      field: { name: "uid", type: "uuid", nativeType: "uuid" },
      values: ["123e4567-e89b-12d3-a456-426614174000", "00000000-0000-0000-0000-000000000000", null],
    },
    { field: { name: "flag", type: "boolean", nativeType: "boolean" }, values: [true, false, null] },
    {
      field: { name: "tags", type: "json", arrayOf: "integer", nativeType: "integer[]" },
      values: [[1, 2, 3], [], [null, 5], [-(2 ** 53 - 1)], null],
    },
    {
      field: { name: "words", type: "json", arrayOf: "text", nativeType: "text[]" },
      values: [["a", "b c", 'q"uote', "back\\slash", "comma,", "NULL", "", "{braces}"], [null], null],
    },
  ],
  cleanup: async () => {
    const client = new pg.Client({ ...SERVER, database: DATABASE });
    await client.connect();
    try {
      for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(s)} CASCADE`);
    } finally {
      await client.end();
    }
  },
});
