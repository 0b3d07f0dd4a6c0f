import type { ModuleVerificationStatus } from '../../api/preflight.ts';
import { isControlledBy, type JobOwner } from '../../buildsign/identity.ts';
import { observeJob } from '../../buildsign/job-status.ts';
import type { Job } from '../../buildsign/kube-types.ts';
import { moduleKey, type ModuleIdentity, type ModuleKey } from '../../preflight/status.ts';
import { moduleOfJob } from './job-watch.ts';

/**
 * Which of a resource's Build/Sign Jobs nothing wants any more, as a pure function over what the runner sees now
 * (level-triggered, like a controller-runtime reconcile: every pass compares the Jobs that exist with the Modules
 * that exist, so a delete that failed is simply found again next time).
 *
 * - A Job of a Module that is gone (or being deleted) goes, whatever its state.
 * - A Job of a Module whose current verdict needs no Job goes unless it succeeded: the image was verified as it
 *   is, or the failure is at the Image stage (no build section applies any more) or final (no kernel mapping, an
 *   invalid Module). A succeeded Job may be what made the verdict; it stays until its TTL.
 * - Nothing is decided for a Module being validated or whose result is not written yet (the validation may be
 *   starting a Job right now), nor for an entry at the Build or Sign stage, queued, or requeued.
 */

export type UnwantedReason = 'module deleted' | 'not needed by the verdict';

export interface UnwantedJob {
  readonly job: Job;
  readonly module: ModuleKey;
  readonly why: UnwantedReason;
}

export interface SweepInput {
  /** The owning resource: only Jobs it controls are considered. */
  readonly owner: JobOwner;
  /** The Jobs the runner's informers hold (any owner). */
  readonly jobs: readonly Job[];
  /** The Modules that exist and are not being deleted. */
  readonly modules: readonly ModuleIdentity[];
  /** The resource's module entries as just computed (results folded in). */
  readonly entries: readonly ModuleVerificationStatus[];
  /** Modules with a validation in flight or a result not yet folded into `entries`. */
  readonly busy: ReadonlySet<ModuleKey>;
}

export function unwantedJobs(input: SweepInput): UnwantedJob[] {
  const modules = new Map(input.modules.map((m) => [moduleKey(m), m]));
  const entries = new Map(input.entries.map((e) => [moduleKey(e), e]));
  const unwanted: UnwantedJob[] = [];
  for (const job of input.jobs) {
    if (
      job.metadata.deletionTimestamp !== undefined ||
      !isControlledBy(job.metadata.ownerReferences, input.owner)
    )
      continue;
    const ref = moduleOfJob(job);
    if (ref === undefined) continue;
    const key = moduleKey(ref);
    const module = modules.get(key);
    if (module === undefined) {
      unwanted.push({ job, module: key, why: 'module deleted' });
    } else if (
      !input.busy.has(key) &&
      !verdictNeedsJobs(entries.get(key), module) &&
      observeJob(job, []).phase !== 'succeeded'
    ) {
      unwanted.push({ job, module: key, why: 'not needed by the verdict' });
    }
  }
  return unwanted;
}

/** False only when the entry holds a verdict for the Module's generation that no Build or Sign Job is part of. */
function verdictNeedsJobs(entry: ModuleVerificationStatus | undefined, module: ModuleIdentity): boolean {
  if (entry?.observedGeneration !== module.generation) return true;
  if (entry.verificationStatus === 'True') return false;
  return entry.verificationStage !== 'Image' && entry.verificationStage !== 'Done';
}
