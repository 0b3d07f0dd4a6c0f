import type { TSchema } from '@sinclair/typebox';
import { stringify } from 'yaml';
import { KMM_GROUP, KMM_VERSION } from './meta.ts';
import { MODULE_KIND, MODULE_PLURAL, MODULE_SINGULAR, ModuleSchema } from './module.ts';
import {
  PREFLIGHT_KIND,
  PREFLIGHT_LIST_KIND,
  PREFLIGHT_PLURAL,
  PREFLIGHT_SHORT_NAME,
  PREFLIGHT_SINGULAR,
  PreflightValidationOCPSchema,
} from './preflight.ts';
import { CodedError } from '../platform/errors.ts';

/**
 * Generates the CustomResourceDefinitions from the TypeBox schemas, so the CRD's OpenAPI schema, the TypeScript
 * types and structure validation (src/api/structure.ts validates against these very schemas) cannot drift apart.
 * `npm run gen:crds` writes them to manifests/crds/; a unit test proves the committed files equal this output.
 */

/** A JSON schema in the subset Kubernetes accepts for CRDs ("structural schema"). */
export interface StructuralSchema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, StructuralSchema>;
  required?: string[];
  items?: StructuralSchema;
  additionalProperties?: StructuralSchema;
  enum?: (string | number | boolean)[];
  default?: unknown;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
}

const STRUCTURAL_KEYWORDS = new Set<string>([
  'type',
  'description',
  'properties',
  'required',
  'items',
  'additionalProperties',
  'enum',
  'default',
  'format',
  'pattern',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'minItems',
  'maxItems',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
]);

/** Thrown when a schema uses a construct a Kubernetes structural schema cannot express. */
export class UnsupportedSchemaError extends CodedError<'UNSUPPORTED_SCHEMA'> {
  readonly path: string;
  constructor(path: string, message: string) {
    super('UNSUPPORTED_SCHEMA', `${path || '<root>'}: ${message}`);
    this.path = path;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Rewrites a TypeBox schema into a structural schema: `const` becomes a one-value `enum`, string records become
 * `additionalProperties`. Anything else outside the structural subset
 * throws, so a schema change that Kubernetes would reject fails here and in the unit tests, not at deploy time.
 */
export function toStructuralSchema(schema: TSchema, path = ''): StructuralSchema {
  // A JSON round trip drops TypeBox's symbol-keyed metadata.
  const plain = JSON.parse(JSON.stringify(schema)) as unknown;
  return convert(plain, path);
}

function convert(node: unknown, path: string): StructuralSchema {
  if (!isRecord(node)) throw new UnsupportedSchemaError(path, 'expected a schema object');
  const source: Record<string, unknown> = { ...node };
  delete source.$id;

  if ('const' in source) {
    source.enum = [source.const];
    delete source.const;
  }
  if (isRecord(source.patternProperties)) {
    const patterns = Object.values(source.patternProperties);
    if (patterns.length !== 1)
      throw new UnsupportedSchemaError(path, 'only a single-pattern record is supported');
    delete source.patternProperties;
    source.additionalProperties = patterns[0];
  }

  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    if (!STRUCTURAL_KEYWORDS.has(key)) {
      throw new UnsupportedSchemaError(path, `keyword "${key}" is not allowed in a structural schema`);
    }
    if (key === 'properties') {
      if (!isRecord(value)) throw new UnsupportedSchemaError(path, 'properties must be an object');
      result.properties = Object.fromEntries(
        Object.entries(value).map(([name, child]) => [name, convert(child, `${path}.${name}`)]),
      );
    } else if (key === 'items') {
      result.items = convert(value, `${path}[]`);
    } else if (key === 'additionalProperties') {
      // TypeBox writes `additionalProperties: false` for closed objects; CRDs express closedness by omission.
      if (value === false) continue;
      result.additionalProperties = convert(value, `${path}{}`);
    } else {
      result[key] = value;
    }
  }
  if (result.type === undefined) throw new UnsupportedSchemaError(path, 'every schema node needs a type');
  return result;
}

/**
 * The root schema of a resource: apiVersion and kind are plain strings and metadata a plain object, as the API
 * server requires (it validates those itself).
 */
export function resourceSchema(schema: TSchema, description: string): StructuralSchema {
  const root = toStructuralSchema(schema);
  return {
    ...root,
    description,
    properties: {
      ...root.properties,
      apiVersion: { type: 'string', description: 'Versioned schema of this representation of an object.' },
      kind: { type: 'string', description: 'The REST resource this object represents.' },
      metadata: { type: 'object' },
    },
    required: (root.required ?? []).filter((name) => !['apiVersion', 'kind', 'metadata'].includes(name)),
  };
}

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string };
  spec: {
    group: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames?: string[] };
    scope: 'Cluster' | 'Namespaced';
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns?: PrinterColumn[];
      schema: { openAPIV3Schema: StructuralSchema };
    }[];
  };
}

