/**
 * `listCollections`: what an instance holds, collection by collection, as the profile sees it
 * (what `ferry collections` prints): record counts, sizes, and which collections are secret
 * or never exported.
 */
import type { CollectionSpec, Connector } from "./connector.js";
import { selectCollections } from "./copy.js";
import { openConnector } from "./registry.js";
import type { CollectionSchema } from "./schema.js";

/** Options of {@link listCollections}. */
export interface ListCollectionsOptions {
  /** The instance URL. */
  from: string;
  /** The profile's collections (see `CopyOptions.collectionSpecs`): listed first, by their names. */
  collectionSpecs?: Record<string, CollectionSpec>;
}

/** One collection of an instance, as {@link listCollections} lists it. */
export interface CollectionListing {
  /** The profile's name for a declared collection; the instance's own name otherwise. */
  name: string;
  /**
   * Where its records are at the instance: the table (or file, JSON array), or for Redis the
   * key globs, exclusions after `!` (`apikey:* !apikey:idx:*`).
   */
  where: string;
  /** Records (Redis: keys); undefined when the collection is not at the instance, or counting would cost a full read. */
  records: number | undefined;
  /** Bytes it takes at the instance (see `Connector.size`); undefined when the engine cannot tell cheaply. */
  bytes: number | undefined;
  /** The profile's secret fields (values never shown). */
  secret: string[];
  /** False for the profile's `export: false` collections: copies never take them. */
  exported: boolean;
  /** True for a collection the profile declares; false for the instance's other collections. */
  declared: boolean;
  /** Why figures are missing, e.g. `not at this instance`. */
  note?: string;
}

/** The outcome of {@link listCollections}. */
export interface CollectionsList {
  /** The instance, password removed. */
  instance: string;
  /** Its engine (`sqlite`, `postgres`, `redis`, …). */
  engine: string;
  /** The profile's collections in the profile's order, then the instance's others in its order. */
  collections: CollectionListing[];
}

const GLOB = /[*?[]/;

/**
 * The collections of an instance with their record counts and sizes: first the profile's
 * collections (never-exported ones too, marked; one absent at the instance is listed with a
 * note, not refused), then the instance's other collections, those a copy of everything
 * takes beside the profile's (for Redis: the keys no profile collection holds).
 *
 * @example
 * const { collections } = await listCollections({ from: "sqlite:./app.db" });
 * for (const c of collections) console.log(c.name, c.records, c.bytes);
 */
export async function listCollections(options: ListCollectionsOptions): Promise<CollectionsList> {
  const source = await openConnector(options.from, { write: false });
  try {
    await source.check();
    const specs = options.collectionSpecs ?? {};
    const all = await source.discover();
    const resolves = source.resolve !== undefined;
    // What a copy of everything takes: the profile's exported collections and the rest.
    const exported = await selectCollections(source, all, undefined, specs);
    // Redis: the never-exported collections, by their own globs (selectCollections leaves them out).
    const never = Object.entries(specs)
      .filter(([, s]) => s.export === false && s.match !== undefined && s.match.length > 0)
      .map(([n]) => n);
    const hidden = source.resolve && never.length > 0 ? await source.resolve(never, specs) : [];

    const out: CollectionListing[] = [];
    // Collections at the instance that a declared one stands for, and (Redis) those it found
    // by name, whose keys a copy of everything names `name:*` beside the profile's.
    const claimed = new Set<string>();
    const byName = new Set<string>();
    for (const [name, spec] of Object.entries(specs)) {
      const globs = resolves && spec.match !== undefined && spec.match.length > 0;
      const table = spec.table ?? name;
      const schema = globs ? [...exported, ...hidden].find((s) => s.name === name) : all.find((s) => s.name === table);
      if (schema) claimed.add(schema.name);
      if (schema && !globs) byName.add(schema.name);
      const where = globs
        ? [...(spec.match ?? []), ...(spec.exclude ?? []).map((g) => `!${g}`)].join(" ")
        : whereOf(table, resolves);
      out.push({
        name,
        where,
        ...(await figures(source, schema)),
        secret: [...(spec.secret ?? [])],
        exported: spec.export !== false,
        declared: true,
      });
    }
    for (const s of exported) {
      // A declared collection itself, or the keys of one found by name (a Redis prefix or table).
      if (claimed.has(s.name) || (resolves && s.name.endsWith(":*") && byName.has(s.name.slice(0, -2)))) continue;
      out.push({
        name: s.name,
        where: whereOf(s.name, resolves),
        ...(await figures(source, s)),
        secret: [],
        exported: true,
        declared: false,
      });
    }
    return { instance: source.displayUrl, engine: source.engine, collections: out };
  } finally {
    await source.close().catch(() => {});
  }
}

/** Records and bytes of a collection at the instance, or a note when it is not there. */
async function figures(
  source: Connector,
  schema: CollectionSchema | undefined,
): Promise<Pick<CollectionListing, "records" | "bytes" | "note">> {
  if (schema === undefined) return { records: undefined, bytes: undefined, note: "not at this instance" };
  const records = await source.count(schema);
  const bytes = source.size ? await source.size(schema) : undefined;
  return { records, bytes };
}

/**
 * A collection's place: its table; for Redis (an instance that resolves globs) its keys: a
 * glob is itself, a key prefix holds the key of that name and those under `prefix:`.
 */
function whereOf(name: string, resolves: boolean): string {
  if (!resolves || GLOB.test(name)) return name;
  return `${name} ${name}:*`;
}
