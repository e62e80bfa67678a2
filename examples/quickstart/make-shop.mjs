#!/usr/bin/env node
// Builds examples/quickstart/shop.db: a small shop with the kinds of data Ferry must carry
// exactly — composite and text keys, foreign keys, a unique email, an index, NULLs, unicode,
// blobs, 64-bit integers, floats and dates. Deterministic: the same file content every run.
// Usage: node examples/quickstart/make-shop.mjs [PATH]
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";

const path = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), "shop.db");
rmSync(path, { force: true });
const db = new Database(path);
db.exec(`
  CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    loyalty_points INTEGER NOT NULL DEFAULT 0,
    joined_at DATETIME NOT NULL
  );
  CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price REAL NOT NULL CHECK (price >= 0),
    thumbnail BLOB
  ) WITHOUT ROWID;
  CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    placed_at DATETIME NOT NULL,
    note TEXT
  );
  CREATE INDEX orders_by_customer ON orders(customer_id, placed_at);
  CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    sku TEXT NOT NULL REFERENCES products(sku),
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    PRIMARY KEY (order_id, sku)
  );
`);

// A tiny deterministic generator (no Math.random: the file must be reproducible).
let seed = 42;
const next = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const names = ["Ada Lovelace", "Łukasz Żółć", "山田 太郎", "Zoë O'Brien", "José Ñúñez", "Ferry 🚢 Fan"];
const insert = db.transaction(() => {
  const c = db.prepare("INSERT INTO customers VALUES (?, ?, ?, ?, ?)");
  for (let i = 1; i <= 50; i++) {
    const points = i === 7 ? 9007199254740993n : BigInt(Math.floor(next() * 5000));
    const day = new Date(Date.UTC(2024, 0, 1) + i * 86_400_000).toISOString().replace("T", " ").slice(0, 19);
    c.run(i, `customer${i}@example.com`, `${names[i % names.length]} ${i}`, points, day);
  }
  const p = db.prepare("INSERT INTO products VALUES (?, ?, ?, ?)");
  for (let i = 1; i <= 20; i++) {
    const thumb = i % 4 === 0 ? null : Buffer.from(Array.from({ length: 16 }, (_, k) => (i * 31 + k * 7) % 256));
    p.run(`SKU-${String(i).padStart(3, "0")}`, `Product ${i}`, Math.round(next() * 10000) / 100, thumb);
  }
  const o = db.prepare("INSERT INTO orders VALUES (?, ?, ?, ?)");
  const it = db.prepare("INSERT INTO order_items VALUES (?, ?, ?, ?)");
  for (let i = 1; i <= 200; i++) {
    const when = new Date(Date.UTC(2025, 0, 1) + Math.floor(next() * 300 * 86_400_000)).toISOString();
    o.run(i, 1 + Math.floor(next() * 50), when, i % 5 === 0 ? "gift wrap — please ✨" : null);
    const skus = new Set();
    for (let k = 0; k < 1 + (i % 4); k++) skus.add(1 + Math.floor(next() * 20));
    for (const s of skus) it.run(i, `SKU-${String(s).padStart(3, "0")}`, 1 + (i % 3), 0.1 + s);
  }
});
insert();
db.close();
console.error(`wrote ${path}`);
