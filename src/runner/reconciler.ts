import type { Logger } from 'pino';
import { KMM_API_VERSION } from '../api/meta.ts';
import type { Module } from '../api/module.ts';
import {
  PREFLIGHT_KIND,
  PreflightConditionType,
  type PreflightValidationOCP,
  type PreflightValidationOCPStatus,
} from '../api/preflight.ts';
import type { Job } from '../buildsign/kube-types.ts';
import type { Platform } from '../image/source.ts';
import type { RunnerMetrics } from '../platform/metrics.ts';
import { isConflict } from '../platform/kube/client.ts';
import type { ValidationRequest } from '../preflight/engine.ts';
import { StageOutcomes, type StageOutcome } from '../preflight/outcome.ts';
import {
  computeStatus,
  moduleKey,
  type ModuleIdentity,
  type ModuleKey,
  type ModuleResult,
  type StatusTransitions,
} from '../preflight/status.ts';
import { unwantedJobs } from './jobs/sweep.ts';
import type { KernelCache, ResolvedKernel } from './kernels.ts';
import type { TaskPool } from './pool.ts';
import {
  afterJobEvent,
  afterOutcome,
  planValidations,
  rerunsFailedJob,
  sameBasis,
  type Attempt,
  type SchedulePolicy,
  type ValidationBasis,
} from './schedule.ts';
import type { WorkQueue } from './work-queue.ts';
import { CodedError, errorMessage } from '../platform/errors.ts';

/**
 * Reconciles one PreflightValidationOCP: read it fresh, compute its status from the Modules in the cache and the
 * validation results that came in, write the status once if it changed, start the validations that are due, and
 * delete the resource's Build/Sign Jobs that nothing wants any more. Validations run outside the reconcile in a
 * bounded pool; each result re-queues the resource after a short batch delay, so many results land in one status
 * write and a slow module never holds up the others. At shutdown, `stopValidating` then `flush` write the results
 * that came in but were not written yet.
 */

/** Reads and writes PreflightValidationOCP resources; the kube implementation is in kube-resources.ts. */
export interface PreflightResources {
  get(name: string): Promise<PreflightValidationOCP | undefined>;
  /** Replaces /status, guarded by the resource's resourceVersion (a stale one is a 409 conflict). */
  replaceStatus(
    resource: PreflightValidationOCP,
    status: PreflightValidationOCPStatus,
  ): Promise<PreflightValidationOCP>;
}

export interface EventSink {
  /** Best effort: never throws, never blocks the reconcile. */
  emit(resource: PreflightValidationOCP, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

/** The runner's Build/Sign Jobs, as its informers see them, and their removal. */
export interface RunnerJobs {
  /** Every Job in the informer caches, of any resource. */
  list(): readonly Job[];
  /** Deletes the Job of that name and UID; resolves when it is gone already or the name holds another Job. */
  delete(namespace: string, name: string, uid: string): Promise<void>;
}

/** Some Jobs nothing wants could not be deleted; the reconcile fails so that it is retried with backoff. */
export class JobCleanupError extends CodedError<'JOB_CLEANUP_FAILED'> {
  constructor(resource: string, failures: readonly string[]) {
    super(
      'JOB_CLEANUP_FAILED',
      `could not delete ${failures.length} Job(s) of ${resource} nothing needs: ${failures.join('; ')}`,
    );
  }
}

export type ModuleValidator = (request: ValidationRequest) => Promise<StageOutcome>;

export interface ReconcilerConfig {
  readonly platform: Platform;
  readonly schedule: SchedulePolicy;
  /** How long a validation result waits for others before the status is written. */
  readonly batchDelayMs: number;
  /** A validation running longer than this is abandoned and retried with backoff. */
  readonly validationTimeoutMs: number;
}

export interface ReconcilerDeps {
  readonly resources: PreflightResources;
  /** The resource from the informer cache (may lag behind the API server). */
  readonly cached: (name: string) => PreflightValidationOCP | undefined;
  /** The Modules in the watched namespaces, from the informer caches. */
  readonly modules: () => readonly Module[];
  /**
   * False until the Module caches hold their first list: a reconcile then would prune every entry (and delete
   * the Jobs of Modules that exist). Default: always synced.
   */
  readonly modulesSynced?: () => boolean;
  /**
   * The resource's Jobs of deleted Modules, and those no verdict needs, are deleted by every reconcile (see
   * jobs/sweep.ts). Default: no Jobs.
   */
  readonly jobs?: RunnerJobs;
  readonly validate: ModuleValidator;
  readonly kernels: KernelCache;
  readonly events: EventSink;
  readonly queue: WorkQueue;
  readonly pool: TaskPool;
  readonly logger: Logger;
  readonly metrics: RunnerMetrics;
  readonly now: () => number;
  readonly config: ReconcilerConfig;
}

interface InFlight {
  readonly controller: AbortController;
  readonly basis: ValidationBasis;
}

/** What the runner remembers of one resource between reconciles. */
interface ResourceState {
  readonly uid: string | undefined;
  readonly inFlight: Map<ModuleKey, InFlight>;
  /** Results not yet written, in arrival order. */
  readonly results: ModuleResult[];
  readonly schedule: Map<ModuleKey, Attempt>;
  /** When this runner first saw the resource (epoch ms). */
  readonly firstSeenMs: number;
  /** UIDs of Jobs deleted while the informer cache may still show them, so they are not deleted twice. */
  readonly deletedJobs: Set<string>;
}

/** How soon a reconcile is tried again while the Module caches are still filling. */
const CACHE_SYNC_WAIT_MS = 200;

/**
 * A new resource whose release is still being resolved gets its first status this long after it was seen, unless
 * the kernel is known sooner: a large status is slow to store, and writing every entry as queued just before
 * writing it again with the kernel costs a write for nothing.
 */
const FIRST_WRITE_GRACE_MS = 1_500;

export interface ReconcileResult {
  /** Reconcile again after this long (the next retry or release resolution), if anything is pending. */
  readonly requeueAfterMs?: number;
  /** Whether the status was written. */
  readonly wrote: boolean;
}

const MAX_CONFLICT_RETRIES = 5;

export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #states = new Map<string, ResourceState>();
  /** The object each status write returned, so the next reconcile need not read it back. */
  readonly #lastWritten = new Map<string, PreflightValidationOCP>();
  /** Shutting down: no validation starts and no Job is deleted. */
  #stopping = false;

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
  }

