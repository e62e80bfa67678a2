/** The shape a profile must have (zod), apart so zod loads only with a profile. */
import { z } from "zod";

const NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
const strings = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const collectionShape = z.strictObject({
  match: strings.optional(),
  exclude: z.array(z.string().min(1)).optional(),
  table: z.string().min(1).optional(),
  key: strings.optional(),
  naturalKey: strings.optional(),
  schema: z
    .custom<unknown>(
      (v) => typeof v === "object" && v !== null && "~standard" in v,
      "must be a Standard Schema validator (a zod, valibot or arktype schema)",
    )
    .optional(),
  secret: z.array(z.string().min(1)).optional(),
  conflict: z.enum(["fail", "skip", "overwrite", "merge"]).optional(),
  export: z.boolean().optional(),
  rename: z.string().regex(NAME, "must be a name (letters, digits, _ and -)").optional(),
  transform: z
    .custom<unknown>((v) => typeof v === "function", "must be a function (record, ctx) => record | null")
    .optional(),
});

export const profileShape = z.strictObject({
  app: z.strictObject({ name: z.string().min(1), version: z.string().min(1).optional() }).optional(),
  instances: z
    .record(z.string().regex(NAME, "an instance name is letters, digits, _ and -"), z.string().min(1))
    .optional(),
  collections: z
    .record(z.string().regex(NAME, "a collection name is letters, digits, _ and -"), collectionShape)
    .optional(),
  dependsOn: z.record(z.string(), z.array(z.string().min(1))).optional(),
});
