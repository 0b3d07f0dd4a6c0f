import { isDeepStrictEqual } from 'node:util';
import type { Condition } from '../api/meta.ts';
import {
  PreflightConditionType,
  type ModuleVerificationStatus,
  type PreflightValidationOCPStatus,
} from '../api/preflight.ts';
import type { StageOutcome } from './outcome.ts';

/**
 * The status of a PreflightValidationOCP as a pure function of what is known now: the resource's generation and
 * kernel, the Modules that exist, the status written before, and the validation results that came in since. The
 * runner writes what this returns; nothing here reads a clock or a cluster.
 */

/** A Module as the status sees it. */
export interface ModuleIdentity {
  readonly namespace: string;
  readonly name: string;
  readonly generation: number;
}

/** `namespace/name`: the key of a module entry. */
export type ModuleKey = string;

export function moduleKey(module: { readonly namespace: string; readonly name: string }): ModuleKey {
  return `${module.namespace}/${module.name}`;
}

/** A validation result, with what it was computed against so that a stale one is recognised and dropped. */
export interface ModuleResult {
  readonly namespace: string;
  readonly name: string;
  readonly moduleGeneration: number;
  readonly resourceGeneration: number;
  readonly targetKernel: string;
  readonly outcome: StageOutcome;
}

/** What release resolution said about the resource's current generation. */
export type KernelState =
  | { readonly state: 'pending' }
  | {
      readonly state: 'failed';
      /** CamelCase condition reason, e.g. `NoDriverToolkitTag`. */
      readonly reason: string;
      readonly message: string;
      /** True when resolution is retried with backoff (a transient registry fault). */
      readonly retrying: boolean;
    }
  | {
      readonly state: 'resolved';
      /** The kernel Modules are validated against (the real-time one with useRTKernel). */
      readonly targetKernel: string;
      readonly kernelVersion: string;
      readonly rtKernelVersion?: string;
      /** Set when the kernel was given instead of resolved from a release: how, e.g. `--kernel on the command line`. */
      readonly givenBy?: string;
      readonly dtkImage?: string;
      readonly releaseVersion?: string;
      readonly releaseDigest?: string;
    };

/**
 * Whether anything will ask again, which changes what an unanswered question means. The runner validates
 * `continuously`: it retries the release and transient module errors with backoff and failed modules on its
 * interval, so a module waits for the kernel, and a transient error is `Requeued` "(will retry)". The offline check
 * validates `once`: what it could not answer is its final answer, so each entry carries the kernel's resolution
 * failure or the transient error as a failure (at the stage it interrupted) and counts as failed.
 */
export type ValidationMode = 'continuous' | 'once';

export interface ResourceView {
  readonly generation: number;
  readonly kernel: KernelState;
  readonly mode: ValidationMode;
}

export interface StatusDecision {
  readonly status: PreflightValidationOCPStatus;
  /** False when `status` equals the previous status: nothing to write. */
  readonly changed: boolean;
  /** What changed, for Events and logs. */
  readonly transitions: StatusTransitions;
}

export interface StatusTransitions {
  readonly verified: readonly ModuleKey[];
  readonly failed: readonly { readonly key: ModuleKey; readonly reason: string }[];
  /** The kernel became resolved with this generation's write. */
  readonly kernelResolved: boolean;
  /** `Complete` became True. */
  readonly completed: boolean;
}

/** The reason of every entry when a run that validates once could not resolve the release. */
function kernelNotResolvedReason(message: string): string {
  return `the target kernel could not be resolved: ${message}`;
}

export const QueuedReasons = {
  new: 'queued for validation',
  waitingForKernel: 'queued: waiting for the target kernel (see condition KernelResolved)',
  resourceChanged: 'queued: the PreflightValidationOCP changed, validating again',
  moduleChanged: (generation: number): string =>
    `queued: the Module changed (generation ${generation}), validating again`,
} as const;

