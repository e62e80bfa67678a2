/**
 * The record stream: Singer-style messages. The same union is NDJSON at process and HTTP
 * boundaries (records encoded with {@link encodeRow}).
 */
import type { CollectionSchema } from "./schema.js";
import type { Row } from "./values.js";

/**
 * An opaque per-stream position. Only the connector that produced it reads it; core stores
 * it in the journal once the records before it are durable at the target.
 */
export type Bookmark = { [key: string]: unknown };

/** Announces a stream and its schema before its records. */
export interface SchemaMessage {
  type: "SCHEMA";
  stream: string;
  schema: CollectionSchema;
}

/** One record of a stream. */
export interface RecordMessage {
  type: "RECORD";
  stream: string;
  record: Row;
}

/** A position in a stream: everything before it has been read. */
export interface StateMessage {
  type: "STATE";
  stream: string;
  bookmark: Bookmark;
}

/** One message of the record stream. */
export type Message = SchemaMessage | RecordMessage | StateMessage;
