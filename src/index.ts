/**
 * Ferry as a library: `import { copy } from "ferry"`.
 * Importing this module registers the built-in connectors.
 */
import "./connectors/index.js";

export {
  type CollectionListing,
  type CollectionsList,
  type ListCollectionsOptions,
  listCollections,
} from "./core/collections.js";
export type {
  Checkpoint,
  CollectionSpec,
  Connector,
  ConnectorFactory,
  JournalStore,
  ReadBatch,
  WriteOp,
} from "./core/connector.js";
export { type CopyOptions, type CopyPlan, type CopyResult, copy, DEFAULT_BATCH_SIZE } from "./core/copy.js";
export { type ErrorCode, exitCodeFor, FerryError, isFerryError } from "./core/errors.js";
export type { FerryEvent } from "./core/events.js";
export { history, status } from "./core/history.js";
export type { CollectionStats, ConflictMode, RunEntry, RunStatus } from "./core/journal.js";
export type { Message } from "./core/messages.js";
export { type PlanOptions, plan } from "./core/plan.js";
export { openConnector, registerConnector } from "./core/registry.js";
export {
  type ChangedRecord,
  type ForgetOptions,
  forget,
  type RollbackOptions,
  type RollbackResult,
  rollback,
} from "./core/rollback.js";
export type { CollectionSchema, FieldSchema, FieldType } from "./core/schema.js";
export type { CollectionPlan, FieldMapping, MappingLevel, TypePlan } from "./core/type-plan.js";
export { redactUrl } from "./core/url.js";
export { decodeRow, encodeRow, PreciseDate, parseTimestamp, type Row, type Value } from "./core/values.js";
export type { DecryptWith, EncryptTo } from "./package/encryption.js";
export type { Compression, Manifest, ManifestCollection } from "./package/format.js";
export {
  type AppInfo,
  type ExportOptions,
  type ExportResult,
  exportPackage,
  type ImportOptions,
  importPackage,
  inspectPackage,
  type ValidateOptions,
  validatePackage,
} from "./package/package.js";
export type { CollectionConfig, FerryConfig, TransformContext } from "./profile/define-config.js";
export { defineConfig, specsOf } from "./profile/define-config.js";
export { checkInstances, type InstanceCheck, instanceUrl } from "./profile/instances.js";
export { type LoadProfileOptions, loadProfile, type Profile } from "./profile/load-profile.js";
