import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { ConditionSchema, KMM_API_VERSION, ObjectMetaSchema, StringEnum } from './meta.ts';

/**
 * PreflightValidationOCP (kmm.sigs.x-k8s.io/v1beta1, cluster-scoped): validate every Module against the kernel of
 * an OpenShift release. Per-module entries keep KMM's era-1 fields and enums (the seed), in KMM's era-2 list-map
 * layout keyed by namespace and name, plus what KMM lacks (kmm-anchor.md 9): observedGeneration per entry, kernel
 * and release facts, counts and conditions.
 */

export const PREFLIGHT_KIND = 'PreflightValidationOCP';
export const PREFLIGHT_LIST_KIND = 'PreflightValidationOCPList';
export const PREFLIGHT_PLURAL = 'preflightvalidationsocp';
export const PREFLIGHT_SINGULAR = 'preflightvalidationocp';
export const PREFLIGHT_SHORT_NAME = 'pfvo';

/** Condition types set on `status.conditions`. */
export const PreflightConditionType = {
  /** The release image was resolved to the kernel being validated (True), or why not (False). */
  KernelResolved: 'KernelResolved',
  /** Every Module has a final verdict (True), or validation is still going on (False). */
  Complete: 'Complete',
} as const;
export type PreflightConditionType = (typeof PreflightConditionType)[keyof typeof PreflightConditionType];

export const VerificationStatusValues = ['True', 'False'] as const;
export type VerificationStatus = (typeof VerificationStatusValues)[number];

export const VerificationStageValues = ['Image', 'Build', 'Sign', 'Requeued', 'Done'] as const;
export type VerificationStage = (typeof VerificationStageValues)[number];

export const PreflightValidationOCPSpecSchema = Type.Object(
  {
    releaseImage: Type.String({
      minLength: 1,
      description: 'The OpenShift release image that every Module is checked against.',
    }),
    pushBuiltImage: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Push the images built and signed during validation to their repositories.',
      }),
    ),
    useRTKernel: Type.Optional(
      Type.Boolean({
        default: false,
        description: "Validate against the release's real-time kernel instead of the standard one.",
      }),
    ),
  },
  { description: 'What to validate against.' },
);
/** `pushBuiltImage` and `useRTKernel` may be absent on input (the API server defaults them to false). */
export type PreflightValidationOCPSpec = Static<typeof PreflightValidationOCPSpecSchema>;

export const ModuleVerificationStatusSchema = Type.Object(
  {
    namespace: Type.String({ minLength: 1 }),
    name: Type.String({ minLength: 1 }),
    verificationStatus: StringEnum(VerificationStatusValues, {
      description: 'True (verified) or False (verification failed or not finished).',
    }),
    statusReason: Type.Optional(Type.String({ description: 'Why the module has this status.' })),
    verificationStage: StringEnum(VerificationStageValues, {
      description: 'The stage being executed or last executed: Image, Build, Sign, Requeued or Done.',
    }),
    lastTransitionTime: Type.String({
      format: 'date-time',
      description: 'The last time verificationStatus or verificationStage changed.',
    }),
    observedGeneration: Type.Optional(
      Type.Integer({
        minimum: 0,
        format: 'int64',
        description: 'The Module generation this entry validated.',
      }),
    ),
  },
  { description: 'The validation of one Module.' },
);
export type ModuleVerificationStatus = Static<typeof ModuleVerificationStatusSchema>;

export const PreflightValidationOCPStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({ minimum: 0, format: 'int64', description: 'The spec generation this status reflects.' }),
    ),
    releaseVersion: Type.Optional(Type.String({ description: 'The release version, e.g. 4.16.3.' })),
    releaseDigest: Type.Optional(Type.String({ description: 'Digest the release image resolved to.' })),
    kernelVersion: Type.Optional(Type.String({ description: "The release's standard kernel." })),
    rtKernelVersion: Type.Optional(Type.String({ description: "The release's real-time kernel, if any." })),
    targetKernel: Type.Optional(Type.String({ description: 'The kernel Modules are validated against.' })),
    dtkImage: Type.Optional(Type.String({ description: 'The driver-toolkit image of the release.' })),
    total: Type.Optional(Type.Integer({ minimum: 0, description: 'Modules being validated.' })),
    verified: Type.Optional(Type.Integer({ minimum: 0, description: 'Modules verified.' })),
    failed: Type.Optional(Type.Integer({ minimum: 0, description: 'Modules with a definite failure.' })),
    progress: Type.Optional(Type.String({ description: 'verified/total, for display.' })),
    conditions: Type.Optional(
      Type.Array(ConditionSchema, {
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['type'],
      }),
    ),
    modules: Type.Optional(
      Type.Array(ModuleVerificationStatusSchema, {
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['namespace', 'name'],
        description: 'One entry per Module, keyed by namespace and name.',
      }),
    ),
  },
  { description: 'Validation progress and verdicts.' },
);
export type PreflightValidationOCPStatus = Static<typeof PreflightValidationOCPStatusSchema>;

export const PreflightValidationOCPSchema = Type.Object({
  apiVersion: Type.Literal(KMM_API_VERSION),
  kind: Type.Literal(PREFLIGHT_KIND),
  metadata: ObjectMetaSchema,
  spec: PreflightValidationOCPSpecSchema,
  status: Type.Optional(PreflightValidationOCPStatusSchema),
});
export type PreflightValidationOCP = Static<typeof PreflightValidationOCPSchema>;
