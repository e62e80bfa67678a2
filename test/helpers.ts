/** Test helpers: temp dirs, seeding and reading instances through the connector contract. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import pg from "pg";
import "../src/connectors/index.js";
import { openConnector } from "../src/core/registry.js";
import type { CollectionSchema } from "../src/core/schema.js";
import { encodeRow, type Row } from "../src/core/values.js";
import { canonicalJson } from "../src/package/format.js";

/** A fresh temp directory, removed by the returned cleanup. */
export function tempDir(prefix = "ferry-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A collection fixture: its schema and rows. */
export interface Fixture {
  schema: CollectionSchema;
  rows: Row[];
}

/** Creates and fills collections at `url` through the connector contract (insert ops). */
export async function seed(url: string, fixtures: Fixture[]): Promise<void> {
  const c = await openConnector(url, { write: true });
  try {
    for (const f of fixtures) {
      const { schema } = await c.prepare(f.schema);
      const result = await c.write(
        schema,
        f.rows.map((record) => ({ op: "insert" as const, record })),
      );
      if (result.failures.length > 0) throw new Error(`seed ${f.schema.name}: ${JSON.stringify(result.failures)}`);
      await c.finish(schema);
    }
  } finally {
    await c.close();
  }
}

/** Every record of every collection at `url`, by collection name, in read order. */
export async function readAll(url: string): Promise<Record<string, Row[]>> {
  const c = await openConnector(url, { write: false });
  try {
    const out: Record<string, Row[]> = {};
    for (const s of await c.discover()) {
      const rows: Row[] = [];
      for await (const b of c.read(s, { batchSize: 1000 })) rows.push(...b.records);
      out[s.name] = rows;
    }
    return out;
  } finally {
    await c.close();
  }
}

/** Sorts rows by a canonical encoding so comparisons ignore order. */
export function sortRows(rows: Row[], key: string[]): Row[] {
  const k = (r: Row) => JSON.stringify(key.map((f) => String(r[f])));
  return [...rows].sort((a, b) => (k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0));
}

/** Creates PostgreSQL database `name` (trust auth, user postgres) unless it exists. */
export async function ensurePgDatabase(name: string): Promise<void> {
  const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await c.connect();
  try {
    const r = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    // Another test file may create it at the same moment.
    if (r.rowCount === 0) await c.query(`CREATE DATABASE ${name}`).catch(() => {});
  } finally {
    await c.end();
  }
}

/** Runs SQL in PostgreSQL database `database` (trust auth, user postgres); its rows. */
export async function pgQuery<T = Record<string, unknown>>(
  database: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** Runs SQL (several statements allowed) at the MariaDB server (root, no password). */
export async function myExec(sql: string, params?: unknown[]): Promise<void> {
  const c = await mysql.createConnection({ host: "127.0.0.1", port: 3306, user: "root", multipleStatements: true });
  try {
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}

/** Every record of every collection at `url`, each as canonical JSON, in a stable order. */
export async function canonicalRecords(url: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [name, rows] of Object.entries(await readAll(url))) {
    out[name] = rows.map((r: Row) => canonicalJson(encodeRow(r))).sort();
  }
  return out;
}
