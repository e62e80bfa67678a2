/**
 * The connector registry: dispatches an instance URL to its connector by scheme.
 * Connectors register themselves by importing `src/connectors/index.ts`.
 */
import type { Connector, ConnectorFactory, ConnectorOptions } from "./connector.js";
import { FerryError } from "./errors.js";
import { redactUrl, schemeOf } from "./url.js";

const factories: ConnectorFactory[] = [];

/** Adds a connector family. Registering a scheme twice replaces the first. */
export function registerConnector(factory: ConnectorFactory): void {
  for (const s of factory.schemes) {
    const i = factories.findIndex((f) => f.schemes.includes(s));
    if (i >= 0) factories.splice(i, 1);
  }
  factories.push(factory);
}

/** Usage strings of every registered connector, for help and errors. */
export function knownInstances(): string[] {
  return factories.map((f) => f.usage);
}

/** Finds the factory for a URL or throws `E_CONFIG` naming the known schemes. */
export function factoryFor(url: string): ConnectorFactory {
  if (url.trim() === "") throw new FerryError("E_CONFIG", "empty instance URL: pass one such as sqlite:./app.db");
  const scheme = schemeOf(url);
  if (scheme !== undefined && scheme !== "file") {
    const f = factories.find((x) => x.schemes.includes(scheme));
    if (f) return f;
    throw new FerryError(
      "E_CONFIG",
      `unknown instance scheme "${scheme}:" in ${redactUrl(url)}: use one of ${knownInstances().join(", ")} (a connector not registered? import "ferry/connectors")`,
      { details: { scheme } },
    );
  }
  const path = scheme === "file" ? url.replace(/^file:(\/\/)?/i, "") : url;
  const f = factories.find((x) => x.claimsPath?.(path));
  if (f) return f;
  throw new FerryError(
    "E_CONFIG",
    `cannot tell what kind of instance "${redactUrl(url)}" is: use one of ${knownInstances().join(", ")}`,
  );
}

/** The factory of the connectors whose {@link Connector.engine} is `engine`, if registered. */
export function factoryForEngine(engine: string): ConnectorFactory | undefined {
  return factories.find((f) => f.engine === engine);
}

/** Opens a connector for `url`. */
export async function openConnector(url: string, options: ConnectorOptions = {}): Promise<Connector> {
  return factoryFor(url).open(url, options);
}
