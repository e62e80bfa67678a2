/** `plan`: the type plan of a copy, without copying (what `ferry plan` prints). */
import type { CollectionSpec, Connector } from "./connector.js";
import type { CopyOptions } from "./copy.js";
import { checkTarget, openTarget, selectCollections, targetShapes, typePlan } from "./copy.js";
import { openConnector } from "./registry.js";
import { type CollectionSchema, dependencyOrder } from "./schema.js";
import type { TypePlan } from "./type-plan.js";

/** Options of {@link plan}. */
export interface PlanOptions {
  from: string;
  to: string;
  /** Only these collections. Default: all of the source's. */
  collections?: string[];
  /** The profile's collections (see {@link CopyOptions.collectionSpecs}). */
  collectionSpecs?: Record<string, CollectionSpec>;
}

/**
 * Each field's source type, target type (the existing target column's, or the one the
 * target would create) and whether the mapping is exact, checked or lossy. Writes nothing;
 * a target that does not exist yet is planned as empty.
 *
 * @example
 * const p = await plan({ from: "mysql://root@127.0.0.1/shop", to: "postgres://postgres@127.0.0.1/shop" });
 */
export async function plan(options: PlanOptions): Promise<TypePlan> {
  const source = await openConnector(options.from, { write: false });
  let target: Connector | undefined;
  try {
    await source.check();
    // Read-only, like a dry run: a target that does not exist yet is planned as empty.
    target = await openTarget(options.to, true, 1);
    if (target && !(await checkTarget(target, true))) {
      await target.close().catch(() => {});
      target = undefined;
    }
    const all = await source.discover();
    const selected = dependencyOrder(
      await selectCollections(source, all, options.collections, options.collectionSpecs),
    );
    const found = target ? new Map((await target.discover()).map((s) => [s.name, s])) : new Map();
    // The target's collections by the source's names (the profile may rename them).
    const shapes = targetShapes(selected, options.collectionSpecs);
    const existing = new Map<string, CollectionSchema>();
    for (const s of selected) {
      const t = found.get(shapes.get(s.name)?.name ?? s.name);
      if (t) existing.set(s.name, t);
    }
    return typePlan(source, target, selected, existing, options.to);
  } finally {
    await source.close().catch(() => {});
    await target?.close().catch(() => {});
  }
}
