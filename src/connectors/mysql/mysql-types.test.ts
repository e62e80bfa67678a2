import { describe, expect, it } from "vitest";
import { isFerryError } from "../../core/errors.js";
import type { CollectionSchema, FieldSchema } from "../../core/schema.js";
import { compareField } from "../../core/type-plan.js";
import { createTableSql, finishClauses, splitNativeDdl } from "./mysql-ddl.js";
import { mysqlFieldFor, parseEnumValues } from "./mysql-types.js";
import { identityOf, parseMysqlUrl } from "./mysql-url.js";

function collection(fields: FieldSchema[], extra: Partial<CollectionSchema> = {}): CollectionSchema {
  return { name: "t", fields, primaryKey: [], ...extra };
}

function mapped(field: FieldSchema, extra: Partial<CollectionSchema> = {}): FieldSchema {
  const c = collection([field], extra);
  return mysqlFieldFor(field, c);
}

describe("mysqlFieldFor", () => {
  it("maps logical types to MySQL columns with their real attributes", () => {
    expect(mapped({ name: "a", type: "integer" })).toMatchObject({ nativeType: "BIGINT", size: 8 });
    expect(mapped({ name: "a", type: "integer", size: 2, unsigned: true })).toMatchObject({
      nativeType: "SMALLINT UNSIGNED",
      size: 2,
      unsigned: true,
    });
    expect(mapped({ name: "a", type: "integer", size: 3 }).nativeType).toBe("MEDIUMINT");
    expect(mapped({ name: "a", type: "boolean" })).toMatchObject({
      type: "boolean",
      nativeType: "TINYINT(1)",
      size: 1,
    });
    expect(mapped({ name: "a", type: "float" })).toMatchObject({ nativeType: "DOUBLE", size: 8 });
    expect(mapped({ name: "a", type: "float", size: 4 })).toMatchObject({ nativeType: "FLOAT", size: 4 });
    expect(mapped({ name: "a", type: "decimal", precision: 12, scale: 2 })).toMatchObject({
      nativeType: "DECIMAL(12,2)",
      precision: 12,
      scale: 2,
    });
    expect(mapped({ name: "a", type: "decimal" })).toMatchObject({
      nativeType: "DECIMAL(65,30)",
      precision: 65,
      scale: 30,
    });
    expect(mapped({ name: "a", type: "decimal", precision: 100, scale: 4 }).nativeType).toBe("DECIMAL(65,30)");
    expect(mapped({ name: "a", type: "text", maxLength: 40 })).toMatchObject({
      nativeType: "VARCHAR(40)",
      maxLength: 40,
    });
    expect(mapped({ name: "a", type: "text", maxLength: 3, fixedLength: true })).toMatchObject({
      nativeType: "CHAR(3)",
      fixedLength: true,
    });
    expect(mapped({ name: "a", type: "text" }).nativeType).toBe("LONGTEXT");
    expect(mapped({ name: "a", type: "text", maxLength: 100_000 }).nativeType).toBe("MEDIUMTEXT");
    expect(mapped({ name: "a", type: "text", enumValues: ["x", "it's"] })).toMatchObject({
      nativeType: "ENUM('x','it\\'s')",
      enumValues: ["x", "it's"],
    });
    expect(mapped({ name: "a", type: "text", setValues: ["p", "q"] }).nativeType).toBe("SET('p','q')");
    expect(mapped({ name: "a", type: "text", charset: "latin1", maxLength: 9 })).toMatchObject({
      nativeType: "VARCHAR(9) CHARACTER SET latin1 COLLATE latin1_bin",
      charset: "latin1",
    });
    expect(mapped({ name: "a", type: "bytes" }).nativeType).toBe("LONGBLOB");
    expect(mapped({ name: "a", type: "bytes", maxLength: 16 }).nativeType).toBe("VARBINARY(16)");
    expect(mapped({ name: "a", type: "bytes", maxLength: 16, fixedLength: true }).nativeType).toBe("BINARY(16)");
    expect(mapped({ name: "a", type: "uuid" })).toMatchObject({
      type: "uuid",
      nativeType: expect.stringMatching(/^CHAR\(36\)/),
    });
    expect(mapped({ name: "a", type: "json", arrayOf: "integer" })).toEqual({
      name: "a",
      type: "json",
      nativeType: "JSON",
    });
    expect(mapped({ name: "a", type: "date" })).toMatchObject({ nativeType: "DATE", zeroDates: true });
    expect(mapped({ name: "a", type: "datetime", timezone: true, fractionDigits: 9 })).toMatchObject({
      nativeType: "DATETIME(6)",
      timezone: false,
      fractionDigits: 6,
      zeroDates: true,
    });
    expect(mapped({ name: "a", type: "datetime", fractionDigits: 0 }).nativeType).toBe("DATETIME(0)");
    expect(mapped({ name: "a", type: "any" })).toMatchObject({ type: "text", nativeType: "LONGTEXT" });
  });

  it("keeps a MySQL collection's own fields", () => {
    const f: FieldSchema = { name: "a", type: "integer", nativeType: "int(10) unsigned", size: 4, unsigned: true };
    expect(mysqlFieldFor(f, collection([f], { engine: "mysql" }))).toBe(f);
  });

  it("gives key columns a length InnoDB can index", () => {
    expect(mapped({ name: "a", type: "text" }, { primaryKey: ["a"] })).toMatchObject({
      nativeType: "VARCHAR(768)",
      maxLength: 768,
    });
    expect(mapped({ name: "a", type: "text", maxLength: 50 }, { uniqueKeys: [["a"]] }).nativeType).toBe("VARCHAR(50)");
    expect(
      mapped({ name: "a", type: "bytes" }, { indexes: [{ name: "i", fields: ["a"], unique: false }] }).nativeType,
    ).toBe("VARBINARY(3072)");
    const two = collection(
      [
        { name: "a", type: "text" },
        { name: "b", type: "text" },
      ],
      { primaryKey: ["a", "b"] },
    );
    expect(mysqlFieldFor(two.fields[0] as FieldSchema, two).maxLength).toBe(384);
    // The plan flags the narrower key column.
    const src: FieldSchema = { name: "a", type: "text" };
    expect(compareField(src, mapped(src, { primaryKey: ["a"] })).level).toBe("checked");
  });

  it("moves VARCHARs that do not fit InnoDB's row to TEXT", () => {
    const fields: FieldSchema[] = Array.from({ length: 6 }, (_, i) => ({
      name: `c${i}`,
      type: "text",
      maxLength: 5000,
    }));
    const c = collection(fields);
    const types = fields.map((f) => mysqlFieldFor(f, c).nativeType);
    expect(types.slice(0, 2)).toEqual(["VARCHAR(5000)", "VARCHAR(5000)"]);
    expect(types.filter((t) => t === "MEDIUMTEXT").length).toBeGreaterThan(0);
  });
});

