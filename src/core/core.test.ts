import { describe, expect, it } from "vitest";
import { exitCodeFor, FerryError } from "./errors.js";
import { factoryFor, registerConnector } from "./registry.js";
import { type CollectionSchema, dependencyOrder } from "./schema.js";
import { redactUrl, schemeOf } from "./url.js";

describe("redactUrl", () => {
  it("removes passwords from userinfo and query strings", () => {
    expect(redactUrl("postgres://app:s3cret@db:5432/app")).toBe("postgres://app:***@db:5432/app");
    expect(redactUrl("redis://:pw@localhost:6379/0")).toBe("redis://:***@localhost:6379/0");
    expect(redactUrl("mysql://u@h/db?password=x&ssl=1")).toBe("mysql://u@h/db?password=***&ssl=1");
    expect(redactUrl("sqlite:./app.db")).toBe("sqlite:./app.db");
    expect(redactUrl("redis://localhost:6379/0")).toBe("redis://localhost:6379/0");
  });
  it("removes passwords that hold unencoded @, /, # or ?", () => {
    expect(redactUrl("postgres://app:p@ss@db/app")).toBe("postgres://app:***@db/app");
    expect(redactUrl("postgres://app:pa/ss@db/app")).toBe("postgres://app:***@db/app");
    expect(redactUrl("redis://:pa?ss@host:6379/0")).toBe("redis://:***@host:6379/0");
    // An '@' in the query: more is hidden than the password, never less.
    expect(redactUrl("postgres://app:pa#ss@db/app?x=a@b")).toBe("postgres://app:***@b");
  });
  it("tells schemes from paths and drive letters", () => {
    expect(schemeOf("sqlite:./x.db")).toBe("sqlite");
    expect(schemeOf("./out/")).toBeUndefined();
    expect(schemeOf("C:\\data\\x.json")).toBeUndefined();
  });
});

describe("exitCodeFor", () => {
  it("maps each error class to its documented exit code", () => {
    expect(exitCodeFor(new FerryError("E_USAGE", "x"))).toBe(2);
    expect(exitCodeFor(new FerryError("E_CONFIG", "x"))).toBe(2);
    expect(exitCodeFor(new FerryError("E_VALIDATION", "x"))).toBe(3);
    expect(exitCodeFor(new FerryError("E_CONFLICT", "x"))).toBe(4);
    expect(exitCodeFor(new FerryError("E_INTERRUPTED", "x"))).toBe(130);
    expect(exitCodeFor(new FerryError("E_WRITE", "x"))).toBe(1);
    expect(exitCodeFor(new Error("bug"))).toBe(1);
  });
});

describe("registry", () => {
  it("names the known schemes for an unknown one, without the password", () => {
    registerConnector({ schemes: ["test"], usage: "test:NAME", open: async () => Promise.reject(new Error("unused")) });
    let err: unknown;
    try {
      factoryFor("nosql://u:hunter2@h/db");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FerryError);
    expect((err as FerryError).code).toBe("E_CONFIG");
    expect((err as FerryError).message).toContain("test:NAME");
    expect((err as FerryError).message).not.toContain("hunter2");
  });
});

describe("dependencyOrder", () => {
  const s = (name: string, parents: string[]): CollectionSchema => ({
    name,
    fields: [],
    primaryKey: [],
    foreignKeys: parents.map((p) => ({ fields: ["x"], references: { collection: p, fields: ["id"] } })),
  });
  it("puts parents before children, ignoring self-references", () => {
    const order = dependencyOrder([
      s("items", ["orders", "products"]),
      s("orders", ["users"]),
      s("users", ["users"]),
      s("products", []),
    ]).map((x) => x.name);
    expect(order.indexOf("users")).toBeLessThan(order.indexOf("orders"));
    expect(order.indexOf("orders")).toBeLessThan(order.indexOf("items"));
    expect(order.indexOf("products")).toBeLessThan(order.indexOf("items"));
    expect(order).toHaveLength(4);
  });
});