  /** Validations running or waiting for a slot, over all resources. */
  get inFlight(): number {
    let count = 0;
    for (const state of this.#states.values()) count += state.inFlight.size;
    return count;
  }

  reconcile(name: string): Promise<ReconcileResult> {
    return this.#reconcile(name, false);
  }

  /**
   * Shutdown, first step: abandons the validations in flight (the next leader runs them again) and starts no
   * more; results already in are kept for `flush`.
   */
  stopValidating(): void {
    this.#stopping = true;
    for (const state of this.#states.values()) {
      for (const { controller } of state.inFlight.values()) controller.abort();
      state.inFlight.clear();
    }
  }

  /**
   * Shutdown, second step: one status write per resource holding results not written yet, all at once. Resolves
   * with the number of resources written; a failed write is logged (the next leader validates those modules
   * again). Call after the reconcile workers have stopped.
   */
  async flush(): Promise<number> {
    const pending = [...this.#states].filter(([, state]) => state.results.length > 0);
    const written = await Promise.all(
      pending.map(async ([name, state]) => {
        try {
          return (await this.#reconcile(name, true)).wrote;
        } catch (err) {
          this.#deps.logger.warn(
            { resource: name, results: state.results.length, err: errorMessage(err) },
            'could not write the last results at shutdown',
          );
          return false;
        }
      }),
    );
    return written.filter(Boolean).length;
  }

  /** `flushing`: fold the results in and write; start, resolve and delete nothing. */
  async #reconcile(name: string, flushing: boolean): Promise<ReconcileResult> {
    const { resources, kernels, now } = this.#deps;
    let resource = await this.#current(name);
    if (resource === undefined || resource.metadata.deletionTimestamp !== undefined) {
      this.#forget(name);
      return { wrote: false };
    }
    if (this.#deps.modulesSynced?.() === false) return { wrote: false, requeueAfterMs: CACHE_SYNC_WAIT_MS };
    const state = this.#stateFor(name, resource);
    const generation = resource.metadata.generation ?? 1;
    const recorded = recordedKernel(resource, generation);
    if (recorded !== undefined) kernels.remember(resource.spec, recorded);
    const { kernel, nextCheckInMs } = flushing
      ? { kernel: kernels.known(resource.spec), nextCheckInMs: undefined }
      : kernels.stateFor(resource.spec, name);

    const modules = this.#deps.modules().filter((m) => m.metadata.deletionTimestamp === undefined);
    const identities = modules.map(identityOf);
    const resolved = kernel.state === 'resolved' ? kernel : undefined;
    const targetKernel = resolved?.targetKernel;
    this.#abortStale(state, identities, generation, targetKernel);
    // Read at each use: stopValidating() may come while this reconcile waits on the API server, and from then on
    // nothing may start or be deleted.
    const active = (): boolean => !flushing && !this.#stopping;

    let wrote = false;
    let requeueAfterMs = nextCheckInMs;
    let status: PreflightValidationOCPStatus;
    for (let attempt = 0; ; attempt += 1) {
      const results = state.results.slice();
      const decision = computeStatus(
        { generation, kernel, mode: 'continuous' },
        identities,
        resource.status,
        results,
        new Date(now()),
      );
      status = decision.status;
      // Validations start before the write: a large status takes the API server a while to store, and the
      // checks need not wait for it.
      if (resolved !== undefined && active()) {
        const nextDueMs = this.#startDue(name, resource, state, modules, status, generation, resolved);
        if (nextDueMs !== undefined) requeueAfterMs = minDefined(requeueAfterMs, nextDueMs - now());
      }
      if (!decision.changed) {
        state.results.splice(0, results.length);
        break;
      }
      const graceLeft = state.firstSeenMs + FIRST_WRITE_GRACE_MS - now();
      if (resource.status === undefined && kernel.state === 'pending' && graceLeft > 0) {
        requeueAfterMs = minDefined(requeueAfterMs, graceLeft);
        break;
      }
      try {
        resource = await resources.replaceStatus(resource, status);
        this.#lastWritten.set(name, resource);
        this.#deps.metrics.statusWrites.inc({ result: 'ok' });
        state.results.splice(0, results.length);
        wrote = true;
        this.#announce(resource, decision.transitions, status);
        break;
      } catch (err) {
        this.#lastWritten.delete(name);
        if (!isConflict(err) || attempt >= MAX_CONFLICT_RETRIES) {
          this.#deps.metrics.statusWrites.inc({ result: 'error' });
          throw err;
        }
        this.#deps.metrics.statusWrites.inc({ result: 'conflict' });
        const fresh = await resources.get(name);
        if (fresh === undefined) {
          this.#forget(name);
          return { wrote };
        }
        resource = fresh;
      }
    }
    if (!active()) return { wrote };
    await this.#deleteUnwantedJobs(resource, state, identities, status);
    return requeueAfterMs === undefined ? { wrote } : { wrote, requeueAfterMs: Math.max(0, requeueAfterMs) };
  }

  /**
   * The resource to build on: what this runner wrote last, unless the cache shows a newer spec or another object
   * of that name; else the cached object; else a read. A stale base only costs a 409 and a fresh read.
   */
  async #current(name: string): Promise<PreflightValidationOCP | undefined> {
    const cached = this.#deps.cached(name);
    const written = this.#lastWritten.get(name);
    if (
      written !== undefined &&
      cached !== undefined &&
      cached.metadata.uid === written.metadata.uid &&
      (cached.metadata.generation ?? 1) <= (written.metadata.generation ?? 1) &&
      cached.metadata.deletionTimestamp === undefined
    ) {
      return written;
    }
    this.#lastWritten.delete(name);
    return cached ?? (await this.#deps.resources.get(name));
  }

  /** Starts the validations that are due; returns when the next one falls due, if any. */
  #startDue(
    name: string,
    resource: PreflightValidationOCP,
    state: ResourceState,
    modules: readonly Module[],
    status: PreflightValidationOCPStatus,
    generation: number,
    kernel: ResolvedKernel,
  ): number | undefined {
    const { targetKernel } = kernel;
    const basisOf = (m: ModuleIdentity): ValidationBasis => ({
      resourceGeneration: generation,
      moduleGeneration: m.generation,
      targetKernel,
    });
    const plan = planValidations(
      status.modules ?? [],
      modules.map(identityOf),
      basisOf,
      state.schedule,
      new Set(state.inFlight.keys()),
      this.#deps.now(),
    );
    const byKey = new Map(modules.map((m) => [moduleKey(identityOf(m)), m]));
    for (const due of plan.due) {
      const module = byKey.get(moduleKey(due));
      if (module !== undefined) this.#start(name, resource, state, module, basisOf(due), kernel);
    }
    return plan.nextDueMs;
  }

  /**
   * A Build or Sign Job of `module` changed: a validation waiting for it is due now, not at the next poll. The
   * resource is queued either way (a Job of a Module it does not know yet is harmless).
   */
  jobChanged(name: string, module: { readonly namespace: string; readonly name: string }): void {
    const schedule = this.#states.get(name)?.schedule;
    const key = moduleKey(module);
    const attempt = schedule?.get(key);
    if (schedule !== undefined && attempt !== undefined)
      schedule.set(key, afterJobEvent(attempt, this.#deps.now()));
    this.#deps.queue.add(name);
  }

  /** Abandons every validation and every result not written (leadership lost, or after `flush`). */
  stop(): void {
    this.#stopping = true;
    for (const name of [...this.#states.keys()]) this.#forget(name);
  }

  #stateFor(name: string, resource: PreflightValidationOCP): ResourceState {
    const existing = this.#states.get(name);
    // A resource deleted and created again under the same name starts afresh.
    if (existing !== undefined && existing.uid === resource.metadata.uid) return existing;
    if (existing !== undefined) this.#forget(name);
    const state: ResourceState = {
      uid: resource.metadata.uid,
      inFlight: new Map(),
      results: [],
      schedule: new Map(),
      firstSeenMs: this.#deps.now(),
      deletedJobs: new Set(),
    };
    this.#states.set(name, state);
    return state;
  }

  #forget(name: string): void {
    this.#lastWritten.delete(name);
    const state = this.#states.get(name);
    if (state === undefined) return;
    for (const { controller } of state.inFlight.values()) controller.abort();
    this.#states.delete(name);
  }

  /** Validations whose Module changed, went away, or whose resource or kernel moved are abandoned. */
  #abortStale(
    state: ResourceState,
    modules: readonly ModuleIdentity[],
    generation: number,
    targetKernel: string | undefined,
  ): void {
    const current = new Map(modules.map((m) => [moduleKey(m), m]));
    for (const [key, running] of state.inFlight) {
      const module = current.get(key);
      const stale =
        module === undefined ||
        targetKernel === undefined ||
        !sameBasis(running.basis, {
          resourceGeneration: generation,
          moduleGeneration: module.generation,
          targetKernel,
        });
      if (stale) {
        running.controller.abort();
        state.inFlight.delete(key);
      }
    }
  }

  /**
   * Level-triggered clean-up: the resource's Jobs of Modules that are gone, and those its verdicts no longer need,
   * are deleted now. A failed delete fails the reconcile, which is retried with backoff and finds the Job again.
   */
  async #deleteUnwantedJobs(
    resource: PreflightValidationOCP,
    state: ResourceState,
    modules: readonly ModuleIdentity[],
    status: PreflightValidationOCPStatus,
  ): Promise<void> {
    const { jobs, logger } = this.#deps;
    const { name, uid } = resource.metadata;
    if (jobs === undefined || uid === undefined) return;
    const listed = jobs.list();
    const present = new Set(listed.map((job) => job.metadata.uid));
    for (const deleted of state.deletedJobs) if (!present.has(deleted)) state.deletedJobs.delete(deleted);
    const unwanted = unwantedJobs({
      owner: { apiVersion: KMM_API_VERSION, kind: PREFLIGHT_KIND, name, uid },
      jobs: listed.filter((job) => !state.deletedJobs.has(job.metadata.uid ?? '')),
      modules,
      entries: status.modules ?? [],
      busy: new Set([...state.inFlight.keys(), ...state.results.map(moduleKey)]),
    });
    const failures: string[] = [];
    await Promise.all(
      unwanted.map(async ({ job, module, why }) => {
        const { namespace, name: jobName, uid: jobUid } = job.metadata;
        if (jobUid === undefined) return;
        try {
          await jobs.delete(namespace, jobName, jobUid);
          state.deletedJobs.add(jobUid);
          logger.info({ resource: name, module, job: `${namespace}/${jobName}`, why }, 'deleted a Job');
        } catch (err) {
          failures.push(`${namespace}/${jobName} (${why}): ${errorMessage(err)}`);
        }
      }),
    );
    if (failures.length > 0) throw new JobCleanupError(name, failures);
  }

  #start(
    name: string,
    resource: PreflightValidationOCP,
    state: ResourceState,
    module: Module,
    basis: ValidationBasis,
    kernel: ResolvedKernel,
  ): void {
    const { pool, validate, metrics, queue, now, config, logger } = this.#deps;
    const key = moduleKey(identityOf(module));
    const rerunFailed = rerunsFailedJob(state.schedule.get(key), basis);
    const controller = new AbortController();
    state.inFlight.set(key, { controller, basis });
    const owner = resource.metadata.uid === undefined ? { name } : { name, uid: resource.metadata.uid };
    pool.submit(async () => {
      if (controller.signal.aborted) return;
      metrics.validationsInFlight.inc();
      const started = now();
      let outcome: StageOutcome;
      try {
        outcome = await validate({
          module,
          kernel: kernel.targetKernel,
          pushBuiltImage: resource.spec.pushBuiltImage === true,
          platform: config.platform,
          owner,
          ...(kernel.dtkImage === undefined ? {} : { driverToolkitImage: kernel.dtkImage }),
          ...(rerunFailed ? { rerunFailed } : {}),
          signal: AbortSignal.any([controller.signal, AbortSignal.timeout(config.validationTimeoutMs)]),
        });
      } catch (err) {
        outcome = StageOutcomes.requeued(`validation failed: ${errorMessage(err)}`, 'Image');
      } finally {
        metrics.validationsInFlight.dec();
      }
      if (controller.signal.aborted || state.inFlight.get(key)?.controller !== controller) return;
      state.inFlight.delete(key);
      state.results.push({
        namespace: refOf(module).namespace,
        name: module.metadata.name,
        moduleGeneration: basis.moduleGeneration,
        resourceGeneration: basis.resourceGeneration,
        targetKernel: basis.targetKernel,
        outcome,
      });
      state.schedule.set(key, afterOutcome(outcome, basis, state.schedule.get(key), now(), config.schedule));
      metrics.moduleVerdicts.inc({ status: outcome.verificationStatus, stage: outcome.verificationStage });
      logger.debug(
        {
          resource: name,
          module: key,
          status: outcome.verificationStatus,
          stage: outcome.verificationStage,
          ms: now() - started,
        },
        'module validated',
      );
      queue.addAfter(name, config.batchDelayMs);
    });
  }

