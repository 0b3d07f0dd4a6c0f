import type { ModuleVerificationStatus } from '../api/preflight.ts';
import { backoffDelay, type BackoffPolicy } from '../platform/kube/backoff.ts';
import type { StageOutcome } from '../preflight/outcome.ts';
import { moduleKey, type ModuleIdentity, type ModuleKey } from '../preflight/status.ts';

/**
 * When each module of a resource is validated next, as pure functions over what the last pass said. The runner
 * keeps these in memory: after a restart every module without a verified entry is validated once more, which
 * costs little (image checks are cached) and is always correct.
 */

export interface SchedulePolicy {
  /** A definite failure that may change without an edit (the seed's "next loop"). */
  readonly retryIntervalMs: number;
  /** Transient errors. */
  readonly backoff: BackoffPolicy;
  /** How often a running Build/Sign Job is observed when no Job event arrives. */
  readonly waitingPollMs: number;
}

/** What a schedule entry was computed against; it is void when any of these moved. */
export interface ValidationBasis {
  readonly resourceGeneration: number;
  readonly moduleGeneration: number;
  readonly targetKernel: string;
}

export interface Attempt {
  readonly basis: ValidationBasis;
  /** Epoch milliseconds; Infinity for a final verdict. */
  readonly notBefore: number;
  /** Consecutive transient failures. */
  readonly failures: number;
  /** The last pass failed at Build or Sign (a failed Job): the retry runs that Job again. */
  readonly rerunFailedJob?: boolean;
  /** A Build or Sign Job is running: a change of that Job makes the module due at once (jobChanged). */
  readonly waitingForJob?: boolean;
}

export function afterOutcome(
  outcome: StageOutcome,
  basis: ValidationBasis,
  previous: Attempt | undefined,
  nowMs: number,
  policy: SchedulePolicy,
  random: () => number = Math.random,
): Attempt {
  const failures = previous !== undefined && sameBasis(previous.basis, basis) ? previous.failures : 0;
  switch (outcome.disposition) {
    case 'final':
      return { basis, notBefore: Infinity, failures: 0 };
    case 'retry':
      return {
        basis,
        notBefore: nowMs + policy.retryIntervalMs,
        failures: 0,
        ...(outcome.verificationStage === 'Build' || outcome.verificationStage === 'Sign'
          ? { rerunFailedJob: true }
          : {}),
      };
    case 'waiting':
      return { basis, notBefore: nowMs + policy.waitingPollMs, failures: 0, waitingForJob: true };
    case 'backoff':
      return {
        basis,
        notBefore: nowMs + backoffDelay(policy.backoff, failures, random),
        failures: failures + 1,
      };
  }
}

/** Whether the validation now due is the scheduled retry of a failed Build or Sign Job, which runs it again. */
export function rerunsFailedJob(attempt: Attempt | undefined, basis: ValidationBasis): boolean {
  return attempt?.rerunFailedJob === true && sameBasis(attempt.basis, basis);
}

/** The attempt after an event of the Job it waits for: due at once. Other attempts are left as they are. */
export function afterJobEvent(attempt: Attempt, nowMs: number): Attempt {
  return attempt.waitingForJob === true && attempt.notBefore > nowMs
    ? { ...attempt, notBefore: nowMs }
    : attempt;
}

export interface ValidationPlan {
  /** Modules to validate now. */
  readonly due: readonly ModuleIdentity[];
  /** The earliest time another module falls due, if any. */
  readonly nextDueMs?: number;
}

/**
 * Which modules need a validation now: every one without a verdict for its current generation, and failed ones
 * whose retry time has come; never a verified one (until it changes) nor one already being validated.
 */
export function planValidations(
  entries: readonly ModuleVerificationStatus[],
  modules: readonly ModuleIdentity[],
  basisOf: (module: ModuleIdentity) => ValidationBasis,
  schedule: ReadonlyMap<ModuleKey, Attempt>,
  inFlight: ReadonlySet<ModuleKey>,
  nowMs: number,
): ValidationPlan {
  const entryByKey = new Map(entries.map((entry) => [moduleKey(entry), entry]));
  const due: ModuleIdentity[] = [];
  let nextDueMs = Infinity;
  for (const module of modules) {
    const key = moduleKey(module);
    if (inFlight.has(key)) continue;
    const entry = entryByKey.get(key);
    if (entry?.verificationStatus === 'True' && entry.observedGeneration === module.generation) continue;
    const attempt = schedule.get(key);
    if (attempt === undefined || !sameBasis(attempt.basis, basisOf(module)) || attempt.notBefore <= nowMs) {
      due.push(module);
    } else if (Number.isFinite(attempt.notBefore)) {
      nextDueMs = Math.min(nextDueMs, attempt.notBefore);
    }
  }
  return Number.isFinite(nextDueMs) ? { due, nextDueMs } : { due };
}

export function sameBasis(a: ValidationBasis, b: ValidationBasis): boolean {
  return (
    a.resourceGeneration === b.resourceGeneration &&
    a.moduleGeneration === b.moduleGeneration &&
    a.targetKernel === b.targetKernel
  );
}
