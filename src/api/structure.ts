import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import { moduleCrd, preflightValidationOcpCrd } from './crd.ts';
import type { CustomResourceDefinition, StructuralSchema } from './crd.ts';

/**
 * Structural validation against the generated CRD schemas themselves, so what we accept offline or in the webhook
 * is exactly what the API server's schema accepts. Semantic rules (kernel mappings, modprobe, images) live in
 * src/kernel/validate.ts and build on these results.
 */

/** One problem with a resource, at a field path like `spec.moduleLoader.container.kernelMappings[2].regexp`. */
export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

export function formatFieldIssue(issue: FieldIssue): string {
  return issue.path === '' ? issue.message : `${issue.path}: ${issue.message}`;
}

/** Appends a property to a field path: `a.b`, or `a["kubernetes.io/arch"]` for keys that are not identifiers. */
export function fieldPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${JSON.stringify(key)}]`;
}

function pointerToPath(base: string, pointer: string): string {
  let path = base;
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    path = fieldPath(path, /^\d+$/.test(segment) ? Number(segment) : segment);
  }
  return path;
}

function describe(error: ErrorObject, base: string): FieldIssue {
  const at = pointerToPath(base, error.instancePath);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return { path: fieldPath(at, String(params.missingProperty)), message: 'is required' };
    case 'enum':
      return {
        path: at,
        message: `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'format':
      return {
        path: at,
        message:
          params.format === 'date-time'
            ? 'must be an RFC 3339 date-time'
            : `must be a ${String(params.format)}`,
      };
    default:
      return { path: at, message: error.message ?? `fails ${error.keyword}` };
  }
}

/** Validates values against one structural schema; reports every problem, never throws on bad input. */
export class StructureValidator {
  readonly #validate: ValidateFunction;
  readonly #basePath: string;

  /** @param basePath the field path of the validated value within its resource (`''` for the whole resource). */
  constructor(schema: StructuralSchema, basePath = '') {
    const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
    // ajv-formats is CommonJS; under NodeNext its plugin function is the `default` export's `default`.
    ajvFormats.default(ajv, ['date-time', 'int64']);
    ajv.addVocabulary([
      'x-kubernetes-preserve-unknown-fields',
      'x-kubernetes-list-type',
      'x-kubernetes-list-map-keys',
    ]);
    this.#validate = ajv.compile(schema);
    this.#basePath = basePath;
  }

  check(value: unknown): FieldIssue[] {
    if (this.#validate(value)) return [];
    return (this.#validate.errors ?? []).map((error) => describe(error, this.#basePath));
  }
}

function rootSchema(crd: CustomResourceDefinition): StructuralSchema {
  const version = crd.spec.versions[0];
  if (version === undefined) throw new Error(`CRD ${crd.metadata.name} has no version`);
  return version.schema.openAPIV3Schema;
}

function specSchema(crd: CustomResourceDefinition): StructuralSchema {
  const spec = rootSchema(crd).properties?.spec;
  if (spec === undefined) throw new Error(`CRD ${crd.metadata.name} has no spec schema`);
  return spec;
}

let moduleValidator: StructureValidator | undefined;
let preflightSpecValidator: StructureValidator | undefined;
let preflightValidator: StructureValidator | undefined;

/** Structural problems of a whole Module object (compiled once, on first use). */
export function checkModuleStructure(value: unknown): FieldIssue[] {
  moduleValidator ??= new StructureValidator(rootSchema(moduleCrd()));
  return moduleValidator.check(value);
}

/** Structural problems of a whole PreflightValidationOCP object. */
export function checkPreflightStructure(value: unknown): FieldIssue[] {
  preflightValidator ??= new StructureValidator(rootSchema(preflightValidationOcpCrd()));
  return preflightValidator.check(value);
}

/** Structural problems of a PreflightValidationOCP `spec`, with paths starting at `spec`. */
export function checkPreflightSpecStructure(value: unknown): FieldIssue[] {
  preflightSpecValidator ??= new StructureValidator(specSchema(preflightValidationOcpCrd()), 'spec');
  return preflightSpecValidator.check(value);
}
