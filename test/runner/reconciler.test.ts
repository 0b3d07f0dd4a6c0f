import { expect } from 'chai';
import type { Module } from '../../src/api/module.ts';
import type { PreflightValidationOCP, PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { KubeApiError } from '../../src/platform/kube/client.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { createRunnerMetrics } from '../../src/platform/metrics.ts';
import type { ValidationRequest } from '../../src/preflight/engine.ts';
import { StageOutcomes, type StageOutcome } from '../../src/preflight/outcome.ts';
import type { Job } from '../../src/buildsign/kube-types.ts';
import { ReleaseError } from '../../src/release/errors.ts';
import { KernelCache, type ResolvedKernel, type ReleaseResolver } from '../../src/runner/kernels.ts';
import { TaskPool } from '../../src/runner/pool.ts';
import {
  JobCleanupError,
  Reconciler,
  type EventSink,
  type PreflightResources,
  type RunnerJobs,
} from '../../src/runner/reconciler.ts';
import { shutDown } from '../../src/runner/shutdown.ts';
import { fixtureJob, type FixtureJobState } from './job-fixture.ts';
import { WorkQueue } from '../../src/runner/work-queue.ts';

const K = '5.14.0-427.13.1.el9_4.x86_64';
const K2 = '5.14.0-500.el9.x86_64';
const RESOLVED: ResolvedKernel = {
  state: 'resolved',
  targetKernel: K,
  kernelVersion: K,
  releaseVersion: '4.19.0',
  dtkImage: 'reg/dtk@sha256:d',
  releaseDigest: 'sha256:r1',
};

/** The resource as the API server keeps it: resourceVersion bumps on every write, stale writes get 409. */
class MemoryResources implements PreflightResources {
  resource: PreflightValidationOCP;
  writes: PreflightValidationOCPStatus[] = [];
  conflictsToInject = 0;
  #rv = 1;
  constructor() {
    this.resource = {
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'PreflightValidationOCP',
      metadata: { name: 'pf', uid: 'u1', generation: 1, resourceVersion: '1' },
      spec: { releaseImage: 'reg/release:1' },
    };
  }
  get(): Promise<PreflightValidationOCP | undefined> {
    return Promise.resolve(structuredClone(this.resource));
  }
  replaceStatus(resource: PreflightValidationOCP, status: PreflightValidationOCPStatus) {
    if (this.conflictsToInject > 0) {
      this.conflictsToInject -= 1;
      this.#bump();
      return Promise.reject(new KubeApiError(409, 'conflict', 'Conflict'));
    }
    if (resource.metadata.resourceVersion !== this.resource.metadata.resourceVersion) {
      return Promise.reject(new KubeApiError(409, 'conflict', 'Conflict'));
    }
    this.writes.push(status);
    this.resource = { ...this.resource, status };
    this.#bump();
    return this.get() as Promise<PreflightValidationOCP>;
  }
  #bump(): void {
    this.#rv += 1;
    this.resource = {
      ...this.resource,
      metadata: { ...this.resource.metadata, resourceVersion: String(this.#rv) },
    };
  }
}

const moduleNamed = (namespace: string, name: string, generation = 1): Module => ({
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'Module',
  metadata: { namespace, name, generation },
  spec: { selector: {} },
});

/** The runner's Jobs as its informer cache holds them; deletes may be told to fail. */
class MemoryJobs implements RunnerJobs {
  readonly jobs: Job[] = [];
  readonly deleteCalls: string[] = [];
  failingDeletes = 0;
  add(name: string, module: string, state: FixtureJobState): void {
    this.jobs.push(fixtureJob(name, module, state));
  }
  names(): string[] {
    return this.jobs.map((j) => j.metadata.name);
  }
  list(): readonly Job[] {
    return this.jobs;
  }
  delete(namespace: string, name: string, uid: string): Promise<void> {
    this.deleteCalls.push(`${namespace}/${name}`);
    if (this.failingDeletes > 0) {
      this.failingDeletes -= 1;
      return Promise.reject(new KubeApiError(0, `DELETE ${name}: connection refused`));
    }
    const index = this.jobs.findIndex((j) => j.metadata.uid === uid);
    if (index >= 0) this.jobs.splice(index, 1);
    return Promise.resolve();
  }
}

function setup(options: {
  validate: (request: ValidationRequest) => Promise<StageOutcome>;
  modules: Module[];
  jobs?: RunnerJobs;
  modulesSynced?: () => boolean;
  retryIntervalMs?: number;
  waitingPollMs?: number;
  batchDelayMs?: number;
  /** Answers release resolution; by default it waits for resolveRelease(). */
  resolver?: ReleaseResolver;
  recheckIntervalMs?: number;
}) {
  const resources = new MemoryResources();
  /** Added to the wall clock, to step past the first-write grace. */
  const clock = { offsetMs: 0 };
  const events: string[] = [];
  const sink: EventSink = { emit: (_r, _t, reason) => events.push(reason) };
  const queue = new WorkQueue({ baseMs: 10, maxMs: 100, jitter: 0 });
  let resolveRelease: () => void = () => undefined;
  const resolver: ReleaseResolver =
    options.resolver ??
    (() =>
      new Promise((resolve) => {
        resolveRelease = () => resolve(RESOLVED);
      }));
  const now = () => Date.now() + clock.offsetMs;
  const kernels = new KernelCache({
    resolve: resolver,
    backoff: { baseMs: 10, maxMs: 100, jitter: 0 },
    recheckIntervalMs: options.recheckIntervalMs ?? 600_000,
    now,
  });
  kernels.onSettled((name) => queue.add(name));
  const reconciler = new Reconciler({
    resources,
    cached: () => structuredClone(resources.resource),
    modules: () => options.modules,
    ...(options.jobs === undefined ? {} : { jobs: options.jobs }),
    ...(options.modulesSynced === undefined ? {} : { modulesSynced: options.modulesSynced }),
    validate: options.validate,
    kernels,
    events: sink,
    queue,
    pool: new TaskPool(4),
    logger: createLogger({ level: 'silent' }),
    metrics: createRunnerMetrics({ defaultMetrics: false }),
    now,
    config: {
      platform: { os: 'linux', architecture: 'amd64' },
      schedule: {
        retryIntervalMs: options.retryIntervalMs ?? 60_000,
        backoff: { baseMs: 10, maxMs: 100, jitter: 0 },
        waitingPollMs: options.waitingPollMs ?? 1_000,
      },
      batchDelayMs: options.batchDelayMs ?? 20,
      validationTimeoutMs: 5_000,
    },
  });
  return { resources, events, queue, reconciler, clock, resolveRelease: () => resolveRelease() };
}

/**
 * The key request each queue has outstanding. A request that lost its race against the poll interval is kept for
 * the next round: the queue would hand the next key to it, and a request nobody awaits would swallow that key.
 */
const outstanding = new WeakMap<WorkQueue, Promise<string | undefined>>();

/** Runs reconciles as the worker would (a failed one is retried with backoff), until `done()` holds. */
async function driveUntil(
  queue: WorkQueue,
  reconciler: Reconciler,
  done: () => boolean,
  errors?: unknown[],
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    const next = outstanding.get(queue) ?? queue.get();
    outstanding.set(queue, next);
    const key = await Promise.race([next, new Promise<undefined>((r) => setTimeout(() => r(undefined), 50))]);
    if (key === undefined) continue;
    outstanding.delete(queue);
    try {
      const result = await reconciler.reconcile(key);
      queue.forget(key);
      if (result.requeueAfterMs !== undefined) queue.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      errors?.push(err);
      queue.addRateLimited(key);
    } finally {
      queue.done(key);
    }
  }
}

/** The first reconcile, the release resolved, then reconciles until `done()` holds. */
async function startUntil(t: ReturnType<typeof setup>, done: () => boolean): Promise<void> {
  await t.reconciler.reconcile('pf');
  t.resolveRelease();
  await driveUntil(t.queue, t.reconciler, done);
}

describe('runner: Reconciler', () => {
  it('adds queued entries before the kernel is known, then validates and writes results in batches', async () => {
    const modules = Array.from({ length: 40 }, (_, i) => moduleNamed(i % 2 === 0 ? 'ns-a' : 'ns-b', `m${i}`));
    const validated: string[] = [];
    const t = setup({
      modules,
      validate: async (request) => {
        validated.push(`${request.module.metadata.namespace}/${request.module.metadata.name}`);
        await new Promise((r) => setTimeout(r, 5));
        return StageOutcomes.verified('module found');
      },
    });
    const first = await t.reconciler.reconcile('pf');
    expect(first.wrote, 'a new resource waits briefly for its kernel before the first write').to.equal(false);
    expect(first.requeueAfterMs).to.be.within(1, 1_500);
    t.clock.offsetMs = 1_500;
    const second = await t.reconciler.reconcile('pf');
    expect(second.wrote, 'then shows its entries as queued').to.equal(true);
    const queued = t.resources.writes[0];
    expect(queued?.modules).to.have.length(40);
    expect(queued?.conditions?.find((c) => c.type === 'KernelResolved')?.status).to.equal('Unknown');
    expect(validated, 'nothing runs before the kernel is known').to.have.length(0);

    t.resolveRelease();
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 40);
    expect(new Set(validated).size).to.equal(40);
    expect(validated, 'each module validated once').to.have.length(40);
    const status = t.resources.resource.status;
    expect(status).to.include({ total: 40, verified: 40, failed: 0, progress: '40/40', targetKernel: K });
    expect(status?.conditions?.find((c) => c.type === 'Complete')?.status).to.equal('True');
    expect(t.resources.writes.length, 'results folded into few writes').to.be.at.most(8);
    expect(t.events).to.include.members(['KernelResolved', 'ModuleVerified', 'ValidationComplete']);

    const again = await t.reconciler.reconcile('pf');
    expect(again.wrote, 'nothing changed: no write').to.equal(false);
  });

  it('a slow module does not hold up the others', async () => {
    const modules = [moduleNamed('ns', 'slow'), moduleNamed('ns', 'fast1'), moduleNamed('ns', 'fast2')];
    const t = setup({
      modules,
      validate: (request) =>
        request.module.metadata.name === 'slow'
          ? new Promise<StageOutcome>(() => undefined)
          : Promise.resolve(StageOutcomes.failedAt('Image', 'image missing')),
    });
    await startUntil(t, () => t.resources.resource.status?.failed === 2);
    const slow = t.resources.resource.status?.modules?.find((m) => m.name === 'slow');
    expect(slow).to.include({ verificationStatus: 'False', verificationStage: 'Image' });
    expect(slow).to.not.have.property('observedGeneration');
    t.reconciler.stop();
  });

  it('retries a status write on 409 with a fresh read', async () => {
    const t = setup({
      modules: [moduleNamed('ns', 'a')],
      validate: () => Promise.resolve(StageOutcomes.verified('ok')),
    });
    await t.reconciler.reconcile('pf');
    t.clock.offsetMs = 1_500;
    t.resources.conflictsToInject = 2;
    const result = await t.reconciler.reconcile('pf');
    expect(result.wrote).to.equal(true);
    expect(t.resources.writes).to.have.length(1);
  });

  it('a Module whose generation changed while it was validated is validated again; its stale result is dropped', async () => {
    const modules = [moduleNamed('ns', 'a', 1)];
    let calls = 0;
    let release: (outcome: StageOutcome) => void = () => undefined;
    const t = setup({
      modules,
      validate: () => {
        calls += 1;
        return calls === 1
          ? new Promise<StageOutcome>((resolve) => (release = resolve))
          : Promise.resolve(StageOutcomes.verified('ok at generation 2'));
      },
    });
    await startUntil(t, () => calls === 1);
    modules[0] = moduleNamed('ns', 'a', 2);
    t.queue.add('pf');
    await driveUntil(t.queue, t.reconciler, () => calls === 2);
    release(StageOutcomes.failedAt('Image', 'stale answer for generation 1'));
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 1);
    expect(t.resources.resource.status?.modules?.[0]).to.include({
      statusReason: 'ok at generation 2',
      observedGeneration: 2,
    });
  });

  it('deletes the Jobs of a deleted Module on every reconcile until they are gone, a failed delete included', async () => {
    const modules = [moduleNamed('ns', 'kept'), moduleNamed('ns', 'gone')];
    const jobs = new MemoryJobs();
    jobs.add('gone-build', 'ns/gone', 'running');
    jobs.add('gone-done', 'ns/gone', 'succeeded');
    jobs.add('kept-build', 'ns/kept', 'running');
    const t = setup({
      modules,
      jobs,
      validate: () => Promise.resolve(StageOutcomes.waiting('Build', 'Job running')),
    });
    await startUntil(t, () => t.resources.resource.status?.modules?.length === 2);
    expect(jobs.deleteCalls, 'every Job is wanted while its Module exists').to.deep.equal([]);

    jobs.failingDeletes = 3;
    modules.splice(1, 1);
    t.queue.add('pf');
    const errors: unknown[] = [];
    await driveUntil(t.queue, t.reconciler, () => jobs.names().length === 1, errors);
    expect(jobs.names()).to.deep.equal(['kept-build']);
    expect(t.resources.resource.status?.modules?.map((m) => m.name)).to.deep.equal(['kept']);
    expect(errors.length, 'each failed delete failed its reconcile').to.be.at.least(1);
    expect(errors[0]).to.be.instanceOf(JobCleanupError);
    expect((errors[0] as Error).message).to.include('connection refused');
    const attempts = jobs.deleteCalls.filter((c) => c === 'ns/gone-build').length;
    expect(attempts, 'retried until it went').to.be.at.least(2);

    const calls = jobs.deleteCalls.length;
    await t.reconciler.reconcile('pf');
    expect(jobs.deleteCalls, 'nothing left to delete').to.have.length(calls);
    t.reconciler.stop();
  });

  it('deletes the running Job of a module whose image became verified, and keeps a succeeded one', async () => {
    let imageThere = false;
    const jobs = new MemoryJobs();
    jobs.add('m-build-old', 'ns/m', 'succeeded');
    jobs.add('m-build', 'ns/m', 'running');
    const t = setup({
      modules: [moduleNamed('ns', 'm')],
      jobs,
      waitingPollMs: 600_000,
      validate: () =>
        Promise.resolve(
          imageThere ? StageOutcomes.verified('image found') : StageOutcomes.waiting('Build', 'Job running'),
        ),
    });
    await startUntil(t, () => t.resources.resource.status?.modules?.[0]?.verificationStage === 'Build');
    expect(jobs.names()).to.have.members(['m-build-old', 'm-build']);
    imageThere = true;
    t.reconciler.jobChanged('pf', { namespace: 'ns', name: 'm' });
    await driveUntil(t.queue, t.reconciler, () => !jobs.names().includes('m-build'));
    expect(t.resources.resource.status?.verified).to.equal(1);
    expect(jobs.names()).to.deep.equal(['m-build-old']);
  });

  it('does nothing until the Module caches are synced (an empty cache would prune every entry)', async () => {
    let synced = false;
    const jobs = new MemoryJobs();
    jobs.add('a-build', 'ns/a', 'succeeded');
    const modules = [moduleNamed('ns', 'a')];
    const t = setup({
      modules,
      jobs,
      modulesSynced: () => synced,
      validate: () => Promise.resolve(StageOutcomes.verified('ok')),
    });
    t.resources.resource = {
      ...t.resources.resource,
      status: {
        modules: [
          {
            namespace: 'ns',
            name: 'a',
            verificationStatus: 'False',
            verificationStage: 'Build',
            lastTransitionTime: '2026-01-01T00:00:00Z',
          },
        ],
      },
    };
    modules.splice(0, 1);
    const early = await t.reconciler.reconcile('pf');
    expect(early).to.deep.equal({ wrote: false, requeueAfterMs: 200 });
    expect(jobs.deleteCalls).to.deep.equal([]);
    expect(t.resources.writes).to.have.length(0);
    synced = true;
    modules.push(moduleNamed('ns', 'a'));
    await startUntil(t, () => t.resources.resource.status?.verified === 1);
    expect(jobs.deleteCalls, 'the Job of a Module that exists is not deleted as orphaned').to.deep.equal([]);
  });

  it('passes the release driver-toolkit image, and asks for a rerun only on the retry after a failed Job', async () => {
    const requests: ValidationRequest[] = [];
    const t = setup({
      modules: [moduleNamed('ns', 'a')],
      retryIntervalMs: 50,
      validate: (request) => {
        requests.push(request);
        return Promise.resolve(
          requests.length < 3
            ? StageOutcomes.failedAt('Build', 'Job ns/a-build failed: exit 1')
            : StageOutcomes.verified('built'),
        );
      },
    });
    await startUntil(t, () => t.resources.resource.status?.verified === 1);
    expect(requests.map((r) => r.driverToolkitImage)).to.deep.equal(Array(3).fill('reg/dtk@sha256:d'));
    expect(requests.map((r) => r.rerunFailed === true)).to.deep.equal([false, true, true]);
    expect(requests[0]?.owner).to.deep.equal({ name: 'pf', uid: 'u1' });
  });

  it('a Job event makes the module waiting for it due at once, not at the next poll', async () => {
    let jobDone = false;
    let calls = 0;
    const t = setup({
      modules: [moduleNamed('ns', 'a'), moduleNamed('ns', 'b')],
      waitingPollMs: 600_000,
      validate: (request) => {
        if (request.module.metadata.name === 'a') calls += 1;
        return Promise.resolve(
          jobDone ? StageOutcomes.verified('built') : StageOutcomes.waiting('Build', 'Job running'),
        );
      },
    });
    await startUntil(t, () => t.resources.resource.status?.modules?.[0]?.verificationStage === 'Build');
    expect(calls).to.equal(1);
    jobDone = true;
    t.reconciler.jobChanged('pf', { namespace: 'ns', name: 'a' });
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 1);
    const byName = Object.fromEntries((t.resources.resource.status?.modules ?? []).map((m) => [m.name, m]));
    expect(byName['a']).to.include({ verificationStatus: 'True' });
    expect(byName['b'], 'b waits for its own Job').to.include({ verificationStage: 'Build' });
    expect(calls).to.equal(2);
  });

  it('a release that fails to resolve is KernelResolved False with its reason, retried with backoff until it resolves', async () => {
    const attempts: number[] = [];
    const t = setup({
      modules: [moduleNamed('ns', 'a')],
      validate: () => Promise.resolve(StageOutcomes.verified('ok')),
      resolver: () => {
        attempts.push(Date.now());
        return attempts.length < 3
          ? Promise.reject(new ReleaseError('REGISTRY_UNAVAILABLE', 'reg: connection refused'))
          : Promise.resolve(RESOLVED);
      },
    });
    const kernelCondition = () =>
      t.resources.resource.status?.conditions?.find((c) => c.type === 'KernelResolved');
    t.queue.add('pf');
    await driveUntil(t.queue, t.reconciler, () => kernelCondition()?.status === 'False');
    expect(kernelCondition()).to.include({
      reason: 'RegistryUnavailable',
      message: 'reg: connection refused (retrying with backoff)',
    });
    expect(t.resources.resource.status?.modules?.[0]).to.include({
      verificationStatus: 'False',
      statusReason: 'queued: waiting for the target kernel (see condition KernelResolved)',
    });
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 1);
    expect(kernelCondition()).to.include({ status: 'True', reason: 'Resolved' });
    expect(attempts).to.have.length(3);
    // Backoff 10 ms then 20 ms (no jitter): the retries were not immediate.
    expect((attempts[2] ?? 0) - (attempts[0] ?? 0)).to.be.at.least(25);
  });

  it('a release tag that moved to another kernel validates every module again against it', async () => {
    let kernel = RESOLVED;
    const kernelsSeen: string[] = [];
    const t = setup({
      modules: [moduleNamed('ns', 'a'), moduleNamed('ns', 'b')],
      recheckIntervalMs: 60_000,
      resolver: () => Promise.resolve(kernel),
      validate: (request) => {
        kernelsSeen.push(request.kernel);
        return Promise.resolve(StageOutcomes.verified(`found for ${request.kernel}`));
      },
    });
    t.queue.add('pf');
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 2);
    const settled = await t.reconciler.reconcile('pf');
    expect(settled.requeueAfterMs, 'a tag is looked at again on the interval').to.be.within(1, 60_000);

    kernel = { ...RESOLVED, targetKernel: K2, kernelVersion: K2, releaseDigest: 'sha256:r2' };
    t.clock.offsetMs += 60_000;
    await t.reconciler.reconcile('pf');
    await driveUntil(
      t.queue,
      t.reconciler,
      () =>
        t.resources.resource.status?.targetKernel === K2 &&
        t.resources.resource.status.verified === 2 &&
        (t.resources.resource.status.modules ?? []).every((m) => m.statusReason === `found for ${K2}`),
    );
    expect(t.resources.resource.status?.releaseDigest).to.equal('sha256:r2');
    expect(kernelsSeen).to.deep.equal([K, K, K2, K2]);
  });

  it('at shutdown, results validated but not yet written are written in one final write; running ones are abandoned', async () => {
    let releaseSlow: (outcome: StageOutcome) => void = () => undefined;
    let slowSignal: AbortSignal | undefined;
    const t = setup({
      modules: [moduleNamed('ns', 'a'), moduleNamed('ns', 'b'), moduleNamed('ns', 'slow')],
      // Results would wait ten minutes for their batch: only the shutdown flush can write them.
      batchDelayMs: 600_000,
      validate: (request) => {
        if (request.module.metadata.name !== 'slow') return Promise.resolve(StageOutcomes.verified('ok'));
        slowSignal = request.signal;
        return new Promise((resolve) => (releaseSlow = resolve));
      },
    });
    await startUntil(t, () => t.resources.writes.length === 1);
    // a and b are validated; their results wait for the batch delay.
    await new Promise((r) => setTimeout(r, 50));
    expect(t.resources.resource.status?.verified).to.equal(0);

    t.queue.shutDown();
    t.reconciler.stopValidating();
    expect(slowSignal?.aborted, 'the validation still running is abandoned').to.equal(true);
    const report = await shutDown(
      {
        drain: () => Promise.resolve(),
        flush: () => t.reconciler.flush(),
        election: Promise.resolve(),
        close: () => Promise.resolve(),
      },
      5_000,
      createLogger({ level: 'silent' }),
    );
    releaseSlow(StageOutcomes.verified('too late'));
    expect(report).to.deep.equal({ flushed: 1, cutShort: [] });
    expect(t.resources.writes, 'one final write').to.have.length(2);
    const byName = Object.fromEntries((t.resources.resource.status?.modules ?? []).map((m) => [m.name, m]));
    expect(byName['a']).to.include({ verificationStatus: 'True' });
    expect(byName['b']).to.include({ verificationStatus: 'True' });
    expect(byName['slow']).to.include({ verificationStatus: 'False', verificationStage: 'Image' });
    expect(await t.reconciler.flush(), 'nothing left to write').to.equal(0);
  });
});
