import { CodedError } from '../platform/errors.ts';

/**
 * Why a build or sign could not be started: something must change before another attempt can do better, so no
 * Job is created and the module's entry says what to fix.
 */
export type BuildSignErrorCode =
  | 'PUSH_REQUIRED'
  | 'NO_DOCKERFILE_CONFIGMAP'
  | 'DOCKERFILE_NOT_FOUND'
  | 'DOCKERFILE_TOO_LARGE'
  | 'SECRET_NOT_FOUND'
  | 'NO_IMAGE_TO_SIGN'
  | 'NO_FILES_TO_SIGN'
  | 'INVALID_FILE_TO_SIGN'
  | 'NO_SIGNING_KEY'
  | 'NO_SIGNER_IMAGE'
  | 'NO_CONTAINER_IMAGE'
  | 'INVALID_IMAGE'
  | 'JOB_NAME_TAKEN';

/**
 * Refusals caused by an object the Module names (a ConfigMap or Secret) or by a Job in the way, rather than by the
 * Module's spec: they can end without an edit of the Module, and the runner watches neither, so they are retried
 * on its interval instead of standing until the Module changes.
 */
const FIXABLE_OUTSIDE_THE_SPEC: ReadonlySet<BuildSignErrorCode> = new Set([
  'DOCKERFILE_NOT_FOUND',
  'DOCKERFILE_TOO_LARGE',
  'SECRET_NOT_FOUND',
  'JOB_NAME_TAKEN',
]);

export class BuildSignError extends CodedError<BuildSignErrorCode> {
  /** True when only an edit of the Module or of the resource (or the runner's configuration) can change it. */
  readonly definite: boolean;
  constructor(code: BuildSignErrorCode, message: string) {
    super(code, message);
    this.definite = !FIXABLE_OUTSIDE_THE_SPEC.has(code);
  }
}

/**
 * What a JobStore reports when the API server refuses a write for a reason the stage handles: the object exists
 * already (a concurrent reconcile or a replica created it first) or it is gone.
 */
export type JobStoreErrorCode = 'ALREADY_EXISTS' | 'NOT_FOUND';

export class JobStoreError extends CodedError<JobStoreErrorCode> {}
