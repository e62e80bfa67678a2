import { randomBytes } from "node:crypto";
import mysql from "mysql2/promise";
import { PreciseDate } from "../src/core/values.js";
import { conformance } from "./conformance.js";

// The MariaDB/MySQL server of the test machine. Tests fail (not skip) when it is down.
const SERVER = { host: "127.0.0.1", port: 3306, user: "root" };
const made: string[] = [];

conformance({
  name: "mysql",
  fresh: () => {
    const db = `ferry_t_${randomBytes(6).toString("hex")}`;
    made.push(db);
    return `mysql://${SERVER.user}@${SERVER.host}:${SERVER.port}/${db}`;
  },
  extraFields: [
    {
      field: { name: "big", type: "integer", size: 8, unsigned: true },
      values: [2n ** 64n - 1n, 0, 2n ** 53n + 1n, 42, null],
    },
    {
      field: { name: "blob", type: "bytes" },
      values: [new Uint8Array([0, 1, 255]), new Uint8Array(0), null, new Uint8Array(300).map((_, i) => (i * 7) % 256)],
    },
    {
      field: { name: "amount", type: "decimal", precision: 20, scale: 5 },
      values: ["123456789012345.12345", "-0.00001", "0.00000", null, "42.50000"],
    },
    {
      field: { name: "at", type: "datetime", fractionDigits: 6 },
      values: [
        new PreciseDate(Date.UTC(2024, 0, 2, 3, 4, 5, 123), 456),
        new Date(Date.UTC(1999, 11, 31, 23, 59, 59)),
        null,
        new Date(Date.UTC(1000, 0, 1)),
      ],
    },
    {
      field: { name: "doc", type: "json" },
      values: [{ a: 1, b: [true, null, "x"], 'quote"s': "it's" }, [1, 2, 3], "just a string", 3.5, null, {}],
    },
    {
      field: { name: "mood", type: "text", enumValues: ["happy", "sad", "it's ok"] },
      values: ["happy", "it's ok", null, "sad"],
    },
    {
      field: { name: "flag", type: "boolean" },
      values: [true, false, null],
    },
  ],
  cleanup: async () => {
    const c = await mysql.createConnection(SERVER);
    try {
      for (const db of made) await c.query(`DROP DATABASE IF EXISTS \`${db}\``);
    } finally {
      await c.end();
    }
  },
});
