/** `plan`: the type plan of a copy, without copying (what `ferry plan` prints). */
import type { Connector } from "./connector.js";
import { checkTarget, openTarget, typePlan } from "./copy.js";
import { FerryError } from "./errors.js";
import { openConnector } from "./registry.js";
import { dependencyOrder } from "./schema.js";
import type { TypePlan } from "./type-plan.js";

/** Options of {@link plan}. */
export interface PlanOptions {
  from: string;
  to: string;
  /** Only these collections. Default: all of the source's. */
  collections?: string[];
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
    const names = options.collections;
    const missing = (names ?? []).filter((n) => !all.some((s) => s.name === n));
    if (missing.length > 0) {
      throw new FerryError(
        "E_NOT_FOUND",
        `no collection ${missing.join(", ")} at ${source.displayUrl}: collections there are ${all.map((s) => s.name).join(", ") || "none"}`,
      );
    }
    const selected = dependencyOrder(names && names.length > 0 ? all.filter((s) => names.includes(s.name)) : all);
    const existing = target ? new Map((await target.discover()).map((s) => [s.name, s])) : new Map();
    return typePlan(source, target, selected, existing, options.to);
  } finally {
    await source.close().catch(() => {});
    await target?.close().catch(() => {});
  }
}