describe("DDL", () => {
  it("creates tables from fields with the primary key inline and AUTO_INCREMENT indexed", () => {
    const c = collection(
      [
        { name: "id", type: "integer", nullable: false },
        { name: "seq", type: "integer", autoIncrement: true },
        { name: "name", type: "text" },
      ],
      { name: "people", primaryKey: ["id"] },
    );
    expect(createTableSql(c)).toBe(
      "CREATE TABLE `people` (\n  `id` BIGINT NOT NULL,\n  `seq` BIGINT NULL AUTO_INCREMENT,\n  `name` LONGTEXT NULL,\n  PRIMARY KEY (`id`),\n  KEY `seq_auto` (`seq`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    );
  });

  it("defers plain secondary indexes of a native CREATE TABLE, keeping those foreign keys need", () => {
    const ddl = [
      "CREATE TABLE `c` (",
      "  `id` int(11) NOT NULL,",
      "  `p` int(11) DEFAULT NULL,",
      "  `name` varchar(20) DEFAULT NULL,",
      "  PRIMARY KEY (`id`),",
      "  UNIQUE KEY `u` (`name`),",
      "  KEY `by_p` (`p`,`name`),",
      "  KEY `by_name` (`name`(5)),",
      "  FULLTEXT KEY `ft` (`name`),",
      "  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `parent` (`id`)",
      ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    ].join("\n");
    const split = splitNativeDdl(ddl);
    expect(split.deferred).toEqual([{ name: "by_name", clause: "ADD KEY `by_name` (`name`(5))" }]);
    expect(split.create).not.toContain("by_name");
    expect(split.create).toContain("KEY `by_p`");
    expect(split.create).toMatch(/CONSTRAINT `fk` FOREIGN KEY \(`p`\) REFERENCES `parent` \(`id`\)\n\) ENGINE/);
    const plan = finishClauses(
      { name: "c", fields: [], primaryKey: ["id"], native: { engine: "mysql", ddl: [ddl] } },
      {
        indexNames: new Set(["PRIMARY"]),
        uniqueColumns: new Set(),
        foreignKeyColumns: new Set(["p"]),
        tables: new Set(),
      },
    );
    expect(plan.indexes).toEqual(["ADD KEY `by_name` (`name`(5))"]);
  });

  it("adds only missing keys in finish, and waits for missing parents", () => {
    const c: CollectionSchema = {
      name: "m",
      fields: [],
      primaryKey: ["id"],
      uniqueKeys: [["email"]],
      indexes: [{ name: "m_team", fields: ["team"], unique: false }],
      foreignKeys: [
        { fields: ["team"], references: { collection: "teams", fields: ["id"] }, onDelete: "cascade" },
        { fields: ["owner"], references: { collection: "people", fields: ["id"] } },
      ],
    };
    const plan = finishClauses(c, {
      indexNames: new Set(["PRIMARY"]),
      uniqueColumns: new Set(["id"]),
      foreignKeyColumns: new Set(),
      tables: new Set(["m", "teams"]),
    });
    expect(plan.indexes).toEqual(["ADD UNIQUE KEY `m_email_key` (`email`)", "ADD KEY `m_team` (`team`)"]);
    expect(plan.foreignKeys).toEqual([
      "ADD CONSTRAINT `m_team_fkey` FOREIGN KEY (`team`) REFERENCES `teams` (`id`) ON DELETE CASCADE",
    ]);
    expect(plan.waiting.map((w) => w.parent)).toEqual(["people"]);
    const again = finishClauses(c, {
      indexNames: new Set(["PRIMARY", "m_email_key", "m_team"]),
      uniqueColumns: new Set(["id", "email"]),
      foreignKeyColumns: new Set(["team", "owner"]),
      tables: new Set(["m", "teams", "people"]),
    });
    expect(again).toEqual({ indexes: [], foreignKeys: [], waiting: [] });
  });

  it("parses ENUM and SET members as MySQL spells them", () => {
    expect(parseEnumValues("enum('a','b''c','d\\\\e','')")).toEqual(["a", "b'c", "d\\e", ""]);
    expect(parseEnumValues("set('x','y,z')")).toEqual(["x", "y,z"]);
  });
});

