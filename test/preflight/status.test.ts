import { expect } from 'chai';
import type { PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { StageOutcomes, type StageOutcome } from '../../src/preflight/outcome.ts';
import {
  computeStatus,
  QueuedReasons,
  type KernelState,
  type ModuleIdentity,
  type ModuleResult,
  type ResourceView,
  type ValidationMode,
} from '../../src/preflight/status.ts';

const K = '5.14.0-284.el9.x86_64';
const resolved: KernelState = {
  state: 'resolved',
  targetKernel: K,
  kernelVersion: K,
  releaseVersion: '4.16.3',
  releaseDigest: 'sha256:r',
  dtkImage: 'quay.io/dtk@sha256:d',
};
const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-01T00:01:00Z');
const t2 = new Date('2026-01-01T00:02:00Z');

const resource = (
  generation = 1,
  kernel: KernelState = resolved,
  mode: ValidationMode = 'continuous',
): ResourceView => ({ generation, kernel, mode });
const mod = (namespace: string, name: string, generation = 1): ModuleIdentity => ({
  namespace,
  name,
  generation,
});
const result = (
  m: ModuleIdentity,
  outcome: StageOutcome,
  extra: Partial<ModuleResult> = {},
): ModuleResult => ({
  namespace: m.namespace,
  name: m.name,
  moduleGeneration: m.generation,
  resourceGeneration: 1,
  targetKernel: K,
  outcome,
  ...extra,
});

const a = mod('ns1', 'drv');
const b = mod('ns2', 'drv');

/** The status after the first pass at t0 (no status before): the starting point of the transition tests. */
function firstStatus(
  view: ResourceView,
  modules: readonly ModuleIdentity[],
  results: readonly ModuleResult[],
): PreflightValidationOCPStatus {
  return computeStatus(view, modules, undefined, results, t0).status;
}

function entry(status: PreflightValidationOCPStatus, namespace: string, name: string) {
  const found = status.modules?.find((e) => e.namespace === namespace && e.name === name);
  if (found === undefined) throw new Error(`no entry ${namespace}/${name}`);
  return found;
}

describe('preflight status: computeStatus', () => {
  it('adds an entry per Module, same name in two namespaces, queued at Image, sorted by namespace/name', () => {
    const d = computeStatus(resource(), [b, a], undefined, [], t0);
    expect(d.changed).to.equal(true);
    expect(d.status.modules).to.deep.equal([
      {
        namespace: 'ns1',
        name: 'drv',
        verificationStatus: 'False',
        statusReason: QueuedReasons.new,
        verificationStage: 'Image',
        lastTransitionTime: t0.toISOString(),
      },
      {
        namespace: 'ns2',
        name: 'drv',
        verificationStatus: 'False',
        statusReason: QueuedReasons.new,
        verificationStage: 'Image',
        lastTransitionTime: t0.toISOString(),
      },
    ]);
    expect(d.status).to.include({
      observedGeneration: 1,
      total: 2,
      verified: 0,
      failed: 0,
      progress: '0/2',
      targetKernel: K,
      kernelVersion: K,
      releaseVersion: '4.16.3',
      releaseDigest: 'sha256:r',
      dtkImage: 'quay.io/dtk@sha256:d',
    });
    expect(d.transitions).to.deep.include({ kernelResolved: true, completed: false });
  });

  it('folds results in: verified and failed entries carry the Module generation they validated', () => {
    const s0 = firstStatus(resource(), [a, b], []);
    const d = computeStatus(
      resource(),
      [a, b],
      s0,
      [
        result(a, StageOutcomes.verified('module found')),
        result(b, StageOutcomes.failedAt('Image', 'no image')),
      ],
      t1,
    );
    expect(entry(d.status, 'ns1', 'drv')).to.deep.equal({
      namespace: 'ns1',
      name: 'drv',
      verificationStatus: 'True',
      statusReason: 'module found',
      verificationStage: 'Done',
      lastTransitionTime: t1.toISOString(),
      observedGeneration: 1,
    });
    expect(entry(d.status, 'ns2', 'drv')).to.include({
      verificationStatus: 'False',
      verificationStage: 'Image',
      lastTransitionTime: t0.toISOString(),
      observedGeneration: 1,
    });
    expect(d.status).to.include({ total: 2, verified: 1, failed: 1, progress: '1/2' });
    expect(d.transitions.verified).to.deep.equal(['ns1/drv']);
    expect(d.transitions.failed).to.deep.equal([{ key: 'ns2/drv', reason: 'no image' }]);
    const complete = d.status.conditions?.find((c) => c.type === 'Complete');
    expect(complete).to.include({ status: 'False', reason: 'ModulesFailed' });
  });

  it('pending outcomes (Requeued, a running Job) hold no verdict: not counted failed, no observedGeneration', () => {
    const s0 = firstStatus(resource(), [a, b], []);
    const d = computeStatus(
      resource(),
      [a, b],
      s0,
      [
        result(a, StageOutcomes.requeued('unreachable', 'Image')),
        result(b, StageOutcomes.waiting('Build', 'Job')),
      ],
      t1,
    );
    expect(entry(d.status, 'ns1', 'drv')).to.not.have.property('observedGeneration');
    expect(entry(d.status, 'ns1', 'drv')).to.include({
      verificationStage: 'Requeued',
      statusReason: 'unreachable (will retry)',
      lastTransitionTime: t1.toISOString(),
    });
    expect(entry(d.status, 'ns2', 'drv')).to.include({ verificationStage: 'Build' });
    expect(d.status).to.include({ failed: 0, verified: 0 });
    expect(d.status.conditions?.find((c) => c.type === 'Complete')).to.include({ reason: 'InProgress' });
    expect(d.transitions.failed).to.deep.equal([]);
  });

  it('Complete is True when every Module is verified, and stays true (no change, nothing to write)', () => {
    const s0 = firstStatus(resource(), [a, b], []);
    const d1 = computeStatus(
      resource(),
      [a, b],
      s0,
      [result(a, StageOutcomes.verified('ok')), result(b, StageOutcomes.verified('ok'))],
      t1,
    );
    expect(d1.status.conditions?.find((c) => c.type === 'Complete')).to.include({
      status: 'True',
      reason: 'AllVerified',
      lastTransitionTime: t1.toISOString(),
    });
    expect(d1.transitions.completed).to.equal(true);
    const d2 = computeStatus(resource(), [a, b], d1.status, [], t2);
    expect(d2.changed).to.equal(false);
    expect(d2.transitions).to.deep.equal({
      verified: [],
      failed: [],
      kernelResolved: false,
      completed: false,
    });
  });

  it('lastTransitionTime changes only when status or stage changes, not when only the reason changes', () => {
    const s0 = firstStatus(resource(), [a], []);
    const s1 = computeStatus(
      resource(),
      [a],
      s0,
      [result(a, StageOutcomes.failedAt('Image', 'no image'))],
      t1,
    ).status;
    const s2 = computeStatus(
      resource(),
      [a],
      s1,
      [result(a, StageOutcomes.failedAt('Image', 'no module'))],
      t2,
    );
    expect(entry(s2.status, 'ns1', 'drv')).to.include({
      statusReason: 'no module',
      lastTransitionTime: t0.toISOString(),
    });
    expect(s2.changed).to.equal(true);
    // A new failure reason is worth an event; the same one again is not.
    expect(s2.transitions.failed).to.deep.equal([{ key: 'ns1/drv', reason: 'no module' }]);
    const s3 = computeStatus(
      resource(),
      [a],
      s2.status,
      [result(a, StageOutcomes.failedAt('Build', 'no module'))],
      t2,
    );
    expect(entry(s3.status, 'ns1', 'drv')).to.include({ lastTransitionTime: t2.toISOString() });
  });

  it('prunes entries of deleted Modules and recounts', () => {
    const s0 = firstStatus(resource(), [a, b], [result(a, StageOutcomes.verified('ok'))]);
    const d = computeStatus(resource(), [b], s0, [], t1);
    expect(d.status.modules?.map((e) => `${e.namespace}/${e.name}`)).to.deep.equal(['ns2/drv']);
    expect(d.status).to.include({ total: 1, verified: 0 });
  });

  it('drops results for Modules that no longer exist', () => {
    const d = computeStatus(resource(), [b], undefined, [result(a, StageOutcomes.verified('ok'))], t0);
    expect(d.status.modules).to.have.length(1);
    expect(d.transitions.verified).to.deep.equal([]);
  });

  it('a Module generation change puts a verified entry back in the queue; a stale result is ignored', () => {
    const s1 = firstStatus(resource(), [a], [result(a, StageOutcomes.verified('ok'))]);
    const a2 = mod('ns1', 'drv', 2);
    const d = computeStatus(resource(), [a2], s1, [result(a, StageOutcomes.verified('ok again'))], t1);
    expect(entry(d.status, 'ns1', 'drv')).to.deep.equal({
      namespace: 'ns1',
      name: 'drv',
      verificationStatus: 'False',
      statusReason: QueuedReasons.moduleChanged(2),
      verificationStage: 'Image',
      lastTransitionTime: t1.toISOString(),
    });
    const d2 = computeStatus(resource(), [a2], d.status, [result(a2, StageOutcomes.verified('ok v2'))], t2);
    expect(entry(d2.status, 'ns1', 'drv')).to.include({ verificationStatus: 'True', observedGeneration: 2 });
  });

  it('a failed entry whose Module changed is queued again too', () => {
    const s1 = firstStatus(resource(), [a], [result(a, StageOutcomes.failedAt('Image', 'x'))]);
    const d = computeStatus(resource(), [mod('ns1', 'drv', 5)], s1, [], t1);
    expect(entry(d.status, 'ns1', 'drv')).to.include({ statusReason: QueuedReasons.moduleChanged(5) });
    expect(entry(d.status, 'ns1', 'drv')).to.not.have.property('observedGeneration');
    expect(d.status.failed).to.equal(0);
  });

  it('a resource spec change (new generation) queues every entry again and ignores results of the old one', () => {
    const s1 = firstStatus(resource(1), [a, b], [result(a, StageOutcomes.verified('ok'))]);
    const d = computeStatus(resource(2), [a, b], s1, [result(b, StageOutcomes.verified('late'))], t1);
    expect(d.status.observedGeneration).to.equal(2);
    for (const e of d.status.modules ?? []) {
      expect(e).to.include({
        verificationStatus: 'False',
        verificationStage: 'Image',
        statusReason: QueuedReasons.resourceChanged,
      });
    }
    expect(entry(d.status, 'ns2', 'drv').lastTransitionTime).to.equal(t0.toISOString());
    expect(entry(d.status, 'ns1', 'drv').lastTransitionTime).to.equal(t1.toISOString());
    expect(d.transitions.kernelResolved).to.equal(true);
  });

  it('a different resolved kernel (the release tag moved) queues every entry again', () => {
    const s1 = firstStatus(resource(), [a], [result(a, StageOutcomes.verified('ok'))]);
    const other: KernelState = {
      state: 'resolved',
      targetKernel: '5.14.0-300.el9.x86_64',
      kernelVersion: '5.14.0-300.el9.x86_64',
    };
    const d = computeStatus(
      resource(1, other),
      [a],
      s1,
      [result(a, StageOutcomes.verified('old kernel'))],
      t1,
    );
    expect(entry(d.status, 'ns1', 'drv')).to.include({
      verificationStatus: 'False',
      statusReason: QueuedReasons.resourceChanged,
    });
    expect(d.status.targetKernel).to.equal('5.14.0-300.el9.x86_64');
    expect(d.status).to.not.have.property('releaseVersion');
  });

  it('kernel not resolved: entries are queued waiting for it, KernelResolved False with the reason, Complete False', () => {
    const failed: KernelState = {
      state: 'failed',
      reason: 'NoDriverToolkitTag',
      message: 'no driver-toolkit tag',
      retrying: false,
    };
    const d = computeStatus(
      resource(1, failed),
      [a],
      undefined,
      [result(a, StageOutcomes.verified('ok'))],
      t0,
    );
    expect(entry(d.status, 'ns1', 'drv')).to.include({
      statusReason: QueuedReasons.waitingForKernel,
      verificationStatus: 'False',
    });
    expect(d.status).to.not.have.property('targetKernel');
    const kr = d.status.conditions?.find((c) => c.type === 'KernelResolved');
    expect(kr).to.include({
      status: 'False',
      reason: 'NoDriverToolkitTag',
      message: 'no driver-toolkit tag',
      observedGeneration: 1,
    });
    expect(d.status.conditions?.find((c) => c.type === 'Complete')).to.include({
      status: 'False',
      reason: 'KernelNotResolved',
    });

    const retrying: KernelState = {
      ...failed,
      reason: 'RegistryUnavailable',
      message: 'unreachable',
      retrying: true,
    };
    const d2 = computeStatus(resource(1, retrying), [a], d.status, [], t1);
    expect(d2.status.conditions?.find((c) => c.type === 'KernelResolved')).to.include({
      message: 'unreachable (retrying with backoff)',
      lastTransitionTime: t0.toISOString(),
    });
    const pending = computeStatus(resource(1, { state: 'pending' }), [a], undefined, [], t0);
    expect(pending.status.conditions?.find((c) => c.type === 'KernelResolved')).to.include({
      status: 'Unknown',
    });
  });

  it('validated once (offline): an unresolved kernel is the final failure of every entry, counted, with its reason', () => {
    const failed: KernelState = {
      state: 'failed',
      reason: 'NoRTKernel',
      message: 'release 4.19.0 ships no real-time kernel',
      retrying: false,
    };
    const d = computeStatus(resource(1, failed, 'once'), [a, b], undefined, [], t0);
    for (const [namespace, name] of [
      ['ns1', 'drv'],
      ['ns2', 'drv'],
    ] as const) {
      expect(entry(d.status, namespace, name)).to.include({
        verificationStatus: 'False',
        verificationStage: 'Done',
        statusReason: 'the target kernel could not be resolved: release 4.19.0 ships no real-time kernel',
        observedGeneration: 1,
      });
    }
    expect(d.status).to.include({ total: 2, verified: 0, failed: 2 });
    expect(d.status.conditions?.find((c) => c.type === 'Complete')).to.include({
      reason: 'KernelNotResolved',
      message: 'the target kernel could not be resolved',
    });
  });

  it('validated once (offline): a transient error is a failure at the stage it interrupted, with no retry promised', () => {
    const d = computeStatus(
      resource(1, resolved, 'once'),
      [a, b],
      undefined,
      [
        result(a, StageOutcomes.requeued('127.0.0.1:1 unreachable after 4 tries (ECONNREFUSED)', 'Image')),
        result(b, StageOutcomes.requeued('cluster unreachable', 'Sign')),
      ],
      t0,
    );
    expect(entry(d.status, 'ns1', 'drv')).to.include({
      verificationStatus: 'False',
      verificationStage: 'Image',
      statusReason: '127.0.0.1:1 unreachable after 4 tries (ECONNREFUSED)',
      observedGeneration: 1,
    });
    expect(entry(d.status, 'ns2', 'drv')).to.include({ verificationStage: 'Sign' });
    expect(d.status).to.include({ failed: 2, verified: 0 });
    expect(d.status.conditions?.find((c) => c.type === 'Complete')).to.include({
      reason: 'ModulesFailed',
      message: '2 of 2 Modules failed validation',
    });
  });

  it('a kernel given instead of resolved says so in KernelResolved', () => {
    const given: KernelState = { state: 'resolved', targetKernel: K, kernelVersion: K, givenBy: '--kernel' };
    const d = computeStatus(resource(1, given, 'once'), [], undefined, [], t0);
    expect(d.status.conditions?.find((c) => c.type === 'KernelResolved')).to.include({
      status: 'True',
      reason: 'Given',
      message: `kernel ${K} given with --kernel`,
    });
  });

  it('no Modules at all: Complete True, NoModules', () => {
    const d = computeStatus(resource(), [], undefined, [], t0);
    expect(d.status).to.include({ total: 0, progress: '0/0' });
    expect(d.status.conditions?.find((c) => c.type === 'Complete')).to.include({
      status: 'True',
      reason: 'NoModules',
    });
  });

  it('a final failure (no mapping) counts as failed and is kept across passes without results', () => {
    const s1 = firstStatus(
      resource(),
      [a],
      [result(a, StageOutcomes.finalFailure(`no kernel mapping matches ${K}`))],
    );
    const d = computeStatus(resource(), [a], s1, [], t1);
    expect(d.changed).to.equal(false);
    expect(d.status).to.include({ failed: 1 });
    expect(entry(d.status, 'ns1', 'drv')).to.include({ verificationStage: 'Done', observedGeneration: 1 });
  });

  it('the latest of several results for one module wins', () => {
    const d = computeStatus(
      resource(),
      [a],
      undefined,
      [result(a, StageOutcomes.requeued('x', 'Image')), result(a, StageOutcomes.verified('ok'))],
      t0,
    );
    expect(entry(d.status, 'ns1', 'drv').verificationStatus).to.equal('True');
  });
});
