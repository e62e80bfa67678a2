/**
 * The profile's rules in a copy, through the library: any Standard Schema validator (valibot
 * here, zod in examples/accounts-json), transforms, natural keys, per-collection conflict modes.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { afterAll, describe, expect, it } from "vitest";
import "../src/connectors/index.js";
import { copy } from "../src/core/copy.js";
import { isFerryError } from "../src/core/errors.js";
import { readAll, tempDir } from "./helpers.js";

const SHOP = `sqlite:${join(import.meta.dirname, "..", "examples", "quickstart", "shop.db")}`;
const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe("profile rules in a copy", () => {
  it("refuses every invalid record by key, field path and message, and writes nothing (valibot)", async () => {
    const to = join(tmp.dir, "v1/");
    const schema = v.object({
      id: v.number(),
      email: v.pipe(v.string(), v.email()),
      loyalty_points: v.pipe(v.number(), v.maxValue(4000, "must be at most 4000")),
    });
    const err = await copy({
      from: SHOP,
      to,
      collections: ["customers"],
      collectionSpecs: { customers: { schema } },
    }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_VALIDATION")).toBe(true);
    const details = (err as { details: { count: number; invalid: { key: string; reason: string }[] } }).details;
    const all = (await readAll(SHOP)).customers ?? [];
    const over = all.filter((c) => Number(c.loyalty_points) > 4000);
    expect(over.length).toBeGreaterThan(0);
    expect(details.count).toBe(over.length);
    expect(details.invalid.map((i) => i.key).sort()).toEqual(over.map((c) => `id=${c.id}`).sort());
    expect(details.invalid[0]?.reason).toBe("loyalty_points: must be at most 4000");
    expect(existsSync(to)).toBe(false);

    // --skip-invalid: the valid ones are written, the others refused and counted.
    const r = await copy({
      from: SHOP,
      to,
      collections: ["customers"],
      collectionSpecs: { customers: { schema } },
      skipInvalid: true,
    });
    expect(r.collections.customers).toMatchObject({ copied: all.length - over.length, failed: over.length });
  });

  it("transforms records before validation; null drops one; a throwing transform names the record", async () => {
    const to = join(tmp.dir, "t1/");
    const r = await copy({
      from: SHOP,
      to,
      collections: ["customers"],
      collectionSpecs: {
        customers: {
          transform: (rec) => (Number(rec.id) % 10 === 0 ? null : { ...rec, email: String(rec.email).toUpperCase() }),
          schema: v.object({ email: v.pipe(v.string(), v.regex(/^[A-Z0-9@.]+$/, "must be upper case")) }),
        },
      },
    });
    expect(r.collections.customers).toMatchObject({ copied: 45, skipped: 5, failed: 0 });
    const copied = (await readAll(to)).customers ?? [];
    expect(copied.every((c) => c.email === String(c.email).toUpperCase())).toBe(true);
    expect(copied.some((c) => Number(c.id) % 10 === 0)).toBe(false);

    const err = await copy({
      from: SHOP,
      to: join(tmp.dir, "t2/"),
      collections: ["customers"],
      collectionSpecs: {
        customers: {
          schema: v.object({}),
          transform: (rec) => {
            if (rec.id === 7) throw new Error("no customer 7 here");
            return rec;
          },
        },
      },
    }).catch((e: unknown) => e);
    expect(isFerryError(err, "E_VALIDATION")).toBe(true);
    expect((err as Error).message).toMatch(/customers id=7: the profile's transform threw: no customer 7 here/);
  });

  it("refuses a never-exported collection named by its table, and a natural key the collection lacks", async () => {
    const hidden = await copy({
      from: SHOP,
      to: join(tmp.dir, "h1/"),
      collections: ["customers"],
      collectionSpecs: { people: { table: "customers", export: false } },
    }).catch((e: unknown) => e);
    expect(isFerryError(hidden, "E_CONFIG")).toBe(true);
    expect((hidden as Error).message).toMatch(/customers is marked export: false/);
    const typo = await copy({
      from: SHOP,
      to: join(tmp.dir, "h2/"),
      collections: ["customers"],
      collectionSpecs: { customers: { naturalKey: ["emial"] } },
    }).catch((e: unknown) => e);
    expect(isFerryError(typo, "E_CONFIG")).toBe(true);
    expect((typo as Error).message).toMatch(/naturalKey of customers \(emial\) is not among its fields: id, email/);
  });

  it("checks the natural key is unique in the incoming data, and takes it as the match key", async () => {
    const to = join(tmp.dir, "n1/");
    const dup = await copy({
      from: SHOP,
      to,
      collections: ["customers"],
      collectionSpecs: {
        customers: {
          naturalKey: ["loyalty_points"],
          transform: (rec) => ({ ...rec, loyalty_points: Number(rec.id) % 3 }),
        },
      },
    }).catch((e: unknown) => e);
    expect(isFerryError(dup, "E_VALIDATION")).toBe(true);
    expect((dup as Error).message).toMatch(/appears more than once in the incoming data/);
    // Unique: a second copy with --conflict skip matches on email, not id.
    await copy({ from: SHOP, to, collections: ["customers"] });
    const again = await copy({
      from: SHOP,
      to,
      collections: ["customers"],
      conflict: "fail",
      collectionSpecs: { customers: { naturalKey: ["email"], conflict: "skip" } },
    });
    expect(again.collections.customers).toMatchObject({ copied: 0, skipped: 50 });
    // fail mode checks the keys the transform gives: new emails are no conflict.
    const renamed = await copy({
      from: SHOP,
      to,
      collections: ["customers"],
      conflict: "fail",
      collectionSpecs: {
        customers: {
          naturalKey: ["email"],
          transform: (rec) => ({ ...rec, id: Number(rec.id) + 1000, email: `new-${rec.email}` }),
        },
      },
    });
    expect(renamed.collections.customers).toMatchObject({ copied: 50, failed: 0 });
  });
});