describe("parseMysqlUrl", () => {
  it("reads user, password, host, port and database", () => {
    expect(parseMysqlUrl("mysql://app:s%40cret@DB.example:3307/shop")).toMatchObject({
      user: "app",
      password: "s@cret",
      host: "db.example",
      port: 3307,
      database: "shop",
    });
    expect(parseMysqlUrl("mariadb://root@127.0.0.1/x")).toMatchObject({ user: "root", port: 3306, database: "x" });
    expect(parseMysqlUrl("mysql://u:p@ss/w@[::1]:3306/db?ssl=true")).toMatchObject({
      password: "p@ss/w",
      host: "::1",
      ssl: true,
    });
    expect(identityOf(parseMysqlUrl("mysql://a:b@h:1/d"))).toBe("h:1/d");
    expect(identityOf(parseMysqlUrl("mariadb://other@h:1/d"))).toBe("h:1/d");
  });

  it("refuses malformed URLs without showing the password", () => {
    for (const url of ["mysql://u:topsecret@h:99999/db", "mysql://u:topsecret@h/", "mysql://u:topsecret@h/db?x=1"]) {
      let err: unknown;
      try {
        parseMysqlUrl(url);
      } catch (e) {
        err = e;
      }
      expect(isFerryError(err, "E_CONFIG")).toBe(true);
      expect(String((err as Error).message)).not.toContain("topsecret");
    }
  });
});
