import { Type } from '@sinclair/typebox';
import type { Static, TUnsafe } from '@sinclair/typebox';

/**
 * Pieces shared by every resource of the API: the group/version, object metadata, object references and the
 * standard metav1.Condition. The schemas here are the single source of truth: TypeScript types are derived with
 * `Static<>`, the CRDs are generated from them (src/api/crd.ts) and structure is validated against the generated
 * CRD schema (src/api/structure.ts).
 */

export const KMM_GROUP = 'kmm.sigs.x-k8s.io';
export const KMM_VERSION = 'v1beta1';
export const KMM_API_VERSION = 'kmm.sigs.x-k8s.io/v1beta1';

/** A string restricted to a fixed set of values, written the way Kubernetes structural schemas want it. */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: { description?: string; default?: T[number] } = {},
): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A map of string to string (labels, selectors). Rewritten to `additionalProperties: {type: string}` in the CRD. */
export const StringMapSchema = Type.Record(Type.String(), Type.String());
export type StringMap = Static<typeof StringMapSchema>;

/** corev1.LocalObjectReference: a Secret or ConfigMap in the object's own namespace. */
export const LocalObjectReferenceSchema = Type.Object(
  { name: Type.String({ minLength: 1, description: 'Name of the referent, in the same namespace.' }) },
  { description: 'A reference to an object in the same namespace.' },
);
export type LocalObjectReference = Static<typeof LocalObjectReferenceSchema>;

/**
 * The metadata fields this project reads. The CRD declares `metadata` as a plain object (the API server owns its
 * validation), so this schema only types what comes back from the API server or a YAML file.
 */
export const ObjectMetaSchema = Type.Object({
  name: Type.String(),
  namespace: Type.Optional(Type.String()),
  uid: Type.Optional(Type.String()),
  generation: Type.Optional(Type.Integer()),
  resourceVersion: Type.Optional(Type.String()),
  creationTimestamp: Type.Optional(Type.String()),
  deletionTimestamp: Type.Optional(Type.String()),
  labels: Type.Optional(StringMapSchema),
  annotations: Type.Optional(StringMapSchema),
});
export type ObjectMeta = Static<typeof ObjectMetaSchema>;

export const ConditionStatusValues = ['True', 'False', 'Unknown'] as const;
export type ConditionStatus = (typeof ConditionStatusValues)[number];

/** metav1.Condition, with the same constraints the Kubernetes API declares for it. */
export const ConditionSchema = Type.Object(
  {
    type: Type.String({
      maxLength: 316,
      pattern:
        '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
      description: 'Type of condition in CamelCase.',
    }),
    status: StringEnum(ConditionStatusValues, {
      description: 'Status of the condition: True, False or Unknown.',
    }),
    observedGeneration: Type.Optional(
      Type.Integer({
        minimum: 0,
        format: 'int64',
        description: 'The .metadata.generation the condition was set from.',
      }),
    ),
    lastTransitionTime: Type.String({
      format: 'date-time',
      description: 'When the condition last changed from one status to another.',
    }),
    reason: Type.String({
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
      description: 'A programmatic identifier for the last transition, in CamelCase.',
    }),
    message: Type.String({ maxLength: 32768, description: 'A human readable message about the transition.' }),
  },
  { description: 'A standard metav1.Condition.' },
);
export type Condition = Static<typeof ConditionSchema>;
