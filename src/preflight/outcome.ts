import type { VerificationStage, VerificationStatus } from '../api/preflight.ts';

/**
 * What happens next to a module after a validation pass. The runner schedules on it; the offline check only
 * reports it.
 * - `final`: nothing but a change of the Module or of the resource changes this verdict (verified, no kernel
 *   mapping, an invalid Module);
 * - `retry`: a definite failure of something outside the Module (the image is absent, the module is not in it): it
 *   is validated again on the retry interval, the seed's "next loop";
 * - `backoff`: a transient error (registry unreachable, timeout): the runner retries it with backoff and reports it
 *   as `Requeued`; a run that validates once reports it as a failure at the stage it interrupted (computeStatus);
 * - `waiting`: an asynchronous stage (a build or sign Job) is running and is observed again when it changes.
 */
export type Disposition = 'final' | 'retry' | 'backoff' | 'waiting';

/** The verdict of one validation pass over one Module, in the seed's terms plus what the scheduler needs. */
export interface StageOutcome {
  readonly verificationStatus: VerificationStatus;
  readonly verificationStage: VerificationStage;
  readonly statusReason: string;
  readonly disposition: Disposition;
  /** True when asking again without any change cannot give another answer (`final` and `retry`). */
  readonly definite: boolean;
  /** The image that was checked last (the Module's image for the kernel, or what Build/Sign produced). */
  readonly image?: string;
  /** Digest of that image, when it resolved. */
  readonly imageDigest?: string;
  /** For `backoff`: the stage the transient error interrupted. */
  readonly interruptedStage?: InterruptibleStage;
}

export type InterruptibleStage = 'Image' | 'Build' | 'Sign';

function outcome(
  verificationStatus: VerificationStatus,
  verificationStage: VerificationStage,
  statusReason: string,
  disposition: Disposition,
  image?: { image?: string | undefined; imageDigest?: string | undefined },
): StageOutcome {
  return {
    verificationStatus,
    verificationStage,
    statusReason,
    disposition,
    definite: disposition === 'final' || disposition === 'retry',
    ...(image?.image === undefined ? {} : { image: image.image }),
    ...(image?.imageDigest === undefined ? {} : { imageDigest: image.imageDigest }),
  };
}

export const StageOutcomes = {
  verified: (reason: string, image?: { image?: string; imageDigest?: string }): StageOutcome =>
    outcome('True', 'Done', reason, 'final', image),
  /** A failure no retry can change: only an edit of the Module or of the resource can. */
  finalFailure: (reason: string): StageOutcome => outcome('False', 'Done', reason, 'final'),
  /** A definite failure at `stage` that may change without an edit (an image pushed later): retried on interval. */
  failedAt: (
    stage: 'Image' | 'Build' | 'Sign',
    reason: string,
    image?: { image?: string; imageDigest?: string },
  ): StageOutcome => outcome('False', stage, reason, 'retry', image),
  /** A definite failure at `stage` that only an edit can change (a Secret the build needs is missing). */
  refusedAt: (stage: 'Build' | 'Sign', reason: string): StageOutcome =>
    outcome('False', stage, reason, 'final'),
  /**
   * A transient error at `stage`: retried with backoff. The reason says what failed, never that it will be retried:
   * whether anyone retries is the caller's to say (computeStatus's ValidationMode).
   */
  requeued: (reason: string, stage: InterruptibleStage): StageOutcome => ({
    ...outcome('False', 'Requeued', reason, 'backoff'),
    interruptedStage: stage,
  }),
  /** An asynchronous stage is under way. */
  waiting: (stage: 'Build' | 'Sign', reason: string): StageOutcome =>
    outcome('False', stage, reason, 'waiting'),
} as const;
