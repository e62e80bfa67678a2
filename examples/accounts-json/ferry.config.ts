/**
 * Guide 000's OAuth proxy: its accounts file, and the rules the app applies on import. An
 * exported file merges into an installation's by email; any invalid account refuses the
 * whole file.
 */
import { defineConfig } from "ferry";
import { z } from "zod";

const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const jwtShaped = /^[^.\s]+\.[^.\s]+\.[^.\s]+$/;
const timestamp = z.number().int().positive("must be a positive integer (ms since 1970)");

/** The app compares emails case-insensitively on the domain: `Bob@Example.COM` is `Bob@example.com`. */
function lowerDomain(email: unknown): unknown {
  if (typeof email !== "string") return email;
  const at = email.lastIndexOf("@");
  return at < 0 ? email : email.slice(0, at + 1) + email.slice(at + 1).toLowerCase();
}

const account = z.object({
  id: z.string().regex(uuidV4, "must be a lowercase UUID v4"),
  email: z.email("must be an email address"),
  access_token: z.string().regex(jwtShaped, "must be three non-empty parts separated by dots"),
  refresh_token: z.string().regex(jwtShaped, "must be three non-empty parts separated by dots"),
  expires_at: timestamp,
  created_at: timestamp,
  updated_at: timestamp,
  is_active: z.boolean(),
  metadata: z.record(z.string(), z.unknown()).nullish(),
});

export default defineConfig({
  app: { name: "oauth-proxy" },
  instances: {
    exported: "./export.json",
    installed: "./accounts.json",
  },
  collections: {
    accounts: {
      naturalKey: "email",
      // Emails are matched and checked for duplicates with their domain in lower case.
      transform: (r) => ({ ...r, email: lowerDomain(r.email) as string }),
      schema: account,
      conflict: "merge",
      secret: ["access_token", "refresh_token"],
    },
  },
});
