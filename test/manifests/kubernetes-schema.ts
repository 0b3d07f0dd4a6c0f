import * as certManagerModels from '@kubernetes-models/cert-manager';
import * as kubernetesModels from 'kubernetes-models';

/**
 * Validation of Kubernetes objects against the official JSON schemas: kubernetes-models generates them from the
 * Kubernetes OpenAPI specification and @kubernetes-models/cert-manager from cert-manager's CRDs, each compiled with
 * ajv into a `validate()` on the model class. This file only finds the model for an object's apiVersion and kind.
 */

interface ModelClass {
  readonly apiVersion: string;
  readonly kind: string;
  new (data: object): { validate(): void };
}

export type SchemaVerdict =
  | { readonly kind: 'valid' }
  | { readonly kind: 'invalid'; readonly message: string }
  | { readonly kind: 'unknown-type'; readonly message: string };

function isModelClass(value: unknown): value is ModelClass {
  return (
    typeof value === 'function' &&
    typeof (value as { apiVersion?: unknown }).apiVersion === 'string' &&
    typeof (value as { kind?: unknown }).kind === 'string' &&
    typeof (value as { prototype?: { validate?: unknown } }).prototype?.validate === 'function'
  );
}

/**
 * Every model class in a package's namespaces: group → version → class, except the core group, whose `v1` holds
 * the classes directly.
 */
function collectModels(namespace: object, into: Map<string, ModelClass>, depth = 2): void {
  for (const value of Object.values(namespace as Record<string, unknown>)) {
    if (isModelClass(value)) into.set(`${value.apiVersion}/${value.kind}`, value);
    else if (depth > 0 && typeof value === 'object' && value !== null) collectModels(value, into, depth - 1);
  }
}

export class KubernetesSchemas {
  readonly #models = new Map<string, ModelClass>();

  constructor() {
    collectModels(kubernetesModels, this.#models);
    collectModels(certManagerModels, this.#models);
  }

  /** Whether a schema exists for this apiVersion and kind. */
  has(apiVersion: string, kind: string): boolean {
    return this.#models.has(`${apiVersion}/${kind}`);
  }

  validate(object: unknown): SchemaVerdict {
    if (typeof object !== 'object' || object === null || Array.isArray(object)) {
      return { kind: 'invalid', message: 'a Kubernetes object must be a mapping' };
    }
    const { apiVersion, kind } = object as { apiVersion?: unknown; kind?: unknown };
    const model =
      typeof apiVersion === 'string' && typeof kind === 'string'
        ? this.#models.get(`${apiVersion}/${kind}`)
        : undefined;
    if (model === undefined) {
      return {
        kind: 'unknown-type',
        message: `no schema for apiVersion ${String(apiVersion)}, kind ${String(kind)}`,
      };
    }
    try {
      new model(object).validate();
    } catch (err) {
      return { kind: 'invalid', message: err instanceof Error ? err.message : String(err) };
    }
    const unknown = undeclaredFields(model, object);
    if (unknown.length > 0) {
      return {
        kind: 'invalid',
        message: `fields the schema does not declare (misspelled?): ${unknown.join(', ')}`,
      };
    }
    return { kind: 'valid' };
  }
}

/** What a validator reports: ajv errors, each with the JSON pointer of the value it is about. */
function errorPaths(model: ModelClass, object: object): string[] {
  try {
    new model(object).validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: { instancePath?: string }[] }).errors ?? [];
    return errors.map((e) => e.instancePath ?? '');
  }
}

/**
 * Values no declared field accepts whatever its type: a number field rejects both, a string or boolean field rejects
 * the other, an object field rejects the boolean, a map of typed values rejects the inner boolean.
 */
const PROBES: readonly unknown[] = [true, { probe: true }, 'probe'];

/**
 * The generated validators check the fields the schema declares and ignore every other (the schemas leave
 * additionalProperties open), so a misspelled field passes them. This finds such fields from the same schemas: a
 * field is declared when putting a value of a wrong type there makes the validator report an error at (or below)
 * that path. Free-form fields the schema types as "any JSON" (a CRD schema's `default` and `example`) accept every
 * probe, so the validation schemas inside a CustomResourceDefinition are not walked: `npm run gen:crds` makes them,
 * and the API server checks their structure.
 */
function undeclaredFields(model: ModelClass, root: object): string[] {
  const copy = structuredClone(root) as Record<string, unknown>;
  const unknown: string[] = [];
  const walk = (node: unknown, pointer: string): void => {
    if (typeof node !== 'object' || node === null) return;
    if (Array.isArray(node)) {
      node.forEach((item, index) => walk(item, `${pointer}/${index}`));
      return;
    }
    if (isCustomResourceSchema(pointer)) return;
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const path = `${pointer}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
      const original = record[key];
      const declared = PROBES.some((probe) => {
        record[key] = probe;
        return errorPaths(model, copy).some((p) => p === path || p.startsWith(`${path}/`));
      });
      record[key] = original;
      if (declared) walk(original, path);
      else unknown.push(path);
    }
  };
  walk(copy, '');
  return unknown;
}

function isCustomResourceSchema(pointer: string): boolean {
  return /^\/spec\/versions\/\d+\/schema\/openAPIV3Schema$/.test(pointer);
}
