/**
 * Why a build or sign could not be started. Every one is definite: the Module (or a ConfigMap/Secret it names, or
 * the PreflightValidationOCP) must change before another attempt can do better, so no Job is created and the
 * module's entry says what to fix.
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

export class BuildSignError extends Error {
  readonly code: BuildSignErrorCode;
  constructor(code: BuildSignErrorCode, message: string) {
    super(message);
    this.name = 'BuildSignError';
    this.code = code;
  }
}

/**
 * What a JobStore reports when the API server refuses a write for a reason the stage handles: the object exists
 * already (a concurrent reconcile or a replica created it first) or it is gone.
 */
export type JobStoreErrorCode = 'ALREADY_EXISTS' | 'NOT_FOUND';

export class JobStoreError extends Error {
  readonly code: JobStoreErrorCode;
  constructor(code: JobStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'JobStoreError';
    this.code = code;
  }
}