export function computeStatus(
  resource: ResourceView,
  modules: readonly ModuleIdentity[],
  previous: PreflightValidationOCPStatus | undefined,
  results: readonly ModuleResult[],
  now: Date,
): StatusDecision {
  const nowText = now.toISOString();
  const kernel = resource.kernel;
  const resolvedKernel = kernel.state === 'resolved' ? kernel.targetKernel : undefined;
  const specChanged = previous !== undefined && previous.observedGeneration !== resource.generation;
  const kernelChanged =
    resolvedKernel !== undefined &&
    previous?.targetKernel !== undefined &&
    previous.targetKernel !== resolvedKernel;
  const resetAll = specChanged || kernelChanged;

  const previousEntries = new Map<ModuleKey, ModuleVerificationStatus>();
  for (const entry of previous?.modules ?? []) previousEntries.set(moduleKey(entry), entry);
  const latestResult = new Map<ModuleKey, ModuleResult>();
  for (const result of results) {
    const current =
      result.resourceGeneration === resource.generation &&
      resolvedKernel !== undefined &&
      result.targetKernel === resolvedKernel;
    if (current) latestResult.set(moduleKey(result), result);
  }

  const verified: ModuleKey[] = [];
  const failed: { key: ModuleKey; reason: string }[] = [];
  const entries = [...modules]
    .sort((a, b) => compareKeys(moduleKey(a), moduleKey(b)))
    .map((module) => {
      const key = moduleKey(module);
      const before = previousEntries.get(key);
      const next = nextEntry(module, before, latestResult.get(key), resetAll, resource);
      const entry = withTransitionTime(next, before, nowText);
      if (entry.verificationStatus === 'True' && !isVerified(before)) verified.push(key);
      if (isFailed(entry) && (!isFailed(before) || before?.statusReason !== entry.statusReason)) {
        failed.push({ key, reason: entry.statusReason ?? '' });
      }
      return entry;
    });

  const total = entries.length;
  const verifiedCount = entries.filter((e) => e.verificationStatus === 'True').length;
  const failedCount = entries.filter(isFailed).length;
  const conditions = [
    condition(previous, kernelCondition(kernel), resource.generation, nowText),
    condition(
      previous,
      completeCondition(resource, total, verifiedCount, failedCount),
      resource.generation,
      nowText,
    ),
  ];
  const status: PreflightValidationOCPStatus = {
    observedGeneration: resource.generation,
    ...kernelFields(kernel),
    total,
    verified: verifiedCount,
    failed: failedCount,
    progress: `${verifiedCount}/${total}`,
    conditions,
    modules: entries,
  };
  const wasResolved = findCondition(previous, PreflightConditionType.KernelResolved)?.status === 'True';
  const wasComplete = findCondition(previous, PreflightConditionType.Complete)?.status === 'True';
  return {
    status,
    changed: !isDeepStrictEqual(status, previous),
    transitions: {
      verified,
      failed,
      kernelResolved: kernel.state === 'resolved' && (!wasResolved || specChanged),
      completed: conditions[1]?.status === 'True' && (!wasComplete || specChanged),
    },
  };
}

/** A module entry holds a verdict for a generation when `observedGeneration` is set; otherwise it is pending. */
export function isFailed(entry: ModuleVerificationStatus | undefined): boolean {
  return entry?.verificationStatus === 'False' && entry.observedGeneration !== undefined;
}

function isVerified(entry: ModuleVerificationStatus | undefined): boolean {
  return entry?.verificationStatus === 'True';
}

type EntryWithoutTime = Omit<ModuleVerificationStatus, 'lastTransitionTime'>;

function nextEntry(
  module: ModuleIdentity,
  before: ModuleVerificationStatus | undefined,
  result: ModuleResult | undefined,
  resetAll: boolean,
  resource: ResourceView,
): EntryWithoutTime {
  const identity = { namespace: module.namespace, name: module.name };
  const { kernel, mode } = resource;
  if (result !== undefined && result.moduleGeneration === module.generation) {
    const { outcome } = result;
    if (outcome.disposition === 'backoff') {
      return mode === 'once'
        ? {
            ...identity,
            ...verdictOf(outcome),
            verificationStage: outcome.interruptedStage ?? 'Image',
            observedGeneration: module.generation,
          }
        : { ...identity, ...verdictOf(outcome), statusReason: `${outcome.statusReason} (will retry)` };
    }
    const holdsVerdict = outcome.disposition === 'final' || outcome.disposition === 'retry';
    return {
      ...identity,
      ...verdictOf(outcome),
      ...(holdsVerdict || mode === 'once' ? { observedGeneration: module.generation } : {}),
    };
  }
  if (kernel.state === 'failed' && mode === 'once') {
    return {
      ...identity,
      verificationStatus: 'False',
      statusReason: kernelNotResolvedReason(kernel.message),
      verificationStage: 'Done',
      observedGeneration: module.generation,
    };
  }
  const kernelResolved = kernel.state === 'resolved';
  const queued = (statusReason: string): EntryWithoutTime => ({
    ...identity,
    verificationStatus: 'False',
    statusReason,
    verificationStage: 'Image',
  });
  if (before === undefined)
    return queued(kernelResolved ? QueuedReasons.new : QueuedReasons.waitingForKernel);
  if (resetAll)
    return queued(kernelResolved ? QueuedReasons.resourceChanged : QueuedReasons.waitingForKernel);
  if (before.observedGeneration !== undefined && before.observedGeneration !== module.generation) {
    return queued(QueuedReasons.moduleChanged(module.generation));
  }
  const { lastTransitionTime: _unused, ...kept } = before;
  return kept;
}

