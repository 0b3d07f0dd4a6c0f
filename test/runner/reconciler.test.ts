import { expect } from 'chai';
import type { Module } from '../../src/api/module.ts';
import type { PreflightValidationOCP, PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { KubeApiError } from '../../src/platform/kube/client.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { createRunnerMetrics } from '../../src/platform/metrics.ts';
import type { ValidationRequest } from '../../src/preflight/engine.ts';
import { StageOutcomes, type StageOutcome } from '../../src/preflight/outcome.ts';
import { KernelCache, type ReleaseResolver } from '../../src/runner/kernels.ts';
import { TaskPool } from '../../src/runner/pool.ts';
import {
  Reconciler,
  type EventSink,
  type ModuleJobs,
  type PreflightResources,
} from '../../src/runner/reconciler.ts';
import { WorkQueue } from '../../src/runner/work-queue.ts';

const K = '5.14.0-427.13.1.el9_4.x86_64';

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

/** The Jobs each (owner, module) holds, as BuildSignStage.removeModuleJobs sees them. */
class MemoryModuleJobs implements ModuleJobs {
  readonly jobs = new Map<string, number>();
  readonly removals: string[] = [];
  removeModuleJobs(owner: { name: string; uid: string }, module: { namespace: string; name: string }) {
    const key = `${owner.name}/${owner.uid}/${module.namespace}/${module.name}`;
    this.removals.push(key);
    const count = this.jobs.get(key) ?? 0;
    this.jobs.delete(key);
    return Promise.resolve(count);
  }
}

function setup(options: {
  validate: (request: ValidationRequest) => Promise<StageOutcome>;
  modules: Module[];
  moduleJobs?: ModuleJobs;
  modulesSynced?: () => boolean;
  retryIntervalMs?: number;
  waitingPollMs?: number;
}) {
  const resources = new MemoryResources();
  /** Added to the wall clock, to step past the first-write grace. */
  const clock = { offsetMs: 0 };
  const events: string[] = [];
  const sink: EventSink = { emit: (_r, _t, reason) => events.push(reason) };
  const queue = new WorkQueue({ baseMs: 10, maxMs: 100, jitter: 0 });
  let resolveRelease: () => void = () => undefined;
  const resolver: ReleaseResolver = () =>
    new Promise((resolve) => {
      resolveRelease = () =>
        resolve({
          state: 'resolved',
          targetKernel: K,
          kernelVersion: K,
          releaseVersion: '4.19.0',
          dtkImage: 'reg/dtk@sha256:d',
        });
    });
  const kernels = new KernelCache(resolver, { baseMs: 10, maxMs: 100, jitter: 0 });
  kernels.onSettled((name) => queue.add(name));
  const reconciler = new Reconciler({
    resources,
    cached: () => structuredClone(resources.resource),
    modules: () => options.modules,
    ...(options.moduleJobs === undefined ? {} : { moduleJobs: options.moduleJobs }),
    ...(options.modulesSynced === undefined ? {} : { modulesSynced: options.modulesSynced }),
    validate: options.validate,
    kernels,
    events: sink,
    queue,
    pool: new TaskPool(4),
    logger: createLogger({ level: 'silent' }),
    metrics: createRunnerMetrics({ defaultMetrics: false }),
    now: () => Date.now() + clock.offsetMs,
    config: {
      platform: { os: 'linux', architecture: 'amd64' },
      schedule: {
        retryIntervalMs: options.retryIntervalMs ?? 60_000,
        backoff: { baseMs: 10, maxMs: 100, jitter: 0 },
        waitingPollMs: options.waitingPollMs ?? 1_000,
      },
      batchDelayMs: 20,
      validationTimeoutMs: 5_000,
    },
  });
  return { resources, events, queue, reconciler, clock, resolveRelease: () => resolveRelease() };
}

/** Runs reconciles as the worker would, until `done()` holds. */
async function driveUntil(
  queue: WorkQueue,
  reconciler: Reconciler,
  done: () => boolean,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    const key = await Promise.race([
      queue.get(),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 50)),
    ]);
    if (key === undefined) continue;
    const result = await reconciler.reconcile(key);
    if (result.requeueAfterMs !== undefined) queue.addAfter(key, result.requeueAfterMs);
    queue.done(key);
  }
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
    await t.reconciler.reconcile('pf');
    t.resolveRelease();
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.failed === 2);
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
    await t.reconciler.reconcile('pf');
    t.resolveRelease();
    await driveUntil(t.queue, t.reconciler, () => calls === 1);
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

  it('removes the Jobs of a deleted Module when its entry is pruned, and only those', async () => {
    const modules = [moduleNamed('ns', 'kept'), moduleNamed('ns', 'gone')];
    const moduleJobs = new MemoryModuleJobs();
    moduleJobs.jobs.set('pf/u1/ns/gone', 2);
    moduleJobs.jobs.set('pf/u1/ns/kept', 1);
    const t = setup({
      modules,
      moduleJobs,
      validate: () => Promise.resolve(StageOutcomes.waiting('Build', 'Job running')),
    });
    await t.reconciler.reconcile('pf');
    t.resolveRelease();
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.modules?.length === 2);
    expect(moduleJobs.removals, 'nothing pruned yet').to.deep.equal([]);
    modules.splice(1, 1);
    t.queue.add('pf');
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.modules?.length === 1);
    await driveUntil(t.queue, t.reconciler, () => moduleJobs.removals.length === 1);
    expect(moduleJobs.removals).to.deep.equal(['pf/u1/ns/gone']);
    expect([...moduleJobs.jobs.keys()]).to.deep.equal(['pf/u1/ns/kept']);
    await t.reconciler.reconcile('pf');
    expect(moduleJobs.removals, 'an entry already pruned is not removed again').to.have.length(1);
    t.reconciler.stop();
  });

  it('does nothing until the Module caches are synced (an empty cache would prune every entry)', async () => {
    let synced = false;
    const moduleJobs = new MemoryModuleJobs();
    const modules = [moduleNamed('ns', 'a')];
    const t = setup({
      modules,
      moduleJobs,
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
    expect(moduleJobs.removals).to.deep.equal([]);
    expect(t.resources.writes).to.have.length(0);
    synced = true;
    modules.push(moduleNamed('ns', 'a'));
    await t.reconciler.reconcile('pf');
    t.resolveRelease();
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 1);
    expect(moduleJobs.removals).to.deep.equal([]);
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
    await t.reconciler.reconcile('pf');
    t.resolveRelease();
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 1);
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
    await t.reconciler.reconcile('pf');
    t.resolveRelease();
    await driveUntil(
      t.queue,
      t.reconciler,
      () => t.resources.resource.status?.modules?.[0]?.verificationStage === 'Build',
    );
    expect(calls).to.equal(1);
    jobDone = true;
    t.reconciler.jobChanged('pf', { namespace: 'ns', name: 'a' });
    await driveUntil(t.queue, t.reconciler, () => t.resources.resource.status?.verified === 1);
    const byName = Object.fromEntries((t.resources.resource.status?.modules ?? []).map((m) => [m.name, m]));
    expect(byName['a']).to.include({ verificationStatus: 'True' });
    expect(byName['b'], 'b waits for its own Job').to.include({ verificationStage: 'Build' });
    expect(calls).to.equal(2);
  });
});