  #announce(
    resource: PreflightValidationOCP,
    transitions: StatusTransitions,
    status: PreflightValidationOCPStatus,
  ): void {
    const { events, logger } = this.#deps;
    const name = resource.metadata.name;
    const condition = (type: string) => status.conditions?.find((c) => c.type === type);
    if (transitions.kernelResolved) {
      const message = condition(PreflightConditionType.KernelResolved)?.message ?? 'kernel resolved';
      events.emit(resource, 'Normal', 'KernelResolved', message);
      logger.info({ resource: name, kernel: status.targetKernel }, message);
    }
    if (transitions.verified.length > 0) {
      events.emit(resource, 'Normal', 'ModuleVerified', summarize('verified', transitions.verified));
      logger.info({ resource: name, modules: transitions.verified.length }, 'modules verified');
    }
    if (transitions.failed.length > 0) {
      const listed = transitions.failed.map(({ key, reason }) => `${key}: ${reason}`);
      events.emit(resource, 'Warning', 'ModuleFailed', summarize('failed validation', listed));
      for (const { key, reason } of transitions.failed) {
        logger.info({ resource: name, module: key, reason }, 'module failed validation');
      }
    }
    if (transitions.completed) {
      const message = condition(PreflightConditionType.Complete)?.message ?? 'validation complete';
      events.emit(resource, 'Normal', 'ValidationComplete', message);
      logger.info({ resource: name, total: status.total }, message);
    }
  }
}

