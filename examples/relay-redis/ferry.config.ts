// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} is the profile's own syntax for the environment
/**
 * Guide 001's relay service: its Redis keyspace by type, as the guide's script names the
 * types (apikeys, claude, gemini, admins, usage), plus the index keys the app lists accounts
 * from, which are merged into a target's own rather than skipped.
 */
import { defineConfig } from "ferry";

export default defineConfig({
  app: { name: "relay" },
  instances: {
    prod: "redis://:${SOURCE_REDIS_PASSWORD:-}@${SOURCE_REDIS_HOST:-127.0.0.1}:${SOURCE_REDIS_PORT:-6379}/${SOURCE_REDIS_DB:-0}",
    qa: "redis://:${TARGET_REDIS_PASSWORD:-}@${TARGET_REDIS_HOST:-127.0.0.1}:${TARGET_REDIS_PORT:-6379}/${TARGET_REDIS_DB:-1}",
  },
  collections: {
    // API keys: hashes with a 365-day TTL, and the version counter of their indexes.
    apikeys: {
      match: "apikey:*",
      exclude: ["apikey:hash_map", "apikey:idx:*", "apikey:set:*", "apikey:tags:all", "apikey:tag:*"],
      secret: ["apiKey"],
    },
    claude: {
      match: "claude:account:*",
      exclude: ["claude:account:index"],
      secret: ["accessToken", "refreshToken", "password"],
    },
    gemini: { match: "gemini_account:*", exclude: ["gemini_account:index"], secret: ["accessToken", "refreshToken"] },
    // The app keeps its one admin here (the guide's script looked under admin:*).
    admins: { match: "session:admin_credentials", secret: ["passwordHash"] },
    usage: { match: "usage:*" },
    // What the app lists accounts and keys from: a union with the target's own.
    indexes: {
      match: [
        "apikey:hash_map",
        "apikey:idx:*",
        "apikey:set:*",
        "apikey:tags:all",
        "apikey:tag:*",
        "claude:account:index",
        "gemini_account:index",
        "shared_gemini_accounts",
      ],
      conflict: "merge",
    },
    // Logged-in sessions never leave the instance.
    sessions: { match: "session:*", exclude: ["session:admin_credentials"], export: false },
  },
});
