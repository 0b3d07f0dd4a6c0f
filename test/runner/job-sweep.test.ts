import { expect } from 'chai';
import type { ModuleVerificationStatus } from '../../src/api/preflight.ts';
import type { Job } from '../../src/buildsign/kube-types.ts';
import { unwantedJobs, type SweepInput } from '../../src/runner/jobs/sweep.ts';
import { FIXTURE_OWNER, fixtureJob as job } from './job-fixture.ts';

const entry = (
  name: string,
  verificationStatus: 'True' | 'False',
  verificationStage: ModuleVerificationStatus['verificationStage'],
  observedGeneration?: number,
): ModuleVerificationStatus => ({
  namespace: 'ns',
  name,
  verificationStatus,
  verificationStage,
  statusReason: 'r',
  lastTransitionTime: '2026-01-01T00:00:00Z',
  ...(observedGeneration === undefined ? {} : { observedGeneration }),
});

function sweep(jobs: Job[], entries: ModuleVerificationStatus[], more: Partial<SweepInput> = {}): string[] {
  return unwantedJobs({
    owner: FIXTURE_OWNER,
    jobs,
    modules: entries.map((e) => ({ namespace: e.namespace, name: e.name, generation: 2 })),
    entries,
    busy: new Set(),
    ...more,
  }).map((u) => `${u.job.metadata.name}:${u.why}`);
}

describe('runner: which Build/Sign Jobs nothing wants', () => {
  it('every Job of a deleted Module, succeeded ones included', () => {
    const jobs = [
      job('a', 'ns/gone', 'running'),
      job('b', 'ns/gone', 'succeeded'),
      job('c', 'ns/kept', 'running'),
    ];
    expect(sweep(jobs, [entry('kept', 'False', 'Build')])).to.deep.equal([
      'a:module deleted',
      'b:module deleted',
    ]);
  });

  it('a verified module: its running and failed Jobs go, a succeeded one stays (it may have made the verdict)', () => {
    const jobs = [
      job('run', 'ns/m', 'running'),
      job('fail', 'ns/m', 'failed'),
      job('ok', 'ns/m', 'succeeded'),
    ];
    expect(sweep(jobs, [entry('m', 'True', 'Done', 2)])).to.deep.equal([
      'run:not needed by the verdict',
      'fail:not needed by the verdict',
    ]);
  });

  it('a failure at the Image stage (no build section applies any more) or a final one needs no Job', () => {
    const jobs = [job('img', 'ns/image', 'running'), job('done', 'ns/final', 'failed')];
    expect(
      sweep(jobs, [entry('image', 'False', 'Image', 2), entry('final', 'False', 'Done', 2)]),
    ).to.deep.equal(['img:not needed by the verdict', 'done:not needed by the verdict']);
  });

  it('keeps the Jobs of a module at Build or Sign, queued, requeued, or with a verdict for an older generation', () => {
    const jobs = [
      job('build', 'ns/build', 'failed'),
      job('sign', 'ns/sign', 'running'),
      job('queued', 'ns/queued', 'running'),
      job('requeued', 'ns/requeued', 'running'),
      job('old', 'ns/old', 'running'),
    ];
    const entries = [
      entry('build', 'False', 'Build', 2),
      entry('sign', 'False', 'Sign'),
      entry('queued', 'False', 'Image'),
      entry('requeued', 'False', 'Requeued'),
      entry('old', 'True', 'Done', 1),
    ];
    expect(sweep(jobs, entries)).to.deep.equal([]);
  });

  it('decides nothing for a module being validated (it may be starting a Job right now)', () => {
    const jobs = [job('run', 'ns/m', 'running')];
    expect(sweep(jobs, [entry('m', 'True', 'Done', 2)], { busy: new Set(['ns/m']) })).to.deep.equal([]);
  });

  it("ignores other resources' Jobs, Jobs being deleted, and Jobs that name no Module", () => {
    const jobs = [
      job('other', 'ns/gone', 'running', { ownerUid: 'someone-else' }),
      job('deleting', 'ns/gone', 'running', { deleting: true }),
      job('anonymous', 'ns/gone', 'running', { noModule: true }),
    ];
    expect(sweep(jobs, [])).to.deep.equal([]);
  });
});
