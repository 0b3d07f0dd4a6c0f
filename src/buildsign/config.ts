import { CodedError } from '../platform/errors.ts';

/**
 * How build and sign Jobs are run: which images, how long they may take, how long they are kept. The runner fills
 * this from flags; `buildSignConfig` checks it once at start-up so a bad value is a usage error, not a broken Job.
 */
export interface BuildSignConfig {
  /** The Kaniko executor image; a Module's `build.kanikoParams.tag` replaces its tag, as in KMM. */
  readonly kanikoImage: string;
  /**
   * The image that holds `sign-file`. Unset: the release's driver-toolkit image (given per request), which carries
   * the target kernel's own `sign-file` under /usr/src/kernels/<kernel>/scripts.
   */
  readonly signerImage?: string;
  /** Path of `sign-file` in the signer image; `${KERNEL_VERSION}` is replaced by the target kernel. */
  readonly signFilePath: string;
  /** Pod retries per Job (the Job's backoffLimit). */
  readonly backoffLimit: number;
  /** A Job still running after this long fails with DeadlineExceeded. */
  readonly activeDeadlineSeconds: number;
  /**
   * Finished Jobs are deleted this long after they finish (needs the TTL controller: beta from Kubernetes 1.21).
   * Unset: they stay until their PreflightValidationOCP is deleted.
   */
  readonly ttlSecondsAfterFinished?: number;
  /** Service account of the Job pods; Kaniko runs as root, so on OpenShift it needs an SCC that allows it. */
  readonly serviceAccountName?: string;
}

export const DEFAULT_BUILD_SIGN_CONFIG: BuildSignConfig = {
  kanikoImage: 'gcr.io/kaniko-project/executor:v1.23.2',
  signFilePath: '/usr/src/kernels/${KERNEL_VERSION}/scripts/sign-file',
  backoffLimit: 1,
  activeDeadlineSeconds: 3600,
  ttlSecondsAfterFinished: 86400,
};

export class BuildSignConfigError extends CodedError<'INVALID_BUILD_SIGN_CONFIG'> {
  readonly field: keyof BuildSignConfig;
  constructor(field: keyof BuildSignConfig, message: string) {
    super('INVALID_BUILD_SIGN_CONFIG', `${field}: ${message}`);
    this.field = field;
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function checkImage(field: 'kanikoImage' | 'signerImage', value: string): void {
  if (value === '' || /\s/.test(value)) {
    throw new BuildSignConfigError(
      field,
      `"${value}" is not an image reference; give e.g. registry/repo:tag`,
    );
  }
}

function checkInteger(field: keyof BuildSignConfig, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new BuildSignConfigError(field, `must be an integer from ${min} to ${max}, got ${value}`);
  }
}

/** The defaults with `overrides` applied, checked; throws BuildSignConfigError naming the bad field. */
export function buildSignConfig(overrides: Partial<BuildSignConfig> = {}): BuildSignConfig {
  const config: BuildSignConfig = { ...DEFAULT_BUILD_SIGN_CONFIG, ...overrides };
  checkImage('kanikoImage', config.kanikoImage);
  if (config.signerImage !== undefined) checkImage('signerImage', config.signerImage);
  if (
    !config.signFilePath.startsWith('/') ||
    /[\s"$]/.test(config.signFilePath.replaceAll('${KERNEL_VERSION}', ''))
  ) {
    throw new BuildSignConfigError(
      'signFilePath',
      `"${config.signFilePath}" must be an absolute path without spaces, quotes or variables other than \${KERNEL_VERSION}`,
    );
  }
  checkInteger('backoffLimit', config.backoffLimit, 0, 10);
  checkInteger('activeDeadlineSeconds', config.activeDeadlineSeconds, 60, 7 * 86400);
  if (config.ttlSecondsAfterFinished !== undefined) {
    checkInteger('ttlSecondsAfterFinished', config.ttlSecondsAfterFinished, 0, 365 * 86400);
  }
  if (
    config.serviceAccountName !== undefined &&
    (config.serviceAccountName.length > 253 || !DNS_SUBDOMAIN.test(config.serviceAccountName))
  ) {
    throw new BuildSignConfigError(
      'serviceAccountName',
      `"${config.serviceAccountName}" is not a valid name`,
    );
  }
  return config;
}