function verdictOf(
  outcome: StageOutcome,
): Pick<EntryWithoutTime, 'verificationStatus' | 'statusReason' | 'verificationStage'> {
  return {
    verificationStatus: outcome.verificationStatus,
    statusReason: outcome.statusReason,
    verificationStage: outcome.verificationStage,
  };
}

/** `lastTransitionTime` moves only when the status or the stage changes. */
function withTransitionTime(
  entry: EntryWithoutTime,
  before: ModuleVerificationStatus | undefined,
  nowText: string,
): ModuleVerificationStatus {
  const same =
    before !== undefined &&
    before.verificationStatus === entry.verificationStatus &&
    before.verificationStage === entry.verificationStage;
  // Keep the key order of a fresh entry stable so that equal statuses compare equal.
  const { observedGeneration, ...rest } = entry;
  return {
    ...rest,
    lastTransitionTime: same ? before.lastTransitionTime : nowText,
    ...(observedGeneration === undefined ? {} : { observedGeneration }),
  };
}

function kernelFields(kernel: KernelState): Partial<PreflightValidationOCPStatus> {
  if (kernel.state !== 'resolved') return {};
  const fields: Partial<PreflightValidationOCPStatus> = {
    releaseVersion: kernel.releaseVersion,
    releaseDigest: kernel.releaseDigest,
    kernelVersion: kernel.kernelVersion,
    rtKernelVersion: kernel.rtKernelVersion,
    targetKernel: kernel.targetKernel,
    dtkImage: kernel.dtkImage,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && v !== ''));
}

type ConditionCore = Pick<Condition, 'type' | 'status' | 'reason' | 'message'>;

function kernelCondition(kernel: KernelState): ConditionCore {
  const type = PreflightConditionType.KernelResolved;
  switch (kernel.state) {
    case 'pending':
      return {
        type,
        status: 'Unknown',
        reason: 'Resolving',
        message: 'resolving the release image to its kernel',
      };
    case 'failed':
      return {
        type,
        status: 'False',
        reason: kernel.reason,
        message: kernel.retrying ? `${kernel.message} (retrying with backoff)` : kernel.message,
      };
    case 'resolved': {
      if (kernel.givenBy !== undefined) {
        return {
          type,
          status: 'True',
          reason: 'Given',
          message: `kernel ${kernel.targetKernel} given with ${kernel.givenBy}`,
        };
      }
      const release =
        kernel.releaseVersion === undefined ? 'the release' : `release ${kernel.releaseVersion}`;
      return {
        type,
        status: 'True',
        reason: 'Resolved',
        message: `${release} runs kernel ${kernel.targetKernel}`,
      };
    }
  }
}

function completeCondition(
  resource: ResourceView,
  total: number,
  verified: number,
  failed: number,
): ConditionCore {
  const type = PreflightConditionType.Complete;
  const once = resource.mode === 'once';
  if (resource.kernel.state !== 'resolved') {
    return {
      type,
      status: 'False',
      reason: 'KernelNotResolved',
      message: once ? 'the target kernel could not be resolved' : 'the target kernel is not known yet',
    };
  }
  if (total === 0)
    return { type, status: 'True', reason: 'NoModules', message: 'there are no Modules to validate' };
  if (verified === total) {
    return { type, status: 'True', reason: 'AllVerified', message: `all ${total} Modules are verified` };
  }
  const pending = total - verified - failed;
  if (pending > 0) {
    return {
      type,
      status: 'False',
      reason: 'InProgress',
      message: `${verified} of ${total} Modules verified, ${failed} failed, ${pending} in progress`,
    };
  }
  return {
    type,
    status: 'False',
    reason: 'ModulesFailed',
    message: once
      ? `${failed} of ${total} Modules failed validation`
      : `${failed} of ${total} Modules failed validation; they are validated again when they change`,
  };
}

function condition(
  previous: PreflightValidationOCPStatus | undefined,
  core: ConditionCore,
  generation: number,
  nowText: string,
): Condition {
  const before = findCondition(previous, core.type);
  return {
    type: core.type,
    status: core.status,
    observedGeneration: generation,
    lastTransitionTime:
      before !== undefined && before.status === core.status ? before.lastTransitionTime : nowText,
    reason: core.reason,
    message: core.message,
  };
}

function findCondition(
  status: PreflightValidationOCPStatus | undefined,
  type: string,
): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