function identityOf(module: Module): ModuleIdentity {
  return { ...refOf(module), generation: module.metadata.generation ?? 1 };
}

function refOf(module: Module): { namespace: string; name: string } {
  return { namespace: module.metadata.namespace, name: module.metadata.name };
}

/** The kernel this runner (or another replica) already wrote for this generation. */
function recordedKernel(resource: PreflightValidationOCP, generation: number): ResolvedKernel | undefined {
  const status = resource.status;
  const resolved = status?.conditions?.find((c) => c.type === PreflightConditionType.KernelResolved);
  if (
    status?.observedGeneration !== generation ||
    resolved?.status !== 'True' ||
    status.targetKernel === undefined ||
    status.kernelVersion === undefined
  ) {
    return undefined;
  }
  const optional = {
    rtKernelVersion: status.rtKernelVersion,
    dtkImage: status.dtkImage,
    releaseVersion: status.releaseVersion,
    releaseDigest: status.releaseDigest,
  };
  return {
    state: 'resolved',
    targetKernel: status.targetKernel,
    kernelVersion: status.kernelVersion,
    ...Object.fromEntries(Object.entries(optional).filter(([, v]) => v !== undefined)),
  };
}

const LISTED_IN_EVENT = 10;

function summarize(what: string, items: readonly string[]): string {
  const shown = items.slice(0, LISTED_IN_EVENT).join('; ');
  const more = items.length > LISTED_IN_EVENT ? `; and ${items.length - LISTED_IN_EVENT} more` : '';
  return `${items.length} Module${items.length === 1 ? '' : 's'} ${what}: ${shown}${more}`;
}

function minDefined(a: number | undefined, b: number): number {
  return a === undefined ? b : Math.min(a, b);
}
