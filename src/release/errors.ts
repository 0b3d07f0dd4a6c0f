import { ImageError, imageErrorAnswer } from '../image/source.ts';
import { CodedError } from '../platform/errors.ts';

/**
 * Why a release image could not be turned into a kernel. Each code has a condition reason (CamelCase, for the
 * resource's `KernelResolved` condition) and a message that says what to do about it.
 */
export type ReleaseErrorCode =
  /** The release image reference does not parse. */
  | 'INVALID_RELEASE_REFERENCE'
  /** The release image cannot be read: not found, access denied, no image for the architecture, bad manifest. */
  | 'RELEASE_IMAGE_UNAVAILABLE'
  /** The last layer has no `release-manifests/image-references`: not an OpenShift release payload. */
  | 'NOT_A_RELEASE'
  /** `image-references` or `release-metadata` is present but not what `oc adm release new` writes. */
  | 'INVALID_RELEASE_MANIFESTS'
  /** The payload has no `driver-toolkit` tag. */
  | 'NO_DTK_TAG'
  /** The driver-toolkit image named by the payload cannot be read. */
  | 'DTK_IMAGE_MISSING'
  /** No layer of the driver-toolkit image has `etc/driver-toolkit-release.json`. */
  | 'DTK_FILE_MISSING'
  /** The JSON file is malformed or a required field is empty or not a version. */
  | 'DTK_FIELDS_INVALID'
  /** The real-time kernel was asked for and the driver-toolkit names none. */
  | 'NO_RT_KERNEL'
  /** A registry could not be reached or timed out; asking again may succeed. */
  | 'REGISTRY_UNAVAILABLE';

const conditionReasons: Readonly<Record<ReleaseErrorCode, string>> = {
  INVALID_RELEASE_REFERENCE: 'InvalidReleaseImage',
  RELEASE_IMAGE_UNAVAILABLE: 'ReleaseImageUnavailable',
  NOT_A_RELEASE: 'NotAReleaseImage',
  INVALID_RELEASE_MANIFESTS: 'InvalidReleaseManifests',
  NO_DTK_TAG: 'NoDriverToolkitTag',
  DTK_IMAGE_MISSING: 'DriverToolkitImageMissing',
  DTK_FILE_MISSING: 'DriverToolkitFileMissing',
  DTK_FIELDS_INVALID: 'DriverToolkitFieldsInvalid',
  NO_RT_KERNEL: 'NoRealTimeKernel',
  REGISTRY_UNAVAILABLE: 'RegistryUnavailable',
};

export class ReleaseError extends CodedError<ReleaseErrorCode> {
  /** True when the same request may succeed later (an unreachable or timing-out registry); false otherwise. */
  readonly retryable: boolean;
  /** The `KernelResolved` condition reason for this failure. */
  readonly reason: string;
  constructor(code: ReleaseErrorCode, message: string, options?: { retryable?: boolean; cause?: unknown }) {
    super(code, message, options);
    this.retryable = options?.retryable ?? code === 'REGISTRY_UNAVAILABLE';
    this.reason = conditionReasons[code];
  }
}

/**
 * Turns a failure reading `reference` into a ReleaseError: transient registry faults become the retryable
 * REGISTRY_UNAVAILABLE, definite answers (404, 403, no platform, bad manifest) become `definiteCode`. The message is
 * `<what>: <the registry's answer><hint>`, without repeating the reference the answer already starts with.
 * Anything that is not an ImageError is a bug and is rethrown as is.
 */
export function releaseErrorFromImageError(
  err: unknown,
  definiteCode: ReleaseErrorCode,
  what: string,
  reference: string,
  hint = '',
): ReleaseError {
  if (err instanceof ReleaseError) return err;
  if (!(err instanceof ImageError)) throw err;
  const message = `${what}: ${imageErrorAnswer(err, reference)}${hint}`;
  return err.definite
    ? new ReleaseError(definiteCode, message, { cause: err })
    : new ReleaseError('REGISTRY_UNAVAILABLE', message, { retryable: true, cause: err });
}
