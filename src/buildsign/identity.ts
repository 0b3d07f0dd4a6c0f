import { createHash } from 'node:crypto';
import type { OwnerReference } from './kube-types.ts';

/**
 * How build and sign Jobs are named, labelled and found again. A Job's name is a function of the resource, the
 * Module, the stage and a hash of everything the Job does, so a runner that restarts computes the same name and
 * adopts the Job instead of starting a second one, and a changed input yields a new name (the old Job is replaced).
 */

export const LABEL_DOMAIN = 'preflight.kmm.sigs.x-k8s.io';
export const MANAGED_BY = 'kmm-preflight';

export const JobLabel = {
  managedBy: 'app.kubernetes.io/managed-by',
  component: 'app.kubernetes.io/component',
  /** UID of the owning PreflightValidationOCP (a valid label value, unlike a long resource name). */
  ownerUid: `${LABEL_DOMAIN}/owner-uid`,
  /** The Module's name, or a digest of it when it is not a valid label value. */
  module: `${LABEL_DOMAIN}/module`,
  stage: `${LABEL_DOMAIN}/stage`,
  inputsHash: `${LABEL_DOMAIN}/inputs-hash`,
} as const;

export const JobAnnotation = {
  /** Name of the owning PreflightValidationOCP. */
  resource: `${LABEL_DOMAIN}/resource`,
  /** `<namespace>/<name>` of the Module. */
  module: `${LABEL_DOMAIN}/module`,
  kernel: `${LABEL_DOMAIN}/kernel`,
  /** The image the Job produces (pushed or not). */
  image: `${LABEL_DOMAIN}/image`,
} as const;

export type JobStage = 'build' | 'sign';

/** The PreflightValidationOCP that owns the Jobs. */
export interface JobOwner {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
}

export interface ModuleRef {
  readonly namespace: string;
  readonly name: string;
}

const MAX_NAME = 63;
const NAME_HASH_LENGTH = 10;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** JSON with object keys sorted, so equal inputs hash equally whatever order they were built in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Hash of a Job's inputs (its pod template plus the digests of what it mounts), 40 hex characters. */
export function inputsHash(inputs: unknown): string {
  return sha256Hex(canonicalJson(inputs)).slice(0, 40);
}

export function labelValue(value: string): string {
  return value.length <= 63 && LABEL_VALUE.test(value) ? value : `h${sha256Hex(value).slice(0, 40)}`;
}

/**
 * `<module>-pfv-<stage>-<10 hex>`, a DNS-1123 label of at most 63 characters (the Job controller copies the name
 * into a label on the Pods, which caps it at 63). The hash covers the owner's UID as well, so a resource deleted
 * and created again under the same name never meets a Job of its predecessor still being garbage-collected.
 */
export function jobName(owner: JobOwner, module: ModuleRef, stage: JobStage, hash: string): string {
  const suffix = `-pfv-${stage}-${sha256Hex(canonicalJson([owner.uid, module.namespace, module.name, stage, hash])).slice(0, NAME_HASH_LENGTH)}`;
  const prefix = module.name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, MAX_NAME - suffix.length)
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return `${prefix === '' ? 'module' : prefix}${suffix}`;
}

export function ownerReference(owner: JobOwner): OwnerReference {
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.name,
    uid: owner.uid,
    controller: true,
  };
}

/** Labels on a Job and its Pods; `jobSelector` selects by a subset of them. */
export function jobLabels(
  owner: JobOwner,
  module: ModuleRef,
  stage: JobStage,
  hash: string,
): Record<string, string> {
  return { ...jobSelector(owner, module, stage), [JobLabel.component]: stage, [JobLabel.inputsHash]: hash };
}

/** Selects the Jobs of one resource: of one Module of it, and of one stage of that Module, as far as given. */
export function jobSelector(owner: JobOwner, module?: ModuleRef, stage?: JobStage): Record<string, string> {
  return {
    [JobLabel.managedBy]: MANAGED_BY,
    [JobLabel.ownerUid]: owner.uid,
    ...(module === undefined ? {} : { [JobLabel.module]: labelValue(module.name) }),
    ...(stage === undefined ? {} : { [JobLabel.stage]: stage }),
  };
}

/** True when `job` is controlled by `owner` (the check that tells our Jobs from look-alikes). */
export function isControlledBy(
  ownerReferences: readonly OwnerReference[] | undefined,
  owner: JobOwner,
): boolean {
  return (ownerReferences ?? []).some((ref) => ref.controller === true && ref.uid === owner.uid);
}
