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
      return { kind: 'valid' };
    } catch (err) {
      return { kind: 'invalid', message: err instanceof Error ? err.message : String(err) };
    }
  }
}