export function preflightValidationOcpCrd(): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PREFLIGHT_PLURAL}.${KMM_GROUP}` },
    spec: {
      group: KMM_GROUP,
      names: {
        kind: PREFLIGHT_KIND,
        listKind: PREFLIGHT_LIST_KIND,
        plural: PREFLIGHT_PLURAL,
        singular: PREFLIGHT_SINGULAR,
        shortNames: [PREFLIGHT_SHORT_NAME],
      },
      scope: 'Cluster',
      versions: [
        {
          name: KMM_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Release', type: 'string', jsonPath: '.status.releaseVersion' },
            { name: 'Kernel', type: 'string', jsonPath: '.status.targetKernel' },
            { name: 'Verified', type: 'string', jsonPath: '.status.progress' },
            { name: 'Failed', type: 'integer', jsonPath: '.status.failed' },
            {
              name: 'Complete',
              type: 'string',
              jsonPath: '.status.conditions[?(@.type=="Complete")].status',
            },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
            { name: 'Release Image', type: 'string', jsonPath: '.spec.releaseImage', priority: 1 },
            { name: 'DTK Image', type: 'string', jsonPath: '.status.dtkImage', priority: 1 },
            { name: 'RT', type: 'boolean', jsonPath: '.spec.useRTKernel', priority: 1 },
          ],
          schema: {
            openAPIV3Schema: resourceSchema(
              PreflightValidationOCPSchema,
              'Validates every KMM Module against the kernel of an OpenShift release before an upgrade.',
            ),
          },
        },
      ],
    },
  };
}

export function moduleCrd(): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${MODULE_PLURAL}.${KMM_GROUP}` },
    spec: {
      group: KMM_GROUP,
      names: {
        kind: MODULE_KIND,
        listKind: `${MODULE_KIND}List`,
        plural: MODULE_PLURAL,
        singular: MODULE_SINGULAR,
      },
      scope: 'Namespaced',
      versions: [
        {
          name: KMM_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: resourceSchema(
              ModuleSchema,
              "The parts of KMM's Module that preflight reads, for clusters without KMM installed (tests, trials). " +
                'Fields it does not model are preserved.',
            ),
          },
        },
      ],
    },
  };
}

/** The generated CRD files, relative to the repository root, with their YAML text. */
export function crdFiles(): { path: string; content: string }[] {
  return [
    { path: 'manifests/crds/preflightvalidationocp.yaml', content: renderCrd(preflightValidationOcpCrd()) },
    { path: 'manifests/crds/module.yaml', content: renderCrd(moduleCrd()) },
  ];
}

export function renderCrd(crd: CustomResourceDefinition): string {
  return (
    '# Generated from src/api by `npm run gen:crds`. Do not edit: change the schema and regenerate.\n' +
    stringify(crd, { lineWidth: 0 })
  );
}
